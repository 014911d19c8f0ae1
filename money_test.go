package node3

import (
	"math/big"
	"regexp"
	"strconv"
	"strings"
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
		{"1e-3", 1_000_000, false}, // Python's json.dumps writes small floats so
		{"1e-06", 1000, false},
		{"1E-6", 1000, false},
		{"5e-05", 50_000, false},
		{"0.0010", 1_000_000, false},
		{"2", 2_000_000_000, false},
		{"2E+0", 2_000_000_000, false},
		{"1.5e3", 1_500 * 1_000_000_000, false},
		{"0e999999", 0, false},
		{"0.000e-20", 0, false},
		{"1e-9", 1, false},
		{"10e-10", 1, false},
		{"1.8446744073709551615e10", 18446744073709551615, false},
		{"1.8446744073709551616e10", 0, true},
		{"1e-10", 0, true}, // below one lamport
		{"1.0000000001", 0, true},
		{"1e11", 0, true}, // 10^20 lamports
		{"1e99999999", 0, true},
		{"1e-99999999", 0, true},
		{"1e", 0, true},
		{"1e+", 0, true},
		{"e5", 0, true},
		{"1e5.5", 0, true},
		{"1ee5", 0, true},
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

func TestParseLamports(t *testing.T) {
	for in, want := range map[string]Lamports{"5000": 5000, "5e3": 5000, "5000.0": 5000, "0": 0, "1.5e1": 15, "18446744073709551615": 18446744073709551615} {
		if got, err := ParseLamports(in); err != nil || got != want {
			t.Errorf("ParseLamports(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"1.5", "1e-1", "18446744073709551616", "-1", "x"} {
		if got, err := ParseLamports(in); err == nil {
			t.Errorf("ParseLamports(%q) = %d, want an error", in, got)
		}
	}
}

var literalRE = regexp.MustCompile(`^[0-9]*(\.[0-9]*)?([eE][+-]?[0-9]{1,3})?$`)

// FuzzParseSOLExact holds ParseSOL to exact rational arithmetic: a literal
// parses exactly when it is a whole number of lamports within uint64, and
// then to that number.
func FuzzParseSOLExact(f *testing.F) {
	for _, s := range []string{"1e-06", "5e-05", "0.0010", "2", "1.5E3", "1e-10", "18446744073.709551615", "1e11", ".5e1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !literalRE.MatchString(s) || strings.Trim(s, ".eE+-") == "" || strings.HasPrefix(s, ".e") || strings.HasPrefix(s, ".E") {
			return
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return
		}
		got, err := ParseSOL(s)
		l := new(big.Rat).Mul(r, big.NewRat(int64(LamportsPerSOL), 1))
		want := l.IsInt() && l.Num().IsUint64()
		if want != (err == nil) {
			t.Fatalf("ParseSOL(%q) = %d, %v; exact value %s lamports", s, got, err, l.RatString())
		}
		if want && got != Lamports(l.Num().Uint64()) {
			t.Fatalf("ParseSOL(%q) = %d, want %s", s, got, l.RatString())
		}
	})
}
