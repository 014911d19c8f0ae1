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
}

// Apply is the job state machine. It returns the job after ev and whether
// anything changed. It does no I/O and reads no clock.
//
// Repeating an event that already took effect (the same provider accepting
// or completing again) returns the job unchanged and no error, so every
// call is safe to retry. An event the job's state does not allow, or one
// from a provider that does not hold the job, is a CodeConflict error.
//
// A heartbeat on a lease that has lapsed but not yet been swept renews it:
// the holder is evidently alive, and nobody else can have the job yet.
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
	}
	j.Status = node3.StatusAccepted
	j.Attempt++
	j.AgentID = ev.AgentID
	j.AcceptedAt = ev.Now
	j.StartedAt = time.Time{}
	j.LeaseExpiresAt = ev.Now.Add(ev.Lease)
	j.Error = ""
	j.UpdatedAt = ev.Now
	return j, true, nil
}

func heartbeat(j node3.Job, ev Event) (node3.Job, bool, error) {
	if !j.Status.Leased() {
		return j, false, conflict(j, ev)
	}
	if j.AgentID != ev.AgentID {
		return j, false, notHolder(j, ev)
	}
	if j.Status == node3.StatusAccepted {
		j.Status = node3.StatusRunning
		j.StartedAt = ev.Now
	}
	if exp := ev.Now.Add(ev.Lease); exp.After(j.LeaseExpiresAt) {
		j.LeaseExpiresAt = exp
	}
	j.UpdatedAt = ev.Now
	return j, true, nil
}

func complete(j node3.Job, ev Event) (node3.Job, bool, error) {
	switch {
	case j.Status == node3.StatusCompleted && j.AgentID == ev.AgentID:
		return j, false, nil
	case j.Status.Leased() && j.AgentID == ev.AgentID:
	case j.Status == node3.StatusAvailable && j.AgentID == ev.AgentID && j.AgentID != "":
		// The lease lapsed while the holder was cut off, and nobody has taken
		// the job since: the work is done, so take the late report.
	case j.Status.Leased() || (j.Status == node3.StatusAvailable && j.AgentID != ""):
		return j, false, notHolder(j, ev)
	default:
		return j, false, conflict(j, ev)
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
	switch {
	case j.Status == node3.StatusFailed && j.AgentID == ev.AgentID:
		return j, false, nil
	case j.Status == node3.StatusAvailable && j.AgentID == ev.AgentID && j.Error != "" && ev.Retryable:
		return j, false, nil // a repeated retryable failure that already requeued the job
	case j.Status.Leased() && j.AgentID == ev.AgentID:
	case j.Status.Leased():
		return j, false, notHolder(j, ev)
	default:
		return j, false, conflict(j, ev)
	}
	if ev.Result != nil {
		r := *ev.Result
		j.Result = &r
	}
	reason := ev.Reason
	if reason == "" {
		reason = "failed"
	}
	j.Error = reason
	j.LeaseExpiresAt = time.Time{}
	j.UpdatedAt = ev.Now
	if ev.Retryable && j.Attempt < j.MaxAttempts && ev.Now.Before(j.ExpiresAt) {
		j.Status = node3.StatusAvailable
		return j, true, nil
	}
	j.Status = node3.StatusFailed
	j.FinishedAt = ev.Now
	return j, true, nil
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
