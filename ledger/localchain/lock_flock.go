//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package localchain

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path, so that two processes
// never append to one ledger directory. The kernel drops it when the
// process dies, so a crash leaves no stale lock.
func lockDir(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("localchain: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("localchain: ledger directory is in use by another chain (%s is locked)", path)
		}
		return nil, fmt.Errorf("localchain: lock %s: %w", path, err)
	}
	return f.Close, nil
}
