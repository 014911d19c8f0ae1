package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/node3/node3"
)

const (
	pPayout         = "p/"   // p/<job id> → PayoutRecord (a node3.Payout plus bookkeeping)
	pPayoutByStatus = "ip/"  // ip/<status>/<job id>
	pPayoutTx       = "pt/"  // pt/<signature> → PayoutTx
	pPayoutTxLive   = "ipt/" // ipt/<created, unix ns, 20 digits>/<signature>: transactions in flight
	cPayoutCount    = "c/payouts/count/"
	cPayoutSum      = "c/payouts/sum/"
)

// PayoutStatuses lists every payout state.
var PayoutStatuses = []node3.PayoutStatus{
	node3.PayoutPending, node3.PayoutSent, node3.PayoutConfirmed, node3.PayoutFinalized, node3.PayoutFailed,
}

// addPayout records the pending payout of a completed job, once.
func addPayout(w *writer, j node3.Job, wallet string) error {
	key := pPayout + j.ID
	if _, ok, err := w.get(key); err != nil || ok {
		return err // already booked: never two payouts for one job
	}
	p := node3.Payout{
		JobID:     j.ID,
		AgentID:   j.AgentID,
		Wallet:    wallet,
		Amount:    j.Reward,
		Status:    node3.PayoutPending,
		CreatedAt: j.FinishedAt,
		UpdatedAt: j.FinishedAt,
	}
	w.set(pPayoutByStatus+string(p.Status)+"/"+p.JobID, nil)
	if err := w.add(cPayoutCount+string(p.Status), 1); err != nil {
		return err
	}
	if err := w.add(cPayoutSum+string(p.Status), int64(p.Amount)); err != nil {
		return err
	}
	return w.setJSON(key, p)
}

// Payout returns the payout of a job.
func (l *Ledger) Payout(ctx context.Context, jobID string) (node3.Payout, error) {
	var p node3.Payout
	err := l.view(func(txn *badger.Txn) error {
		ok, err := txnGetJSON(txn, pPayout+jobID, &p)
		if err == nil && !ok {
			err = node3.Errorf(node3.CodeNotFound, "no payout for job %q", truncate(jobID, 64))
		}
		return err
	})
	return p, err
}

// Payouts lists payouts, newest job first; status "" lists all.
func (l *Ledger) Payouts(ctx context.Context, status node3.PayoutStatus, limit int) ([]node3.Payout, error) {
	if limit <= 0 {
		limit = 50
	}
	var out []node3.Payout
	err := l.view(func(txn *badger.Txn) error {
		add := func(v []byte) (bool, error) {
			var p node3.Payout
			if err := json.Unmarshal(v, &p); err != nil {
				return false, err
			}
			out = append(out, p)
			return len(out) < limit, nil
		}
		if status == "" {
			return scan(txn, pPayout, true, true, func(_ string, v []byte) (bool, error) { return add(v) })
		}
		prefix := pPayoutByStatus + string(status) + "/"
		return scan(txn, prefix, true, false, func(key string, _ []byte) (bool, error) {
			v, ok, err := txnGet(txn, pPayout+key[len(prefix):])
			if err != nil || !ok {
				return err == nil, err
			}
			return add(v)
		})
	})
	return out, err
}

func payoutTxKey(sig string) string { return pPayoutTx + sig }

func payoutTxLiveKey(tx PayoutTx) string { return tsKey(pPayoutTxLive, tx.CreatedAt, tx.Signature) }

// putPayout stages a payout record and the index and counter changes from
// old to p (the same payout before the change).
func putPayout(w *writer, old, p PayoutRecord) error {
	if old.Status != p.Status {
		w.del(pPayoutByStatus + string(old.Status) + "/" + old.JobID)
		w.set(pPayoutByStatus+string(p.Status)+"/"+p.JobID, nil)
		for _, c := range []struct {
			st   node3.PayoutStatus
			sign int64
		}{{old.Status, -1}, {p.Status, 1}} {
			if err := w.add(cPayoutCount+string(c.st), c.sign); err != nil {
				return err
			}
			if err := w.add(cPayoutSum+string(c.st), c.sign*int64(p.Amount)); err != nil {
				return err
			}
			if c.st == node3.PayoutFinalized {
				if err := w.add(cAgentPaid+p.AgentID, c.sign*int64(p.Amount)); err != nil {
					return err
				}
			}
		}
	}
	return w.setJSON(pPayout+p.JobID, p)
}

func getPayout(w *writer, jobID string) (PayoutRecord, error) {
	var p PayoutRecord
	ok, err := w.getJSON(pPayout+jobID, &p)
	if err == nil && !ok {
		err = node3.Errorf(node3.CodeNotFound, "no payout for job %q", truncate(jobID, 64))
	}
	return p, err
}

// PayoutRecord returns the payout of a job with the engine's bookkeeping.
func (l *Ledger) PayoutRecord(ctx context.Context, jobID string) (PayoutRecord, error) {
	var p PayoutRecord
	err := l.view(func(txn *badger.Txn) error {
		ok, err := txnGetJSON(txn, pPayout+jobID, &p)
		if err == nil && !ok {
			err = node3.Errorf(node3.CodeNotFound, "no payout for job %q", truncate(jobID, 64))
		}
		return err
	})
	return p, err
}

// PayoutRecords lists payouts with their bookkeeping, newest job first
// (oldest first if oldest); status "" lists all. limit ≤ 0 means no limit.
func (l *Ledger) PayoutRecords(ctx context.Context, status node3.PayoutStatus, limit int, oldest bool) ([]PayoutRecord, error) {
	var out []PayoutRecord
	err := l.view(func(txn *badger.Txn) error {
		add := func(v []byte) (bool, error) {
			var p PayoutRecord
			if err := jsonUnmarshal(v, &p); err != nil {
				return false, err
			}
			out = append(out, p)
			return limit <= 0 || len(out) < limit, nil
		}
		if status == "" {
			return scan(txn, pPayout, !oldest, true, func(_ string, v []byte) (bool, error) { return add(v) })
		}
		prefix := pPayoutByStatus + string(status) + "/"
		return scan(txn, prefix, !oldest, false, func(key string, _ []byte) (bool, error) {
			v, ok, err := txnGet(txn, pPayout+key[len(prefix):])
			if err != nil || !ok {
				return err == nil, err
			}
			return add(v)
		})
	})
	return out, err
}

// PendingPayouts lists up to limit pending payouts, oldest job first: what
// the payout engine should sign next.
func (l *Ledger) PendingPayouts(ctx context.Context, limit int) ([]PayoutRecord, error) {
	if limit <= 0 {
		limit = 1000
	}
	return l.PayoutRecords(ctx, node3.PayoutPending, limit, true)
}

// ApplyPayoutEvent applies an event that concerns one payout and no
// transaction (PaySkip, PayPark, PayRetry) in one atomic write and
// returns the payout after it.
func (l *Ledger) ApplyPayoutEvent(ctx context.Context, jobID string, ev PayoutEvent) (PayoutRecord, error) {
	switch ev.Kind {
	case PaySkip, PayPark, PayRetry:
	default:
		return PayoutRecord{}, node3.Errorf(node3.CodeInvalid, "%s concerns a transaction: use ApplyPayoutTx", ev.Kind)
	}
	var out PayoutRecord
	err := l.update(ctx, func(w *writer) error {
		p, err := getPayout(w, jobID)
		if err != nil {
			return err
		}
		np, changed, err := ApplyPayout(p, ev)
		out = np
		if err != nil || !changed {
			return err
		}
		return putPayout(w, p, np)
	})
	return out, err
}

// RetryFailedPayouts moves up to limit failed payouts whose backoff is
// over (RetryAt ≤ now, not parked) back to pending. It returns how many it
// moved and the earliest RetryAt still ahead (zero if none).
func (l *Ledger) RetryFailedPayouts(ctx context.Context, now time.Time, limit int) (int, time.Time, error) {
	if limit <= 0 {
		limit = 1000
	}
	failed, err := l.PayoutRecords(ctx, node3.PayoutFailed, 0, true)
	if err != nil {
		return 0, time.Time{}, err
	}
	var due []string
	var next time.Time
	for _, p := range failed {
		switch {
		case p.Parked:
		case !now.Before(p.RetryAt):
			if len(due) < limit {
				due = append(due, p.JobID)
			}
		case next.IsZero() || p.RetryAt.Before(next):
			next = p.RetryAt
		}
	}
	if len(due) == 0 {
		return 0, next, nil
	}
	moved := 0
	err = l.update(ctx, func(w *writer) error {
		moved = 0
		for _, id := range due {
			p, err := getPayout(w, id)
			if err != nil {
				return err
			}
			np, changed, err := ApplyPayout(p, PayoutEvent{Kind: PayRetry, Now: now})
			if err != nil || !changed {
				continue // changed meanwhile: not ours to move
			}
			if err := putPayout(w, p, np); err != nil {
				return err
			}
			moved++
		}
		return nil
	})
	return moved, next, err
}

func checkNewTx(tx *PayoutTx) error {
	switch {
	case tx.Signature == "":
		return node3.Errorf(node3.CodeInvalid, "payout transaction has no signature")
	case len(tx.Raw) == 0:
		return node3.Errorf(node3.CodeInvalid, "payout transaction %s has no signed bytes", tx.Signature)
	case len(tx.Payouts) == 0:
		return node3.Errorf(node3.CodeInvalid, "payout transaction %s pays nothing", tx.Signature)
	case tx.CreatedAt.IsZero():
		return node3.Errorf(node3.CodeInvalid, "payout transaction %s has no creation time", tx.Signature)
	}
	seen := make(map[string]bool, len(tx.Payouts))
	var total node3.Lamports
	for _, p := range tx.Payouts {
		if seen[p.JobID] {
			return node3.Errorf(node3.CodeInvalid, "payout transaction %s pays job %s twice", tx.Signature, p.JobID)
		}
		seen[p.JobID] = true
		if p.Amount == 0 {
			return node3.Errorf(node3.CodeInvalid, "payout transaction %s pays job %s nothing", tx.Signature, p.JobID)
		}
		if total+p.Amount < total {
			return node3.Errorf(node3.CodeInvalid, "payout transaction %s: total overflows", tx.Signature)
		}
		total += p.Amount
	}
	if tx.Total != 0 && tx.Total != total {
		return node3.Errorf(node3.CodeInvalid, "payout transaction %s: total %d, payouts sum to %d", tx.Signature, tx.Total, total)
	}
	tx.Total = total
	return nil
}

// RecordPayoutTx persists a signed payout transaction and moves each of
// its payouts from pending to sent, in one atomic, durable write: once it
// returns nil the transaction may be sent, and after a crash it is found
// by InFlightPayoutTxs. Every payout must exist, be pending, and match the
// transaction's wallet and amount; otherwise nothing is written. A
// signature that is already recorded — even for the same bytes — is a
// CodeConflict error: identical transfers signed against the same
// blockhash are one transaction, and must wait for the next blockhash.
func (l *Ledger) RecordPayoutTx(ctx context.Context, tx PayoutTx) (PayoutTx, error) {
	if err := checkNewTx(&tx); err != nil {
		return PayoutTx{}, err
	}
	tx.Status = TxSigned
	tx.UpdatedAt = tx.CreatedAt
	var out PayoutTx
	err := l.update(ctx, func(w *writer) error {
		var old PayoutTx
		ok, err := w.getJSON(payoutTxKey(tx.Signature), &old)
		if err != nil {
			return err
		}
		if ok {
			// Even the very same bytes: a transaction is recorded once, so
			// that one abandoned as unsendable is never revived by a
			// re-signing that happens to produce it again.
			return node3.Errorf(node3.CodeConflict, "transaction %s is already recorded (%s)", tx.Signature, old.Status)
		}
		rec := tx
		rec.Attempt = 0
		for _, tp := range tx.Payouts {
			p, err := getPayout(w, tp.JobID)
			if err != nil {
				return err
			}
			if p.Wallet != tp.Wallet || p.Amount != tp.Amount {
				return node3.Errorf(node3.CodeInvalid, "transaction %s pays job %s %d lamports to %s; the payout is %d to %s",
					tx.Signature, tp.JobID, tp.Amount, tp.Wallet, p.Amount, p.Wallet)
			}
			np, changed, err := ApplyPayout(p, PayoutEvent{Kind: PaySign, Sig: tx.Signature, Now: tx.CreatedAt})
			if err != nil {
				return err
			}
			if !changed {
				return node3.Errorf(node3.CodeConflict, "payout of job %s is already in transaction %s", tp.JobID, tx.Signature)
			}
			if err := putPayout(w, p, np); err != nil {
				return err
			}
			rec.Attempt = max(rec.Attempt, np.Attempts)
		}
		w.set(payoutTxLiveKey(rec), nil)
		out = rec
		return w.setJSON(payoutTxKey(rec.Signature), rec)
	})
	if err != nil {
		return PayoutTx{}, err
	}
	return out, nil
}

// ApplyPayoutTx applies ev (PaySent, PayLanded, PayLandedError, PayExpired)
// to the transaction sig and every payout in it, in one atomic write that
// keeps the per-status counters exact, and returns the transaction after
// it. An event that does not change the transaction changes nothing.
func (l *Ledger) ApplyPayoutTx(ctx context.Context, sig string, ev PayoutEvent) (PayoutTx, error) {
	switch ev.Kind {
	case PaySent, PayLanded, PayLandedError, PayExpired:
	default:
		return PayoutTx{}, node3.Errorf(node3.CodeInvalid, "%s does not apply to a recorded transaction", ev.Kind)
	}
	ev.Sig = sig
	var out PayoutTx
	err := l.update(ctx, func(w *writer) error {
		var tx PayoutTx
		ok, err := w.getJSON(payoutTxKey(sig), &tx)
		if err != nil {
			return err
		}
		if !ok {
			return node3.Errorf(node3.CodeNotFound, "no payout transaction %q", truncate(sig, 100))
		}
		ntx, changed, err := ApplyTx(tx, ev)
		out = ntx
		if err != nil || !changed {
			return err
		}
		if ev.Kind != PaySent {
			for _, tp := range tx.Payouts {
				p, err := getPayout(w, tp.JobID)
				if err != nil {
					return err
				}
				np, changed, err := ApplyPayout(p, ev)
				if err != nil {
					return fmt.Errorf("transaction %s %s: %w", sig, ev.Kind, err)
				}
				if changed {
					if err := putPayout(w, p, np); err != nil {
						return err
					}
				}
			}
		}
		if !ntx.Status.InFlight() {
			w.del(payoutTxLiveKey(ntx))
		}
		return w.setJSON(payoutTxKey(sig), ntx)
	})
	return out, err
}

// PayoutTx returns the payout transaction with the given signature.
func (l *Ledger) PayoutTx(ctx context.Context, sig string) (PayoutTx, error) {
	var tx PayoutTx
	err := l.view(func(txn *badger.Txn) error {
		ok, err := txnGetJSON(txn, payoutTxKey(sig), &tx)
		if err == nil && !ok {
			err = node3.Errorf(node3.CodeNotFound, "no payout transaction %q", truncate(sig, 100))
		}
		return err
	})
	return tx, err
}

// InFlightPayoutTxs lists the transactions not yet finalized, failed or
// expired, oldest first: what a restarted payout engine must look up.
func (l *Ledger) InFlightPayoutTxs(ctx context.Context) ([]PayoutTx, error) {
	var out []PayoutTx
	err := l.view(func(txn *badger.Txn) error {
		return scan(txn, pPayoutTxLive, false, false, func(key string, _ []byte) (bool, error) {
			var tx PayoutTx
			ok, err := txnGetJSON(txn, payoutTxKey(key[strings.LastIndexByte(key, '/')+1:]), &tx)
			if err != nil {
				return false, err
			}
			if ok {
				out = append(out, tx)
			}
			return true, nil
		})
	})
	return out, err
}

// PayoutTxs lists every payout transaction ever recorded, in signature
// order, for reconciliation.
func (l *Ledger) PayoutTxs(ctx context.Context) ([]PayoutTx, error) {
	var out []PayoutTx
	err := l.view(func(txn *badger.Txn) error {
		return scan(txn, pPayoutTx, false, true, func(_ string, v []byte) (bool, error) {
			var tx PayoutTx
			if err := jsonUnmarshal(v, &tx); err != nil {
				return false, err
			}
			out = append(out, tx)
			return true, nil
		})
	})
	return out, err
}

// PayoutTotal is how many payouts are in one state and what they sum to.
type PayoutTotal struct {
	Count int64          `json:"count"`
	Sum   node3.Lamports `json:"sum_lamports"`
}

// PayoutTotals returns the payout counters for every state.
func (l *Ledger) PayoutTotals(ctx context.Context) (map[node3.PayoutStatus]PayoutTotal, error) {
	out := make(map[node3.PayoutStatus]PayoutTotal, len(PayoutStatuses))
	err := l.view(func(txn *badger.Txn) error {
		for _, st := range PayoutStatuses {
			n, err := counterValue(txn, cPayoutCount+string(st))
			if err != nil {
				return err
			}
			s, err := counterValue(txn, cPayoutSum+string(st))
			if err != nil {
				return err
			}
			out[st] = PayoutTotal{Count: n, Sum: node3.Lamports(s)}
		}
		return nil
	})
	return out, err
}
