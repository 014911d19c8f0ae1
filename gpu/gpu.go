package gpu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/node3/node3"
)

// Config configures a Detector.
type Config struct {
	// Simulate reports Simulated GPUs instead of real ones (SKIP_GPU_CHECK
	// demo mode).
	Simulate bool
	// Simulated are the GPUs reported when Simulate is true; empty means
	// SimulatedPreset(0).
	Simulated []node3.GPU
	// Logger receives debug notes about detection; nil discards them.
	Logger *slog.Logger
	// RunTool runs an external tool (argv) and returns its stdout. Nil
	// means os/exec with a 5 s timeout. Tests inject fixture output here.
	RunTool func(ctx context.Context, argv ...string) ([]byte, error)
	// Now is the clock the simulated metrics are computed from; nil means
	// time.Now.
	Now func() time.Time
}

// backend is one way of finding real GPUs. Backends are tried in order;
// the first that finds any GPU answers. nvidia-smi is the only one in this
// build; NVML (nvml.go) and other vendors' tools (rocm-smi) are the next
// ones to slot in here.
type backend interface {
	// name identifies the backend in logs and errors.
	name() string
	// detect lists the GPUs. A backend whose vendor stack is absent
	// (library or tool not installed) returns (nil, nil).
	detect(ctx context.Context) ([]node3.GPU, error)
	// metrics samples every GPU the backend sees; (nil, nil) when absent.
	metrics(ctx context.Context) ([]node3.GPUMetrics, error)
}

// Detector finds GPUs and samples their metrics. It is safe for
// concurrent use.
type Detector struct {
	simulate  bool
	simulated []node3.GPU
	now       func() time.Time
	log       *slog.Logger
	backends  []backend
}

// New returns a Detector for cfg. It starts nothing and runs no tool.
func New(cfg Config) *Detector {
	d := &Detector{
		simulate: cfg.Simulate,
		now:      cfg.Now,
		log:      cfg.Logger,
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Simulate {
		src := cfg.Simulated
		if len(src) == 0 {
			src = SimulatedPreset(0)
		}
		d.simulated = make([]node3.GPU, len(src))
		copy(d.simulated, src)
		for i := range d.simulated {
			d.simulated[i].Simulated = true
		}
		return d
	}
	run := cfg.RunTool
	if run == nil {
		run = runTool
	}
	if b := newNVMLBackend(d.log); b != nil {
		d.backends = append(d.backends, b)
	}
	d.backends = append(d.backends, &nvidiaSMI{run: run, log: d.log})
	return d
}

// Detect returns the simulated GPUs in demo mode, else the real ones. A
// machine with no GPU (or without the vendor tools) yields (nil, nil); an
// error means a tool was there but failed or said something unreadable.
func (d *Detector) Detect(ctx context.Context) ([]node3.GPU, error) {
	if d.simulate {
		out := make([]node3.GPU, len(d.simulated))
		copy(out, d.simulated)
		return out, nil
	}
	var errs []error
	for _, b := range d.backends {
		gpus, err := b.detect(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("detecting GPUs with %s: %w", b.name(), err))
			continue
		}
		if len(gpus) > 0 {
			d.log.Debug("GPUs detected", "backend", b.name(), "count", len(gpus))
			return gpus, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errors.Join(errs...)
}

// Metrics returns one live sample per GPU. Simulated GPUs report
// plausible numbers that vary slowly with the clock. A machine with no GPU
// yields (nil, nil).
func (d *Detector) Metrics(ctx context.Context) ([]node3.GPUMetrics, error) {
	if d.simulate {
		return simulatedMetrics(d.simulated, d.now()), nil
	}
	var errs []error
	for _, b := range d.backends {
		m, err := b.metrics(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("sampling GPU metrics with %s: %w", b.name(), err))
			continue
		}
		if len(m) > 0 {
			return m, nil
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errors.Join(errs...)
}
