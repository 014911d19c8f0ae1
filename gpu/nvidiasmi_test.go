package gpu

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/node3/node3"
)

func TestParseNvidiaSMI(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []node3.GPU
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "blank lines", in: "\n  \n\r\n"},
		{name: "no devices", in: "No devices were found\n"},
		{
			name: "one",
			in:   "0, GPU-5c1f1f0e-9a2b-4c3d-8e7f-0123456789ab, NVIDIA GeForce RTX 4090, 24564, 550.54.14\n",
			want: []node3.GPU{{Index: 0, UUID: "GPU-5c1f1f0e-9a2b-4c3d-8e7f-0123456789ab", Vendor: "NVIDIA", Model: "NVIDIA GeForce RTX 4090", MemoryBytes: 24564 << 20, Driver: "550.54.14"}},
		},
		{
			name: "two with CRLF",
			in:   "0, GPU-a, NVIDIA L4, 23034, 535.183.01\r\n1, GPU-b, NVIDIA L4, 23034, 535.183.01\r\n",
			want: []node3.GPU{
				{Index: 0, UUID: "GPU-a", Vendor: "NVIDIA", Model: "NVIDIA L4", MemoryBytes: 23034 << 20, Driver: "535.183.01"},
				{Index: 1, UUID: "GPU-b", Vendor: "NVIDIA", Model: "NVIDIA L4", MemoryBytes: 23034 << 20, Driver: "535.183.01"},
			},
		},
		{
			name: "comma in name",
			in:   "3, GPU-c, Weird, Model, Name, 1024, 1.0",
			want: []node3.GPU{{Index: 3, UUID: "GPU-c", Vendor: "NVIDIA", Model: "Weird, Model, Name", MemoryBytes: 1 << 30, Driver: "1.0"}},
		},
		{
			name: "not available fields",
			in:   "0, [N/A], NVIDIA A100-SXM4-80GB, [N/A], [Not Supported]",
			want: []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "NVIDIA A100-SXM4-80GB"}},
		},
		{name: "too few fields", in: "0, GPU-a, 1024, 1.0", wantErr: "fields"},
		{name: "bad index", in: "x, GPU-a, L4, 1024, 1.0", wantErr: "index"},
		{name: "negative index", in: "-1, GPU-a, L4, 1024, 1.0", wantErr: "index"},
		{name: "huge index", in: "99999, GPU-a, L4, 1024, 1.0", wantErr: "index"},
		{name: "duplicate index", in: "0, a, L4, 1, 1\n0, b, L4, 1, 1", wantErr: "duplicate"},
		{name: "empty name", in: "0, GPU-a, , 1024, 1.0", wantErr: "empty GPU name"},
		{name: "bad memory", in: "0, GPU-a, L4, 12.5, 1.0", wantErr: "memory.total"},
		{name: "memory overflow", in: "0, GPU-a, L4, 99999999999999999999, 1.0", wantErr: "memory.total"},
		{name: "control char", in: "0, GPU-a, L4\x1b[31m, 1024, 1.0", wantErr: "name"},
		{name: "invalid utf8", in: "0, GPU-a, L4\xff, 1024, 1.0", wantErr: "UTF-8"},
		{name: "long field", in: "0, GPU-a, " + strings.Repeat("x", maxFieldBytes+1) + ", 1024, 1.0", wantErr: "name"},
		{name: "long line", in: "0, GPU-a, L4, 1024, " + strings.Repeat("1", maxLineBytes), wantErr: "longer than"},
		{name: "too many GPUs", in: manyLines(maxGPUs+1, "%d, u, L4, 1024, 1"), wantErr: "more than 64"},
		{name: "too much output", in: strings.Repeat("\n", maxToolOutput+1), wantErr: "limit"},
		{name: "driver failure text", in: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", wantErr: "fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNvidiaSMI([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if got != nil {
					t.Fatalf("got %v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalGPUs(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if got, err := parseNvidiaSMI([]byte(manyLines(maxGPUs, "%d, u, L4, 1024, 1"))); err != nil || len(got) != maxGPUs {
		t.Fatalf("64 GPUs: got %d, %v", len(got), err)
	}
}

func TestParseNvidiaSMIMetrics(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []node3.GPUMetrics
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "no devices", in: "No devices were found"},
		{
			name: "two",
			in:   "0, 35, 1234, 45, 120.50\n1, 100, 0, 80, 300\n",
			want: []node3.GPUMetrics{
				{Index: 0, UtilizationPct: 35, MemoryUsed: 1234 << 20, TemperatureC: 45, PowerW: 120.5},
				{Index: 1, UtilizationPct: 100, MemoryUsed: 0, TemperatureC: 80, PowerW: 300},
			},
		},
		{
			name: "not available",
			in:   "0, [N/A], [N/A], [Not Supported], [Unknown Error]",
			want: []node3.GPUMetrics{{Index: 0}},
		},
		{
			name: "negative temperature",
			in:   "0, 0, 0, -5, 0",
			want: []node3.GPUMetrics{{Index: 0, TemperatureC: -5}},
		},
		{name: "extra field", in: "0, 1, 2, 3, 4, 5", wantErr: "fields"},
		{name: "util above 100", in: "0, 101, 0, 40, 10", wantErr: "utilization"},
		{name: "negative power", in: "0, 1, 0, 40, -10", wantErr: "power"},
		{name: "NaN", in: "0, NaN, 0, 40, 10", wantErr: "utilization"},
		{name: "Inf", in: "0, 1, 0, 40, Inf", wantErr: "power"},
		{name: "hex float", in: "0, 0x1p4, 0, 40, 10", wantErr: "utilization"},
		{name: "underscore", in: "0, 1_0, 0, 40, 10", wantErr: "utilization"},
		{name: "exponent", in: "0, 1e1, 0, 40, 10", wantErr: "utilization"},
		{name: "dot only", in: "0, ., 0, 40, 10", wantErr: "utilization"},
		{name: "too hot", in: "0, 1, 0, 4000, 10", wantErr: "temperature"},
		{name: "memory float", in: "0, 1, 1.5, 40, 10", wantErr: "memory.used"},
		{name: "duplicate", in: "1, 1, 1, 1, 1\n1, 1, 1, 1, 1", wantErr: "duplicate"},
		{name: "too many", in: manyLines(maxGPUs+1, "%d, 1, 1, 1, 1"), wantErr: "more than 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNvidiaSMIMetrics([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

func manyLines(n int, format string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
		b.WriteByte('\n')
	}
	return b.String()
}

func equalGPUs(a, b []node3.GPU) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzParseNvidiaSMI(f *testing.F) {
	f.Add([]byte("0, GPU-5c1f1f0e, NVIDIA GeForce RTX 4090, 24564, 550.54.14\n"))
	f.Add([]byte("0, GPU-a, NVIDIA L4, 23034, 535.183.01\r\n1, GPU-b, NVIDIA L4, 23034, 535.183.01\r\n"))
	f.Add([]byte("3, GPU-c, Weird, Model, 1024, 1.0"))
	f.Add([]byte("0, [N/A], A100, [N/A], [Not Supported]"))
	f.Add([]byte("No devices were found"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, in []byte) {
		gpus, err := parseNvidiaSMI(in)
		if err != nil {
			if gpus != nil {
				t.Fatal("GPUs returned with an error")
			}
			return
		}
		if len(gpus) > maxGPUs || len(in) > maxToolOutput {
			t.Fatalf("accepted %d GPUs from %d bytes", len(gpus), len(in))
		}
		seen := map[int]bool{}
		for _, g := range gpus {
			if g.Index < 0 || g.Index > maxIndex || seen[g.Index] {
				t.Fatalf("bad or duplicate index %d", g.Index)
			}
			seen[g.Index] = true
			if g.Model == "" || g.Vendor != "NVIDIA" || g.MemoryBytes > maxMemoryMiB<<20 {
				t.Fatalf("implausible GPU %+v", g)
			}
			for _, s := range []string{g.UUID, g.Model, g.Driver} {
				if len(s) > maxLineBytes || !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\n\r\t\x1b") || s != strings.TrimSpace(s) {
					t.Fatalf("bad text field %q", s)
				}
			}
		}
	})
}

func FuzzParseNvidiaSMIMetrics(f *testing.F) {
	f.Add([]byte("0, 35, 1234, 45, 120.50\n1, 100, 0, 80, 300\n"))
	f.Add([]byte("0, [N/A], [N/A], [Not Supported], [Unknown Error]"))
	f.Add([]byte("0, 0, 0, -5, 0"))
	f.Add([]byte("No devices were found"))
	f.Fuzz(func(t *testing.T, in []byte) {
		ms, err := parseNvidiaSMIMetrics(in)
		if err != nil {
			if ms != nil {
				t.Fatal("metrics returned with an error")
			}
			return
		}
		if len(ms) > maxGPUs {
			t.Fatalf("accepted %d GPUs", len(ms))
		}
		for _, m := range ms {
			if m.Index < 0 || m.Index > maxIndex ||
				!(m.UtilizationPct >= 0 && m.UtilizationPct <= 100) ||
				!(m.TemperatureC >= -maxTempC && m.TemperatureC <= maxTempC) ||
				!(m.PowerW >= 0 && m.PowerW <= maxPowerW) ||
				m.MemoryUsed > maxMemoryMiB<<20 {
				t.Fatalf("out-of-range sample %+v", m)
			}
		}
	})
}
