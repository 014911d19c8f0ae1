package localchain

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
	"github.com/gagliardetto/solana-go/rpc"
	"go.uber.org/goleak"
)

func TestTransferMovesExactLamportsAndChargesFee(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, 10*sol)

	sig := e.mustSend(signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), 2 * sol}))

	if got, want := e.balance(alice.PublicKey(), rpc.CommitmentProcessed), uint64(8*sol-5000); got != want {
		t.Errorf("alice processed balance = %d, want %d", got, want)
	}
	if got := e.balance(bob.PublicKey(), rpc.CommitmentProcessed); got != 2*sol {
		t.Errorf("bob processed balance = %d, want %d", got, 2*sol)
	}
	// The finalized view does not see the transfer yet.
	if got := e.balance(bob.PublicKey(), rpc.CommitmentFinalized); got != 0 {
		t.Errorf("bob finalized balance before finalization = %d, want 0", got)
	}
	if got := e.balance(alice.PublicKey(), ""); got != 10*sol {
		t.Errorf("alice default (finalized) balance = %d, want %d", got, 10*sol)
	}
	e.chain.AdvanceSlots(1)
	if got := e.balance(bob.PublicKey(), rpc.CommitmentConfirmed); got != 2*sol {
		t.Errorf("bob confirmed balance = %d, want %d", got, 2*sol)
	}
	e.chain.AdvanceSlots(31)
	if got := e.balance(bob.PublicKey(), rpc.CommitmentFinalized); got != 2*sol {
		t.Errorf("bob finalized balance = %d, want %d", got, 2*sol)
	}
	if st := e.status(sig, false); st == nil || st.Err != nil || st.ConfirmationStatus != rpc.ConfirmationStatusFinalized {
		t.Errorf("status = %+v, want finalized without error", st)
	}
	if e.chain.Balance(alice.PublicKey()) != 8*sol-5000 || e.chain.Balance(bob.PublicKey()) != 2*sol {
		t.Error("direct Balance accessor disagrees with getBalance")
	}
}

func TestBatchOfTransfersPaysOneFeePerSignature(t *testing.T) {
	e := newEnv(t, Config{})
	payer := key("payer")
	e.fund(payer, 10*sol)
	var xs []xfer
	for i := range 8 {
		xs = append(xs, xfer{payer, key(string(rune('a' + i))).PublicKey(), uint64(i+1) * sol / 10})
	}
	e.mustSend(signedTx(t, e.blockhash(), payer, xs...))
	var sent uint64
	for _, x := range xs {
		sent += x.lamports
		if got := e.chain.Balance(x.to); got != x.lamports {
			t.Errorf("recipient got %d, want %d", got, x.lamports)
		}
	}
	if got, want := e.chain.Balance(payer.PublicKey()), 10*sol-sent-5000; got != want {
		t.Errorf("payer balance = %d, want %d (one 5000 fee)", got, want)
	}

	// Two signers: two signatures, 10000 lamports.
	other := key("other")
	e.fund(other, sol)
	before := e.chain.Balance(payer.PublicKey())
	e.mustSend(signedTx(t, e.blockhash(), payer, xfer{other, key("z").PublicKey(), sol / 2}))
	if got, want := e.chain.Balance(payer.PublicKey()), before-10000; got != want {
		t.Errorf("payer balance after two-signature tx = %d, want %d", got, want)
	}
	if got := e.chain.Balance(other.PublicKey()); got != sol/2 {
		t.Errorf("second signer balance = %d, want %d", got, sol/2)
	}
}

func TestBadSignatureIsRejected(t *testing.T) {
	e := newEnv(t, Config{})
	alice := key("alice")
	e.fund(alice, sol)
	tx := signedTx(t, e.blockhash(), alice, xfer{alice, key("bob").PublicKey(), sol / 2})
	tx.Signatures[0][10] ^= 0xff

	_, err := e.send(tx, rpc.TransactionOpts{})
	if re := rpcErr(t, err); re.Code != codeSignatureVerification {
		t.Fatalf("code %d (%s), want %d", re.Code, re.Message, codeSignatureVerification)
	}
	// Skipping preflight: the node forwards it, sigverify drops it.
	sig, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true})
	if err != nil {
		t.Fatalf("skipPreflight send: %v", err)
	}
	e.chain.AdvanceSlots(2)
	if st := e.status(sig, true); st != nil {
		t.Errorf("forged transaction has status %+v, want none", st)
	}
	if got := e.chain.Balance(alice.PublicKey()); got != sol {
		t.Errorf("balance = %d, want %d (nothing charged)", got, sol)
	}

	// A signature by the wrong key is just as bad.
	tx2 := signedTx(t, e.blockhash(), alice, xfer{alice, key("bob").PublicKey(), 1})
	msg, err := tx2.Message.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	wrong, _ := key("mallory").Sign(msg)
	tx2.Signatures[0] = wrong
	if re := rpcErr(t, func() error { _, err := e.send(tx2, rpc.TransactionOpts{}); return err }()); re.Code != codeSignatureVerification {
		t.Errorf("wrong signer: code %d, want %d", re.Code, codeSignatureVerification)
	}
}

func TestDuplicateIsRejectedAndChargedOnce(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, sol)
	tx := signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), sol / 4})
	e.mustSend(tx)

	// Preflight against the processed bank sees the first copy.
	_, err := e.send(tx, rpc.TransactionOpts{PreflightCommitment: rpc.CommitmentProcessed})
	if got := preflightErr(t, err); got != `"AlreadyProcessed"` {
		t.Errorf("preflight err = %s, want AlreadyProcessed", got)
	}
	// Resending the same bytes without preflight is harmless.
	if _, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true}); err != nil {
		t.Fatalf("resend with skipPreflight: %v", err)
	}
	// Once finalized, the default preflight sees it too.
	e.chain.AdvanceSlots(32)
	_, err = e.send(tx, rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `"AlreadyProcessed"` {
		t.Errorf("preflight err = %s, want AlreadyProcessed", got)
	}
	if got, want := e.chain.Balance(alice.PublicKey()), sol-sol/4-5000; got != want {
		t.Errorf("alice balance = %d, want %d (moved and charged once)", got, want)
	}
	if got := e.chain.Balance(bob.PublicKey()); got != sol/4 {
		t.Errorf("bob balance = %d, want %d", got, sol/4)
	}
}

func TestExpiredBlockhashIsRejectedAndNotCharged(t *testing.T) {
	e := newEnv(t, Config{BlockhashWindow: 20})
	alice := key("alice")
	e.fund(alice, sol)
	res, err := e.client.GetLatestBlockhash(ctxT(t), rpc.CommitmentProcessed)
	if err != nil {
		t.Fatal(err)
	}
	bh, lastValid := res.Value.Blockhash, res.Value.LastValidBlockHeight
	if lastValid != e.chain.Slot()+20 {
		t.Errorf("lastValidBlockHeight = %d, want slot+20 = %d", lastValid, e.chain.Slot()+20)
	}
	e.chain.AdvanceSlots(20)
	if v, err := e.client.IsBlockhashValid(ctxT(t), bh, rpc.CommitmentProcessed); err != nil || !v.Value {
		t.Fatalf("blockhash at its last valid height: valid=%v err=%v", v, err)
	}
	e.chain.AdvanceSlots(1)
	if height, _ := e.client.GetBlockHeight(ctxT(t), rpc.CommitmentProcessed); height <= lastValid {
		t.Fatalf("block height %d not past %d", height, lastValid)
	}
	if v, err := e.client.IsBlockhashValid(ctxT(t), bh, rpc.CommitmentProcessed); err != nil || v.Value {
		t.Fatalf("expired blockhash: valid=%v err=%v", v, err)
	}
	tx := signedTx(t, bh, alice, xfer{alice, key("bob").PublicKey(), sol / 2})
	fee, err := e.client.GetFeeForMessage(ctxT(t), tx.Message.ToBase64(), rpc.CommitmentProcessed)
	if err != nil || fee.Value != nil {
		t.Errorf("getFeeForMessage with expired blockhash = %v, %v; want null", fee, err)
	}

	_, err = e.send(tx, rpc.TransactionOpts{PreflightCommitment: rpc.CommitmentProcessed})
	if got := preflightErr(t, err); got != `"BlockhashNotFound"` {
		t.Errorf("preflight err = %s, want BlockhashNotFound", got)
	}
	if _, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true}); err != nil {
		t.Fatalf("skipPreflight send: %v", err)
	}
	if st := e.status(tx.Signatures[0], true); st != nil {
		t.Errorf("expired transaction landed: %+v", st)
	}
	if got := e.chain.Balance(alice.PublicKey()); got != sol {
		t.Errorf("balance = %d, want %d (not charged)", got, sol)
	}
}

func TestInsufficientFundsFailsButChargesFee(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, sol)
	tx := signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), 2 * sol})

	_, err := e.send(tx, rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `{"InstructionError":[0,{"Custom":1}]}` {
		t.Errorf("preflight err = %s", got)
	}
	re := rpcErr(t, err)
	if !strings.Contains(re.Message, "Transaction simulation failed: Error processing Instruction 0: custom program error: 0x1") {
		t.Errorf("message = %q", re.Message)
	}
	if logs := re.Data.(map[string]any)["logs"]; !strings.Contains(errJSON(logs), "Transfer: insufficient lamports") {
		t.Errorf("logs = %v", logs)
	}
	if got := e.chain.Balance(alice.PublicKey()); got != sol {
		t.Fatalf("failed preflight charged: balance %d", got)
	}

	sig, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true})
	if err != nil {
		t.Fatal(err)
	}
	st := e.status(sig, false)
	if st == nil || errJSON(st.Err) != `{"InstructionError":[0,{"Custom":1}]}` {
		t.Fatalf("status = %+v", st)
	}
	if got := errJSON(st.Status); got != `{"Err":{"InstructionError":[0,{"Custom":1}]}}` {
		t.Errorf("deprecated status field = %s", got)
	}
	if got := e.chain.Balance(alice.PublicKey()); got != sol-5000 {
		t.Errorf("balance = %d, want %d (fee charged)", got, sol-5000)
	}
	if got := e.chain.Balance(bob.PublicKey()); got != 0 {
		t.Errorf("bob received %d from a failed transaction", got)
	}

	// A payer that cannot cover the fee is dropped, never charged.
	poor := key("poor")
	e.fund(poor, RentExemptMinimum+4999)
	tx2 := signedTx(t, e.blockhash(), poor, xfer{poor, bob.PublicKey(), 1})
	_, err = e.send(tx2, rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `{"InsufficientFundsForRent":{"account_index":0}}` {
		t.Errorf("payer left below rent by the fee: err = %s", got)
	}
	nobody := key("nobody")
	_, err = e.send(signedTx(t, e.blockhash(), nobody, xfer{nobody, bob.PublicKey(), 1}), rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `"AccountNotFound"` {
		t.Errorf("unfunded payer: err = %s", got)
	}
}

func TestRentExemptMinimum(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob, carol := key("alice"), key("bob"), key("carol")
	e.fund(alice, 2*sol)
	bh := e.blockhash()

	cases := []struct {
		name string
		tx   *solana.Transaction
		err  string
	}{
		{"new recipient below minimum", signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), RentExemptMinimum - 1}),
			`{"InsufficientFundsForRent":{"account_index":1}}`},
		{"sender left below minimum", signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), 2*sol - 5000 - RentExemptMinimum + 1}),
			`{"InsufficientFundsForRent":{"account_index":0}}`},
	}
	for _, tc := range cases {
		_, err := e.send(tc.tx, rpc.TransactionOpts{})
		if got := preflightErr(t, err); got != tc.err {
			t.Errorf("%s: err = %s, want %s", tc.name, got, tc.err)
		}
	}
	// Landing anyway (skipPreflight) fails the same way and costs the fee.
	sig, err := e.send(cases[0].tx, rpc.TransactionOpts{SkipPreflight: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.status(sig, false); st == nil || errJSON(st.Err) != cases[0].err {
		t.Fatalf("status = %+v", st)
	}

	// Exactly the minimum is fine; a later top-up below it is fine too;
	// emptying an account entirely is allowed.
	e.mustSend(signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), RentExemptMinimum}))
	// (The default preflight simulates against the finalized bank, where
	// bob does not exist yet and a 1-lamport credit would fail.)
	_, err = e.send(signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), 1}), rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != cases[0].err {
		t.Errorf("top-up before finalization: err = %s", got)
	}
	e.chain.AdvanceSlots(32)
	e.mustSend(signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), 1}))
	e.fund(carol, sol)
	e.mustSend(signedTx(t, e.blockhash(), carol, xfer{carol, bob.PublicKey(), sol - 5000}))
	if got := e.chain.Balance(carol.PublicKey()); got != 0 {
		t.Errorf("emptied account holds %d", got)
	}
	if _, err := e.client.GetAccountInfoWithOpts(ctxT(t), carol.PublicKey(), &rpc.GetAccountInfoOpts{Commitment: rpc.CommitmentProcessed}); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("emptied account still exists: %v", err)
	}

	// An airdrop below the minimum to a new account lands as a failure.
	sig, err = e.chain.Airdrop(key("dust").PublicKey(), 1000)
	var te *TxError
	if !errors.As(err, &te) || te.JSON() != `{"InsufficientFundsForRent":{"account_index":1}}` {
		t.Errorf("dust airdrop: %v", err)
	}
	if st := e.status(sig, false); st == nil || st.Err == nil {
		t.Errorf("dust airdrop status = %+v, want failed", st)
	}
}

func TestInstructionsApplyAtomically(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, sol)
	// The first transfer would succeed, the second cannot.
	tx := signedTx(t, e.blockhash(), alice,
		xfer{alice, bob.PublicKey(), sol / 2},
		xfer{alice, bob.PublicKey(), sol})
	sig, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.status(sig, false); st == nil || errJSON(st.Err) != `{"InstructionError":[1,{"Custom":1}]}` {
		t.Fatalf("status = %+v", st)
	}
	if got := e.chain.Balance(bob.PublicKey()); got != 0 {
		t.Errorf("bob got %d from a failed transaction", got)
	}
	if got := e.chain.Balance(alice.PublicKey()); got != sol-5000 {
		t.Errorf("alice = %d, want only the fee gone", got)
	}
}

func TestOtherProgramsFail(t *testing.T) {
	e := newEnv(t, Config{})
	alice := key("alice")
	e.fund(alice, sol)
	memo := solana.MustPublicKeyFromBase58("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
	ix := solana.NewInstruction(memo, solana.AccountMetaSlice{solana.Meta(alice.PublicKey()).SIGNER()}, []byte("hello"))
	tx := signIxs(t, e.blockhash(), alice, map[solana.PublicKey]solana.PrivateKey{alice.PublicKey(): alice}, ix)
	_, err := e.send(tx, rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `{"InstructionError":[0,"UnsupportedProgramId"]}` {
		t.Errorf("err = %s", got)
	}
	// An unmodelled System instruction (Assign) fails too.
	assign := system.NewAssignInstruction(memo, alice.PublicKey()).Build()
	tx = signIxs(t, e.blockhash(), alice, map[solana.PublicKey]solana.PrivateKey{alice.PublicKey(): alice}, assign)
	_, err = e.send(tx, rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `{"InstructionError":[0,"InvalidInstructionData"]}` {
		t.Errorf("assign: err = %s", got)
	}
}

func TestCreateAccountAndAccountInfo(t *testing.T) {
	e := newEnv(t, Config{})
	alice, data := key("alice"), key("data-account")
	e.fund(alice, sol)
	owner := solana.MustPublicKeyFromBase58("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
	rent, err := e.client.GetMinimumBalanceForRentExemption(ctxT(t), 165, "")
	if err != nil || rent != 2_039_280 {
		t.Fatalf("rent for 165 bytes = %d, %v; want 2039280", rent, err)
	}
	signers := map[solana.PublicKey]solana.PrivateKey{alice.PublicKey(): alice, data.PublicKey(): data}
	// One lamport short of the minimum for its size fails.
	short := system.NewCreateAccountInstruction(rent-1, 165, owner, alice.PublicKey(), data.PublicKey()).Build()
	_, err = e.send(signIxs(t, e.blockhash(), alice, signers, short), rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `{"InsufficientFundsForRent":{"account_index":1}}` {
		t.Errorf("short create: err = %s", got)
	}
	create := system.NewCreateAccountInstruction(rent, 165, owner, alice.PublicKey(), data.PublicKey()).Build()
	e.mustSend(signIxs(t, e.blockhash(), alice, signers, create))
	info, err := e.client.GetAccountInfoWithOpts(ctxT(t), data.PublicKey(), &rpc.GetAccountInfoOpts{Commitment: rpc.CommitmentProcessed})
	if err != nil {
		t.Fatal(err)
	}
	if info.Value.Owner != owner || info.Value.Lamports != rent || len(info.Value.Data.GetBinary()) != 165 || info.Value.Space != 165 {
		t.Errorf("created account = %+v", info.Value)
	}
	// Creating it again: already in use.
	e.chain.AdvanceSlots(32)
	again := system.NewCreateAccountInstruction(rent, 0, owner, alice.PublicKey(), data.PublicKey()).Build()
	_, err = e.send(signIxs(t, e.blockhash(), alice, signers, again), rpc.TransactionOpts{})
	if got := preflightErr(t, err); got != `{"InstructionError":[0,{"Custom":0}]}` {
		t.Errorf("re-create: err = %s", got)
	}

	// A plain system account.
	info, err = e.client.GetAccountInfo(ctxT(t), alice.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	v := info.Value
	if v.Owner != solana.SystemProgramID || v.Executable || len(v.Data.GetBinary()) != 0 || v.Lamports != e.chain.Balance(alice.PublicKey()) || v.RentEpoch.Uint64() != 1<<64-1 {
		t.Errorf("system account = %+v", v)
	}
	if _, err := e.client.GetAccountInfo(ctxT(t), key("missing").PublicKey()); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("missing account: err = %v, want ErrNotFound", err)
	}
}

func TestStatusProgression(t *testing.T) {
	e := newEnv(t, Config{ConfirmDepth: 2, FinalizeDepth: 6, BlockhashWindow: 10})
	alice := key("alice")
	e.fund(alice, sol)
	sig := e.mustSend(signedTx(t, e.blockhash(), alice, xfer{alice, key("bob").PublicKey(), sol / 2}))
	landed := e.chain.Slot()

	want := []struct {
		status rpc.ConfirmationStatusType
		conf   *uint64
	}{
		{rpc.ConfirmationStatusProcessed, ptr(0)},
		{rpc.ConfirmationStatusProcessed, ptr(1)},
		{rpc.ConfirmationStatusConfirmed, ptr(2)},
		{rpc.ConfirmationStatusConfirmed, ptr(3)},
		{rpc.ConfirmationStatusConfirmed, ptr(4)},
		{rpc.ConfirmationStatusConfirmed, ptr(5)},
		{rpc.ConfirmationStatusFinalized, nil},
		{rpc.ConfirmationStatusFinalized, nil},
	}
	for i, w := range want {
		st := e.status(sig, false)
		if st == nil || st.Slot != landed || st.ConfirmationStatus != w.status || !eqPtr(st.Confirmations, w.conf) || st.Err != nil {
			t.Errorf("after %d slots: status %+v (confirmations %v), want %s/%v", i, st, deref(st), w.status, w.conf)
		}
		e.chain.AdvanceSlots(1)
	}
	// Out of the status cache (2 × window slots): only a history search finds it.
	e.chain.AdvanceSlots(20)
	if st := e.status(sig, false); st != nil {
		t.Errorf("status cache still holds it: %+v", st)
	}
	if st := e.status(sig, true); st == nil || st.ConfirmationStatus != rpc.ConfirmationStatusFinalized {
		t.Errorf("history search: %+v", st)
	}
	// Unknown signatures are null, in order.
	res, err := e.client.GetSignatureStatuses(ctxT(t), true, solana.Signature{1, 2, 3}, sig)
	if err != nil || len(res.Value) != 2 || res.Value[0] != nil || res.Value[1] == nil {
		t.Errorf("mixed statuses = %+v, %v", res, err)
	}
}

func ptr(v uint64) *uint64 { return &v }

func eqPtr(a, b *uint64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func deref(st *rpc.SignatureStatusesResult) any {
	if st == nil || st.Confirmations == nil {
		return nil
	}
	return *st.Confirmations
}

func TestGetTransaction(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, sol)
	tx := signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), sol / 4})
	sig := e.mustSend(tx)

	// Default commitment is finalized: not there yet.
	if _, err := e.client.GetTransaction(ctxT(t), sig, nil); !errors.Is(err, rpc.ErrNotFound) {
		t.Fatalf("unfinalized getTransaction: %v, want ErrNotFound", err)
	}
	_, err := e.client.GetTransaction(ctxT(t), sig, &rpc.GetTransactionOpts{Commitment: rpc.CommitmentProcessed})
	if re := rpcErr(t, err); re.Code != codeInvalidParams {
		t.Errorf("processed commitment: code %d", re.Code)
	}
	e.chain.AdvanceSlots(1)
	if _, err := e.client.GetTransaction(ctxT(t), sig, &rpc.GetTransactionOpts{Commitment: rpc.CommitmentConfirmed}); err != nil {
		t.Fatalf("confirmed getTransaction: %v", err)
	}
	e.chain.AdvanceSlots(31)

	for _, enc := range []solana.EncodingType{"", solana.EncodingBase64, solana.EncodingBase58} {
		var opts *rpc.GetTransactionOpts
		if enc != "" {
			opts = &rpc.GetTransactionOpts{Encoding: enc}
		}
		res, err := e.client.GetTransaction(ctxT(t), sig, opts)
		if err != nil {
			t.Fatalf("getTransaction(%q): %v", enc, err)
		}
		got, err := res.Transaction.GetTransaction()
		if err != nil {
			t.Fatalf("getTransaction(%q): decode: %v", enc, err)
		}
		if got.Signatures[0] != sig || got.Message.RecentBlockhash != tx.Message.RecentBlockhash ||
			len(got.Message.Instructions) != 1 || got.Message.AccountKeys[1] != bob.PublicKey() {
			t.Errorf("getTransaction(%q) returned %v", enc, got)
		}
		m := res.Meta
		if m == nil || m.Fee != 5000 || m.Err != nil || m.PreBalances[0] != sol || m.PostBalances[0] != sol-sol/4-5000 ||
			m.PostBalances[1] != sol/4 || m.ComputeUnitsConsumed == nil || *m.ComputeUnitsConsumed != 150 {
			t.Errorf("getTransaction(%q) meta = %+v", enc, m)
		}
		if res.BlockTime == nil || res.Slot == 0 {
			t.Errorf("getTransaction(%q): slot %d blockTime %v", enc, res.Slot, res.BlockTime)
		}
	}
	v0 := uint64(0)
	res, err := e.client.GetTransaction(ctxT(t), sig, &rpc.GetTransactionOpts{MaxSupportedTransactionVersion: &v0})
	if err != nil || res.Version != rpc.LegacyTransactionVersion {
		t.Errorf("version = %v, %v; want legacy", res, err)
	}
	if _, err := e.client.GetTransaction(ctxT(t), solana.Signature{9}, nil); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("unknown signature: %v", err)
	}
}

func TestSimpleMethods(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := ctxT(t)
	if h, err := e.client.GetHealth(ctx); err != nil || h != rpc.HealthOk {
		t.Errorf("getHealth = %q, %v", h, err)
	}
	if v, err := e.client.GetVersion(ctx); err != nil || v.SolanaCore == "" {
		t.Errorf("getVersion = %+v, %v", v, err)
	}
	if r, err := e.client.GetMinimumBalanceForRentExemption(ctx, 0, ""); err != nil || r != 890_880 {
		t.Errorf("rent(0) = %d, %v", r, err)
	}
	e.chain.AdvanceSlots(40)
	for cm, want := range map[rpc.CommitmentType]uint64{rpc.CommitmentProcessed: 40, rpc.CommitmentConfirmed: 39, rpc.CommitmentFinalized: 8, "": 8} {
		if s, err := e.client.GetSlot(ctx, cm); err != nil || s != want {
			t.Errorf("getSlot(%q) = %d, %v; want %d", cm, s, err, want)
		}
		if h, err := e.client.GetBlockHeight(ctx, cm); err != nil || h != want {
			t.Errorf("getBlockHeight(%q) = %d, %v; want %d", cm, h, err, want)
		}
		bh, err := e.client.GetLatestBlockhash(ctx, cm)
		if err != nil || bh.Context.Slot != want || bh.Value.LastValidBlockHeight != want+150 || bh.Value.Blockhash != e.chain.blockhash(want) {
			t.Errorf("getLatestBlockhash(%q) = %+v, %v", cm, bh, err)
		}
	}
	// A processed blockhash is not yet known to the finalized bank.
	latest, _ := e.chain.LatestBlockhash()
	if v, err := e.client.IsBlockhashValid(ctx, latest, ""); err != nil || v.Value {
		t.Errorf("isBlockhashValid(newest, finalized) = %v, %v; want false", v, err)
	}
	if v, err := e.client.IsBlockhashValid(ctx, latest, rpc.CommitmentProcessed); err != nil || !v.Value {
		t.Errorf("isBlockhashValid(newest, processed) = %v, %v; want true", v, err)
	}

	alice := key("alice")
	tx := signedTx(t, latest, alice, xfer{alice, key("b").PublicKey(), 1}, xfer{key("c"), key("d").PublicKey(), 1})
	fee, err := e.client.GetFeeForMessage(ctx, tx.Message.ToBase64(), rpc.CommitmentProcessed)
	if err != nil || fee.Value == nil || *fee.Value != 10000 {
		t.Errorf("getFeeForMessage = %+v, %v; want 10000", fee, err)
	}

	sig, err := e.client.RequestAirdrop(ctx, alice.PublicKey(), 3*sol, rpc.CommitmentConfirmed)
	if err != nil {
		t.Fatal(err)
	}
	if st := e.status(sig, false); st == nil || st.Err != nil {
		t.Errorf("airdrop status %+v", st)
	}
	if got := e.balance(alice.PublicKey(), rpc.CommitmentProcessed); got != 3*sol {
		t.Errorf("airdropped balance = %d", got)
	}
	// Two identical airdrops in one slot are two transactions.
	if _, err := e.client.RequestAirdrop(ctx, alice.PublicKey(), 3*sol, ""); err != nil {
		t.Fatal(err)
	}
	if got := e.chain.Balance(alice.PublicKey()); got != 6*sol {
		t.Errorf("after second airdrop: %d", got)
	}
	if gh := e.chain.GenesisHash(); gh.IsZero() {
		t.Error("zero genesis hash")
	}
}

func TestSimulateTransaction(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, sol)
	tx := signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), sol / 2})
	res, err := e.client.SimulateTransactionWithOpts(ctxT(t), tx, &rpc.SimulateTransactionOpts{
		SigVerify: true,
		Accounts:  &rpc.SimulateTransactionAccountsOpts{Encoding: solana.EncodingBase64, Addresses: []solana.PublicKey{bob.PublicKey()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Value.Err != nil || len(res.Value.Accounts) != 1 || res.Value.Accounts[0].Lamports != sol/2 {
		t.Errorf("simulation = %+v", res.Value)
	}
	if e.chain.Balance(bob.PublicKey()) != 0 {
		t.Error("simulation changed state")
	}
	bad := signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), 5 * sol})
	res, err = e.client.SimulateTransaction(ctxT(t), bad)
	if err != nil || errJSON(res.Value.Err) != `{"InstructionError":[0,{"Custom":1}]}` {
		t.Errorf("failing simulation = %+v, %v", res, err)
	}
}

func TestBase58Encoding(t *testing.T) {
	e := newEnv(t, Config{})
	alice := key("alice")
	e.fund(alice, sol)
	tx := signedTx(t, e.blockhash(), alice, xfer{alice, key("bob").PublicKey(), sol / 2})
	raw, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Without "encoding" the real default is base58.
	var sig solana.Signature
	if err := e.client.RPCCallForInto(ctxT(t), &sig, "sendTransaction", []any{solana.Base58(raw).String()}); err != nil {
		t.Fatal(err)
	}
	if sig != tx.Signatures[0] || e.chain.Balance(key("bob").PublicKey()) != sol/2 {
		t.Errorf("base58 send: sig %s", sig)
	}
}

func TestSlotClockAndClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c := New(Config{SlotInterval: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Start(ctx)
	c.Start(ctx) // idempotent
	deadline := time.Now().Add(5 * time.Second)
	for c.Slot() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.Slot() < 5 {
		t.Fatalf("slot clock stuck at %d", c.Slot())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	s := c.Slot()
	time.Sleep(30 * time.Millisecond)
	if c.Slot() != s {
		t.Error("slot clock still running after Close")
	}
	_ = c.Close()
	c.Start(ctx) // after Close: nothing
	c.AdvanceSlots(3)
	if c.Slot() != s+3 {
		t.Error("AdvanceSlots after Close")
	}

	// A cancelled context stops the clock too; Close still returns.
	c2 := New(Config{SlotInterval: time.Millisecond})
	ctx2, cancel2 := context.WithCancel(context.Background())
	c2.Start(ctx2)
	cancel2()
	_ = c2.Close()
}

// TestConcurrentTraffic runs senders, readers and the slot clock together
// under the race detector.
func TestConcurrentTraffic(t *testing.T) {
	e := newEnv(t, Config{SlotInterval: 5 * time.Millisecond, FinalizeDepth: 4})
	e.chain.Start(context.Background())
	const senders, each = 4, 10
	keys := make([]solana.PrivateKey, senders)
	for i := range keys {
		keys[i] = key("sender" + string(rune('0'+i)))
		if _, err := e.chain.Airdrop(keys[i].PublicKey(), sol); err != nil {
			t.Fatal(err)
		}
	}
	sink := key("sink").PublicKey()
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for j := range each {
				bh, _ := e.chain.LatestBlockhash()
				tx := signedTx(t, bh, keys[i], xfer{keys[i], sink, RentExemptMinimum + uint64(j)})
				if _, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true}); err != nil {
					t.Error(err)
					return
				}
				_, _ = e.client.GetBalance(ctxT(t), sink, rpc.CommitmentFinalized)
			}
		})
	}
	wg.Wait()
	var want uint64
	for j := range each {
		want += senders * (RentExemptMinimum + uint64(j))
	}
	if got := e.chain.Balance(sink); got != want {
		t.Errorf("sink = %d, want %d", got, want)
	}
}

// TestCommitmentViewsMatchHistory moves lamports around for many slots and
// checks that every view equals the processed state of the slot it sees,
// across the pruning of old history.
func TestCommitmentViewsMatchHistory(t *testing.T) {
	c := New(Config{SlotInterval: -1, ConfirmDepth: 2, FinalizeDepth: 5, BlockhashWindow: 1000})
	defer c.Close()
	keys := []solana.PrivateKey{key("v0"), key("v1"), key("v2")}
	for _, k := range keys {
		if _, err := c.Airdrop(k.PublicKey(), 10*sol); err != nil {
			t.Fatal(err)
		}
	}
	pks := []solana.PublicKey{keys[0].PublicKey(), keys[1].PublicKey(), keys[2].PublicKey(), key("v3").PublicKey()}
	snapshot := func() []uint64 {
		out := make([]uint64, len(pks))
		for i, pk := range pks {
			out[i] = c.Balance(pk)
		}
		return out
	}
	history := map[uint64][]uint64{} // slot -> processed balances at its end
	for step := range 40 {
		// Some slots see no transaction, some several.
		for j := range step % 3 {
			from := keys[(step+j)%3]
			bh, _ := c.LatestBlockhash()
			tx := signedTx(t, bh, from, xfer{from, pks[(step+j+1)%4], RentExemptMinimum + uint64(step*10+j)})
			w, err := wireFromTransaction(tx)
			if err != nil {
				t.Fatal(err)
			}
			c.mu.Lock()
			out := c.executeLocked(w, c.head, c.headLoader())
			if out.loadErr == nil {
				c.landLocked(w, out)
			}
			c.mu.Unlock()
		}
		history[c.Slot()] = snapshot()
		c.mu.Lock()
		for _, cm := range []commitment{commitProcessed, commitConfirmed, commitFinalized} {
			v := c.viewLocked(cm)
			want, ok := history[v]
			if !ok {
				continue
			}
			for i, pk := range pks {
				if got := c.accountAtLocked(pk, v).lamports; got != want[i] {
					t.Errorf("step %d %s view (slot %d): key %d has %d, want %d", step, cm, v, i, got, want[i])
				}
			}
		}
		if n := len(c.touched); n > c.cfg.FinalizeDepth+1 {
			t.Errorf("history of %d slots kept, want at most %d", n, c.cfg.FinalizeDepth+1)
		}
		c.mu.Unlock()
		c.AdvanceSlots(1)
	}
}

func TestVersionedTransactions(t *testing.T) {
	e := newEnv(t, Config{})
	alice, bob := key("alice"), key("bob")
	e.fund(alice, sol)
	tx, err := solana.NewTransaction([]solana.Instruction{system.NewTransferInstruction(sol/2, alice.PublicKey(), bob.PublicKey()).Build()},
		e.blockhash(), solana.TransactionPayer(alice.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	tx.Message.SetVersion(solana.MessageVersionV0)
	if _, err := tx.Sign(func(solana.PublicKey) *solana.PrivateKey { return &alice }); err != nil {
		t.Fatal(err)
	}
	sig := e.mustSend(tx)
	e.chain.AdvanceSlots(32)
	_, err = e.client.GetTransaction(ctxT(t), sig, nil)
	if re := rpcErr(t, err); re.Code != codeUnsupportedTxVersion {
		t.Errorf("v0 without maxSupportedTransactionVersion: code %d", re.Code)
	}
	v0 := uint64(0)
	res, err := e.client.GetTransaction(ctxT(t), sig, &rpc.GetTransactionOpts{MaxSupportedTransactionVersion: &v0, Encoding: solana.EncodingBase64})
	if err != nil || res.Version != 0 {
		t.Fatalf("v0 getTransaction = %+v, %v", res, err)
	}
	if got, err := res.Transaction.GetTransaction(); err != nil || !got.Message.IsVersioned() || got.Signatures[0] != sig {
		t.Errorf("decoded v0 = %v, %v", got, err)
	}

	// A lookup table that does not exist.
	tx2, _ := solana.NewTransaction([]solana.Instruction{system.NewTransferInstruction(1, alice.PublicKey(), bob.PublicKey()).Build()},
		e.blockhash(), solana.TransactionPayer(alice.PublicKey()))
	tx2.Message.AddAddressTableLookup(solana.MessageAddressTableLookup{AccountKey: key("table").PublicKey(), WritableIndexes: []uint8{0}})
	if _, err := tx2.Sign(func(solana.PublicKey) *solana.PrivateKey { return &alice }); err != nil {
		t.Fatal(err)
	}
	_, err = e.send(tx2, rpc.TransactionOpts{})
	if re := rpcErr(t, err); re.Code != codeInvalidParams || !strings.Contains(re.Message, "address table") {
		t.Errorf("lookup table: %d %s", re.Code, re.Message)
	}
}
