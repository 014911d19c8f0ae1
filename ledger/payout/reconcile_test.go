package payout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/localchain"
)

// TestReconcileFindsDifferences builds the books of a broken engine by
// hand — a payment recorded as expired that landed and was paid again,
// bytes that transfer more than recorded, a transaction recorded as
// finalized that never went out — and checks that Reconcile names each.
func TestReconcileFindsDifferences(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: -1, FinalizeDepth: 2})
	ctx := context.Background()
	e.fund(10 * sol)
	ps := e.providers(1)
	to := ps[0].addr()
	e.chain.AdvanceSlots(3)
	var jobs []node3.Job
	for range 3 {
		jobs = append(jobs, complete(t, e.led, ps[0].agent, sol))
	}
	// record signs a transfer of amount to the provider for job and
	// records it as paying the job's payout.
	record := func(job node3.Job, amount node3.Lamports) ledger.PayoutTx {
		t.Helper()
		bh, lv := e.chain.LatestBlockhash()
		tx, err := solana.NewTransaction([]solana.Instruction{system.NewTransferInstruction(uint64(amount), e.payer.Address(), to).Build()},
			bh, solana.TransactionPayer(e.payer.Address()))
		if err != nil {
			t.Fatal(err)
		}
		key := e.payer.PrivateKey()
		if _, err := tx.Sign(func(solana.PublicKey) *solana.PrivateKey { return &key }); err != nil {
			t.Fatal(err)
		}
		raw, _ := tx.MarshalBinary()
		rec, err := e.led.RecordPayoutTx(ctx, ledger.PayoutTx{
			Signature: tx.Signatures[0].String(), Raw: raw, Blockhash: bh.String(), LastValidBlockHeight: lv,
			Payer: e.payer.Address().String(), Fee: LamportsPerSignature, CreatedAt: time.Now(),
			Payouts: []ledger.TxPayout{{JobID: job.ID, Wallet: to.String(), Amount: job.Reward}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	send := func(rec ledger.PayoutTx) {
		t.Helper()
		tx, _ := solana.TransactionFromBytes(rec.Raw)
		if _, err := e.client.SendTransactionWithOpts(ctx, tx, rpcSkipPreflight); err != nil {
			t.Fatal(err)
		}
		e.chain.AdvanceSlots(1)
	}
	apply := func(rec ledger.PayoutTx, ev ledger.PayoutEvent) {
		t.Helper()
		ev.Now = time.Now()
		if _, err := e.led.ApplyPayoutTx(ctx, rec.Signature, ev); err != nil {
			t.Fatal(err)
		}
	}
	final := ledger.PayoutEvent{Kind: ledger.PayLanded, Level: ledger.Finalized}

	// Job 0: A lands, but the books say it expired; B pays the job again.
	a := record(jobs[0], jobs[0].Reward)
	send(a)
	apply(a, ledger.PayoutEvent{Kind: ledger.PayExpired})
	b := record(jobs[0], jobs[0].Reward)
	send(b)
	apply(b, final)
	// Job 1: the bytes transfer one lamport more than the books say.
	c := record(jobs[1], jobs[1].Reward+1)
	send(c)
	apply(c, final)
	// Job 2: finalized in the books, never sent.
	d := record(jobs[2], jobs[2].Reward)
	apply(d, final)
	e.chain.AdvanceSlots(5)

	r, err := Reconcile(ctx, e.led, e.client, e.payer.Address())
	if err != nil {
		t.Fatal(err)
	}
	text := r.String()
	for _, want := range []string{
		"transaction " + a.Signature + " is expired in the ledger but landed on chain",
		"job " + jobs[0].ID + " is paid by 2 landed transactions",
		"transaction " + c.Signature + " transfers 1000000001 lamports to " + to.String() + "; the ledger says 1000000000",
		"transaction " + d.Signature + " is finalized in the ledger but not on chain",
		"job " + jobs[2].ID + " is finalized (transaction " + d.Signature + ") but no landed transaction pays it",
		"finalized payouts total 3000000000 lamports; their transactions transferred 2000000001",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report does not say %q:\n%s", want, text)
		}
	}
	if r.OK() || r.Landed != 3 || r.Txs != 4 {
		t.Fatalf("report %s", text)
	}
}
