// Package fileperm is the one rule for the permissions of node3's secret
// files and the directories that hold them: the data directory, the admin
// key, the wallets, the libp2p identity and Badger's directory.
//
// When such a path already exists it must belong to the user node3 runs
// as. A file readable or writable by group or others is tightened to
// owner-only (a key file to 0600, a directory to 0700) with a warning
// that names it and both modes; a path owned by someone else, or whose
// mode cannot be changed, is refused with an error that says what to do.
//
// Symbolic links: a secret file that is a symlink is refused (the link
// could be repointed by whoever can write its directory, and a tightened
// target elsewhere would surprise its owner); a directory given by the
// operator (the data directory) is followed, since it is often a link to
// another disk, and its target is checked. Entries inside a directory
// checked with Tree that are links are refused.
package fileperm

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Kind is what a path is meant to be.
type Kind int

const (
	// File is a secret file: owner read/write only.
	File Kind = iota
	// Dir is a directory of secrets: owner only.
	Dir
)

// Action is what Decide says to do with a path.
type Action int

const (
	Keep    Action = iota // fine as it is
	Tighten               // chmod to the mode Decide returns
	Refuse                // an error: the caller must not use it
)

func (a Action) String() string {
	return [...]string{"keep", "tighten", "refuse"}[a]
}

// Decide is the rule, without I/O: what to do with a path of mode m and
// owner uid, found by a process of effective uid self, meant to be a k.
// It returns the mode to set for Tighten and the reason for Refuse.
func Decide(k Kind, m fs.FileMode, owner, self int) (Action, fs.FileMode, string) {
	switch {
	case m&fs.ModeSymlink != 0:
		return Refuse, 0, "is a symbolic link; point node3 at the file itself"
	case k == File && !m.IsRegular():
		return Refuse, 0, "is not a regular file"
	case k == Dir && !m.IsDir():
		return Refuse, 0, "is not a directory"
	case owner != self:
		return Refuse, 0, fmt.Sprintf("is owned by uid %d, not by the user node3 runs as (uid %d); chown it or run node3 as its owner", owner, self)
	case m.Perm()&0o077 == 0:
		return Keep, m.Perm(), ""
	}
	want := m.Perm() &^ 0o077
	if k == Dir {
		want |= 0o700 // a directory we cannot enter is of no use
	} else {
		want |= 0o600
	}
	return Tighten, want, ""
}

// Check applies the rule to path if it exists: it returns nil for a path
// that does not exist (the caller creates it with the right mode), nil
// after tightening one, and an error for one that is refused or cannot be
// changed. A Dir is followed if it is a symlink; a File is not.
func Check(path string, k Kind, log *slog.Logger) error {
	stat := os.Lstat
	if k == Dir {
		stat = os.Stat
	}
	st, err := stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return apply(path, k, st, log)
}

// Tree checks the directory dir (as Dir) and everything in it: files as
// File, subdirectories as Dir, links refused. For stores such as Badger
// whose files are created with the process umask.
func Tree(dir string, log *slog.Logger) error {
	if err := Check(dir, Dir, log); err != nil {
		return err
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if path == dir {
			return nil
		}
		st, err := os.Lstat(path)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		k := File
		if st.IsDir() {
			k = Dir
		}
		return apply(path, k, st, log)
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func apply(path string, k Kind, st fs.FileInfo, log *slog.Logger) error {
	owner, ok := ownerOf(st)
	self := os.Geteuid()
	if !ok {
		return nil // no owners or Unix modes to go by (Windows)
	}
	act, want, why := Decide(k, st.Mode(), owner, self)
	switch act {
	case Refuse:
		return fmt.Errorf("%s %s", path, why)
	case Tighten:
		if err := os.Chmod(path, want); err != nil {
			return fmt.Errorf("%s has mode %04o, open to group or others, and cannot be tightened: %w; run chmod %04o %s", path, st.Mode().Perm(), err, want, path)
		}
		if log != nil {
			log.Warn("tightened permissions: it was open to group or others", "path", path, "old_mode", fmt.Sprintf("%04o", st.Mode().Perm()), "new_mode", fmt.Sprintf("%04o", want))
		}
	}
	return nil
}
