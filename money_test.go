package node3

import (
	"strconv"
	"testing"
)

func TestParseSOL(t *testing.T) {
	cases := []struct {
		in   string
		want Lamports
		bad  bool
	}{
		{"0", 0, false},
		{"0.001", 1_000_000, false},
		{"1", 1_000_000_000, false},
		{"1.5", 1_500_000_000, false},
		{".5", 500_000_000, false},
		{"5.", 5_000_000_000, false},
		{"+2", 2_000_000_000, false},
		{"0.000000001", 1, false},
		{"0.0000000010", 1, false}, // trailing zeros past 9 places are harmless
		{" 0.25 ", 250_000_000, false},
		{"1000000", 1_000_000 * 1_000_000_000, false},
		{"18446744073.709551615", 18446744073709551615, false}, // the largest uint64
		{"18446744073.709551616", 0, true},                     // one lamport more
		{"18446744074", 0, true},
		{"0.0000000001", 0, true}, // a tenth of a lamport
		{"-0.001", 0, true},
		{"-0", 0, true},
		{"", 0, true},
		{".", 0, true},
		{"1e-3", 0, true},
		{"0x10", 0, true},
		{"1,5", 0, true},
		{"1.2.3", 0, true},
		{"NaN", 0, true},
		{"Inf", 0, true},
		{"１", 0, true}, // a full-width digit
	}
	for _, c := range cases {
		got, err := ParseSOL(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseSOL(%q) = %d, want an error", c.in, got)
			} else if ErrorCode(err) != CodeInvalid {
				t.Errorf("ParseSOL(%q) error code %s, want invalid", c.in, ErrorCode(err))
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSOL(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestLamportsSOL(t *testing.T) {
	for l, want := range map[Lamports]string{0: "0", 1: "0.000000001", 1_000_000: "0.001", 1_500_000_000: "1.5", 18446744073709551615: "18446744073.709551615"} {
		if got := l.SOL(); got != want {
			t.Errorf("%d.SOL() = %q, want %q", uint64(l), got, want)
		}
	}
}

// FuzzParseSOL: whatever parses renders back to an equal amount, and
// every lamport amount survives a round trip.
func FuzzParseSOL(f *testing.F) {
	for _, s := range []string{"0.001", "1", "18446744073.709551615", "-1", "1e3", ".5"} {
		f.Add(s, uint64(12345))
	}
	f.Fuzz(func(t *testing.T, s string, l uint64) {
		if v, err := ParseSOL(s); err == nil {
			back, err := ParseSOL(v.SOL())
			if err != nil || back != v {
				t.Fatalf("%q → %d → %q → %d, %v", s, v, v.SOL(), back, err)
			}
		}
		back, err := ParseSOL(Lamports(l).SOL())
		if err != nil || back != Lamports(l) {
			t.Fatalf("%d → %q → %d, %v", l, Lamports(l).SOL(), back, err)
		}
		_ = strconv.Quote(s)
	})
}
