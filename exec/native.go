package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/node3/node3"
)

// Defaults and limits of a Native.
const (
	DefaultMaxInputBytes     = 1 << 30
	DefaultMaxOutputBytes    = 1 << 30
	DefaultBenchmarkDuration = time.Second
	// MinOutputCap is the smallest Config.OutputCap: room for the
	// truncation marker and a little output.
	MinOutputCap = 64
)

// Config configures a Native executor.
type Config struct {
	// WorkDir is the parent of the per-job scratch directories (created
	// 0700, removed after each run). Empty means <os.TempDir()>/node3-jobs.
	WorkDir string
	// AllowCommands is the operator's opt-in for command jobs; without it
	// they fail with a CodeForbidden error.
	AllowCommands bool
	// OutputCap is how many bytes of combined stdout and stderr a result
	// keeps: the tail, after a "[… N bytes truncated]" marker, all within
	// the cap. 0 means node3.MaxResultOutput (64 KiB), which is also the
	// largest allowed; the smallest is MinOutputCap.
	OutputCap int
	// MaxInputBytes caps the input download; 0 means 1 GiB.
	MaxInputBytes int64
	// MaxOutputBytes caps the output upload; 0 means 1 GiB.
	MaxOutputBytes int64
	// HTTPClient fetches inputs and uploads outputs; nil means a client
	// with connect, TLS and response-header timeouts (bodies are bounded
	// by the job's timeout).
	HTTPClient *http.Client
	// GPUs queries the node's GPUs for test jobs; may be nil.
	GPUs func(ctx context.Context) ([]node3.GPU, error)
	// Logger receives one line per job; nil discards.
	Logger *slog.Logger
	// Now is the clock for SetupTime and ExecutionTime; nil means time.Now.
	Now func() time.Time
	// BenchmarkDuration is how long a benchmark job computes; 0 means 1 s.
	BenchmarkDuration time.Duration
}

// Native runs jobs as processes (and built-in computations) on this
// machine. It is safe for concurrent use.
type Native struct {
	workDir       string
	allowCommands bool
	outputCap     int
	maxIn         int64
	maxOut        int64
	client        *http.Client
	gpus          func(ctx context.Context) ([]node3.GPU, error)
	log           *slog.Logger
	now           func() time.Time
	benchDur      time.Duration
}

// NewNative checks cfg, fills its defaults and creates WorkDir.
func NewNative(cfg Config) (*Native, error) {
	n := &Native{
		allowCommands: cfg.AllowCommands,
		outputCap:     cfg.OutputCap,
		maxIn:         cfg.MaxInputBytes,
		maxOut:        cfg.MaxOutputBytes,
		client:        cfg.HTTPClient,
		gpus:          cfg.GPUs,
		log:           cfg.Logger,
		now:           cfg.Now,
		benchDur:      cfg.BenchmarkDuration,
	}
	switch {
	case n.outputCap == 0:
		n.outputCap = node3.MaxResultOutput
	case n.outputCap < MinOutputCap || n.outputCap > node3.MaxResultOutput:
		return nil, node3.Errorf(node3.CodeInvalid, "exec: OutputCap must be between %d and %d bytes", MinOutputCap, node3.MaxResultOutput)
	}
	if n.maxIn < 0 || n.maxOut < 0 || n.benchDur < 0 {
		return nil, node3.Errorf(node3.CodeInvalid, "exec: MaxInputBytes, MaxOutputBytes and BenchmarkDuration may not be negative")
	}
	if n.maxIn == 0 {
		n.maxIn = DefaultMaxInputBytes
	}
	if n.maxOut == 0 {
		n.maxOut = DefaultMaxOutputBytes
	}
	if n.benchDur == 0 {
		n.benchDur = DefaultBenchmarkDuration
	}
	if n.client == nil {
		n.client = defaultHTTPClient()
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	dir := cfg.WorkDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "node3-jobs")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("exec: work dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("exec: creating work dir: %w", err)
	}
	n.workDir = dir
	return n, nil
}

// defaultHTTPClient bounds connecting and waiting for headers; bodies may
// be large and are bounded by the job's context instead. Keep-alives are
// off: a job makes at most two requests, and no idle connection (with its
// goroutines) outlives a Run.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			ExpectContinueTimeout: time.Second,
			DisableKeepAlives:     true,
			ForceAttemptHTTP2:     true,
		},
	}
}

// workspace is one job's private corner of the disk.
type workspace struct {
	job     node3.Job
	gpus    []node3.GPU
	dir     string // the run directory, removed after the run
	scratch string // dir/work: the job's cwd, HOME and TMPDIR
	input   string // dir/input once downloaded, else ""
	output  string // dir/output: $NODE3_OUTPUT
	stdout  string // dir/stdout: command stdout kept for upload
}

// outcome is what a kind runner reports.
type outcome struct {
	exitCode int
	output   string // already within the output cap
	metrics  map[string]float64
	// stdout, when set, holds the command's stdout, the upload fallback.
	stdout *capFile
}

// kindRunner runs the process part of one job kind inside a prepared
// workspace, within ctx (which carries the job's timeout).
type kindRunner func(ctx context.Context, w *workspace) (outcome, error)

// runnerFor is the one place that dispatches on the job kind. A Docker
// executor slots in as the kindRunner for KindContainer.
func (n *Native) runnerFor(job node3.Job) (kindRunner, error) {
	switch job.Kind {
	case node3.KindNoop:
		return runNoop, nil
	case node3.KindTest:
		return n.runTest, nil
	case node3.KindBenchmark:
		return n.runBenchmark, nil
	case node3.KindCommand:
		if !n.allowCommands {
			return nil, node3.Errorf(node3.CodeForbidden, "command jobs are not allowed on this provider (the operator has not opted in)")
		}
		if len(job.Command) == 0 || job.Command[0] == "" {
			return nil, node3.Errorf(node3.CodeInvalid, "command job has no command")
		}
		return n.runCommand, nil
	case node3.KindContainer:
		return nil, node3.Errorf(node3.CodeUnavailable, "container jobs need Docker execution, which is not available in this build")
	}
	return nil, node3.Errorf(node3.CodeInvalid, "unknown job kind %q", truncate(string(job.Kind), 64))
}

// Run executes job on the given (already assigned) GPUs. It always fills
// in a JobResult: ExecutionTime (seconds of the run itself), SetupTime
// (seconds downloading input), ExitCode (-1 when nothing ran, 128+signal
// for a killed process), Output, Metrics and OutputSHA256 once output was
// uploaded. A non-nil error means the job failed and says why: a
// node3.Error with CodeForbidden, CodeInvalid (bad checksum, bad env),
// CodeTooLarge (input or output over its cap) or CodeUnavailable
// (container), or an error wrapping context.DeadlineExceeded (timeout),
// context.Canceled (ctx cancelled), the command's exit status or an I/O
// failure. ctx cancellation kills the job's process group.
func (n *Native) Run(ctx context.Context, job node3.Job, gpus []node3.GPU) (node3.JobResult, error) {
	res := node3.JobResult{ExitCode: -1, Metrics: map[string]float64{}}
	log := n.log.With("job", job.ID, "kind", string(job.Kind))
	res, err := n.run(ctx, job, gpus, res, log)
	if err != nil {
		log.Warn("job failed", "exit_code", res.ExitCode, "setup_s", res.SetupTime, "exec_s", res.ExecutionTime, "err", err)
	} else {
		log.Info("job done", "exit_code", res.ExitCode, "setup_s", res.SetupTime, "exec_s", res.ExecutionTime, "uploaded", res.OutputSHA256 != "")
	}
	return res, err
}

func (n *Native) run(ctx context.Context, job node3.Job, gpus []node3.GPU, res node3.JobResult, log *slog.Logger) (node3.JobResult, error) {
	runner, err := n.runnerFor(job)
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("job not started: %w", err)
	}
	timeout := jobTimeout(job)

	// Built-in kinds with no input or output touch no disk: making and
	// removing a scratch directory would cost more than running them.
	w := &workspace{job: job, gpus: gpus}
	if job.Kind == node3.KindCommand || job.Kind == node3.KindContainer || job.InputURL != "" || job.OutputURL != "" {
		if w, err = n.newWorkspace(job, gpus); err != nil {
			return res, err
		}
		defer n.removeWorkspace(w, log)
	}

	if job.InputURL != "" {
		start := n.now()
		sctx, cancel := context.WithTimeout(ctx, timeout)
		err := n.download(sctx, w)
		cancel()
		res.SetupTime = seconds(n.now().Sub(start))
		if err != nil {
			return res, stopReason(ctx, sctx, timeout, "downloading input", err)
		}
	}

	rctx, cancel := context.WithTimeout(ctx, timeout)
	start := n.now()
	out, err := runner(rctx, w)
	res.ExecutionTime = seconds(n.now().Sub(start))
	rctxErr := rctx.Err()
	cancel()
	res.ExitCode = out.exitCode
	res.Output = out.output
	for k, v := range out.metrics {
		res.Metrics[k] = v
	}
	if err != nil {
		if rctxErr != nil {
			return res, stopReason(ctx, rctx, timeout, "running", err)
		}
		return res, err
	}

	if job.OutputURL != "" {
		uctx, cancel := context.WithTimeout(ctx, timeout)
		sum, err := n.upload(uctx, w, out)
		cancel()
		if err != nil {
			return res, stopReason(ctx, uctx, timeout, "uploading output", err)
		}
		res.OutputSHA256 = sum
	}
	return res, nil
}

// stopReason explains err when it may have come from a context: the
// caller cancelling (parent) or the job's timeout (child).
func stopReason(parent, child context.Context, timeout time.Duration, doing string, err error) error {
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("job cancelled while %s: %w", doing, parent.Err())
	case errors.Is(child.Err(), context.DeadlineExceeded):
		return fmt.Errorf("job timed out after %s while %s: %w", timeout, doing, context.DeadlineExceeded)
	}
	return err
}

// jobTimeout is the job's timeout, defaulted and capped as JobSpec.Normalize does.
func jobTimeout(job node3.Job) time.Duration {
	s := job.TimeoutSecs
	if s <= 0 {
		s = node3.DefaultTimeout
	}
	s = min(s, node3.MaxTimeout)
	return time.Duration(s) * time.Second
}

func seconds(d time.Duration) float64 {
	return max(d.Seconds(), 0)
}

func (n *Native) newWorkspace(job node3.Job, gpus []node3.GPU) (*workspace, error) {
	dir, err := os.MkdirTemp(n.workDir, "job-"+safeName(job.ID)+"-")
	if err != nil {
		return nil, fmt.Errorf("creating job directory: %w", err)
	}
	w := &workspace{
		job:     job,
		gpus:    gpus,
		dir:     dir,
		scratch: filepath.Join(dir, "work"),
		output:  filepath.Join(dir, "output"),
		stdout:  filepath.Join(dir, "stdout"),
	}
	if err := os.Mkdir(w.scratch, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("creating job scratch directory: %w", err)
	}
	return w, nil
}

// removeWorkspace deletes the run directory, first making writable any
// directory the job locked (chmod 0), so that nothing is left behind.
func (n *Native) removeWorkspace(w *workspace, log *slog.Logger) {
	if err := os.RemoveAll(w.dir); err == nil {
		return
	}
	filepath.WalkDir(w.dir, func(p string, d fs.DirEntry, err error) error {
		if d != nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	if err := os.RemoveAll(w.dir); err != nil {
		log.Error("removing job directory", "dir", w.dir, "err", err)
	}
}

// safeName keeps a job ID's letters, digits, '-' and '_' (at most 32) for
// use in a directory name.
func safeName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() == 32 {
			break
		}
		if r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "x"
	}
	return b.String()
}

func truncate(s string, n int) string { return node3.Truncate(s, n) }
