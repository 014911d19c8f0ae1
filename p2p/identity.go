package p2p

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3/internal/fileperm"
)

// IdentityFile is the name of the node's private key inside its data
// directory.
const IdentityFile = "identity.key"

// maxIdentitySize bounds what is read from the key file; a marshalled
// Ed25519 key is 68 bytes.
const maxIdentitySize = 4 << 10

// LoadIdentity returns the node's Ed25519 key from dataDir/identity.key,
// creating the directory (0700) and the key (0600) on first use. The file
// holds the key in libp2p's protobuf encoding (crypto.MarshalPrivateKey).
// An existing directory and key file go through fileperm's rule: open to
// group or others, they are tightened with a warning on log (nil
// discards); a symlinked key file or one of another user is refused. A key
// of another type or that does not parse is an error, never silently
// replaced.
func LoadIdentity(dataDir string, log *slog.Logger) (crypto.PrivKey, error) {
	if dataDir == "" {
		return nil, errors.New("identity: no data directory")
	}
	if err := fileperm.Check(dataDir, fileperm.Dir, log); err != nil {
		return nil, fmt.Errorf("identity: data directory: %w", err)
	}
	path := filepath.Join(dataDir, IdentityFile)
	if err := fileperm.Check(path, fileperm.File, log); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	key, err := readIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("identity: create data directory: %w", err)
	}
	return createIdentity(dataDir, path)
}

// PeerIDFromDataDir returns the peer ID of the identity in dataDir,
// creating it if needed (for `node3 id`).
func PeerIDFromDataDir(dataDir string, log *slog.Logger) (peer.ID, error) {
	key, err := LoadIdentity(dataDir, log)
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(key)
}

func readIdentity(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("identity %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		// fileperm.Check tightened it; a file swapped in since is refused.
		return nil, fmt.Errorf("identity %s has mode %04o: it must not be readable by group or others (chmod 600 %s)", path, st.Mode().Perm(), path)
	}
	if st.Size() > maxIdentitySize {
		return nil, fmt.Errorf("identity %s is %d bytes: not a key file", path, st.Size())
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("identity %s: read: %w", path, err)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("identity %s is not a libp2p private key (%v); move it away to create a new identity", path, err)
	}
	if key.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("identity %s holds a %s key, want Ed25519", path, key.Type())
	}
	// libp2p takes the public half as stored; one that is not the
	// secret's would give a peer ID its signatures do not match.
	if raw, err := key.Raw(); err != nil || len(raw) != ed25519.PrivateKeySize || !bytes.Equal(ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize]), raw) {
		return nil, fmt.Errorf("identity %s is not a valid Ed25519 key (its public half does not match its secret); move it away to create a new identity", path)
	}
	return key, nil
}

// createIdentity writes a new key next to path and links it into place, so
// that two processes starting at once end up with the same identity and a
// crash never leaves a half-written key.
func createIdentity(dir, path string) (crypto.PrivKey, error) {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".identity-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("identity: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("identity: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("identity: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readIdentity(path) // another process won the race
		}
		return nil, fmt.Errorf("identity: install %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return key, nil
}

// AgentPeer reports whether a coordinator's agent id is a libp2p peer ID
// (a provider that works over libp2p is known by its peer ID) and returns it.
func AgentPeer(agentID string) (peer.ID, bool) {
	if len(agentID) < 40 || len(agentID) > 128 {
		return "", false
	}
	id, err := peer.Decode(agentID)
	return id, err == nil
}
