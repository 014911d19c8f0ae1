package exec

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/internal/syncbuf"
)

type testNative struct {
	*Native
	workDir string
	logs    *syncbuf.Buffer
}

// newTestNative builds a Native on a fresh work dir that must be empty
// again when the test ends.
func newTestNative(t *testing.T, mod func(*Config)) testNative {
	t.Helper()
	dir := t.TempDir()
	logs := &syncbuf.Buffer{}
	cfg := Config{
		WorkDir:           dir,
		AllowCommands:     true,
		BenchmarkDuration: 50 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := NewNative(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Error(err)
		}
		if len(entries) > 0 {
			t.Errorf("work dir not empty after the test: %v", entries)
		}
	})
	return testNative{Native: n, workDir: dir, logs: logs}
}

func cmdJob(id string, argv ...string) node3.Job {
	return node3.Job{ID: id, JobSpec: node3.JobSpec{Kind: node3.KindCommand, Command: argv, TimeoutSecs: 30}}
}

func requireSh(t *testing.T) {
	t.Helper()
	for _, p := range []string{"/bin/sh", "/bin/sleep"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not available", p)
		}
	}
}

func simGPUs() []node3.GPU {
	return []node3.GPU{
		{Index: 0, UUID: "SIM-GPU-0-0", Vendor: "NVIDIA", Model: "NVIDIA L4", MemoryBytes: 24 << 30, Simulated: true},
		{Index: 2, UUID: "SIM-GPU-0-2", Vendor: "NVIDIA", Model: "NVIDIA L4", MemoryBytes: 24 << 30, Simulated: true},
	}
}

func TestKinds(t *testing.T) {
	requireSh(t)
	gpuQuery := func(context.Context) ([]node3.GPU, error) { return simGPUs(), nil }
	tests := []struct {
		name       string
		job        node3.Job
		noCommands bool
		gpus       func(context.Context) ([]node3.GPU, error)
		wantCode   node3.Code // expected error code; "" means success
		wantErr    string
		wantExit   int
		wantOutput string
		check      func(t *testing.T, res node3.JobResult)
	}{
		{
			name: "noop",
			job:  node3.Job{ID: "j1", JobSpec: node3.JobSpec{Kind: node3.KindNoop}},
			check: func(t *testing.T, res node3.JobResult) {
				if len(res.Metrics) != 0 || res.Output != "" {
					t.Errorf("noop result = %+v", res)
				}
			},
		},
		{
			name:       "test with GPU query",
			job:        node3.Job{ID: "j2", JobSpec: node3.JobSpec{Kind: node3.KindTest}},
			gpus:       gpuQuery,
			wantOutput: "test passed",
			check: func(t *testing.T, res node3.JobResult) {
				if res.Metrics["gpus"] != 2 || res.Metrics["matmul_checksum"] != float64(intChecksum(matSize)) {
					t.Errorf("metrics = %v", res.Metrics)
				}
				for _, s := range []string{"GPU query: 2 GPU(s)", "NVIDIA L4", "128x128 float64 matmul: checksum", "matches"} {
					if !strings.Contains(res.Output, s) {
						t.Errorf("output lacks %q:\n%s", s, res.Output)
					}
				}
			},
		},
		{
			name:       "test without GPU query",
			job:        node3.Job{ID: "j3", JobSpec: node3.JobSpec{Kind: node3.KindTest}},
			wantOutput: "not available",
			check: func(t *testing.T, res node3.JobResult) {
				if v, ok := res.Metrics["gpus"]; !ok || v != 0 {
					t.Errorf("metrics = %v", res.Metrics)
				}
			},
		},
		{
			name:     "test with failing GPU query",
			job:      node3.Job{ID: "j4", JobSpec: node3.JobSpec{Kind: node3.KindTest}},
			gpus:     func(context.Context) ([]node3.GPU, error) { return nil, errors.New("nvidia-smi exploded") },
			wantCode: node3.CodeInternal,
			wantErr:  "nvidia-smi exploded",
			wantExit: 1,
		},
		{
			name:       "benchmark",
			job:        node3.Job{ID: "j5", JobSpec: node3.JobSpec{Kind: node3.KindBenchmark}},
			wantOutput: "GFLOP/s",
			check: func(t *testing.T, res node3.JobResult) {
				if !(res.Metrics["gflops"] > 0) || res.Metrics["iterations"] < 1 || res.Metrics["seconds"] < 0.05 {
					t.Errorf("metrics = %v", res.Metrics)
				}
			},
		},
		{
			name:       "command",
			job:        cmdJob("j6", "sh", "-c", "echo hello; echo oops >&2"),
			wantOutput: "hello\noops\n",
		},
		{
			name:       "command not allowed",
			job:        cmdJob("j7", "true"),
			noCommands: true,
			wantCode:   node3.CodeForbidden,
			wantErr:    "not allowed",
			wantExit:   -1,
		},
		{
			name:     "command exits non-zero",
			job:      cmdJob("j8", "sh", "-c", "echo failing; exit 3"),
			wantCode: node3.CodeInternal,
			wantErr:  "status 3",
			wantExit: 3,
			check: func(t *testing.T, res node3.JobResult) {
				if res.Output != "failing\n" {
					t.Errorf("output = %q", res.Output)
				}
			},
		},
		{
			name:     "command not found",
			job:      cmdJob("j9", "node3-no-such-program"),
			wantCode: node3.CodeInternal,
			wantErr:  "not found",
			wantExit: 127,
		},
		{
			name:     "command killed by signal",
			job:      cmdJob("j10", "sh", "-c", "kill -TERM $$"),
			wantCode: node3.CodeInternal,
			wantErr:  "signal 15",
			wantExit: 128 + 15,
		},
		{
			name:     "empty command",
			job:      node3.Job{ID: "j11", JobSpec: node3.JobSpec{Kind: node3.KindCommand}},
			wantCode: node3.CodeInvalid,
			wantExit: -1,
		},
		{
			name:     "container",
			job:      node3.Job{ID: "j12", JobSpec: node3.JobSpec{Kind: node3.KindContainer, Image: "alpine"}},
			wantCode: node3.CodeUnavailable,
			wantErr:  "Docker",
			wantExit: -1,
		},
		{
			name:     "unknown kind",
			job:      node3.Job{ID: "j13", JobSpec: node3.JobSpec{Kind: "quantum"}},
			wantCode: node3.CodeInvalid,
			wantExit: -1,
		},
		{
			name:     "bad env name",
			job:      node3.Job{ID: "j14", JobSpec: node3.JobSpec{Kind: node3.KindCommand, Command: []string{"true"}, Env: map[string]string{"A=B": "x"}}},
			wantCode: node3.CodeInvalid,
			wantExit: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newTestNative(t, func(c *Config) {
				c.AllowCommands = !tt.noCommands
				c.GPUs = tt.gpus
			})
			res, err := n.Run(context.Background(), tt.job, simGPUs()[:1])
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			} else {
				if err == nil {
					t.Fatalf("Run succeeded, want a %s error", tt.wantCode)
				}
				if got := node3.ErrorCode(err); got != tt.wantCode {
					t.Errorf("error code = %s (%v), want %s", got, err, tt.wantCode)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %q does not mention %q", err, tt.wantErr)
				}
			}
			if res.ExitCode != tt.wantExit {
				t.Errorf("exit code = %d, want %d", res.ExitCode, tt.wantExit)
			}
			if !strings.Contains(res.Output, tt.wantOutput) {
				t.Errorf("output = %q, want it to contain %q", res.Output, tt.wantOutput)
			}
			if res.Metrics == nil || res.ExecutionTime < 0 || res.SetupTime != 0 || res.OutputSHA256 != "" {
				t.Errorf("result = %+v", res)
			}
			if err := res.Check(); err != nil {
				t.Errorf("result does not pass JobResult.Check: %v", err)
			}
			if tt.check != nil {
				tt.check(t, res)
			}
		})
	}
}

func TestMatmulChecksumIsExact(t *testing.T) {
	a, b := testMatrices(matSize)
	c := make([]float64, matSize*matSize)
	matmul(c, a, b, matSize)
	if got, want := checksum(c, matSize), intChecksum(matSize); got != float64(want) {
		t.Fatalf("checksum %v, integer reference %d", got, want)
	}
	// A misplaced entry changes it.
	c[1], c[2] = c[2]+1, c[1]
	if checksum(c, matSize) == float64(intChecksum(matSize)) {
		t.Fatal("checksum blind to a changed entry")
	}
}

// processGone reports whether pid has exited (a zombie waiting for its
// reaper counts as gone: it runs nothing).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return runtime.GOOS == "linux" // no /proc entry: gone
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && (b[i+2] == 'Z' || b[i+2] == 'X')
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still running after Run returned", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func firstPID(t *testing.T, out string) int {
	t.Helper()
	line, _, _ := strings.Cut(out, "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 1 {
		t.Fatalf("no pid at the start of output %q", out)
	}
	return pid
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	job := cmdJob("timeout", "sh", "-c", "sleep 100 & echo $!; sleep 100")
	job.TimeoutSecs = 1
	start := time.Now()
	res, err := n.Run(context.Background(), job, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v, want a timeout", err)
	}
	t.Logf("returned after %v", time.Since(start))
	if res.ExitCode != 128+9 {
		t.Errorf("exit code = %d, want 137 (SIGKILL)", res.ExitCode)
	}
	waitGone(t, firstPID(t, res.Output))
}

func TestBackgroundChildCannotHangRun(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	// The shell exits at once; its background child keeps stdout open.
	start := time.Now()
	res, err := n.Run(context.Background(), cmdJob("bg", "sh", "-c", "sleep 100 & echo $!"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %v", d)
	}
	waitGone(t, firstPID(t, res.Output))
}

func TestEscapedDescendantCannotHangRun(t *testing.T) {
	requireSh(t)
	if _, err := os.Stat("/usr/bin/setsid"); err != nil {
		t.Skip("no setsid")
	}
	n := newTestNative(t, nil)
	// setsid leaves the job's process group; only the pipe grace period
	// bounds the wait for it. (Native commands are trusted by opt-in;
	// containers are where escapes are contained.)
	res, err := n.Run(context.Background(), cmdJob("escape", "sh", "-c", "setsid sleep 30 & echo $!"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pid := firstPID(t, res.Output)
	syscall.Kill(pid, syscall.SIGKILL) // it is ours: the test started it
	waitGone(t, pid)
}

func TestCancelStopsCommand(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err := n.Run(ctx, cmdJob("cancel", "sh", "-c", "sleep 100 & echo $!; sleep 100"), nil)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %v after cancel", d)
	}
	waitGone(t, firstPID(t, res.Output))

	// Cancelled before starting: nothing runs.
	res, err = n.Run(ctx, cmdJob("cancel2", "true"), nil)
	if !errors.Is(err, context.Canceled) || res.ExitCode != -1 {
		t.Fatalf("pre-cancelled Run = %+v, %v", res, err)
	}
}

func TestBenchmarkHonoursCancel(t *testing.T) {
	n := newTestNative(t, func(c *Config) { c.BenchmarkDuration = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := n.Run(ctx, node3.Job{ID: "b", JobSpec: node3.JobSpec{Kind: node3.KindBenchmark}}, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestOutputCapKeepsTail(t *testing.T) {
	requireSh(t)
	if _, err := os.Stat("/usr/bin/seq"); err != nil {
		t.Skip("no seq")
	}
	n := newTestNative(t, func(c *Config) { c.OutputCap = 100 })
	res, err := n.Run(context.Background(), cmdJob("cap", "seq", "1", "10000"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var full strings.Builder
	for i := 1; i <= 10000; i++ {
		fmt.Fprintf(&full, "%d\n", i)
	}
	if len(res.Output) > 100 {
		t.Fatalf("output is %d bytes, cap 100", len(res.Output))
	}
	var dropped int
	var tail string
	if _, err := fmt.Sscanf(res.Output, "[… %d bytes truncated]\n", &dropped); err != nil {
		t.Fatalf("no truncation marker in %q", res.Output)
	}
	_, tail, _ = strings.Cut(res.Output, "truncated]\n")
	if !strings.HasSuffix(full.String(), tail) || !strings.HasSuffix(tail, "9999\n10000\n") {
		t.Fatalf("tail %q is not the end of the output", tail)
	}
	if dropped+len(tail) != full.Len() {
		t.Fatalf("marker says %d dropped, kept %d, total %d", dropped, len(tail), full.Len())
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		writes []string
	}{
		{"empty", 64, nil},
		{"fits", 64, []string{"abc", "def"}},
		{"exactly full", 64, []string{strings.Repeat("x", 64)}},
		{"one big write", 64, []string{strings.Repeat("0123456789", 50)}},
		{"many small writes", 64, slices.Repeat([]string{"abcdefg"}, 100)},
		{"mixed", 80, []string{strings.Repeat("a", 70), "bcdef", strings.Repeat("g", 200), "hij"}},
		{"utf8 boundary", 64, []string{strings.Repeat("é", 100)}},
		{"invalid utf8", 64, []string{"ok\xff\xfeok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newTailBuffer(tt.size)
			all := strings.Join(tt.writes, "")
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			got := b.String()
			if len(got) > tt.size {
				t.Fatalf("String is %d bytes, over %d", len(got), tt.size)
			}
			if !strings.HasPrefix(got, "[…") {
				if want := strings.ToValidUTF8(all, "?"); got != want {
					t.Fatalf("String = %q, want %q", got, want)
				}
				return
			}
			var dropped int
			fmt.Sscanf(got, "[… %d bytes truncated]\n", &dropped)
			_, tail, _ := strings.Cut(got, "truncated]\n")
			if !strings.HasSuffix(all, tail) || dropped+len(tail) != len(all) {
				t.Fatalf("String = %q for %d bytes written", got, len(all))
			}
			if !strings.HasPrefix(tail, "é") && strings.Contains(all, "é") {
				t.Fatalf("tail %q starts inside a rune", tail)
			}
		})
	}
}

func TestEnvScrubbed(t *testing.T) {
	if _, err := os.Stat("/usr/bin/env"); err != nil {
		t.Skip("no env")
	}
	t.Setenv("NODE3_PARENT_SECRET", "parent-secret-value")
	n := newTestNative(t, nil)
	job := cmdJob("envjob", "env")
	job.Env = map[string]string{"FOO": "bar", "NODE3_JOB_ID": "spoofed", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}
	res, err := n.Run(context.Background(), job, simGPUs())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(res.Output), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	wantKeys := []string{"CUDA_VISIBLE_DEVICES", "FOO", "HOME", "NODE3_JOB_ID", "NODE3_OUTPUT", "NVIDIA_VISIBLE_DEVICES", "PATH", "TMPDIR"}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("env keys = %v, want %v\n%s", keys, wantKeys, res.Output)
	}
	if got["FOO"] != "bar" || got["NODE3_JOB_ID"] != "envjob" || got["CUDA_VISIBLE_DEVICES"] != "0,2" ||
		got["NVIDIA_VISIBLE_DEVICES"] != "0,2" || got["PATH"] != "/usr/local/bin:/usr/bin:/bin" {
		t.Fatalf("env = %v", got)
	}
	if !strings.HasPrefix(got["HOME"], n.workDir+"/") || got["TMPDIR"] != got["HOME"] ||
		filepath.Dir(got["NODE3_OUTPUT"]) != filepath.Dir(got["HOME"]) {
		t.Fatalf("HOME/TMPDIR/NODE3_OUTPUT = %q %q %q", got["HOME"], got["TMPDIR"], got["NODE3_OUTPUT"])
	}
	if strings.Contains(res.Output, "parent-secret-value") {
		t.Fatal("the parent's environment leaked into the job")
	}

	// No GPUs assigned: the device lists are empty, not absent.
	res, err = n.Run(context.Background(), cmdJob("envjob2", "env"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+res.Output, "\nCUDA_VISIBLE_DEVICES=\n") || !strings.Contains(res.Output, "\nNVIDIA_VISIBLE_DEVICES=\n") {
		t.Fatalf("env without GPUs:\n%s", res.Output)
	}
}

func TestScratchDir(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	// cwd is the scratch dir, 0700, inside a 0700 run dir; a locked
	// subdirectory does not stop the cleanup.
	script := `pwd; stat -c %a . ..; mkdir -p locked/deep && touch locked/deep/f && chmod 000 locked/deep locked`
	res, err := n.Run(context.Background(), cmdJob("scratch", "sh", "-c", script), nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(res.Output), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], n.workDir+"/job-scratch-") || lines[1] != "700" || lines[2] != "700" {
		t.Fatalf("output = %q", res.Output)
	}
	if _, err := os.Stat(lines[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("scratch dir still there: %v", err)
	}
}

func TestRelativeCommandRunsInScratch(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	res, err := n.Run(context.Background(), cmdJob("rel", "sh", "-c", `printf '#!/bin/sh\necho from script\n' > run.sh && chmod +x run.sh && ./run.sh`), nil)
	if err != nil || res.Output != "from script\n" {
		t.Fatalf("Run = %q, %v", res.Output, err)
	}
}

// fileServer serves body at /input, answers PUT /output with status and
// records what it received.
type fileServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	chunked  bool
	status   int
	received []byte
	puts     int
}

func newFileServer(t *testing.T, body []byte) *fileServer {
	fs := &fileServer{body: body, status: http.StatusCreated}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/input":
			if fs.chunked {
				w.Write(fs.body[:1])
				w.(http.Flusher).Flush()
				w.Write(fs.body[1:])
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(fs.body)))
			w.Write(fs.body)
		case r.Method == http.MethodPut && r.URL.Path == "/output":
			fs.puts++
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fs.received = b
			w.WriteHeader(fs.status)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fileServer) got() ([]byte, int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.received, fs.puts
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestInputDownload(t *testing.T) {
	requireSh(t)
	data := []byte("input data for the job\n")
	tests := []struct {
		name     string
		path     string
		sum      string
		maxIn    int64
		chunked  bool
		wantCode node3.Code
		wantErr  string
	}{
		{name: "good sha256", path: "/input", sum: sha(data)},
		{name: "upper-case sha256", path: "/input", sum: strings.ToUpper(sha(data))},
		{name: "no sha256", path: "/input"},
		{name: "bad sha256", path: "/input", sum: sha([]byte("other")), wantCode: node3.CodeInvalid, wantErr: "checksum mismatch"},
		{name: "malformed sha256", path: "/input", sum: "abc", wantCode: node3.CodeInvalid, wantErr: "64 hex"},
		{name: "over the cap", path: "/input", maxIn: 10, wantCode: node3.CodeTooLarge, wantErr: "limit"},
		{name: "over the cap, no length", path: "/input", maxIn: 10, chunked: true, wantCode: node3.CodeTooLarge, wantErr: "limit"},
		{name: "exactly the cap, no length", path: "/input", maxIn: int64(len(data)), chunked: true},
		{name: "not found", path: "/missing?token=SECRET-TOKEN", wantCode: node3.CodeInternal, wantErr: "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFileServer(t, data)
			srv.chunked = tt.chunked
			n := newTestNative(t, func(c *Config) { c.MaxInputBytes = tt.maxIn })
			job := cmdJob("in", "sh", "-c", `cat "$NODE3_INPUT"`)
			job.InputURL = srv.URL + tt.path
			job.InputSHA256 = tt.sum
			res, err := n.Run(context.Background(), job, nil)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				if res.Output != string(data) || res.ExitCode != 0 {
					t.Fatalf("job saw input %q", res.Output)
				}
				return
			}
			if err == nil || node3.ErrorCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v (%s), want %s containing %q", err, node3.ErrorCode(err), tt.wantCode, tt.wantErr)
			}
			if res.ExitCode != -1 || res.Output != "" {
				t.Fatalf("the job ran anyway: %+v", res)
			}
			if strings.Contains(err.Error(), "SECRET-TOKEN") || strings.Contains(n.logs.String(), "SECRET-TOKEN") {
				t.Fatalf("URL query leaked: %v\n%s", err, n.logs.String())
			}
		})
	}
}

func TestUnreachableInputIsRedacted(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close() // nothing listens there now
	n := newTestNative(t, nil)
	job := node3.Job{ID: "x", JobSpec: node3.JobSpec{Kind: node3.KindNoop, InputURL: addr + "/in?sig=SECRET-SIG"}}
	_, err := n.Run(context.Background(), job, nil)
	if err == nil || strings.Contains(err.Error(), "SECRET-SIG") || !strings.Contains(err.Error(), "downloading input") {
		t.Fatalf("err = %v", err)
	}
}

func TestOutputUpload(t *testing.T) {
	requireSh(t)
	tests := []struct {
		name     string
		job      node3.Job
		maxOut   int64
		status   int
		want     string // bytes the server must receive
		wantCode node3.Code
		wantErr  string
		wantPuts int
	}{
		{name: "output file", job: cmdJob("o1", "sh", "-c", `echo log line; printf 'result bytes' > "$NODE3_OUTPUT"`), want: "result bytes", wantPuts: 1},
		{name: "stdout fallback", job: cmdJob("o2", "sh", "-c", `echo out; echo err >&2`), want: "out\n", wantPuts: 1},
		{name: "empty stdout", job: cmdJob("o3", "true"), want: "", wantPuts: 1},
		{name: "built-in output", job: node3.Job{ID: "o4", JobSpec: node3.JobSpec{Kind: node3.KindTest}}, want: "test passed", wantPuts: 1},
		{name: "server error", job: cmdJob("o5", "echo", "x"), status: http.StatusInternalServerError, wantCode: node3.CodeInternal, wantErr: "500", wantPuts: 1},
		{name: "output file over cap", job: cmdJob("o6", "sh", "-c", `printf '0123456789' > "$NODE3_OUTPUT"`), maxOut: 5, wantCode: node3.CodeTooLarge, wantErr: "limit"},
		{name: "stdout over cap", job: cmdJob("o7", "echo", "0123456789"), maxOut: 5, wantCode: node3.CodeTooLarge, wantErr: "stdout"},
		{name: "output is a symlink", job: cmdJob("o8", "sh", "-c", `ln -s /etc/passwd "$NODE3_OUTPUT"`), wantCode: node3.CodeInvalid, wantErr: "regular file"},
		{name: "failed job uploads nothing", job: cmdJob("o9", "sh", "-c", `echo x > "$NODE3_OUTPUT"; exit 1`), wantCode: node3.CodeInternal, wantErr: "status 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFileServer(t, nil)
			if tt.status != 0 {
				srv.status = tt.status
			}
			n := newTestNative(t, func(c *Config) { c.MaxOutputBytes = tt.maxOut })
			tt.job.OutputURL = srv.URL + "/output"
			res, err := n.Run(context.Background(), tt.job, nil)
			got, puts := srv.got()
			if puts != tt.wantPuts {
				t.Errorf("server got %d PUTs, want %d", puts, tt.wantPuts)
			}
			if tt.wantCode != "" {
				if err == nil || node3.ErrorCode(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v (%s), want %s containing %q", err, node3.ErrorCode(err), tt.wantCode, tt.wantErr)
				}
				if res.OutputSHA256 != "" {
					t.Fatalf("OutputSHA256 set on failure")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.job.Kind == node3.KindTest {
				if !strings.Contains(string(got), tt.want) || string(got) != res.Output {
					t.Fatalf("server received %q, output %q", got, res.Output)
				}
			} else if string(got) != tt.want {
				t.Fatalf("server received %q, want %q", got, tt.want)
			}
			if res.OutputSHA256 != sha(got) {
				t.Fatalf("OutputSHA256 = %s, want sha256 of the upload %s", res.OutputSHA256, sha(got))
			}
			if err := res.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTimesFromClock(t *testing.T) {
	srv := newFileServer(t, []byte("x"))
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { // each reading is 1.5 s after the last
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(1500 * time.Millisecond)
		return now
	}
	n := newTestNative(t, func(c *Config) { c.Now = clock })
	job := node3.Job{ID: "clk", JobSpec: node3.JobSpec{Kind: node3.KindNoop, InputURL: srv.URL + "/input"}}
	res, err := n.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.SetupTime != 1.5 || res.ExecutionTime != 1.5 {
		t.Fatalf("setup %v, execution %v; want 1.5 each", res.SetupTime, res.ExecutionTime)
	}
}

func TestNothingSecretLogged(t *testing.T) {
	requireSh(t)
	srv := newFileServer(t, []byte("in"))
	n := newTestNative(t, nil)
	job := cmdJob("sec", "sh", "-c", `echo "$TOKEN" > /dev/null; exit 2`, "ARG-SECRET")
	job.Env = map[string]string{"TOKEN": "ENV-SECRET"}
	job.InputURL = srv.URL + "/input?X-Amz-Signature=URL-SECRET"
	_, err := n.Run(context.Background(), job, nil)
	if err == nil {
		t.Fatal("want the job to fail")
	}
	logs := n.logs.String()
	if !strings.Contains(logs, "job failed") {
		t.Fatalf("no failure logged:\n%s", logs)
	}
	for _, s := range []string{"ENV-SECRET", "URL-SECRET", "ARG-SECRET"} {
		if strings.Contains(logs, s) || strings.Contains(err.Error(), s) {
			t.Fatalf("%s leaked: %v\n%s", s, err, logs)
		}
	}
}

func TestConcurrentRuns(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Go(func() {
			var job node3.Job
			switch i % 3 {
			case 0:
				job = node3.Job{ID: fmt.Sprint("n", i), JobSpec: node3.JobSpec{Kind: node3.KindNoop}}
			case 1:
				job = node3.Job{ID: fmt.Sprint("t", i), JobSpec: node3.JobSpec{Kind: node3.KindTest}}
			case 2:
				job = cmdJob(fmt.Sprint("c", i), "sh", "-c", "echo $NODE3_JOB_ID")
			}
			res, err := n.Run(context.Background(), job, nil)
			if err == nil && job.Kind == node3.KindCommand && res.Output != job.ID+"\n" {
				err = fmt.Errorf("job %s saw %q", job.ID, res.Output)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	requireSh(t)
	n := newTestNative(t, nil)
	before := runtime.NumGoroutine()
	jobs := []node3.Job{
		{ID: "a", JobSpec: node3.JobSpec{Kind: node3.KindTest}},
		cmdJob("b", "sh", "-c", "echo out; echo err >&2; sleep 100 &"),
		cmdJob("c", "sh", "-c", "exit 4"),
	}
	withURL := cmdJob("d", "sh", "-c", "echo out; echo err >&2")
	withURL.OutputURL = "http://127.0.0.1:1/unreachable"
	jobs = append(jobs, withURL)
	for _, j := range jobs {
		n.Run(context.Background(), j, nil)
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewNative(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	n, err := NewNative(Config{WorkDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("work dir: %v %v", fi, err)
	}
	if n.outputCap != node3.MaxResultOutput || n.maxIn != 1<<30 || n.maxOut != 1<<30 || n.benchDur != time.Second || n.allowCommands {
		t.Fatalf("defaults: %+v", n)
	}
	for _, bad := range []Config{
		{WorkDir: dir, OutputCap: node3.MaxResultOutput + 1},
		{WorkDir: dir, OutputCap: 10},
		{WorkDir: dir, OutputCap: -1},
		{WorkDir: dir, MaxInputBytes: -1},
		{WorkDir: dir, MaxOutputBytes: -1},
		{WorkDir: dir, BenchmarkDuration: -time.Second},
	} {
		if _, err := NewNative(bad); node3.ErrorCode(err) != node3.CodeInvalid {
			t.Errorf("NewNative(%+v) err = %v, want CodeInvalid", bad, err)
		}
	}
}

func FuzzTailBuffer(f *testing.F) {
	f.Add(64, []byte("hello"), []byte(strings.Repeat("é", 80)))
	f.Add(100, []byte(strings.Repeat("x", 99)), []byte("yz"))
	f.Fuzz(func(t *testing.T, size int, a, b []byte) {
		size = MinOutputCap + abs(size)%1024
		tb := newTailBuffer(size)
		tb.Write(a)
		tb.Write(b)
		all := string(a) + string(b)
		got := tb.String()
		if len(got) > size {
			t.Fatalf("%d bytes kept, cap %d", len(got), size)
		}
		if len(all) <= size {
			if got != strings.ToValidUTF8(all, "?") {
				t.Fatalf("String = %q, want %q", got, all)
			}
			return
		}
		var dropped int
		if _, err := fmt.Sscanf(got, "[… %d bytes truncated]\n", &dropped); err != nil {
			t.Fatalf("no marker in %q", got)
		}
		_, tail, _ := strings.Cut(got, "truncated]\n")
		if dropped < 0 || dropped > len(all) || len(all)-dropped > size {
			t.Fatalf("marker says %d dropped of %d", dropped, len(all))
		}
		if want := strings.ToValidUTF8(all[dropped:], "?"); tail != want {
			t.Fatalf("tail %q, want %q", tail, want)
		}
	})
}

func abs(i int) int {
	if i < 0 {
		return -(i + 1)
	}
	return i
}
