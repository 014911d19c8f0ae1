package node3

import (
	"fmt"
	"math"
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

// ParseSOL converts a decimal amount of SOL ("0.001", "12", "1e-3" is not
// accepted) into lamports exactly. It rejects negative amounts, more than
// nine decimal places and values that overflow.
func ParseSOL(s string) (Lamports, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, Errorf(CodeInvalid, "amount is empty")
	}
	if s[0] == '-' {
		return 0, Errorf(CodeInvalid, "amount %q is negative", s)
	}
	if s[0] == '+' {
		s = s[1:]
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && (!hasDot || frac == "") {
		return 0, Errorf(CodeInvalid, "amount %q is not a decimal number", s)
	}
	for _, part := range []string{whole, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, Errorf(CodeInvalid, "amount %q is not a decimal number", s)
			}
		}
	}
	if len(frac) > 9 {
		// Trailing zeros beyond nine places are harmless; anything else is
		// a fraction of a lamport.
		if strings.TrimRight(frac[9:], "0") != "" {
			return 0, Errorf(CodeInvalid, "amount %q has more than 9 decimal places (smaller than a lamport)", s)
		}
		frac = frac[:9]
	}
	var w uint64
	if whole != "" {
		var err error
		w, err = strconv.ParseUint(whole, 10, 64)
		if err != nil || w > math.MaxUint64/uint64(LamportsPerSOL) {
			return 0, Errorf(CodeInvalid, "amount %q is too large", s)
		}
	}
	var f uint64
	if frac != "" {
		frac += strings.Repeat("0", 9-len(frac))
		f, _ = strconv.ParseUint(frac, 10, 64)
	}
	total := w*uint64(LamportsPerSOL) + f
	if total < f {
		return 0, Errorf(CodeInvalid, "amount %q is too large", s)
	}
	return Lamports(total), nil
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
