package node3

import (
	"crypto/rand"
	"testing"

	"github.com/mr-tron/base58"
)

func TestCheckWalletAddress(t *testing.T) {
	good := []string{
		"11111111111111111111111111111111",             // the System Program: 32 zero bytes
		"So11111111111111111111111111111111111111112",  // wrapped SOL mint
		"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",  // the token program
		"4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T", // a 44-character key
	}
	for _, s := range good {
		if err := CheckWalletAddress("wallet_address", s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{
		"", "short", "1111111111111111111111111111111", // 31 ones: 31 bytes
		"0OIl111111111111111111111111111111",            // characters outside base58
		"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",  // 44 characters, 33 bytes
		"111111111111111111111111111111111",             // 33 zero bytes
		"So1111111111111111111111111111111111111111",    // 31 bytes
		"4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T ", // trailing space
	}
	for _, s := range bad {
		if err := CheckWalletAddress("wallet_address", s); err == nil || ErrorCode(err) != CodeInvalid {
			t.Errorf("%q: got %v, want an invalid error", s, err)
		}
	}
	// Every 32-byte key's base58 text passes.
	for range 1000 {
		var k [32]byte
		_, _ = rand.Read(k[:])
		if s := base58.Encode(k[:]); CheckWalletAddress("w", s) != nil {
			t.Fatalf("%s (%x) refused", s, k)
		}
	}
}

// FuzzCheckWalletAddress holds the check to a real base58 decoder.
func FuzzCheckWalletAddress(f *testing.F) {
	for _, s := range []string{"11111111111111111111111111111111", "So11111111111111111111111111111111111111112", "zzzz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := base58.Decode(s)
		want := err == nil && len(b) == 32 && len(s) >= 32 && len(s) <= 44
		if got := CheckWalletAddress("w", s) == nil; got != want {
			t.Fatalf("CheckWalletAddress(%q) ok=%v, base58 decodes to %d bytes (%v)", s, got, len(b), err)
		}
	})
}
