package payout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"

	"github.com/node3/node3"
	"github.com/node3/node3/internal/syncbuf"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/wallet"
)

const secret = "SECRETc0ffee42"

// badRPC is an RPC endpoint on loopback that fails the way real ones do:
// an HTTP 500 or a JSON-RPC error, both echoing the URL they were called
// on, as some proxies do; Close makes the next calls fail to connect.
type badRPC struct {
	srv  *httptest.Server
	mode atomic.Value // "500" or "rpc-error"
	url  string       // with userinfo, a path token and ?api-key, all secret
}

func newBadRPC(t testing.TB) *badRPC {
	b := &badRPC{}
	b.mode.Store("500")
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch b.mode.Load() {
		case "rpc-error":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"node behind; you called %s"}}`, r.URL.RequestURI())
		default:
			// The secret straddles the 50 bytes of body that solana-go
			// quotes when it cannot decode one: a prefix of it would show.
			http.Error(w, "upstream failed for a reason: ?api-key="+r.URL.Query().Get("api-key")+" on "+r.URL.RequestURI(), http.StatusInternalServerError)
		}
	}))
	t.Cleanup(b.srv.Close)
	b.url = strings.Replace(b.srv.URL, "://", "://user:"+secret+"@", 1) + "/" + secret + "0123456789/?api-key=" + secret
	return b
}

func TestClientErrorsCarryNoSecret(t *testing.T) {
	b := newBadRPC(t)
	c := NewClient(b.url)
	defer c.Close()
	ctx := context.Background()
	call := func() error {
		_, err := c.GetBalance(ctx, solana.PublicKey{1}, rpc.CommitmentConfirmed)
		return err
	}
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: no error", what)
		}
		if strings.Contains(err.Error(), secret[:8]) || strings.Contains(fmt.Sprintf("%+v", err), secret[:8]) {
			t.Fatalf("%s: the error shows the secret: %v", what, err)
		}
		if !strings.Contains(err.Error(), "REDACTED") && !strings.Contains(err.Error(), "-32005") {
			t.Errorf("%s: %q: expected the redacted URL in it", what, err)
		}
	}
	check("HTTP 500", call())
	_, err := c.GetLatestBlockhash(ctx, rpc.CommitmentConfirmed)
	check("HTTP 500, another method", err)

	b.mode.Store("rpc-error")
	err = call()
	check("JSON-RPC error", err)
	var re *jsonrpc.RPCError
	if !errors.As(err, &re) || re.Code != codeNodeUnhealthy {
		t.Fatalf("JSON-RPC error lost its type or code: %#v", err)
	}
	if got := classifySend(err); got != sendRejected {
		t.Errorf("classifySend(redacted -32005) = %v, want sendRejected", got)
	}

	b.srv.Close()
	check("connection refused", call())

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.GetBalance(cctx, solana.PublicKey{1}, rpc.CommitmentConfirmed)
	check("cancelled", err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("errors.Is(%v, context.Canceled) = false", err)
	}
}

// TestEngineLogsNoSecret runs the engine against the failing endpoint
// with a payout pending, and checks its logs and status.
func TestEngineLogsNoSecret(t *testing.T) {
	b := newBadRPC(t)
	dir := t.TempDir()
	led, err := ledger.Open(ledger.Config{Dir: filepath.Join(dir, "ledger")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = led.Close() })
	payer, _, err := wallet.LoadOrCreate(filepath.Join(dir, "marketplace.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := led.RegisterAgent(context.Background(), node3.Agent{WalletAddress: solana.PublicKey{9}.String(), GPUModel: "H100", GPUVendor: "NVIDIA"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	complete(t, led, a, 1_000_000)

	var logs syncbuf.Buffer
	client := NewClient(b.url)
	defer client.Close()
	e := &env{t: t, led: led, payer: payer, client: client}
	cfg := e.engineConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	eng, stop := e.start(cfg)

	waitLastError := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(eng.Status().LastError) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; last error %q", what, eng.Status().LastError)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	waitLastError("an HTTP 500", func(s string) bool { return strings.Contains(s, "500") })
	b.mode.Store("rpc-error")
	waitLastError("a JSON-RPC error", func(s string) bool { return strings.Contains(s, "-32005") })
	b.srv.Close()
	waitLastError("connection refused", func(s string) bool { return strings.Contains(s, "refused") })
	stop()

	out := logs.String()
	if !strings.Contains(out, "payouts held up") {
		t.Fatalf("the engine logged no problem:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, secret[:8]) {
			t.Errorf("log line shows the secret: %s", line)
		}
	}
	if s := eng.Status().LastError; strings.Contains(s, secret[:8]) {
		t.Errorf("Status.LastError shows the secret: %s", s)
	}
}
