package node3

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	ok := func() JobSpec { return JobSpec{Kind: KindTest, Reward: 1000} }
	cases := []struct {
		name string
		mod  func(*JobSpec)
		want string // "" means valid
	}{
		{"defaults", func(*JobSpec) {}, ""},
		{"no kind", func(s *JobSpec) { s.Kind = "" }, "job_type is required"},
		{"unknown kind", func(s *JobSpec) { s.Kind = "mine-bitcoin" }, "is not one of"},
		{"reward too big", func(s *JobSpec) { s.Reward = MaxReward + 1 }, "above the maximum"},
		{"gpu count negative", func(s *JobSpec) { s.GPU = true; s.GPUCount = -1 }, "gpu_count"},
		{"gpu reqs without gpu", func(s *JobSpec) { s.MinGPUMemory = 1 }, "requires_gpu is false"},
		{"command without argv", func(s *JobSpec) { s.Kind = KindCommand }, "need a command"},
		{"command with argv", func(s *JobSpec) { s.Kind = KindCommand; s.Command = []string{"echo", "hi"} }, ""},
		{"container without image", func(s *JobSpec) { s.Kind = KindContainer }, "need an image"},
		{"test with command", func(s *JobSpec) { s.Command = []string{"ls"} }, "take no command"},
		{"NUL in arg", func(s *JobSpec) { s.Kind = KindCommand; s.Command = []string{"a\x00b"} }, "NUL"},
		{"bad env name", func(s *JobSpec) { s.Env = map[string]string{"1X": "y"} }, "not a valid variable name"},
		{"network for non-container", func(s *JobSpec) { s.Network = true }, "container jobs only"},
		{"timeout negative", func(s *JobSpec) { s.TimeoutSecs = -5 }, "timeout_seconds"},
		{"timeout too long", func(s *JobSpec) { s.TimeoutSecs = MaxTimeout + 1 }, "timeout_seconds"},
		{"attempts too many", func(s *JobSpec) { s.MaxAttempts = MaxMaxAttempts + 1 }, "max_attempts"},
		{"ttl negative", func(s *JobSpec) { s.TTLSecs = -1 }, "expires_in_seconds"},
		{"input url not http", func(s *JobSpec) { s.InputURL = "file:///etc/passwd" }, "http or https"},
		{"sha without url", func(s *JobSpec) { s.InputSHA256 = strings.Repeat("a", 64) }, "without input_url"},
		{"bad sha", func(s *JobSpec) { s.InputURL = "https://x/y"; s.InputSHA256 = "abc" }, "64 hex digits"},
		{"good input", func(s *JobSpec) { s.InputURL = "https://x/y"; s.InputSHA256 = strings.Repeat("A", 64) }, ""},
		{"long description", func(s *JobSpec) { s.Description = strings.Repeat("x", 5000) }, "description is longer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := ok()
			c.mod(&s)
			err := s.Normalize()
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if s.TimeoutSecs == 0 || s.MaxAttempts == 0 || s.TTLSecs == 0 {
					t.Fatalf("defaults not filled: %+v", s)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || ErrorCode(err) != CodeInvalid {
				t.Fatalf("err = %v, want invalid containing %q", err, c.want)
			}
		})
	}
}

func TestRequirementsMatch(t *testing.T) {
	a100 := GPU{Vendor: "NVIDIA", Model: "NVIDIA A100-SXM4-80GB", MemoryBytes: 80 << 30}
	l4 := GPU{Vendor: "NVIDIA", Model: "NVIDIA L4", MemoryBytes: 24 << 30}
	mi := GPU{Vendor: "AMD", Model: "AMD Instinct MI250X", MemoryBytes: 128 << 30}
	cases := []struct {
		name string
		r    Requirements
		gpus []GPU
		want bool
	}{
		{"cpu job, no gpus", Requirements{}, nil, true},
		{"gpu job, no gpus", Requirements{GPU: true}, nil, false},
		{"any gpu", Requirements{GPU: true}, []GPU{l4}, true},
		{"memory", Requirements{GPU: true, MinGPUMemory: 40 << 30}, []GPU{l4}, false},
		{"memory ok", Requirements{GPU: true, MinGPUMemory: 40 << 30}, []GPU{l4, a100}, true},
		{"vendor case", Requirements{GPU: true, GPUVendor: "amd"}, []GPU{a100, mi}, true},
		{"vendor missing", Requirements{GPU: true, GPUVendor: "amd"}, []GPU{a100}, false},
		{"model substring", Requirements{GPU: true, GPUModel: "a100"}, []GPU{a100}, true},
		{"count", Requirements{GPU: true, GPUCount: 2}, []GPU{l4}, false},
		{"count ok", Requirements{GPU: true, GPUCount: 2}, []GPU{l4, l4}, true},
		{"count with memory", Requirements{GPU: true, GPUCount: 2, MinGPUMemory: 40 << 30}, []GPU{l4, a100}, false},
	}
	for _, c := range cases {
		if got := c.r.MatchedBy(c.gpus); got != c.want {
			t.Errorf("%s: MatchedBy = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestJobPublic(t *testing.T) {
	j := Job{
		ID: "j1",
		JobSpec: JobSpec{
			Kind: KindContainer, Reward: 5, Image: "img:1", Framework: "jax",
			Command:  []string{"train", "--token=SECRET-ARG"},
			Env:      map[string]string{"TOKEN": "SECRET-ENV"},
			InputURL: "https://bucket.example/in?X-Amz-Signature=SECRET-IN", InputSHA256: strings.Repeat("a", 64),
			OutputURL:    "https://bucket.example/out?sig=SECRET-OUT",
			Requirements: Requirements{GPU: true, MinGPUMemory: 1 << 30},
		},
		Status: StatusAvailable, AgentID: "a1", Wallet: "w",
		Barred: []Bar{{AgentID: "a2", Until: time.Unix(9, 0)}},
		Result: &JobResult{Output: "SECRET-OUTPUT"}, Error: "failed reading SECRET-IN",
	}
	p := j.Public()
	b, _ := json.Marshal(p)
	if strings.Contains(string(b), "SECRET") || strings.Contains(string(b), "barred") {
		t.Fatalf("public view leaks: %s", b)
	}
	if p.ID != "j1" || p.Image != "img:1" || p.Framework != "jax" || p.Reward != 5 || !p.GPU || p.MinGPUMemory != 1<<30 {
		t.Fatalf("public view lost what the public may see: %+v", p)
	}
	if j.Env["TOKEN"] != "SECRET-ENV" || len(j.Command) != 2 || j.Result == nil {
		t.Fatal("Public changed the job it was called on")
	}
}

func TestBarredUntil(t *testing.T) {
	now := time.Unix(100, 0)
	j := Job{Barred: []Bar{{AgentID: "a", Until: now.Add(time.Second)}, {AgentID: "b", Until: now}}}
	if got := j.BarredUntil("a", now); !got.Equal(now.Add(time.Second)) {
		t.Fatalf("a: %v", got)
	}
	if got := j.BarredUntil("b", now); !got.IsZero() {
		t.Fatalf("b's bar ended at now: %v", got)
	}
	if got := j.BarredUntil("c", now); !got.IsZero() {
		t.Fatalf("c was never barred: %v", got)
	}
}

func TestNormalizePublic(t *testing.T) {
	s := JobSpec{Kind: KindCommand, Reward: 1}
	if err := s.Normalize(); err == nil {
		t.Fatal("a command job without a command passed Normalize")
	}
	if err := s.NormalizePublic(); err != nil {
		t.Fatalf("the public view of a command job: %v", err)
	}
	bad := JobSpec{Kind: KindNoop, Command: []string{"x"}}
	if err := bad.NormalizePublic(); err == nil {
		t.Fatal("NormalizePublic let a noop job carry a command")
	}
}

// FuzzTruncate: the one truncation rule keeps text within its limit, cuts
// only on character boundaries and leaves short text alone.
func FuzzTruncate(f *testing.F) {
	for _, s := range []string{"", "abc", "héllo wörld", strings.Repeat("é", 100), "a…b"} {
		f.Add(s, 5)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		got := Truncate(s, n)
		switch {
		case len(s) <= n && got != s:
			t.Fatalf("Truncate(%q, %d) = %q, want it unchanged", s, n, got)
		case len(got) > n:
			t.Fatalf("Truncate(%q, %d) = %q: %d bytes", s, n, got, len(got))
		case len(s) > n && n >= 4 && !strings.HasSuffix(got, "…"):
			t.Fatalf("Truncate(%q, %d) = %q: no ellipsis", s, n, got)
		case utf8.ValidString(s) && !utf8.ValidString(got):
			t.Fatalf("Truncate(%q, %d) = %q cut a character", s, n, got)
		case len(s) > n && !strings.HasPrefix(s, strings.TrimSuffix(got, "…")):
			t.Fatalf("Truncate(%q, %d) = %q is not a prefix", s, n, got)
		}
	})
}
