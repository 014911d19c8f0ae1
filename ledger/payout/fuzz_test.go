package payout

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"

	"github.com/node3/node3/ledger"
)

// FuzzRPCAnswers serves arbitrary bytes as the answer to every JSON-RPC
// call (as a 200 or a 500) and drives the engine's readers of statuses,
// accounts, blockhashes and sends through the redacting client. Whatever
// the node answers: no panic; the secret of the endpoint URL shows in no
// error; rpcErrorText is one bounded line; an accepted answer has the
// shape the engine relies on (one status per signature, one account per
// key, landings that rank as landed); and a send is called refused or
// landed only on the JSON-RPC codes that mean so.
func FuzzRPCAnswers(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":5},"value":[null,{"slot":4,"confirmations":null,"err":null,"confirmationStatus":"finalized"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":5},"value":[{"slot":4,"confirmations":1,"err":{"InstructionError":[0,{"Custom":1}]}},{"slot":4,"confirmations":null}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":5},"value":[null]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":5},"value":[{"lamports":1,"owner":"11111111111111111111111111111111","data":["","base64"],"executable":false,"rentEpoch":0,"space":0},null]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":5},"value":{"blockhash":"11111111111111111111111111111111","lastValidBlockHeight":9}}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"context":{"slot":5},"value":null}}`,
		`{"jsonrpc":"2.0","id":1,"result":"5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW"}`,
		`{"jsonrpc":"2.0","id":1,"result":890880}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"Transaction simulation failed","data":{"err":"AlreadyProcessed"}}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"Node is behind\n\n` + strings.Repeat("x", 400) + `"}}`,
		`{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"internal"}}`,
		`{"jsonrpc":"2.0","id":1}`,
		`<html>502 Bad Gateway</html>`,
		``,
		`null`,
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"error":"rate limited"}`), true)
	f.Add([]byte(`upstream failed`), true)

	var body atomic.Value
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
		_, _ = w.Write(body.Load().([]byte))
	}))
	f.Cleanup(srv.Close)
	url := strings.Replace(srv.URL, "://", "://user:"+secret+"@", 1) + "/" + secret + "0123456789/?api-key=" + secret
	client := NewClient(url)
	f.Cleanup(func() { _ = client.Close() })
	e := &Engine{rpc: client, cfg: Config{RPCTimeout: 5 * time.Second, Now: time.Now, Commitment: rpc.CommitmentConfirmed}, exempt: map[solana.PublicKey]time.Time{}}
	sig := solana.Signature{1}.String()
	flights := []*flight{{tx: ledger.PayoutTx{Signature: sig}}, {tx: ledger.PayoutTx{Signature: sig}}}
	keys := []payable{{to: solana.PublicKey{7}}, {to: solana.PublicKey{8}}}

	f.Fuzz(func(t *testing.T, answer []byte, status500 bool) {
		body.Store(answer)
		fail.Store(status500)
		e.rentMin = nil
		clear(e.exempt)
		ctx := context.Background()
		checkErr := func(what string, err error) {
			t.Helper()
			if err == nil {
				return
			}
			txt := rpcErrorText(err)
			if strings.Contains(err.Error(), secret) || strings.Contains(txt, secret) {
				t.Fatalf("%s: the error shows the endpoint's secret: %v", what, err)
			}
			if strings.ContainsAny(txt, "\n\r") || len(txt) > maxErrorText+len("…") {
				t.Fatalf("%s: rpcErrorText is not one bounded line: %q", what, txt)
			}
		}

		sts, err := e.statuses(ctx, flights)
		checkErr("statuses", err)
		if err == nil {
			if len(sts) != len(flights) {
				t.Fatalf("%d statuses for %d signatures", len(sts), len(flights))
			}
			for _, st := range sts {
				if st == nil {
					continue
				}
				l, ts := landing(st)
				if statusRank(ts) < statusRank(ledger.TxProcessed) || (l == ledger.Finalized) != (ts == ledger.TxFinalized) {
					t.Fatalf("landing(%+v) = %v, %v", st, l, ts)
				}
			}
		}

		accts, err := e.accounts(ctx, keys)
		checkErr("accounts", err)
		if err == nil {
			for _, k := range keys {
				if _, ok := accts[k.to]; !ok {
					t.Fatalf("no account for %s in %v", k.to, accts)
				}
			}
		}

		_, err = client.GetLatestBlockhash(ctx, rpc.CommitmentConfirmed)
		checkErr("blockhash", err)
		_, err = client.GetBalance(ctx, solana.PublicKey{1}, rpc.CommitmentConfirmed)
		checkErr("balance", err)

		_, err = client.SendEncodedTransactionWithOpts(ctx, "AQ==", rpc.TransactionOpts{})
		checkErr("send", err)
		var re *jsonrpc.RPCError
		isRPC := errors.As(err, &re)
		switch classifySend(err) {
		case sendAccepted:
			if err != nil {
				t.Fatalf("send error %v taken as accepted", err)
			}
		case sendLanded:
			if !isRPC || re.Code != codePreflightFailure {
				t.Fatalf("send error %v taken as landed", err)
			}
		case sendRejected:
			if !isRPC {
				t.Fatalf("a non-RPC error %v taken as a refusal: it may have reached a leader", err)
			}
		case sendUncertain:
			if err == nil {
				t.Fatal("no error taken as uncertain")
			}
		}
	})
}
