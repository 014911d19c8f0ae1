package ledger

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/node3/node3"
)

func TestRegisterAgent(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir, true)

	for name, w := range map[string]string{"empty": " ", "short": "So1111", "not base58": strings.Repeat("0", 40), "too long": strings.Repeat("1", 45)} {
		_, _, err := l.RegisterAgent(ctx, node3.Agent{WalletAddress: w}, t0)
		wantCode(t, "wallet "+name, err, node3.CodeInvalid)
	}

	a, key, err := l.RegisterAgent(ctx, node3.Agent{
		WalletAddress: "  " + wallet(7) + "\n", GPUModel: "A100", GPUVendor: "NVIDIA",
		GPUs:          []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "A100", MemoryBytes: 80 << 30}},
		JobsCompleted: 99, Earned: 1e9, // a caller cannot register with earnings
	}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == "" || a.WalletAddress != wallet(7) || a.JobsCompleted != 0 || a.Earned != 0 || !a.RegisteredAt.Equal(t0) || !a.LastSeen.Equal(t0) {
		t.Fatalf("registered agent %+v", a)
	}
	if !strings.HasPrefix(key, APIKeyPrefix) || len(key) < len(APIKeyPrefix)+40 {
		t.Fatalf("API key %q", key)
	}
	b, key2, err := l.RegisterAgent(ctx, node3.Agent{WalletAddress: wallet(8)}, t0)
	if err != nil || key2 == key || b.ID == a.ID {
		t.Fatalf("second agent: %+v %q %v", b, key2, err)
	}

	for k, want := range map[string]node3.Agent{key: a, key2: b} {
		got, err := l.AgentByKey(ctx, k)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("AgentByKey = %+v, %v; want %+v", got, err, want)
		}
	}
	if got, err := l.Agent(ctx, a.ID); err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("Agent = %+v, %v", got, err)
	}
	if all, err := l.Agents(ctx); err != nil || len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Fatalf("Agents = %+v, %v; want a then b", all, err)
	}
	for _, wrong := range []string{"", "n3_", key[:len(key)-1], key + "x", strings.ToUpper(key), HashKey(key)} {
		_, err := l.AgentByKey(ctx, wrong)
		wantCode(t, "AgentByKey("+wrong+")", err, node3.CodeUnauthorized)
	}
	_, err = l.Agent(ctx, "no-such-agent")
	wantCode(t, "Agent of an unknown id", err, node3.CodeNotFound)
	if s, _ := l.Stats(ctx); s.Agents != 2 {
		t.Fatalf("Stats.Agents = %d, want 2", s.Agents)
	}

	// Only the key's hash is kept: not in any key or value (every version),
	// not in any file Badger wrote.
	secrets := []string{key, key[len(APIKeyPrefix):], key2, key2[len(APIKeyPrefix):]}
	var sawHash bool
	for _, e := range dumpDB(t, l) {
		for _, s := range secrets {
			if bytes.Contains(e.key, []byte(s)) || bytes.Contains(e.val, []byte(s)) {
				t.Fatalf("the raw API key is stored under %q", e.key)
			}
		}
		sawHash = sawHash || string(e.key) == pAgentKey+HashKey(key)
	}
	if !sawHash {
		t.Fatalf("no %s<hash> entry: the dump does not see the DB", pAgentKey)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		for _, s := range secrets {
			if bytes.Contains(data, []byte(s)) {
				t.Errorf("the raw API key is in %s", path)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// And the hash still finds the agent after a reopen.
	l = openAt(t, dir, true)
	if got, err := l.AgentByKey(ctx, key); err != nil || got.ID != a.ID {
		t.Fatalf("after reopen: AgentByKey = %+v, %v", got, err)
	}
}
