package localchain

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const sol uint64 = 1_000_000_000

// env is a chain served over HTTP on 127.0.0.1 with the unmodified
// solana-go client pointed at it.
type env struct {
	t      testing.TB
	chain  *Chain
	client *rpc.Client
	url    string
	http   *http.Client
}

// newEnv starts a chain with a manual clock unless cfg says otherwise.
func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	if cfg.SlotInterval == 0 {
		cfg.SlotInterval = -1
	}
	c := New(cfg)
	srv := httptest.NewServer(c.Handler())
	client := rpc.New(srv.URL)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		_ = c.Close() // first: releases stalled requests so srv.Close does not wait
		srv.Close()
		_ = client.Close()
		hc.CloseIdleConnections()
	})
	return &env{t: t, chain: c, client: client, url: srv.URL, http: hc}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// key derives a deterministic keypair.
func key(name string) solana.PrivateKey {
	seed := sha256.Sum256([]byte("test key " + name))
	return solana.PrivateKey(ed25519.NewKeyFromSeed(seed[:]))
}

// fund airdrops lamports and lets the airdrop finalize, so that the
// default (finalized) preflight sees it.
func (e *env) fund(k solana.PrivateKey, lamports uint64) {
	e.t.Helper()
	if _, err := e.chain.Airdrop(k.PublicKey(), lamports); err != nil {
		e.t.Fatalf("airdrop: %v", err)
	}
	e.chain.AdvanceSlots(e.chain.cfg.FinalizeDepth)
}

// blockhash asks the endpoint for its latest blockhash (finalized).
func (e *env) blockhash() solana.Hash {
	e.t.Helper()
	res, err := e.client.GetLatestBlockhash(ctxT(e.t), rpc.CommitmentFinalized)
	if err != nil {
		e.t.Fatalf("getLatestBlockhash: %v", err)
	}
	return res.Value.Blockhash
}

type xfer struct {
	from     solana.PrivateKey
	to       solana.PublicKey
	lamports uint64
}

// signedTx builds and signs a transaction of System transfers paid by payer.
func signedTx(t testing.TB, bh solana.Hash, payer solana.PrivateKey, xs ...xfer) *solana.Transaction {
	t.Helper()
	var ixs []solana.Instruction
	signers := map[solana.PublicKey]solana.PrivateKey{payer.PublicKey(): payer}
	for _, x := range xs {
		ixs = append(ixs, system.NewTransferInstruction(x.lamports, x.from.PublicKey(), x.to).Build())
		signers[x.from.PublicKey()] = x.from
	}
	return signIxs(t, bh, payer, signers, ixs...)
}

func signIxs(t testing.TB, bh solana.Hash, payer solana.PrivateKey, signers map[solana.PublicKey]solana.PrivateKey, ixs ...solana.Instruction) *solana.Transaction {
	t.Helper()
	tx, err := solana.NewTransaction(ixs, bh, solana.TransactionPayer(payer.PublicKey()))
	if err != nil {
		t.Fatalf("new transaction: %v", err)
	}
	if _, err := tx.Sign(func(k solana.PublicKey) *solana.PrivateKey {
		if pk, ok := signers[k]; ok {
			return &pk
		}
		return nil
	}); err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tx
}

func (e *env) send(tx *solana.Transaction, opts rpc.TransactionOpts) (solana.Signature, error) {
	return e.client.SendTransactionWithOpts(ctxT(e.t), tx, opts)
}

func (e *env) mustSend(tx *solana.Transaction) solana.Signature {
	e.t.Helper()
	sig, err := e.send(tx, rpc.TransactionOpts{})
	if err != nil {
		e.t.Fatalf("sendTransaction: %v", err)
	}
	if sig != tx.Signatures[0] {
		e.t.Fatalf("sendTransaction returned %s, want %s", sig, tx.Signatures[0])
	}
	return sig
}

// status returns one signature status (nil if unknown).
func (e *env) status(sig solana.Signature, history bool) *rpc.SignatureStatusesResult {
	e.t.Helper()
	res, err := e.client.GetSignatureStatuses(ctxT(e.t), history, sig)
	if err != nil {
		e.t.Fatalf("getSignatureStatuses: %v", err)
	}
	if len(res.Value) != 1 {
		e.t.Fatalf("getSignatureStatuses: %d values", len(res.Value))
	}
	return res.Value[0]
}

func (e *env) balance(k solana.PublicKey, cm rpc.CommitmentType) uint64 {
	e.t.Helper()
	res, err := e.client.GetBalance(ctxT(e.t), k, cm)
	if err != nil {
		e.t.Fatalf("getBalance: %v", err)
	}
	return res.Value
}

// rpcErr extracts a JSON-RPC error.
func rpcErr(t testing.TB, err error) *jsonrpc.RPCError {
	t.Helper()
	if err == nil {
		t.Fatal("expected a JSON-RPC error, got success")
	}
	var re *jsonrpc.RPCError
	if !errors.As(err, &re) {
		t.Fatalf("expected a JSON-RPC error, got %T: %v", err, err)
	}
	return re
}

// preflightErr returns the "err" member of a -32002 preflight failure as
// compact JSON.
func preflightErr(t testing.TB, err error) string {
	t.Helper()
	re := rpcErr(t, err)
	if re.Code != codePreflightFailure {
		t.Fatalf("code %d (%s), want %d", re.Code, re.Message, codePreflightFailure)
	}
	data, ok := re.Data.(map[string]any)
	if !ok {
		t.Fatalf("preflight failure data is %T", re.Data)
	}
	b, _ := json.Marshal(data["err"])
	return string(b)
}

func errJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// post sends a raw body and returns the status and body.
func (e *env) post(body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(ctxT(e.t), http.MethodPost, e.url, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
