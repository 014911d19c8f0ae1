package gpu

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
)

// fakeTool answers nvidia-smi queries from fixtures and records the calls.
type fakeTool struct {
	mu       sync.Mutex
	calls    [][]string
	gpus     string
	metrics  string
	err      error
	notFound bool
}

func (f *fakeTool) run(ctx context.Context, argv ...string) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, argv)
	f.mu.Unlock()
	if f.notFound {
		return nil, &exec.Error{Name: argv[0], Err: exec.ErrNotFound}
	}
	out := f.gpus
	if slices.Contains(argv, smiQueryMetrics) {
		out = f.metrics
	}
	return []byte(out), f.err
}

func TestDetectReal(t *testing.T) {
	tests := []struct {
		name      string
		tool      *fakeTool
		wantGPUs  int
		wantM     int
		wantErr   string
		wantModel string
	}{
		{name: "tool missing", tool: &fakeTool{notFound: true}},
		{name: "no devices, exit 6", tool: &fakeTool{gpus: "No devices were found\n", metrics: "No devices were found\n", err: errors.New("exit status 6")}},
		{
			name:      "two GPUs",
			tool:      &fakeTool{gpus: "0, GPU-a, NVIDIA L4, 23034, 535\n1, GPU-b, NVIDIA L4, 23034, 535\n", metrics: "0, 5, 100, 40, 20\n1, 95, 20000, 70, 70\n"},
			wantGPUs:  2,
			wantM:     2,
			wantModel: "NVIDIA L4",
		},
		{name: "driver broken", tool: &fakeTool{gpus: "NVIDIA-SMI has failed", metrics: "NVIDIA-SMI has failed", err: errors.New("exit status 9")}, wantErr: "exit status 9"},
		{name: "garbage", tool: &fakeTool{gpus: "what", metrics: "what"}, wantErr: "fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New(Config{RunTool: tt.tool.run})
			gpus, err := d.Detect(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "nvidia-smi") {
					t.Fatalf("Detect err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Detect: %v", err)
			}
			if len(gpus) != tt.wantGPUs {
				t.Fatalf("Detect = %v, want %d GPUs", gpus, tt.wantGPUs)
			}
			if tt.wantGPUs == 0 && gpus != nil {
				t.Fatalf("no GPUs should be nil, got %#v", gpus)
			}
			if tt.wantModel != "" && (gpus[0].Model != tt.wantModel || gpus[0].Simulated) {
				t.Fatalf("GPU = %+v", gpus[0])
			}
			m, err := d.Metrics(context.Background())
			if tt.wantErr != "" {
				if err == nil {
					t.Fatal("Metrics: want an error")
				}
			} else if err != nil {
				t.Fatalf("Metrics: %v", err)
			}
			if len(m) != tt.wantM {
				t.Fatalf("Metrics = %v, want %d", m, tt.wantM)
			}
		})
	}
}

func TestDetectRunsTheDocumentedQueries(t *testing.T) {
	ft := &fakeTool{gpus: "0, GPU-a, NVIDIA L4, 23034, 535", metrics: "0, 5, 100, 40, 20"}
	d := New(Config{RunTool: ft.run})
	if _, err := d.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Metrics(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"nvidia-smi", "--query-gpu=index,uuid,name,memory.total,driver_version", "--format=csv,noheader,nounits"},
		{"nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used,temperature.gpu,power.draw", "--format=csv,noheader,nounits"},
	}
	if len(ft.calls) != 2 || !slices.Equal(ft.calls[0], want[0]) || !slices.Equal(ft.calls[1], want[1]) {
		t.Fatalf("calls = %q", ft.calls)
	}
}

func TestDetectCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := New(Config{RunTool: func(ctx context.Context, argv ...string) ([]byte, error) { return nil, ctx.Err() }})
	if _, err := d.Detect(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestSimulated(t *testing.T) {
	ft := &fakeTool{notFound: true}
	d := New(Config{Simulate: true, RunTool: ft.run})
	gpus, err := d.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(gpus) != 1 || gpus[0].Model != "NVIDIA GeForce RTX 4090" || gpus[0].MemoryBytes != 24<<30 || !gpus[0].Simulated || gpus[0].UUID != "SIM-GPU-0-0" {
		t.Fatalf("default simulated GPUs = %+v", gpus)
	}
	gpus[0].Model = "changed"
	again, _ := d.Detect(context.Background())
	if again[0].Model != "NVIDIA GeForce RTX 4090" {
		t.Fatal("Detect returned its internal slice")
	}
	if len(ft.calls) != 0 {
		t.Fatalf("simulated mode ran tools: %q", ft.calls)
	}

	custom := []node3.GPU{{Index: 0, UUID: "X", Vendor: "NVIDIA", Model: "NVIDIA A100-SXM4-80GB", MemoryBytes: 80 << 30}, {Index: 1, UUID: "Y", Vendor: "Demo", Model: "Thing", MemoryBytes: 1 << 30}}
	d = New(Config{Simulate: true, Simulated: custom})
	gpus, _ = d.Detect(context.Background())
	if len(gpus) != 2 || !gpus[0].Simulated || !gpus[1].Simulated || gpus[1].Model != "Thing" {
		t.Fatalf("custom simulated GPUs = %+v", gpus)
	}
	if custom[0].Simulated {
		t.Fatal("New modified the caller's slice")
	}
}

func TestSimulatedPreset(t *testing.T) {
	n := len(presets())
	models := map[string]bool{}
	for i := range n {
		g := SimulatedPreset(i)
		if len(g) == 0 {
			t.Fatalf("preset %d is empty", i)
		}
		if models[g[0].Model] {
			t.Fatalf("preset %d repeats model %s", i, g[0].Model)
		}
		models[g[0].Model] = true
		for j, x := range g {
			if x.Index != j || x.UUID != fmt.Sprintf("SIM-GPU-%d-%d", i, j) || !x.Simulated || (x.Vendor != "NVIDIA" && x.Vendor != "AMD") || x.MemoryBytes == 0 {
				t.Fatalf("preset %d GPU %d = %+v", i, j, x)
			}
		}
	}
	checks := []struct {
		i      int
		count  int
		model  string
		memGiB uint64
		vendor string
	}{
		{0, 1, "NVIDIA GeForce RTX 4090", 24, "NVIDIA"},
		{1, 1, "NVIDIA A100-SXM4-80GB", 80, "NVIDIA"},
		{2, 1, "AMD Instinct MI250X", 128, "AMD"},
		{3, 2, "NVIDIA L4", 24, "NVIDIA"},
		{n, 1, "NVIDIA GeForce RTX 4090", 24, "NVIDIA"},
		{-1, 4, "Tesla T4", 16, "NVIDIA"},
	}
	for _, c := range checks {
		g := SimulatedPreset(c.i)
		if len(g) != c.count || g[0].Model != c.model || g[0].MemoryBytes != c.memGiB<<30 || g[0].Vendor != c.vendor {
			t.Errorf("SimulatedPreset(%d) = %+v", c.i, g)
		}
	}
	if SimulatedPreset(n)[0].UUID == SimulatedPreset(0)[0].UUID {
		t.Error("cycled presets share UUIDs")
	}
}

func TestSimulatedMetrics(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	gpus := SimulatedPreset(3)
	d := New(Config{Simulate: true, Simulated: gpus, Now: clock})
	prev, err := d.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(prev) != 2 || prev[0].Index != 0 || prev[1].Index != 1 {
		t.Fatalf("metrics = %+v", prev)
	}
	if prev[0] == prev[1] {
		t.Error("two simulated GPUs report identical numbers")
	}
	sameTime, _ := d.Metrics(context.Background())
	if !slices.Equal(prev, sameTime) {
		t.Error("metrics are not a function of the clock")
	}
	for range 600 { // ten minutes, one sample a second
		now = now.Add(time.Second)
		cur, _ := d.Metrics(context.Background())
		for i, m := range cur {
			if m.UtilizationPct < 0 || m.UtilizationPct > 100 || m.TemperatureC < 30 || m.TemperatureC > 85 ||
				m.PowerW <= 0 || m.PowerW > 72 || m.MemoryUsed == 0 || m.MemoryUsed > gpus[i].MemoryBytes {
				t.Fatalf("implausible sample %+v", m)
			}
			if math.Abs(m.UtilizationPct-prev[i].UtilizationPct) > 5 {
				t.Fatalf("utilisation jumped from %v to %v in a second", prev[i].UtilizationPct, m.UtilizationPct)
			}
		}
		prev = cur
	}
}

func TestRunToolDefault(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	out, err := runTool(context.Background(), "sh", "-c", "printf 'hello'; echo oops >&2")
	if err != nil || string(out) != "hello" {
		t.Fatalf("runTool = %q, %v", out, err)
	}
	_, err = runTool(context.Background(), "sh", "-c", "echo broken driver >&2; exit 9")
	if err == nil || !strings.Contains(err.Error(), "broken driver") || !strings.Contains(err.Error(), "exit status 9") {
		t.Fatalf("failing tool err = %v", err)
	}
	_, err = runTool(context.Background(), "node3-no-such-tool-here")
	if !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("missing tool err = %v, want exec.ErrNotFound", err)
	}
	out, err = runTool(context.Background(), "sh", "-c", "head -c 200000 /dev/zero")
	if err != nil || len(out) != maxToolOutput+1 {
		t.Fatalf("chatty tool: %d bytes, %v", len(out), err)
	}
	if _, err := parseNvidiaSMI(out); err == nil {
		t.Fatal("oversized output parsed")
	}
	// A machine without nvidia-smi (like most CI machines) has no GPUs.
	if _, err := exec.LookPath(smiTool); err != nil {
		gpus, err := New(Config{}).Detect(context.Background())
		if gpus != nil || err != nil {
			t.Fatalf("Detect without nvidia-smi = %v, %v", gpus, err)
		}
	}
}

// TestRealNvidiaSMI runs only where nvidia-smi is installed: the real
// tool's output must parse, and the GPUs it lists must have metrics.
func TestRealNvidiaSMI(t *testing.T) {
	if _, err := exec.LookPath(smiTool); err != nil {
		t.Skip("nvidia-smi not installed")
	}
	d := New(Config{})
	gpus, err := d.Detect(context.Background())
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	t.Logf("detected %+v", gpus)
	m, err := d.Metrics(context.Background())
	if err != nil {
		t.Fatalf("Metrics: %v", err)
	}
	t.Logf("metrics %+v", m)
	if len(m) != len(gpus) {
		t.Fatalf("%d GPUs but %d samples", len(gpus), len(m))
	}
	for _, g := range gpus {
		if g.Model == "" || g.MemoryBytes == 0 || g.Vendor != "NVIDIA" {
			t.Errorf("implausible GPU %+v", g)
		}
	}
}
