package exec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/node3/node3"
)

const (
	// jobPATH is the PATH a command job starts with.
	jobPATH = "/usr/local/bin:/usr/bin:/bin"
	// pipeGrace is how long output is still read after the job's process
	// group is gone, for a descendant that escaped the group (setsid) and
	// holds the pipe open. Then the pipe is abandoned.
	pipeGrace = time.Second
	// killWait bounds the wait for a killed process to be reaped.
	killWait = 5 * time.Second
)

// runCommand runs the job's argv (no shell) in its own process group, in
// the scratch directory, with a scrubbed environment. The group is killed
// when ctx ends and again after the process exits, so that nothing it
// started survives it.
func (n *Native) runCommand(ctx context.Context, w *workspace) (outcome, error) {
	argv := w.job.Command
	res := outcome{exitCode: -1, metrics: map[string]float64{}}
	env, err := commandEnv(w)
	if err != nil {
		return res, err
	}
	path, err := lookPath(argv[0], envValue(env, "PATH"))
	if err != nil {
		res.exitCode = 127
		return res, err
	}

	tail := newTailBuffer(n.outputCap)
	var stdoutFile *capFile
	// Output goes through pipes we read ourselves (not os/exec's copying
	// goroutines), so Wait returns as soon as the process exits, and we
	// decide how long to wait for descendants still holding the pipes.
	type stream struct {
		r   *os.File
		dst io.Writer
	}
	var streams []stream
	var childEnds []*os.File
	closeAll := func() {
		for _, f := range childEnds {
			f.Close()
		}
		for _, s := range streams {
			s.r.Close()
		}
	}
	newPipe := func(dst io.Writer) (*os.File, error) {
		r, wr, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("creating output pipe: %w", err)
		}
		streams = append(streams, stream{r: r, dst: dst})
		childEnds = append(childEnds, wr)
		return wr, nil
	}
	var stdoutW, stderrW *os.File
	if w.job.OutputURL != "" {
		// stdout is the upload fallback: keep it whole (up to the
		// output cap) in a file, besides the combined tail.
		f, err := os.OpenFile(w.stdout, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return res, fmt.Errorf("creating stdout file: %w", err)
		}
		defer f.Close()
		stdoutFile = &capFile{f: f, limit: n.maxOut}
		if stdoutW, err = newPipe(io.MultiWriter(tail, stdoutFile)); err == nil {
			stderrW, err = newPipe(tail)
		}
		if err != nil {
			closeAll()
			return res, err
		}
	} else {
		if stdoutW, err = newPipe(tail); err != nil {
			return res, err
		}
		stderrW = stdoutW
	}

	cmd := osexec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Dir = w.scratch
	cmd.Env = env
	cmd.Stdout = stdoutW
	cmd.Stderr = stderrW
	cmd.WaitDelay = killWait
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		closeAll()
		res.exitCode = 127
		return res, fmt.Errorf("starting command %q: %w", truncate(argv[0], 64), err)
	}
	for _, f := range childEnds {
		f.Close() // the child has its copies; EOF comes when they close
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() { io.Copy(s.dst, s.r) })
	}

	waitErr := cmd.Wait()
	// Kill whatever the job left running in its group (background
	// children holding the pipes), then give escaped descendants a short
	// grace before abandoning the pipes. The group ID stays reserved while
	// any member lives; once it is empty the kill finds nobody.
	killProcessGroup(cmd.Process.Pid)
	for _, s := range streams {
		if err := s.r.SetReadDeadline(time.Now().Add(pipeGrace)); err != nil {
			s.r.Close()
		}
	}
	wg.Wait()
	for _, s := range streams {
		s.r.Close()
	}

	res.exitCode = exitCode(cmd.ProcessState)
	res.output = tail.String()
	res.stdout = stdoutFile
	if waitErr != nil {
		return res, commandError(waitErr, cmd.ProcessState)
	}
	if res.exitCode != 0 {
		return res, fmt.Errorf("command exited with status %d", res.exitCode)
	}
	return res, nil
}

// commandError says how the command ended when it did not succeed.
func commandError(waitErr error, ps *os.ProcessState) error {
	var ee *osexec.ExitError
	if !errors.As(waitErr, &ee) {
		return fmt.Errorf("waiting for command: %w", waitErr)
	}
	if sig := exitSignal(ps); sig != "" {
		return fmt.Errorf("command killed by signal %s", sig)
	}
	return fmt.Errorf("command exited with status %d", ps.ExitCode())
}

// reservedEnv are set by the provider and win over the job's env.
func reservedEnv(k string) bool {
	return strings.HasPrefix(k, "NODE3_") || k == "CUDA_VISIBLE_DEVICES" || k == "NVIDIA_VISIBLE_DEVICES"
}

// commandEnv builds the job's whole environment: nothing from ours. The
// job's env may replace PATH, HOME and TMPDIR but not the NODE3_ variables
// or the visible-device lists.
func commandEnv(w *workspace) ([]string, error) {
	env := map[string]string{
		"PATH":   jobPATH,
		"HOME":   w.scratch,
		"TMPDIR": w.scratch,
	}
	for k, v := range w.job.Env {
		if !validEnvName(k) {
			return nil, node3.Errorf(node3.CodeInvalid, "env name %q is not a valid variable name", truncate(k, 64))
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, node3.Errorf(node3.CodeInvalid, "env value of %s contains a NUL byte", k)
		}
		if reservedEnv(k) {
			continue
		}
		env[k] = v
	}
	devices := gpuIndices(w.gpus)
	env["NODE3_JOB_ID"] = w.job.ID
	env["CUDA_VISIBLE_DEVICES"] = devices
	env["NVIDIA_VISIBLE_DEVICES"] = devices
	env["NODE3_OUTPUT"] = w.output
	if w.input != "" {
		env["NODE3_INPUT"] = w.input
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out, nil
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c != '_' && !('A' <= c && c <= 'Z') && !('a' <= c && c <= 'z') && !(i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == key {
			return v
		}
	}
	return ""
}

// gpuIndices is the comma list of the GPUs' indices, "" for none.
func gpuIndices(gpus []node3.GPU) string {
	s := make([]string, len(gpus))
	for i, g := range gpus {
		s[i] = strconv.Itoa(g.Index)
	}
	return strings.Join(s, ",")
}

// lookPath finds file in the job's PATH (absolute entries only), not in
// ours. A name with a slash is used as given: absolute, or relative to the
// scratch directory the command runs in.
func lookPath(file, pathEnv string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in the job's PATH", truncate(file, 64))
}
