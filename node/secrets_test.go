package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/node3/node3/internal/syncbuf"
)

const rpcSecret = "SECRETfeed5eed77"

// TestRPCSecretNeverShown runs a coordinator whose SOLANA_RPC_URL carries
// an API key in its userinfo, path and query, against an endpoint that
// answers, fails with HTTP 500, with JSON-RPC errors, then not at all; the
// secret must show in no admin answer and no log line.
func TestRPCSecretNeverShown(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		switch mode.Load() {
		case "ok":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"context":{"slot":1},"value":5000}}`, req.ID)
		case "rpc-error":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32005,"message":"unhealthy; called as %s"}}`, req.ID, r.URL.RequestURI())
		default:
			http.Error(w, "proxy failed for "+r.URL.RequestURI(), http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	rpcURL := strings.Replace(srv.URL, "://", "://user:"+rpcSecret+"@", 1) + "/" + rpcSecret + "/?api-key=" + rpcSecret

	var logs syncbuf.Buffer
	n, err := New(context.Background(), Config{
		DataDir:           t.TempDir(),
		Coordinator:       true,
		MarketplaceListen: "127.0.0.1:0",
		NodeListen:        "127.0.0.1:0",
		SolanaRPCURL:      rpcURL,
		Logger:            slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	key, _ := n.AdminKey()
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, n.MarketplaceURL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}

	code, body := call("GET", "/api/admin/wallet", "")
	if code != http.StatusOK || strings.Contains(body, rpcSecret[:10]) || !strings.Contains(body, `"rpc_url":"http://REDACTED@127.0.0.1`) {
		t.Fatalf("wallet (chain up) = %d %s: want 200 with the URL redacted", code, body)
	}
	for _, m := range []string{"500", "rpc-error", "down"} {
		if m == "down" {
			srv.Close()
		} else {
			mode.Store(m)
		}
		for _, c := range [][3]string{{"GET", "/api/admin/wallet", ""}, {"POST", "/api/admin/wallet/fund", `{"amount":1}`}, {"GET", "/api/admin/reconcile", ""}} {
			code, body := call(c[0], c[1], c[2])
			if strings.Contains(body, rpcSecret[:10]) {
				t.Errorf("%s %s with the chain %s = %d, shows the secret: %s", c[0], c[1], m, code, body)
			}
			if c[1] == "/api/admin/wallet" && code != http.StatusServiceUnavailable {
				t.Errorf("wallet with the chain %s = %d %s, want 503", m, code, body)
			}
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "request failed") {
		t.Fatalf("no failed request was logged:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, rpcSecret[:10]) {
			t.Errorf("log line shows the secret: %s", line)
		}
	}
}

func TestAdminKeyStrength(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin_api_key")
	strong := strings.Repeat("k", MinAdminKeyLen)

	if _, _, err := loadOrCreateAdminKey("short-key", path, nil); err == nil ||
		!strings.Contains(err.Error(), "at least 32") || !strings.Contains(err.Error(), "openssl rand") || strings.Contains(err.Error(), "short-key") {
		t.Fatalf("a short configured key: err = %v; want a refusal that says how to make one and does not show it", err)
	}
	if k, created, err := loadOrCreateAdminKey(strong, path, nil); err != nil || k != strong || created {
		t.Fatalf("a 32-character key: %q %v %v", k, created, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a configured key was written to the key file")
	}

	// Generated keys pass the rule, and come back on the next start.
	k, created, err := loadOrCreateAdminKey("", path, nil)
	if err != nil || !created || len(k) < MinAdminKeyLen {
		t.Fatalf("generated key: %d chars, created %v, %v", len(k), created, err)
	}
	if k2, created, err := loadOrCreateAdminKey("", path, nil); err != nil || created || k2 != k {
		t.Fatalf("reloaded key differs or: %v %v", created, err)
	}

	// A short key in the file is refused too, and the file kept.
	if err := os.WriteFile(path, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateAdminKey("", path, nil); err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("a short key in the file: err = %v", err)
	}

	// The node refuses to start with one.
	_, err = New(context.Background(), Config{DataDir: t.TempDir(), Coordinator: true, AdminKey: "too-short", MarketplaceListen: "127.0.0.1:0", NodeListen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("New with a short admin key = %v", err)
	}
}

// TestStartTightensPermissions: a data directory and admin key file that
// others can read are tightened when a node starts, with warnings.
func TestStartTightensPermissions(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("a", 40)
	if err := os.WriteFile(filepath.Join(dir, "admin_api_key"), []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for p, m := range map[string]os.FileMode{dir: 0o777, filepath.Join(dir, "admin_api_key"): 0o644} {
		if err := os.Chmod(p, m); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncbuf.Buffer
	n, err := New(context.Background(), Config{
		DataDir: dir, Coordinator: true, MarketplaceListen: "127.0.0.1:0", NodeListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if k, _ := n.AdminKey(); k != key {
		t.Fatal("the stored admin key was not used")
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "admin_api_key"): 0o600} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %04o (%v)", p, st.Mode().Perm(), want, err)
		}
	}
	if c := strings.Count(logs.String(), "tightened permissions"); c != 2 {
		t.Errorf("%d warnings, want 2:\n%s", c, logs.String())
	}

	link := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "admin_api_key"), filepath.Join(link, "admin_api_key")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateAdminKey("", filepath.Join(link, "admin_api_key"), nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symlinked admin key file: %v", err)
	}
}

// FuzzAdminKeyFile: whatever the file holds, the loader returns one word
// (no white space or control characters) of at most the file's size, or
// an error that does not quote the file.
func FuzzAdminKeyFile(f *testing.F) {
	for _, s := range []string{"", "\n", "n3admin_" + strings.Repeat("x", 43) + "\n", "  key with spaces  ", "a\x00b", strings.Repeat("k", 5000), "\xff\xfe", "key\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := parseAdminKeyFile("/data/admin_api_key", b)
		if err != nil {
			if len(b) >= 8 && strings.Contains(err.Error(), string(b)) {
				t.Fatalf("error quotes the file: %v", err)
			}
			return
		}
		if len(k) > len(b) || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("parseAdminKeyFile(%q) = %q", b, k)
		}
		if !bytes.Contains(b, []byte(k)) {
			t.Fatalf("key %q is not in the file %q", k, b)
		}
		if k != "" && checkAdminKey(k, "file") == nil && len([]rune(k)) < MinAdminKeyLen {
			t.Fatalf("a %d-character key passed", len([]rune(k)))
		}
	})
}
