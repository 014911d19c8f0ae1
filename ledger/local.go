package ledger

import (
	"context"
	"encoding/json"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/node3/node3"
)

// A provider's own books: its settings, the jobs it ran, what it earned
// and the reports it still owes its coordinator.
//
// The history, the outbox and the earnings are lazy writes (see
// writeReq.lazy): a provider writes them for every job it runs, and an
// fsync each would make its disk, not its GPUs, the limit. A killed
// process loses none of them; a power loss may lose the last moments' —
// a report then never goes out, so the coordinator's lease lapses and the
// job runs again (the coordinator's ledger, which is durable, is what
// pays), and the local earnings view may miss a job the coordinator paid.
const (
	pSetting     = "s/" // s/<name> → value
	pHistory     = "h/" // h/<job id> → Job as this provider last knew it
	pOutbox      = "o/" // o/<job id> → Report not yet acknowledged
	pEarned      = "e/" // e/<job id>: its reward is counted in the earnings
	cEarned      = "c/local/earned"
	cEarnedDay   = "c/local/earned/day/" // + YYYY-MM-DD (UTC)
	cLocalDone   = "c/local/completed"
	cLocalFailed = "c/local/failed"
)

// SetSetting stores a named value (an API key, an agent id).
func (l *Ledger) SetSetting(ctx context.Context, name, value string) error {
	return l.update(ctx, func(w *writer) error {
		w.set(pSetting+name, []byte(value))
		return nil
	})
}

// Setting returns a named value, or "" when it is unset.
func (l *Ledger) Setting(ctx context.Context, name string) (string, error) {
	var out string
	err := l.view(func(txn *badger.Txn) error {
		b, _, err := txnGet(txn, pSetting+name)
		out = string(b)
		return err
	})
	return out, err
}

// RecordLocalJob stores (or updates) a job in the provider's history.
func (l *Ledger) RecordLocalJob(ctx context.Context, j node3.Job) error {
	return l.updateLazy(ctx, func(w *writer) error { return w.setJSON(pHistory+j.ID, j) })
}

// EnqueueReport stores a report in the outbox and the job, as the provider
// ran it, in its history: one atomic write, so a crash after it loses
// neither.
func (l *Ledger) EnqueueReport(ctx context.Context, j node3.Job, r node3.Report) error {
	return l.updateLazy(ctx, func(w *writer) error {
		if err := w.setJSON(pOutbox+r.JobID, r); err != nil {
			return err
		}
		return w.setJSON(pHistory+j.ID, j)
	})
}

// PendingReports lists the outbox, oldest job first.
func (l *Ledger) PendingReports(ctx context.Context, limit int) ([]node3.Report, error) {
	var out []node3.Report
	err := l.view(func(txn *badger.Txn) error {
		return scan(txn, pOutbox, false, true, func(_ string, v []byte) (bool, error) {
			var r node3.Report
			if err := json.Unmarshal(v, &r); err != nil {
				return false, err
			}
			out = append(out, r)
			return limit <= 0 || len(out) < limit, nil
		})
	})
	return out, err
}

// BumpReport records one more failed delivery attempt of a report.
func (l *Ledger) BumpReport(ctx context.Context, jobID string) error {
	return l.updateLazy(ctx, func(w *writer) error {
		var r node3.Report
		ok, err := w.getJSON(pOutbox+jobID, &r)
		if err != nil || !ok {
			return err
		}
		r.Attempts++
		return w.setJSON(pOutbox+jobID, r)
	})
}

// AckReport removes a delivered report and records the coordinator's
// answer: the job as it now stands. A job the coordinator booked as
// completed under this provider adds its reward to the earnings, once.
func (l *Ledger) AckReport(ctx context.Context, jobID string, coord *node3.Job, self string, now time.Time) error {
	return l.updateLazy(ctx, func(w *writer) error {
		if _, ok, err := w.get(pOutbox + jobID); err != nil || !ok {
			return err // already acknowledged
		}
		w.del(pOutbox + jobID)
		var local node3.Job
		if _, err := w.getJSON(pHistory+jobID, &local); err != nil {
			return err
		}
		if coord != nil {
			local = *coord
		}
		if err := w.setJSON(pHistory+jobID, local); err != nil {
			return err
		}
		switch {
		case coord == nil:
		case coord.Status == node3.StatusCompleted && coord.AgentID == self:
			if _, booked, err := w.get(pEarned + jobID); err != nil || booked {
				return err
			}
			w.set(pEarned+jobID, nil)
			if err := w.add(cLocalDone, 1); err != nil {
				return err
			}
			if err := w.add(cEarned, int64(coord.Reward)); err != nil {
				return err
			}
			return w.add(cEarnedDay+now.UTC().Format(time.DateOnly), int64(coord.Reward))
		case coord.Status == node3.StatusFailed:
			return w.add(cLocalFailed, 1)
		}
		return nil
	})
}

// LocalJobs lists the provider's history, newest first.
func (l *Ledger) LocalJobs(ctx context.Context, limit int) ([]node3.Job, error) {
	if limit <= 0 {
		limit = 50
	}
	var out []node3.Job
	err := l.view(func(txn *badger.Txn) error {
		return scan(txn, pHistory, true, true, func(_ string, v []byte) (bool, error) {
			var j node3.Job
			if err := json.Unmarshal(v, &j); err != nil {
				return false, err
			}
			out = append(out, j)
			return len(out) < limit, nil
		})
	})
	return out, err
}

// Earnings returns the provider's totals; "today" is the UTC day of now.
func (l *Ledger) Earnings(ctx context.Context, now time.Time) (node3.Earnings, error) {
	var e node3.Earnings
	err := l.view(func(txn *badger.Txn) error {
		vals := []*int64{new(int64), new(int64), &e.Completed, &e.Failed}
		for i, k := range []string{cEarned, cEarnedDay + now.UTC().Format(time.DateOnly), cLocalDone, cLocalFailed} {
			v, err := counterValue(txn, k)
			if err != nil {
				return err
			}
			*vals[i] = v
		}
		e.Total, e.Today = node3.Lamports(*vals[0]), node3.Lamports(*vals[1])
		return nil
	})
	return e, err
}
