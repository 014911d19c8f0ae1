package node3

import (
	"fmt"
	"strconv"
	"strings"
)

// Lamports is an amount of SOL in its smallest unit. Money is never a float.
type Lamports uint64

// LamportsPerSOL is the number of lamports in one SOL.
const LamportsPerSOL Lamports = 1_000_000_000

// MaxReward is the largest reward a job may carry (1,000,000 SOL). Anything
// above it is a typo or an attack, not a price.
const MaxReward Lamports = 1_000_000 * LamportsPerSOL

// ParseSOL converts a decimal amount of SOL into lamports exactly, from
// any JSON number form ("0.001", "1e-06", "1E-6", "0.0010", "2") or the
// same with a leading "+". The literal is converted digit by digit, never
// through a float. It rejects negative amounts, amounts with a fraction of
// a lamport (below 0.000000001 SOL, or more than nine significant decimal
// places) and values that overflow.
func ParseSOL(s string) (Lamports, error) {
	v, err := parseDecimal(s, 9)
	return Lamports(v), err
}

// ParseLamports converts a whole number of lamports given in any JSON
// number form ("5000", "5e3", "5000.0") exactly; a fraction of a lamport
// is an error.
func ParseLamports(s string) (Lamports, error) {
	v, err := parseDecimal(s, 0)
	return Lamports(v), err
}

// maxExpDigits bounds the exponent of a literal: anything longer is far
// outside uint64 either way.
const maxExpDigits = 4

// parseDecimal reads a non-negative decimal literal (JSON number grammar,
// plus an optional "+" and a bare leading or trailing dot) and returns it
// times 10^scale as an exact integer.
func parseDecimal(s string, scale int) (uint64, error) {
	s = strings.TrimSpace(s)
	in := s
	bad := func(format string) error { return Errorf(CodeInvalid, format, truncate(in, 64)) }
	if s == "" {
		return 0, Errorf(CodeInvalid, "amount is empty")
	}
	switch s[0] {
	case '-':
		return 0, bad("amount %q is negative")
	case '+':
		s = s[1:]
	}
	mant, exp, hasExp := strings.Cut(s, "e")
	if !hasExp {
		mant, exp, hasExp = strings.Cut(s, "E")
	}
	whole, frac, _ := strings.Cut(mant, ".")
	if whole == "" && frac == "" || !allDigits(whole) || !allDigits(frac) {
		return 0, bad("amount %q is not a decimal number")
	}
	e := 0
	if hasExp {
		sign := 1
		switch {
		case strings.HasPrefix(exp, "-"):
			sign, exp = -1, exp[1:]
		case strings.HasPrefix(exp, "+"):
			exp = exp[1:]
		}
		if exp == "" || !allDigits(exp) {
			return 0, bad("amount %q is not a decimal number")
		}
		exp = strings.TrimLeft(exp, "0")
		if len(exp) > maxExpDigits {
			exp = strings.Repeat("9", maxExpDigits) // saturate: the answer is the same
		}
		n, _ := strconv.Atoi("0" + exp)
		e = sign * n
	}
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, nil // zero, however written
	}
	// The value is digits × 10^(point − len(digits)) in the unit; point is
	// where the decimal point falls in digits once scaled.
	point := len(digits) - len(frac) + e + scale
	switch {
	case point <= 0:
		return 0, bad("amount %q is smaller than one lamport")
	case point < len(digits):
		if strings.TrimRight(digits[point:], "0") != "" {
			if scale > 0 {
				return 0, bad("amount %q has a fraction of a lamport (more than 9 decimal places)")
			}
			return 0, bad("amount %q has a fraction of a lamport")
		}
		digits = digits[:point]
	case point > 20: // more digits than any uint64
		return 0, bad("amount %q is too large")
	default:
		digits += strings.Repeat("0", point-len(digits))
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, bad("amount %q is too large")
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// SOL renders the amount as a decimal number of SOL with no trailing zeros,
// e.g. 1000000 lamports is "0.001".
func (l Lamports) SOL() string {
	whole := uint64(l) / uint64(LamportsPerSOL)
	frac := uint64(l) % uint64(LamportsPerSOL)
	if frac == 0 {
		return strconv.FormatUint(whole, 10)
	}
	fs := strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
	return strconv.FormatUint(whole, 10) + "." + fs
}

// String implements fmt.Stringer: "0.001 SOL".
func (l Lamports) String() string { return l.SOL() + " SOL" }
