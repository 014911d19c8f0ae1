package ledger

import (
	"context"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"

	"github.com/node3/node3"
)

// Key layout. Every key starts with a short prefix naming its family.
const (
	pJob        = "j/"  // j/<id> → Job
	pByStatus   = "is/" // is/<status>/<id>
	pLease      = "il/" // il/<lease expiry, unix ns, 20 digits>/<id>
	pExpiry     = "ie/" // ie/<expiry, unix ns>/<id> for available jobs
	pCounter    = "c/"  // c/<name> → int64 big-endian
	cJobsTotal  = "c/jobs/total"
	cJobsPrefix = "c/jobs/status/"
	cRewards    = "c/rewards/completed"
)

func jobKey(id string) string { return pJob + id }

func tsKey(prefix string, t time.Time, id string) string {
	return fmt.Sprintf("%s%020d/%s", prefix, t.UnixNano(), id)
}

// indexKeys lists the index entries a job in its current state owns.
func indexKeys(j node3.Job) []string {
	keys := []string{pByStatus + string(j.Status) + "/" + j.ID}
	if j.Status.Leased() {
		keys = append(keys, tsKey(pLease, j.LeaseExpiresAt, j.ID))
	}
	if j.Status == node3.StatusAvailable {
		keys = append(keys, tsKey(pExpiry, j.ExpiresAt, j.ID))
	}
	return keys
}

// putJob stages a job and the index and counter changes from old (nil for
// a new job) to j.
func putJob(w *writer, old *node3.Job, j node3.Job) error {
	var oldKeys []string
	if old != nil {
		oldKeys = indexKeys(*old)
	}
	newKeys := indexKeys(j)
	for _, k := range oldKeys {
		if !contains(newKeys, k) {
			w.del(k)
		}
	}
	for _, k := range newKeys {
		if !contains(oldKeys, k) {
			w.set(k, nil)
		}
	}
	if old == nil {
		if err := w.add(cJobsTotal, 1); err != nil {
			return err
		}
	} else if old.Status != j.Status {
		if err := w.add(cJobsPrefix+string(old.Status), -1); err != nil {
			return err
		}
	}
	if old == nil || old.Status != j.Status {
		if err := w.add(cJobsPrefix+string(j.Status), 1); err != nil {
			return err
		}
	}
	w.jobs = append(w.jobs, j)
	return w.setJSON(jobKey(j.ID), j)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// NewJobID returns a new sortable job ID (a UUIDv7: creation order is key order).
func NewJobID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new job id: %w", err)
	}
	return id.String(), nil
}

// CreateJob validates spec (filling defaults) and puts a new available job
// on the board.
func (l *Ledger) CreateJob(ctx context.Context, spec node3.JobSpec, now time.Time) (node3.Job, error) {
	if err := spec.Normalize(); err != nil {
		return node3.Job{}, err
	}
	j, err := newJob(spec, now)
	if err != nil {
		return node3.Job{}, err
	}
	err = l.update(ctx, func(w *writer) error { return putJob(w, nil, j) })
	return j, err
}

// newJob makes an available job of a normalized spec.
func newJob(spec node3.JobSpec, now time.Time) (node3.Job, error) {
	id, err := NewJobID()
	if err != nil {
		return node3.Job{}, err
	}
	return node3.Job{
		ID:        id,
		JobSpec:   spec,
		Status:    node3.StatusAvailable,
		CreatedAt: now,
		UpdatedAt: now,
		ExpiresAt: now.Add(time.Duration(spec.TTLSecs) * time.Second),
	}, nil
}

// Job returns the job with the given id.
func (l *Ledger) Job(ctx context.Context, id string) (node3.Job, error) {
	var j node3.Job
	err := l.view(func(txn *badger.Txn) error {
		ok, err := txnGetJSON(txn, jobKey(id), &j)
		if err == nil && !ok {
			err = node3.Errorf(node3.CodeNotFound, "job %q not found", truncate(id, 64))
		}
		return err
	})
	return j, err
}

func truncate(s string, n int) string { return node3.Truncate(s, n) }

// Transition applies ev to the job with the given id in one atomic write
// and returns the job after it. A completed job gets its pending payout and
// its provider's counters in the same write.
func (l *Ledger) Transition(ctx context.Context, id string, ev Event) (node3.Job, error) {
	var out node3.Job
	err := l.update(ctx, func(w *writer) error {
		var err error
		out, _, err = transition(w, id, ev)
		return err
	})
	return out, err
}

func transition(w *writer, id string, ev Event) (node3.Job, bool, error) {
	var old node3.Job
	ok, err := w.getJSON(jobKey(id), &old)
	if err != nil {
		return node3.Job{}, false, err
	}
	if !ok {
		return node3.Job{}, false, node3.Errorf(node3.CodeNotFound, "job %q not found", truncate(id, 64))
	}
	j, changed, err := Apply(old, ev)
	if err != nil || !changed {
		return j, false, err
	}
	if err := putJob(w, &old, j); err != nil {
		return node3.Job{}, false, err
	}
	if old.Status != j.Status && j.Status.Terminal() && j.AgentID != "" {
		if err := settle(w, j); err != nil {
			return node3.Job{}, false, err
		}
	}
	return j, true, nil
}

// settle books a job that ended under a provider: its counters and, for a
// completed job, the one payout of its reward.
func settle(w *writer, j node3.Job) error {
	var a node3.Agent
	found, err := w.getJSON(agentKey(j.AgentID), &a)
	if err != nil {
		return err
	}
	switch j.Status {
	case node3.StatusCompleted:
		if err := w.add(cRewards, int64(j.Reward)); err != nil {
			return err
		}
		if found {
			a.JobsCompleted++
			a.Earned += j.Reward
		}
		to := a.WalletAddress
		if j.Wallet != "" {
			to = j.Wallet // named by the provider as it accepted this attempt
		}
		if err := addPayout(w, j, to); err != nil {
			return err
		}
	case node3.StatusFailed:
		if found {
			a.JobsFailed++
		}
	default:
		return nil
	}
	if found {
		return w.setJSON(agentKey(a.ID), a)
	}
	return nil
}

// Sweep applies a sweeper event (EvLeaseExpire or EvExpire) to every job
// whose deadline is at or before now, up to limit jobs, and returns the
// jobs it changed.
func (l *Ledger) Sweep(ctx context.Context, kind EventKind, now time.Time, limit int) ([]node3.Job, error) {
	prefix := pLease
	if kind == EvExpire {
		prefix = pExpiry
	} else if kind != EvLeaseExpire {
		return nil, node3.Errorf(node3.CodeInvalid, "sweep takes lease_expire or expire, not %q", kind)
	}
	var ids []string
	err := l.view(func(txn *badger.Txn) error {
		bound := tsKey(prefix, now, "")
		return scan(txn, prefix, false, false, func(key string, _ []byte) (bool, error) {
			if key > bound+"\xff" || len(ids) >= limit {
				return false, nil
			}
			ids = append(ids, key[strings.LastIndexByte(key, '/')+1:])
			return true, nil
		})
	})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	var changed []node3.Job
	err = l.update(ctx, func(w *writer) error {
		changed = changed[:0]
		for _, id := range ids {
			j, ok, err := transition(w, id, Event{Kind: kind, Now: now})
			if node3.ErrorCode(err) == node3.CodeNotFound {
				continue
			}
			if err != nil {
				return err
			}
			if ok {
				changed = append(changed, j)
			}
		}
		return nil
	})
	return changed, err
}

// JobFilter selects jobs for a listing.
type JobFilter struct {
	Status node3.JobStatus // empty: any
	Limit  int             // 0: 50
	Oldest bool            // oldest first instead of newest first
	Match  func(node3.Job) bool
}

// Jobs lists jobs, newest first unless f.Oldest.
func (l *Ledger) Jobs(ctx context.Context, f JobFilter) ([]node3.Job, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var out []node3.Job
	err := l.view(func(txn *badger.Txn) error {
		if f.Status == "" {
			return scan(txn, pJob, !f.Oldest, true, func(_ string, v []byte) (bool, error) {
				return appendMatch(&out, v, f)
			})
		}
		return scan(txn, pByStatus+string(f.Status)+"/", !f.Oldest, false, func(key string, _ []byte) (bool, error) {
			v, ok, err := txnGet(txn, jobKey(key[strings.LastIndexByte(key, '/')+1:]))
			if err != nil || !ok {
				return err == nil, err
			}
			return appendMatch(&out, v, f)
		})
	})
	return out, err
}

func appendMatch(out *[]node3.Job, v []byte, f JobFilter) (bool, error) {
	var j node3.Job
	if err := jsonUnmarshal(v, &j); err != nil {
		return false, err
	}
	if f.Match == nil || f.Match(j) {
		*out = append(*out, j)
	}
	return len(*out) < f.Limit, nil
}

// Stats returns the coordinator's counters.
func (l *Ledger) Stats(ctx context.Context) (node3.Stats, error) {
	s := node3.Stats{Jobs: make(map[node3.JobStatus]int64)}
	err := l.view(func(txn *badger.Txn) error {
		var err error
		if s.JobsTotal, err = counterValue(txn, cJobsTotal); err != nil {
			return err
		}
		for _, st := range node3.AllStatuses {
			if s.Jobs[st], err = counterValue(txn, cJobsPrefix+string(st)); err != nil {
				return err
			}
		}
		if s.Agents, err = counterValue(txn, cAgents); err != nil {
			return err
		}
		r, err := counterValue(txn, cRewards)
		s.RewardsCompleted = node3.Lamports(r)
		if err != nil {
			return err
		}
		for _, c := range []struct {
			status node3.PayoutStatus
			n      *int64
			sum    *node3.Lamports
		}{{node3.PayoutPending, &s.PayoutsPending, &s.PayoutsPendingSum}, {node3.PayoutFinalized, &s.PayoutsPaid, &s.PayoutsPaidSum}} {
			if *c.n, err = counterValue(txn, cPayoutCount+string(c.status)); err != nil {
				return err
			}
			v, err := counterValue(txn, cPayoutSum+string(c.status))
			if err != nil {
				return err
			}
			*c.sum = node3.Lamports(v)
		}
		for _, c := range []struct {
			n  *int64
			st []node3.PayoutStatus
		}{{&s.PayoutsInFlight, []node3.PayoutStatus{node3.PayoutSent, node3.PayoutConfirmed}}, {&s.PayoutsFailed, []node3.PayoutStatus{node3.PayoutFailed}}} {
			for _, st := range c.st {
				v, err := counterValue(txn, cPayoutCount+string(st))
				if err != nil {
					return err
				}
				*c.n += v
			}
		}
		return nil
	})
	return s, err
}
