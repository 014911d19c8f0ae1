package p2p

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
)

func TestIdentityPersisted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	cfg := testConfig(t, testNetwork(t))
	cfg.DataDir = dir
	n1, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	id1 := n1.ID()
	if err := n1.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("identity mode %04o, want 0600", st.Mode().Perm())
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode %04o, want 0700", dst.Mode().Perm())
	}
	n2 := startNode(t, cfg)
	if n2.ID() != id1 {
		t.Fatalf("peer ID changed across restart: %s then %s", id1, n2.ID())
	}
	if id, err := PeerIDFromDataDir(dir, nil); err != nil || id != id1 {
		t.Fatalf("PeerIDFromDataDir = %s, %v", id, err)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, ".identity-*")); len(matches) != 0 {
		t.Fatalf("temp files left: %v", matches)
	}
}

func TestIdentityErrors(t *testing.T) {
	write := func(t *testing.T, data []byte, mode os.FileMode) string {
		dir := t.TempDir()
		p := filepath.Join(dir, IdentityFile)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	good, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	goodBytes, _ := crypto.MarshalPrivateKey(good)
	rsa, _, err := crypto.GenerateECDSAKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaBytes, _ := crypto.MarshalPrivateKey(rsa)

	cases := []struct {
		name string
		data []byte
		mode os.FileMode
		want []string
	}{
		{"garbage", []byte("this is not a key\n"), 0o600, []string{"not a libp2p private key"}},
		{"empty", nil, 0o600, []string{"not a libp2p private key"}},
		{"wrong key type", rsaBytes, 0o600, []string{"want Ed25519"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := write(t, c.data, c.mode)
			_, err := LoadIdentity(dir, nil)
			if err == nil || !containsAll(err.Error(), c.want...) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			// The bad file is left alone.
			if b, _ := os.ReadFile(filepath.Join(dir, IdentityFile)); string(b) != string(c.data) {
				t.Fatal("identity file was modified")
			}
		})
	}
	t.Run("read-only 0400 is fine", func(t *testing.T) {
		dir := write(t, goodBytes, 0o400)
		k, err := LoadIdentity(dir, nil)
		if err != nil || !k.Equals(good) {
			t.Fatalf("LoadIdentity = %v", err)
		}
	})
	t.Run("open modes are tightened", func(t *testing.T) {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o666} {
			dir := write(t, goodBytes, mode)
			k, err := LoadIdentity(dir, nil)
			if err != nil || !k.Equals(good) {
				t.Fatalf("LoadIdentity(%04o) = %v", mode, err)
			}
			if st, _ := os.Stat(filepath.Join(dir, IdentityFile)); st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %04o after loading, want 0600", st.Mode().Perm())
			}
		}
	})
	t.Run("symlink refused", func(t *testing.T) {
		src := write(t, goodBytes, 0o600)
		dir := t.TempDir()
		if err := os.Symlink(filepath.Join(src, IdentityFile), filepath.Join(dir, IdentityFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadIdentity(dir, nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Fatalf("LoadIdentity(symlink) = %v", err)
		}
	})
	t.Run("New reports it", func(t *testing.T) {
		cfg := testConfig(t, testNetwork(t))
		cfg.DataDir = write(t, []byte("garbage"), 0o600)
		if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "identity") {
			t.Fatalf("New err = %v", err)
		}
	})
}
