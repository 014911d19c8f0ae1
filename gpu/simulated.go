package gpu

import (
	"fmt"
	"hash/fnv"
	"math"
	"time"

	"github.com/node3/node3"
)

// preset is one demo machine: count identical GPUs.
type preset struct {
	vendor string
	model  string
	memGiB uint64
	count  int
	driver string
	tdpW   float64 // board power at full load, for simulated metrics
}

// presets lists the demo machines SimulatedPreset cycles through. It is a
// function, not a package variable, so nothing can change it.
func presets() []preset {
	return []preset{
		{"NVIDIA", "NVIDIA GeForce RTX 4090", 24, 1, "550.54.15", 450},
		{"NVIDIA", "NVIDIA A100-SXM4-80GB", 80, 1, "550.54.15", 400},
		{"AMD", "AMD Instinct MI250X", 128, 1, "6.7.0", 560},
		{"NVIDIA", "NVIDIA L4", 24, 2, "550.54.15", 72},
		{"NVIDIA", "NVIDIA H100 80GB HBM3", 80, 1, "550.54.15", 700},
		{"NVIDIA", "NVIDIA GeForce RTX 3090", 24, 2, "535.183.01", 350},
		{"AMD", "AMD Radeon RX 7900 XTX", 24, 1, "6.7.0", 355},
		{"NVIDIA", "Tesla T4", 16, 4, "535.183.01", 70},
	}
}

// SimulatedPreset returns the GPUs of the i-th demo machine, cycling
// through a fixed list in which each entry is a different GPU: 0 is one
// NVIDIA GeForce RTX 4090 (24 GiB), 1 one NVIDIA A100-SXM4-80GB (80 GiB),
// 2 one AMD Instinct MI250X (128 GiB), 3 two NVIDIA L4 (24 GiB), 4 one
// NVIDIA H100 80GB HBM3, 5 two NVIDIA GeForce RTX 3090, 6 one AMD Radeon
// RX 7900 XTX, 7 four Tesla T4, then 8 is like 0 again. UUIDs are
// "SIM-GPU-<i>-<j>" with i as given, so machines stay distinct across
// cycles. Every GPU has Simulated set.
func SimulatedPreset(i int) []node3.GPU {
	ps := presets()
	p := ps[((i%len(ps))+len(ps))%len(ps)]
	gpus := make([]node3.GPU, p.count)
	for j := range gpus {
		gpus[j] = node3.GPU{
			Index:       j,
			UUID:        fmt.Sprintf("SIM-GPU-%d-%d", i, j),
			Vendor:      p.vendor,
			Model:       p.model,
			MemoryBytes: p.memGiB << 30,
			Driver:      p.driver,
			Simulated:   true,
		}
	}
	return gpus
}

// tdpFor is the full-load board power of a model from the presets, or a
// middling 250 W for a simulated GPU of some other model.
func tdpFor(model string) float64 {
	for _, p := range presets() {
		if p.model == model {
			return p.tdpW
		}
	}
	return 250
}

// simulatedMetrics computes a sample for simulated GPUs as a pure function
// of the time: a slow wave (5 min) with a faster ripple (37 s), phase
// shifted per GPU by its UUID, so numbers move plausibly and smoothly
// without any stored state.
func simulatedMetrics(gpus []node3.GPU, now time.Time) []node3.GPUMetrics {
	if len(gpus) == 0 {
		return nil
	}
	sec := float64(now.UnixNano()) / 1e9
	out := make([]node3.GPUMetrics, len(gpus))
	for j, g := range gpus {
		h := fnv.New32a()
		h.Write([]byte(g.UUID))
		fmt.Fprintf(h, "/%d", g.Index)
		phase := float64(h.Sum32()%3600) / 3600 * 2 * math.Pi
		load := 0.45 + 0.30*math.Sin(2*math.Pi*sec/300+phase) + 0.10*math.Sin(2*math.Pi*sec/37+2*phase)
		load = math.Max(0, math.Min(1, load)) // 0.05 … 0.85 by construction
		mem := uint64(float64(g.MemoryBytes) * (0.10 + 0.6*load))
		out[j] = node3.GPUMetrics{
			Index:          g.Index,
			UtilizationPct: math.Round(load*1000) / 10,
			MemoryUsed:     mem &^ (1<<20 - 1), // whole MiB, like the real tools
			TemperatureC:   math.Round(35 + 45*load),
			PowerW:         math.Round(tdpFor(g.Model)*(0.12+0.85*load)*10) / 10,
		}
	}
	return out
}
