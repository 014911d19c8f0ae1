//go:build !unix

package exec

import (
	"os"
	osexec "os/exec"
)

// Without process groups, cancellation kills the process only.
func setProcessGroup(cmd *osexec.Cmd) {}

func killProcessGroup(pid int) error { return nil }

func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	return ps.ExitCode()
}

func exitSignal(ps *os.ProcessState) string { return "" }
