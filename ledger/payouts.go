package ledger

import (
	"context"
	"encoding/json"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/node3/node3"
)

const (
	pPayout         = "p/"  // p/<job id> → Payout
	pPayoutByStatus = "ip/" // ip/<status>/<job id>
	cPayoutCount    = "c/payouts/count/"
	cPayoutSum      = "c/payouts/sum/"
)

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
