package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes this test binary run the CLI with the arguments it holds
// (separated by \x1f) instead of the tests: a real node3 process.
const childEnv = "NODE3_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(childEnv); ok {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, strings.Split(args, "\x1f"), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// child is a node3 process started from this test binary.
type child struct {
	cmd *exec.Cmd
	out []string // stdout lines up to "Press Ctrl-C"
}

func startChild(b *testing.B, args ...string) *child {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(append([]string{"--env-file", ""}, args...), "\x1f"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &child{cmd: cmd}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.out = append(c.out, sc.Text())
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
		}
		ready <- fmt.Errorf("node exited before it was up: %q", c.out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		b.Fatal("node not up within 60 s")
	}
	return c
}

// rssMiB reads the process's resident set from /proc.
func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no VmRSS")
	}
	kb, _ := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024, nil
}

// BenchmarkIdleNodeRSS starts two real node3 processes — a coordinator
// (with its own provider) and a provider that bootstraps from it and
// trusts it, both on libp2p over loopback, demo GPUs, payments off — lets
// them idle for idleFor and reports each one's resident memory.
//
//	go test -run '^$' -bench IdleNodeRSS -benchtime 1x ./cmd/node3/
func BenchmarkIdleNodeRSS(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	const idleFor = 10 * time.Second
	dir := b.TempDir()
	common := []string{"--solana-rpc-url", "", "--skip-gpu-check", "--agent-port", "0", "--p2p-port", "0", "--network", "rss-bench", "--log-level", "warn"}
	coord := startChild(b, append([]string{"run", "--coordinator", "--marketplace-port", "0", "--data-dir", filepath.Join(dir, "c")}, common...)...)
	var boot, peerID string
	for _, l := range coord.out {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[len(f)-1], "/ip4/127.0.0.1/tcp/") {
			boot = f[len(f)-1]
			peerID = boot[strings.LastIndex(boot, "/")+1:]
			break
		}
	}
	if boot == "" {
		b.Fatalf("no loopback address in the coordinator's output: %q", coord.out)
	}
	prov := startChild(b, append([]string{"run", "--data-dir", filepath.Join(dir, "p"), "--bootstrap", boot, "--trust-coordinator", peerID}, common...)...)
	b.ResetTimer()
	time.Sleep(idleFor)
	b.StopTimer()
	for _, x := range []struct {
		name string
		c    *child
	}{{"coordinator", coord}, {"provider", prov}} {
		mib, err := rssMiB(x.c.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(mib, x.name+"-rss-MiB")
	}
}
