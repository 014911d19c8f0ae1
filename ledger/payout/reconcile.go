package payout

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
)

// Report is what Reconcile found. Differences lists every way the ledger
// and the chain disagree; anything else is information.
type Report struct {
	Payouts           int            `json:"payouts"`
	Finalized         int            `json:"finalized"` // paid, zero payouts included
	FinalizedLamports node3.Lamports `json:"finalized_lamports"`
	Skipped           int            `json:"skipped"` // zero payouts: finalized with no transaction
	Unpaid            int            `json:"unpaid"`  // pending, sent, confirmed or failed
	Parked            int            `json:"parked"`  // failed and not retried by themselves (see LastError)
	Txs               int            `json:"txs"`     // transactions recorded
	Landed            int            `json:"landed"`  // of which finalized on chain without error
	LandedFailed      int            `json:"landed_failed"`
	// OnChainLamports is what the landed transactions the ledger counts as
	// finalized transferred.
	OnChainLamports node3.Lamports `json:"on_chain_lamports"`
	Fees            node3.Lamports `json:"fees_lamports"` // charged for every landed transaction
	Differences     []string       `json:"differences,omitempty"`
}

// OK reports whether the ledger and the chain agree.
func (r Report) OK() bool { return len(r.Differences) == 0 }

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d payouts: %d finalized (%s, %d with nothing to pay), %d unpaid (%d parked); "+
		"%d transactions: %d landed (%s transferred), %d failed on chain; fees %s",
		r.Payouts, r.Finalized, r.FinalizedLamports, r.Skipped, r.Unpaid, r.Parked,
		r.Txs, r.Landed, r.OnChainLamports, r.LandedFailed, r.Fees)
	if r.OK() {
		b.WriteString("; ledger and chain agree")
	} else {
		fmt.Fprintf(&b, "; %d differences:", len(r.Differences))
		for _, d := range r.Differences {
			b.WriteString("\n  - " + d)
		}
	}
	return b.String()
}

func (r *Report) diff(format string, args ...any) {
	r.Differences = append(r.Differences, fmt.Sprintf(format, args...))
}

// Reconcile checks the ledger against the chain: every recorded payout
// transaction is looked up at finalized commitment; each one that landed
// must be the recorded bytes, paid by payer, and transfer exactly the
// recorded sum to each recipient; every finalized payout must be paid by
// exactly one landed transaction (its own), and no payout by more than
// one; a transaction recorded as expired or failed must not have landed
// with success; totals and the ledger's per-state counters must match the
// records; every completed job must have its payout, of its reward.
//
// It returns an error only when it cannot do the check (ledger or RPC
// errors); differences are in the Report. Run it when the engine is idle
// to avoid reports of transactions it has not caught up with yet (they
// show as unpaid, not as differences, while in flight).
func Reconcile(ctx context.Context, led *ledger.Ledger, client RPC, payer solana.PublicKey) (Report, error) {
	var r Report
	txs, err := led.PayoutTxs(ctx)
	if err != nil {
		return r, err
	}
	payouts, err := led.PayoutRecords(ctx, "", 0, true)
	if err != nil {
		return r, err
	}
	totals, err := led.PayoutTotals(ctx)
	if err != nil {
		return r, err
	}
	completed, err := led.Jobs(ctx, ledger.JobFilter{Status: node3.StatusCompleted, Limit: math.MaxInt32, Oldest: true})
	if err != nil {
		return r, err
	}

	r.Txs = len(txs)
	paidBy := make(map[string][]string) // job → landed transactions paying it
	for _, tx := range txs {
		sig, err := solana.SignatureFromBase58(tx.Signature)
		if err != nil {
			r.diff("transaction record %q: not a signature", tx.Signature)
			continue
		}
		res, err := client.GetTransaction(ctx, sig, &rpc.GetTransactionOpts{
			Encoding:   solana.EncodingBase64,
			Commitment: rpc.CommitmentFinalized,
		})
		if errors.Is(err, rpc.ErrNotFound) {
			if tx.Status == ledger.TxFinalized || tx.Status == ledger.TxFailed {
				r.diff("transaction %s is %s in the ledger but not on chain", tx.Signature, tx.Status)
			}
			continue
		}
		if err != nil {
			return r, fmt.Errorf("reconcile: look up transaction %s: %s", tx.Signature, rpcErrorText(err))
		}
		if res.Transaction == nil || res.Meta == nil {
			r.diff("transaction %s: the node returned it without its body or meta", tx.Signature)
			continue
		}
		r.Fees += node3.Lamports(res.Meta.Fee)
		raw := res.Transaction.GetBinary()
		if !bytes.Equal(raw, tx.Raw) {
			r.diff("transaction %s: the bytes on chain are not the bytes recorded", tx.Signature)
		}
		onChain, err := solana.TransactionFromBytes(raw)
		if err != nil {
			r.diff("transaction %s: cannot decode it from the chain: %v", tx.Signature, err)
			continue
		}
		if keys := onChain.Message.AccountKeys; len(keys) == 0 || keys[0] != payer {
			r.diff("transaction %s is not paid by the marketplace wallet %s", tx.Signature, payer)
		}
		if res.Meta.Err != nil {
			r.LandedFailed++
			if tx.Status == ledger.TxFinalized || tx.Status == ledger.TxExpired {
				r.diff("transaction %s is %s in the ledger but failed on chain: %s", tx.Signature, tx.Status, txErrText(res.Meta.Err))
			}
			continue
		}
		r.Landed++
		if tx.Status == ledger.TxExpired || tx.Status == ledger.TxFailed {
			r.diff("transaction %s is %s in the ledger but landed on chain at slot %d", tx.Signature, tx.Status, res.Slot)
		}
		got, bad := transfers(onChain, payer)
		for _, b := range bad {
			r.diff("transaction %s: %s", tx.Signature, b)
		}
		want := make(map[string]node3.Lamports)
		for _, p := range tx.Payouts {
			want[p.Wallet] += p.Amount
			paidBy[p.JobID] = append(paidBy[p.JobID], tx.Signature)
		}
		var sum node3.Lamports
		for w, amt := range got {
			sum += amt
			if want[w] != amt {
				r.diff("transaction %s transfers %d lamports to %s; the ledger says %d", tx.Signature, amt, w, want[w])
			}
		}
		for w, amt := range want {
			if _, ok := got[w]; !ok {
				r.diff("transaction %s transfers nothing to %s; the ledger says %d", tx.Signature, w, amt)
			}
		}
		if tx.Status == ledger.TxFinalized {
			r.OnChainLamports += sum
		}
	}

	byJob := make(map[string]ledger.PayoutRecord, len(payouts))
	counted := make(map[node3.PayoutStatus]ledger.PayoutTotal)
	r.Payouts = len(payouts)
	for _, p := range payouts {
		byJob[p.JobID] = p
		c := counted[p.Status]
		c.Count++
		c.Sum += p.Amount
		counted[p.Status] = c
		sigs := paidBy[p.JobID]
		if len(sigs) > 1 {
			r.diff("job %s is paid by %d landed transactions: %s", p.JobID, len(sigs), strings.Join(sigs, ", "))
		}
		switch p.Status {
		case node3.PayoutFinalized:
			r.Finalized++
			r.FinalizedLamports += p.Amount
			switch {
			case p.Amount == 0:
				r.Skipped++
				if len(sigs) > 0 {
					r.diff("job %s has nothing to pay but transaction %s pays it", p.JobID, sigs[0])
				}
			case len(sigs) == 0:
				r.diff("job %s is finalized (transaction %s) but no landed transaction pays it", p.JobID, p.Signature)
			case sigs[0] != p.Signature:
				r.diff("job %s is finalized in transaction %s but paid by %s", p.JobID, p.Signature, sigs[0])
			}
		case node3.PayoutSent, node3.PayoutConfirmed:
			r.Unpaid++
			if len(sigs) > 0 && sigs[0] != p.Signature {
				r.diff("job %s is %s in transaction %s but paid by %s", p.JobID, p.Status, p.Signature, sigs[0])
			}
		default:
			r.Unpaid++
			if p.Parked {
				r.Parked++
			}
			if len(sigs) > 0 {
				r.diff("job %s is %s in the ledger but transaction %s paid it: it would be paid again", p.JobID, p.Status, sigs[0])
			}
		}
	}
	for job, sigs := range paidBy {
		if _, ok := byJob[job]; !ok {
			r.diff("transaction %s pays job %s, which has no payout record", sigs[0], job)
		}
	}
	if r.FinalizedLamports != r.OnChainLamports {
		r.diff("finalized payouts total %d lamports; their transactions transferred %d", r.FinalizedLamports, r.OnChainLamports)
	}
	for _, st := range ledger.PayoutStatuses {
		if totals[st] != counted[st] {
			r.diff("the ledger's %s counters say %d payouts, %d lamports; the records say %d, %d",
				st, totals[st].Count, totals[st].Sum, counted[st].Count, counted[st].Sum)
		}
	}
	for _, j := range completed {
		p, ok := byJob[j.ID]
		switch {
		case !ok:
			r.diff("completed job %s has no payout", j.ID)
		case p.Amount != j.Reward || p.AgentID != j.AgentID:
			r.diff("job %s rewards %d to agent %s; its payout is %d to %s", j.ID, j.Reward, j.AgentID, p.Amount, p.AgentID)
		}
	}
	sort.Strings(r.Differences)
	return r, nil
}

// transfers sums the System transfers from payer in tx by recipient, and
// lists anything else it does.
func transfers(tx *solana.Transaction, payer solana.PublicKey) (map[string]node3.Lamports, []string) {
	out := make(map[string]node3.Lamports)
	var bad []string
	keys := tx.Message.AccountKeys
	for i, ix := range tx.Message.Instructions {
		if int(ix.ProgramIDIndex) >= len(keys) || keys[ix.ProgramIDIndex] != solana.SystemProgramID {
			bad = append(bad, fmt.Sprintf("instruction %d is not a System Program instruction", i))
			continue
		}
		data := []byte(ix.Data)
		if len(data) != 12 || binary.LittleEndian.Uint32(data) != 2 || len(ix.Accounts) != 2 ||
			int(ix.Accounts[0]) >= len(keys) || int(ix.Accounts[1]) >= len(keys) {
			bad = append(bad, fmt.Sprintf("instruction %d is not a transfer", i))
			continue
		}
		if from := keys[ix.Accounts[0]]; from != payer {
			bad = append(bad, fmt.Sprintf("instruction %d transfers from %s, not the marketplace wallet", i, from))
			continue
		}
		out[keys[ix.Accounts[1]].String()] += node3.Lamports(binary.LittleEndian.Uint64(data[4:]))
	}
	return out, bad
}
