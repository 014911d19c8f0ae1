package localchain

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
)

// FuzzHandler posts arbitrary bytes: the endpoint must never panic, and
// must answer with JSON-RPC (an object or an array of objects, each with
// jsonrpc "2.0" and either a result or an error), an empty body (only
// notifications), or a clean HTTP error.
func FuzzHandler(f *testing.F) {
	c := New(Config{SlotInterval: -1, MaxRequestBytes: 8 << 10})
	f.Cleanup(func() { _ = c.Close() })
	alice, bob := key("alice"), key("bob")
	if _, err := c.Airdrop(alice.PublicKey(), 10*sol); err != nil {
		f.Fatal(err)
	}
	bh, _ := c.LatestBlockhash()
	tx := signedTx(f, bh, alice, xfer{alice, bob.PublicKey(), sol})
	b64 := tx.MustToBase64()
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"getSlot"}`,
		`{"jsonrpc":"2.0","id":"x","method":"sendTransaction","params":["` + b64 + `",{"encoding":"base64","skipPreflight":true}]}`,
		`{"jsonrpc":"2.0","id":2,"method":"simulateTransaction","params":["` + b64 + `",{"encoding":"base64","replaceRecentBlockhash":true}]}`,
		`{"jsonrpc":"2.0","id":3,"method":"getFeeForMessage","params":["` + tx.Message.ToBase64() + `"]}`,
		`[{"jsonrpc":"2.0","id":1,"method":"getBalance","params":["` + alice.PublicKey().String() + `",{"commitment":"processed"}]},{"jsonrpc":"2.0","method":"getHealth"}]`,
		`{"jsonrpc":"2.0","id":4,"method":"getSignatureStatuses","params":[["` + tx.Signatures[0].String() + `"],{"searchTransactionHistory":true}]}`,
		`{"jsonrpc":"2.0","id":5,"method":"getTransaction","params":["` + tx.Signatures[0].String() + `","base64"]}`,
		`{"jsonrpc":"2.0","id":6,"method":"getAccountInfo","params":["` + alice.PublicKey().String() + `",{"encoding":"base58","dataSlice":{"offset":1,"length":2}}]}`,
		`{"jsonrpc":"2.0","id":7,"method":"requestAirdrop","params":["` + bob.PublicKey().String() + `",1000000000]}`,
		`[]`, `[1,2]`, `{}`, `null`, `"x"`, `{"jsonrpc":"2.0","id":[1],"method":"getSlot"}`,
		"\x00\xff", `[{"jsonrpc":"2.0","id":1,"method":"getSlot"},`,
	} {
		f.Add([]byte(seed))
	}
	h := c.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			if rec.Code < 400 || rec.Code > 599 {
				t.Fatalf("status %d", rec.Code)
			}
			return
		}
		out := bytes.TrimSpace(rec.Body.Bytes())
		if len(out) == 0 {
			return // only notifications
		}
		var one map[string]json.RawMessage
		var many []map[string]json.RawMessage
		switch {
		case json.Unmarshal(out, &one) == nil:
			many = []map[string]json.RawMessage{one}
		case json.Unmarshal(out, &many) == nil && len(many) > 0:
		default:
			t.Fatalf("answer is not JSON-RPC: %q", out)
		}
		for _, r := range many {
			_, hasResult := r["result"]
			_, hasError := r["error"]
			if string(r["jsonrpc"]) != `"2.0"` || hasResult == hasError || r["id"] == nil {
				t.Fatalf("malformed response object %q", out)
			}
		}
	})
}

// BenchmarkSendTransaction measures sendTransaction with default preflight
// through the solana-go client over loopback HTTP: decode, signature
// verification, simulation against the finalized bank, and landing.
func BenchmarkSendTransaction(b *testing.B) {
	e := newEnv(b, Config{BlockhashWindow: 1 << 40})
	payer := key("bench-payer")
	e.fund(payer, 1_000_000*sol)
	txs := benchTxs(b, e, payer)
	b.ResetTimer()
	for i := range b.N {
		if _, err := e.client.SendTransaction(ctxT(b), txs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}

// BenchmarkSendTransactionParallel is the same with concurrent clients.
func BenchmarkSendTransactionParallel(b *testing.B) {
	e := newEnv(b, Config{BlockhashWindow: 1 << 40})
	payer := key("bench-payer")
	e.fund(payer, 1_000_000*sol)
	txs := benchTxs(b, e, payer)
	next := make(chan int, b.N)
	for i := range b.N {
		next <- i
	}
	close(next)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.client.SendTransactionWithOpts(ctxT(b), txs[<-next], rpc.TransactionOpts{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}

// benchTxs signs b.N distinct transfers up front (signing is the client's
// cost, not the endpoint's).
func benchTxs(b *testing.B, e *env, payer solana.PrivateKey) []*solana.Transaction {
	bh := e.blockhash()
	sink := key("bench-sink").PublicKey()
	txs := make([]*solana.Transaction, b.N)
	for i := range txs {
		txs[i] = signedTx(b, bh, payer, xfer{payer, sink, RentExemptMinimum + uint64(i)})
	}
	return txs
}

// BenchmarkSendTransactionHandler calls the handler directly, without a
// network: the endpoint's own cost per transaction.
func BenchmarkSendTransactionHandler(b *testing.B) {
	e := newEnv(b, Config{BlockhashWindow: 1 << 40})
	payer := key("bench-payer")
	e.fund(payer, 1_000_000*sol)
	txs := benchTxs(b, e, payer)
	bodies := make([][]byte, len(txs))
	for i, tx := range txs {
		bodies[i] = []byte(`{"jsonrpc":"2.0","id":"` + tx.Signatures[0].String() + `","method":"sendTransaction","params":["` +
			tx.MustToBase64() + `",{"encoding":"base64","skipPreflight":false}]}`)
	}
	h := e.chain.Handler()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(bodies[i]))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
			b.Fatalf("answer %d %s", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}
