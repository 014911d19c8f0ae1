// Package wallet keeps Solana keypairs in the Solana CLI key format: a JSON
// array of the 64 bytes of an ed25519 secret key, in a file of mode 0600.
// A Wallet never shows its secret: String, LogValue and errors carry only
// the public address.
package wallet

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/gagliardetto/solana-go"

	"github.com/node3/node3/internal/fileperm"
)

// Wallet is a keypair loaded from (or created in) a key file.
type Wallet struct {
	key  solana.PrivateKey
	path string
}

// LoadOrCreate loads the key file at path, or creates a new keypair there
// (mode 0600, parent directory 0700) when it does not exist. created says
// which happened. An existing file goes through fileperm's rule: open to
// group or others, it is tightened to 0600 with a warning on log (nil
// discards); a symlink or a file of another user is refused. A file that
// is not a valid key is an error that names the file but never its
// contents.
func LoadOrCreate(path string, log *slog.Logger) (w *Wallet, created bool, err error) {
	w, err = load(path, log)
	if err == nil {
		return w, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	key, err := solana.NewRandomPrivateKey()
	if err != nil {
		return nil, false, fmt.Errorf("wallet: generate key: %w", err)
	}
	if err := writeKeyFile(path, key); err != nil {
		return nil, false, err
	}
	return &Wallet{key: key, path: path}, true, nil
}

// Load reads an existing key file, checked as LoadOrCreate does (without a
// log for a tightened mode).
func Load(path string) (*Wallet, error) { return load(path, nil) }

func load(path string, log *slog.Logger) (*Wallet, error) {
	if err := fileperm.Check(path, fileperm.File, log); err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wallet: %w", err)
	}
	key, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("wallet: %s: %w", path, err)
	}
	return &Wallet{key: key, path: path}, nil
}

// Decode parses the Solana CLI key format. Its errors never quote the input.
func Decode(b []byte) (solana.PrivateKey, error) {
	if len(b) > 4096 {
		return nil, errors.New("not a Solana key file (too large)")
	}
	var vals []int
	if err := json.Unmarshal(b, &vals); err != nil {
		return nil, errors.New("not a Solana key file (want a JSON array of 64 numbers)")
	}
	if len(vals) != 64 {
		return nil, fmt.Errorf("not a Solana key file (%d numbers, want 64)", len(vals))
	}
	key := make(solana.PrivateKey, 64)
	for i, v := range vals {
		if v < 0 || v > 255 {
			return nil, errors.New("not a Solana key file (a number is not a byte)")
		}
		key[i] = byte(v)
	}
	if _, err := solana.ValidatePrivateKey(key); err != nil {
		return nil, errors.New("not a valid ed25519 keypair (public half does not match the secret)")
	}
	return key, nil
}

func writeKeyFile(path string, key solana.PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	vals := make([]int, len(key))
	for i, b := range key {
		vals[i] = int(b)
	}
	data, _ := json.Marshal(vals)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".wallet-*")
	if err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("wallet: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("wallet: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("wallet: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	// Link rather than rename, so two processes racing to create the same
	// wallet cannot overwrite each other's key.
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("wallet: create %s: %w", path, err)
	}
	return nil
}

// Address is the wallet's public key.
func (w *Wallet) Address() solana.PublicKey { return w.key.PublicKey() }

// PrivateKey is the secret key, for signing. Never log or print it.
func (w *Wallet) PrivateKey() solana.PrivateKey { return w.key }

// Path is the key file.
func (w *Wallet) Path() string { return w.path }

// String shows the address only.
func (w *Wallet) String() string { return w.Address().String() }

// LogValue shows the address only.
func (w *Wallet) LogValue() slog.Value { return slog.StringValue(w.Address().String()) }

// Format keeps %v, %+v and %#v on the address.
func (w *Wallet) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(w.String())) }
