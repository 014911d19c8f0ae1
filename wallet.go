package node3

import "strings"

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// CheckWalletAddress reports whether s is a Solana public key: base58 text
// (32–44 characters) that decodes to exactly 32 bytes. The error is
// CodeInvalid and names the field.
func CheckWalletAddress(field, s string) error {
	if s == "" {
		return Errorf(CodeInvalid, "%s is required", field)
	}
	if len(s) < 32 || len(s) > 44 || strings.Trim(s, base58Alphabet) != "" || base58Len(s) != 32 {
		return Errorf(CodeInvalid, "%s must be a Solana address: 32 bytes in base58 (32–44 characters)", field)
	}
	return nil
}

// base58Len is the number of bytes the base58 string s decodes to (s holds
// only alphabet characters), or -1 past 64 bytes.
func base58Len(s string) int {
	var buf [64]byte // big-endian accumulator; the value lives in buf[64-n:]
	n := 0
	for i := 0; i < len(s); i++ {
		carry := strings.IndexByte(base58Alphabet, s[i])
		for k := 0; k < n; k++ {
			carry += int(buf[63-k]) * 58
			buf[63-k] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			if n == len(buf) {
				return -1
			}
			buf[63-n] = byte(carry)
			n++
			carry >>= 8
		}
	}
	// Each leading '1' is a leading zero byte.
	for i := 0; i < len(s) && s[i] == '1'; i++ {
		n++
	}
	return n
}
