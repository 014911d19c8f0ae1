package wallet

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "wallet.json")
	w, created, err := LoadOrCreate(path, nil)
	if err != nil || !created {
		t.Fatalf("create: %v created=%v", err, created)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %#o, want 0600", st.Mode().Perm())
	}
	w2, created, err := LoadOrCreate(path, nil)
	if err != nil || created {
		t.Fatalf("reload: %v created=%v", err, created)
	}
	if w.Address() != w2.Address() {
		t.Fatal("reloaded wallet has another address")
	}
	// The file is the Solana CLI format: a JSON array of 64 numbers.
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("[")) || strings.Count(string(b), ",") != 63 {
		t.Fatalf("not a Solana CLI key file: %.40s…", b)
	}
}

func TestSecretNeverShown(t *testing.T) {
	w, _, err := LoadOrCreate(filepath.Join(t.TempDir(), "w.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	secret := w.PrivateKey().String()
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("wallet", "w", w)
	for _, s := range []string{fmt.Sprint(w), fmt.Sprintf("%+v", w), fmt.Sprintf("%#v", w), logs.String()} {
		if strings.Contains(s, secret) {
			t.Fatalf("secret key shown in %q", s)
		}
		if !strings.Contains(s, w.Address().String()) {
			t.Fatalf("address missing from %q", s)
		}
	}
}

func TestLoadRejects(t *testing.T) {
	dir := t.TempDir()
	good, _, _ := LoadOrCreate(filepath.Join(dir, "good.json"), nil)
	goodBytes, _ := os.ReadFile(good.Path())
	flipped := bytes.Replace(goodBytes, []byte("["), []byte("[1,"), 1)
	cases := []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"garbage", "hello", 0o600, "JSON array"},
		{"short", "[1,2,3]", 0o600, "3 numbers"},
		{"not bytes", "[" + strings.Repeat("300,", 63) + "300]", 0o600, "not a byte"},
		{"mismatched halves", string(flipped), 0o600, "numbers, want 64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
			if err := os.WriteFile(p, []byte(c.content), c.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, c.mode)
			_, _, err := LoadOrCreate(p, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), good.PrivateKey().String()) {
				t.Fatal("error shows a secret")
			}
		})
	}
}

// TestLoadTightensMode: a wallet readable by others is made 0600, with a
// warning naming it, and still loads; a symlinked one is refused.
func TestLoadTightensMode(t *testing.T) {
	dir := t.TempDir()
	w, _, err := LoadOrCreate(filepath.Join(dir, "w.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	w2, created, err := LoadOrCreate(w.Path(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || created || w2.Address() != w.Address() {
		t.Fatalf("LoadOrCreate(0644) = %v, created %v", err, created)
	}
	if st, _ := os.Stat(w.Path()); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	if !strings.Contains(logs.String(), w.Path()) || !strings.Contains(logs.String(), "old_mode=0644") {
		t.Errorf("no warning naming the file: %q", logs.String())
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(w.Path(), link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreate(link, nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("LoadOrCreate(symlink) = %v, want a refusal", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("[1,2,3]"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = Decode(b)
	})
}
