package p2p

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/node3/node3"
)

// FuzzDecodeErrorFrame: whatever a peer puts in an error frame, the
// requester gets a known code and a message of at most maxErrorMessage
// bytes of valid UTF-8 without control characters (it is logged and
// shown); a well-formed frame with a known code and a clean message
// arrives exactly as sent.
func FuzzDecodeErrorFrame(f *testing.F) {
	for _, s := range []string{
		`{"code":"conflict","message":"taken"}`,
		`{"code":"not_found","message":""}`,
		`{"code":"mystery","message":"x"}`,
		`{"code":"invalid","message":"line\nbreak\u001b[31m"}`,
		`{"code":"internal","message":"` + strings.Repeat("é", 700) + `"}`,
		`{"code":1}`,
		"\xff\xfe",
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ef := decodeErrorFrame(payload)
		if !knownCodes[ef.Code] {
			t.Fatalf("unknown code %q passed", ef.Code)
		}
		if len(ef.Message) > maxErrorMessage || !utf8.ValidString(ef.Message) ||
			strings.ContainsFunc(ef.Message, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) {
			t.Fatalf("unclean message %q", ef.Message)
		}
		var sent errorFrame
		if json.Unmarshal(payload, &sent) == nil && knownCodes[sent.Code] && cleanMessage(sent.Message) == sent.Message && ef != sent {
			t.Fatalf("a clean frame %+v arrived as %+v", sent, ef)
		}
		re := &RemoteError{Peer: "p", Protocol: "/node3/test/1", Code: ef.Code, Message: ef.Message}
		if strings.ContainsAny(re.Error(), "\n\r") {
			t.Fatalf("RemoteError is not one line: %q", re.Error())
		}
		if node3.ErrorCode(re) != ef.Code {
			t.Fatalf("ErrorCode(RemoteError) = %s, want %s", node3.ErrorCode(re), ef.Code)
		}
	})
}

// FuzzIdentityFile: whatever identity.key holds, LoadIdentity either
// refuses it, leaving the file as it was, or returns an Ed25519 key whose
// signatures verify under its own public key (so the peer ID derived from
// it is the one its messages are signed with) and that survives a
// re-encode. Its errors never quote the file.
func FuzzIdentityFile(f *testing.F) {
	good, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	goodBytes, _ := crypto.MarshalPrivateKey(good)
	f.Add(goodBytes)
	bad := append([]byte(nil), goodBytes...)
	bad[len(bad)-1] ^= 1 // the public half no longer matches the secret
	f.Add(bad)
	ecdsa, _, _ := crypto.GenerateECDSAKeyPair(rand.Reader)
	ecdsaBytes, _ := crypto.MarshalPrivateKey(ecdsa)
	f.Add(ecdsaBytes)
	f.Add([]byte{})
	f.Add([]byte("not a key\n"))
	f.Add(goodBytes[:len(goodBytes)-32])
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, IdentityFile)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		key, err := LoadIdentity(dir, nil)
		if err != nil {
			if b, _ := os.ReadFile(path); string(b) != string(data) {
				t.Fatal("a refused identity file was changed")
			}
			if len(data) >= 8 && strings.Contains(err.Error(), string(data)) {
				t.Fatalf("error quotes the file: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(data) > maxIdentitySize || key.Type() != crypto.Ed25519 {
			t.Fatalf("accepted a %s key from %d bytes", key.Type(), len(data))
		}
		msg := []byte("node3 identity check")
		sig, err := key.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := key.GetPublic().Verify(msg, sig); err != nil || !ok {
			t.Fatalf("loaded key's signatures do not verify under its public key (%v)", err)
		}
		b, err := crypto.MarshalPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		again, err := crypto.UnmarshalPrivateKey(b)
		if err != nil || !again.Equals(key) {
			t.Fatalf("re-encoded key does not round-trip: %v", err)
		}
	})
}
