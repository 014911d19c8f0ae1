package ledger

import (
	"time"

	"github.com/node3/node3"
)

// EventKind names what happens to a job.
type EventKind string

// Events of the job state machine.
const (
	EvAccept      EventKind = "accept"       // a provider takes an available job
	EvHeartbeat   EventKind = "heartbeat"    // the holder says it is running; extends the lease
	EvComplete    EventKind = "complete"     // the holder reports success
	EvFail        EventKind = "fail"         // the holder reports failure
	EvLeaseExpire EventKind = "lease_expire" // the sweeper found the lease lapsed
	EvCancel      EventKind = "cancel"       // the submitter or an admin withdraws it
	EvExpire      EventKind = "expire"       // the sweeper found nobody took it in time
	EvRelease     EventKind = "release"      // the holder gives back a grant it has not started (declined, never acked)
)

// Event is one input to the job state machine.
type Event struct {
	Kind      EventKind
	AgentID   string           // who acts (accept, heartbeat, complete, fail)
	Now       time.Time        // the caller's clock
	Lease     time.Duration    // accept, heartbeat: how long the lease runs from Now
	Result    *node3.JobResult // complete, fail (optional for fail)
	Reason    string           // fail, cancel
	Retryable bool             // fail: put the job back if attempts remain
	// Attempt is the attempt a heartbeat or report is for (the job's
	// Attempt when it was accepted); 0 means the current one, for callers
	// that do not say.
	Attempt int
	// Wallet (accept) is where this attempt's reward goes; empty: the
	// provider's registered wallet. The caller validates it.
	Wallet string
	// GPUs (accept) are the GPUs the accepting agent has: a job that
	// needs GPUs they do not meet is refused (CodeForbidden).
	GPUs []node3.GPU
	// Backoff (a retryable fail) keeps the failing provider from taking
	// the job again for this long, so others get it first and no provider
	// can spend every attempt; 0 bars nobody.
	Backoff time.Duration
}

// LeaseGrace is how far past a job's timeout its lease may run: room for
// setup before the job starts and for its last report. No heartbeat
// extends a lease beyond AcceptedAt + timeout + LeaseGrace, so a provider
// that keeps heartbeating a job that never ends loses it.
const LeaseGrace = 2 * time.Minute

// leaseCap is the latest a job's current lease may run to.
func leaseCap(j node3.Job) time.Time {
	return j.AcceptedAt.Add(time.Duration(j.TimeoutSecs)*time.Second + LeaseGrace)
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Apply is the job state machine. It returns the job after ev and whether
// anything changed. It does no I/O and reads no clock.
//
// Repeating an event that already took effect (the same provider accepting
// or completing again) returns the job unchanged and no error, so every
// call is safe to retry. An event the job's state does not allow, or one
// from a provider that does not hold the job, is a CodeConflict error.
//
// A lease is the whole of a provider's claim on a job: a heartbeat or a
// report counts only while the lease runs and only for the attempt it was
// granted for. Once the lease lapses — swept or not — the holder's
// heartbeat and its result are refused, and the job's next attempt starts
// with no result of the one before.
func Apply(j node3.Job, ev Event) (node3.Job, bool, error) {
	switch ev.Kind {
	case EvAccept:
		return accept(j, ev)
	case EvHeartbeat:
		return heartbeat(j, ev)
	case EvComplete:
		return complete(j, ev)
	case EvFail:
		return fail(j, ev)
	case EvLeaseExpire:
		return leaseExpire(j, ev)
	case EvCancel:
		return cancel(j, ev)
	case EvExpire:
		return expire(j, ev)
	case EvRelease:
		return release(j, ev)
	}
	return j, false, node3.Errorf(node3.CodeInvalid, "unknown event %q", ev.Kind)
}

func conflict(j node3.Job, ev Event) error {
	return node3.Errorf(node3.CodeConflict, "job %s is %s: cannot %s", j.ID, j.Status, ev.Kind)
}

func notHolder(j node3.Job, ev Event) error {
	return node3.Errorf(node3.CodeConflict, "job %s is held by another provider: cannot %s", j.ID, ev.Kind)
}

func accept(j node3.Job, ev Event) (node3.Job, bool, error) {
	if ev.AgentID == "" {
		return j, false, node3.Errorf(node3.CodeInvalid, "accept needs an agent")
	}
	switch {
	case j.Status.Leased() && j.AgentID == ev.AgentID:
		return j, false, nil // already ours: same answer
	case j.Status != node3.StatusAvailable:
		return j, false, conflict(j, ev)
	case !ev.Now.Before(j.ExpiresAt):
		return j, false, node3.Errorf(node3.CodeConflict, "job %s has expired", j.ID)
	case j.Attempt >= j.MaxAttempts:
		return j, false, node3.Errorf(node3.CodeConflict, "job %s has used all %d attempts", j.ID, j.MaxAttempts)
	case !j.Requirements.MatchedBy(ev.GPUs):
		return j, false, node3.Errorf(node3.CodeForbidden, "job %s needs GPUs this agent does not have", j.ID)
	}
	if until := j.BarredUntil(ev.AgentID, ev.Now); !until.IsZero() {
		return j, false, node3.Errorf(node3.CodeConflict, "job %s failed on this provider; others may take it until %s", j.ID, until.UTC().Format(time.RFC3339))
	}
	j.Status = node3.StatusAccepted
	j.Attempt++
	j.AgentID = ev.AgentID
	j.Wallet = ev.Wallet
	j.AcceptedAt = ev.Now
	j.StartedAt, j.FinishedAt = time.Time{}, time.Time{}
	j.LeaseExpiresAt = earliest(ev.Now.Add(ev.Lease), leaseCap(j))
	j.Result = nil
	j.Error = ""
	j.UpdatedAt = ev.Now
	return j, true, nil
}

// holds checks that ev comes from the job's holder, for its current
// attempt, while its lease runs.
func holds(j node3.Job, ev Event) error {
	switch {
	case !j.Status.Leased():
		return conflict(j, ev)
	case j.AgentID != ev.AgentID:
		return notHolder(j, ev)
	case !sameAttempt(j, ev):
		return staleAttempt(j, ev)
	case !ev.Now.Before(j.LeaseExpiresAt):
		return node3.Errorf(node3.CodeConflict, "job %s: the lease lapsed at %s: cannot %s", j.ID, j.LeaseExpiresAt.UTC().Format(time.RFC3339Nano), ev.Kind)
	}
	return nil
}

func sameAttempt(j node3.Job, ev Event) bool { return ev.Attempt == 0 || ev.Attempt == j.Attempt }

func staleAttempt(j node3.Job, ev Event) error {
	return node3.Errorf(node3.CodeConflict, "job %s is on attempt %d: cannot %s for attempt %d", j.ID, j.Attempt, ev.Kind, ev.Attempt)
}

func heartbeat(j node3.Job, ev Event) (node3.Job, bool, error) {
	if err := holds(j, ev); err != nil {
		return j, false, err
	}
	if j.Status == node3.StatusAccepted {
		j.Status = node3.StatusRunning
		j.StartedAt = ev.Now
	}
	if exp := earliest(ev.Now.Add(ev.Lease), leaseCap(j)); exp.After(j.LeaseExpiresAt) {
		j.LeaseExpiresAt = exp
	}
	j.UpdatedAt = ev.Now
	return j, true, nil
}

func complete(j node3.Job, ev Event) (node3.Job, bool, error) {
	if j.Status == node3.StatusCompleted && j.AgentID == ev.AgentID && ev.AgentID != "" {
		if !sameAttempt(j, ev) {
			return j, false, staleAttempt(j, ev)
		}
		return j, false, nil
	}
	if err := holds(j, ev); err != nil {
		return j, false, err
	}
	if j.StartedAt.IsZero() {
		j.StartedAt = j.AcceptedAt
	}
	j.Status = node3.StatusCompleted
	j.FinishedAt = ev.Now
	j.LeaseExpiresAt = time.Time{}
	j.Error = ""
	if ev.Result != nil {
		r := *ev.Result
		j.Result = &r
	}
	j.UpdatedAt = ev.Now
	return j, true, nil
}

func fail(j node3.Job, ev Event) (node3.Job, bool, error) {
	repeat := j.AgentID == ev.AgentID && ev.AgentID != "" && sameAttempt(j, ev)
	switch {
	case j.Status == node3.StatusFailed && repeat:
		return j, false, nil
	case j.Status == node3.StatusAvailable && repeat && j.Error != "" && ev.Retryable:
		return j, false, nil // a repeated retryable failure that already requeued the job
	}
	if err := holds(j, ev); err != nil {
		return j, false, err
	}
	reason := ev.Reason
	if reason == "" {
		reason = "failed"
	}
	j.Error = reason
	j.LeaseExpiresAt = time.Time{}
	j.UpdatedAt = ev.Now
	if ev.Retryable && j.Attempt < j.MaxAttempts && ev.Now.Before(j.ExpiresAt) {
		// Back on the board: the next attempt starts clean, and this
		// provider waits its turn.
		j.Status = node3.StatusAvailable
		j.Result = nil
		j.Barred = bar(j.Barred, ev.AgentID, ev.Now, ev.Backoff)
		return j, true, nil
	}
	if ev.Result != nil {
		r := *ev.Result
		j.Result = &r
	}
	j.Status = node3.StatusFailed
	j.FinishedAt = ev.Now
	return j, true, nil
}

// bar returns bars without those ended by now, plus agent's until now+d.
// There is at most one bar per agent, and at most one per attempt.
func bar(bars []node3.Bar, agent string, now time.Time, d time.Duration) []node3.Bar {
	var out []node3.Bar
	for _, b := range bars {
		if now.Before(b.Until) && b.AgentID != agent {
			out = append(out, b)
		}
	}
	if d > 0 {
		out = append(out, node3.Bar{AgentID: agent, Until: now.Add(d)})
	}
	return out
}

func leaseExpire(j node3.Job, ev Event) (node3.Job, bool, error) {
	if !j.Status.Leased() || ev.Now.Before(j.LeaseExpiresAt) {
		return j, false, nil // renewed or finished meanwhile: nothing to do
	}
	j.LeaseExpiresAt = time.Time{}
	j.UpdatedAt = ev.Now
	if j.Attempt >= j.MaxAttempts {
		j.Status = node3.StatusFailed
		j.FinishedAt = ev.Now
		j.Error = "lease lost on the last attempt"
		return j, true, nil
	}
	j.Status = node3.StatusAvailable
	j.Result = nil
	j.Error = "lease lost; requeued"
	return j, true, nil
}

func cancel(j node3.Job, ev Event) (node3.Job, bool, error) {
	switch {
	case j.Status == node3.StatusCancelled:
		return j, false, nil
	case j.Status.Terminal():
		return j, false, conflict(j, ev)
	}
	j.Status = node3.StatusCancelled
	j.FinishedAt = ev.Now
	j.LeaseExpiresAt = time.Time{}
	j.Error = ev.Reason
	j.UpdatedAt = ev.Now
	return j, true, nil
}

// release undoes an accept the holder never started on — a pushed grant it
// declined or never acknowledged — as if it had not happened: the job is
// available again, the attempt is not spent, and nobody is barred. Once
// the holder has started (a heartbeat made it running) it must report.
func release(j node3.Job, ev Event) (node3.Job, bool, error) {
	switch {
	case j.Status == node3.StatusAvailable:
		return j, false, nil // nothing held: a repeated release
	case j.Status != node3.StatusAccepted:
		return j, false, conflict(j, ev)
	case j.AgentID != ev.AgentID:
		return j, false, notHolder(j, ev)
	case !sameAttempt(j, ev):
		return j, false, staleAttempt(j, ev)
	}
	j.Status = node3.StatusAvailable
	j.Attempt--
	j.AgentID, j.Wallet = "", ""
	j.AcceptedAt, j.LeaseExpiresAt = time.Time{}, time.Time{}
	j.Error = ""
	j.UpdatedAt = ev.Now
	return j, true, nil
}

func expire(j node3.Job, ev Event) (node3.Job, bool, error) {
	if j.Status != node3.StatusAvailable || ev.Now.Before(j.ExpiresAt) {
		return j, false, nil
	}
	j.Status = node3.StatusExpired
	j.FinishedAt = ev.Now
	j.Error = "nobody took the job before it expired"
	j.UpdatedAt = ev.Now
	return j, true, nil
}
