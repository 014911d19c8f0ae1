package exec

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// matSize is the side of the matrices the test and benchmark kinds
// multiply.
const matSize = 128

func runNoop(context.Context, *workspace) (outcome, error) {
	return outcome{exitCode: 0, metrics: map[string]float64{}}, nil
}

// runTest queries the GPUs and checks a small deterministic computation:
// a 128×128 float64 matrix product whose weighted checksum must equal the
// same product done in integers. Entries are small integers, so every
// float64 operation is exact and the checksum is the same on every
// machine (fused multiply-add or not).
func (n *Native) runTest(ctx context.Context, w *workspace) (outcome, error) {
	var b strings.Builder
	m := map[string]float64{}
	fail := func(err error) (outcome, error) {
		fmt.Fprintf(&b, "test FAILED: %v\n", err)
		return outcome{exitCode: 1, output: capString(b.String(), n.outputCap), metrics: m}, err
	}

	m["gpus"] = 0
	if n.gpus == nil {
		b.WriteString("GPU query: not available on this node\n")
	} else {
		gpus, err := n.gpus(ctx)
		if err != nil {
			return fail(fmt.Errorf("querying GPUs: %w", err))
		}
		m["gpus"] = float64(len(gpus))
		fmt.Fprintf(&b, "GPU query: %d GPU(s)\n", len(gpus))
		for _, g := range gpus {
			sim := ""
			if g.Simulated {
				sim = " (simulated)"
			}
			fmt.Fprintf(&b, "  [%d] %s %s, %d MiB%s\n", g.Index, g.Vendor, g.Model, g.MemoryBytes>>20, sim)
		}
	}
	m["assigned_gpus"] = float64(len(w.gpus))
	fmt.Fprintf(&b, "assigned GPUs: %s\n", orNone(gpuIndices(w.gpus)))

	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	start := time.Now()
	a, bm := testMatrices(matSize)
	c := make([]float64, matSize*matSize)
	matmul(c, a, bm, matSize)
	got := checksum(c, matSize)
	want := intChecksum(matSize)
	m["matmul_checksum"] = got
	m["matmul_ms"] = float64(time.Since(start).Microseconds()) / 1000
	if got != float64(want) {
		return fail(fmt.Errorf("%dx%d float64 matmul checksum %.0f, want %d", matSize, matSize, got, want))
	}
	fmt.Fprintf(&b, "%dx%d float64 matmul: checksum %.0f matches the integer reference\n", matSize, matSize, got)
	b.WriteString("test passed\n")
	return outcome{exitCode: 0, output: capString(b.String(), n.outputCap), metrics: m}, nil
}

// runBenchmark multiplies 128×128 float64 matrices on one CPU core for
// BenchmarkDuration and reports the rate in GFLOP/s.
func (n *Native) runBenchmark(ctx context.Context, w *workspace) (outcome, error) {
	a, b := testMatrices(matSize)
	c := make([]float64, matSize*matSize)
	const flops = 2 * matSize * matSize * matSize
	iters := 0
	start := time.Now()
	var elapsed time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return outcome{exitCode: 1, output: "benchmark interrupted\n", metrics: map[string]float64{"iterations": float64(iters)}}, err
		}
		matmul(c, a, b, matSize)
		iters++
		if elapsed = time.Since(start); elapsed >= n.benchDur {
			break
		}
	}
	secs := elapsed.Seconds()
	gflops := float64(flops) * float64(iters) / secs / 1e9
	out := fmt.Sprintf("CPU benchmark: %dx%d float64 matmul, one core, %d iterations in %.3f s: %.2f GFLOP/s\n",
		matSize, matSize, iters, secs, gflops)
	return outcome{
		exitCode: 0,
		output:   capString(out, n.outputCap),
		metrics: map[string]float64{
			"gflops":      gflops,
			"iterations":  float64(iters),
			"seconds":     secs,
			"matrix_size": matSize,
			"checksum":    checksum(c, matSize),
		},
	}, nil
}

// testMatrices returns two n×n row-major matrices of small integers
// (|a| ≤ 8, |b| ≤ 6).
func testMatrices(n int) (a, b []float64) {
	a = make([]float64, n*n)
	b = make([]float64, n*n)
	for i := range n {
		for j := range n {
			a[i*n+j] = float64(aEntry(i, j))
			b[i*n+j] = float64(bEntry(i, j))
		}
	}
	return a, b
}

func aEntry(i, j int) int64 { return int64((i+2*j)%17 - 8) }
func bEntry(i, j int) int64 { return int64((3*i+j)%13 - 6) }
func weight(i, j int) int64 { return int64((i*131+j*7)%17 + 1) }

// matmul sets c = a·b for n×n row-major matrices (i-k-j order, so the
// inner loop streams rows).
func matmul(c, a, b []float64, n int) {
	clear(c)
	for i := range n {
		ci := c[i*n : (i+1)*n]
		for k := range n {
			aik := a[i*n+k]
			bk := b[k*n : (k+1)*n]
			for j := range ci {
				ci[j] += aik * bk[j]
			}
		}
	}
}

// checksum weights each entry by its position, so that a swapped or
// misplaced entry changes the sum.
func checksum(c []float64, n int) float64 {
	var s float64
	for i := range n {
		for j := range n {
			s += c[i*n+j] * float64(weight(i, j))
		}
	}
	return s
}

// intChecksum is checksum(a·b) computed in integers, the reference.
func intChecksum(n int) int64 {
	var s int64
	for i := range n {
		for j := range n {
			var v int64
			for k := range n {
				v += aEntry(i, k) * bEntry(k, j)
			}
			s += v * weight(i, j)
		}
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
