package ledger

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/node3/node3"
)

const (
	holder = "agent-h" // the job's current or last holder
	other  = "agent-o" // any other provider
)

var (
	tExpires = t0.Add(time.Hour)             // the fixtures' ExpiresAt
	tLease   = t0.Add(30 * time.Second)      // the leased fixtures' LeaseExpiresAt
	tNow     = t0.Add(10 * time.Second)      // before both deadlines
	tLapsed  = tLease.Add(time.Second)       // after the lease, before expiry
	tLate    = tExpires.Add(time.Hour)       // after everything
	result   = &node3.JobResult{ExitCode: 0} // what complete reports
)

// fixture returns a job in the named situation. Every leased or finished
// fixture is (or was) held by holder on its first of three attempts.
func fixture(name string) node3.Job {
	j := node3.Job{
		ID:        "job-1",
		JobSpec:   node3.JobSpec{Kind: node3.KindNoop, Reward: 1000, TimeoutSecs: 600, MaxAttempts: 3, TTLSecs: 3600},
		Status:    node3.StatusAvailable,
		CreatedAt: t0,
		UpdatedAt: t0,
		ExpiresAt: tExpires,
	}
	held := func(s node3.JobStatus) {
		j.Status, j.Attempt, j.AgentID = s, 1, holder
		j.AcceptedAt = t0.Add(time.Second)
	}
	switch name {
	case "available": // never taken
	case "available/requeued": // its lease lapsed; nobody took it since
		held(node3.StatusAvailable)
		j.Error = "lease lost; requeued"
	case "accepted":
		held(node3.StatusAccepted)
		j.LeaseExpiresAt = tLease
	case "running":
		held(node3.StatusRunning)
		j.StartedAt = t0.Add(2 * time.Second)
		j.LeaseExpiresAt = tLease
	case "completed":
		held(node3.StatusCompleted)
		j.StartedAt, j.FinishedAt = t0.Add(2*time.Second), t0.Add(5*time.Second)
		j.Result = &node3.JobResult{ExitCode: 0, Output: "done"}
	case "failed":
		held(node3.StatusFailed)
		j.FinishedAt, j.Error = t0.Add(5*time.Second), "boom"
	case "cancelled": // withdrawn while held
		held(node3.StatusCancelled)
		j.FinishedAt = t0.Add(5 * time.Second)
	case "expired": // nobody ever took it
		j.Status, j.FinishedAt, j.Error = node3.StatusExpired, tExpires, "nobody took the job before it expired"
	default:
		panic("no fixture " + name)
	}
	return j
}

var fixtures = []string{"available", "available/requeued", "accepted", "running", "completed", "failed", "cancelled", "expired"}

// events are the event variants of the table, by name; actor is who sends
// it (the sweeper and cancel ignore it).
var events = map[string]func(actor string) Event{
	"accept":             func(a string) Event { return Event{Kind: EvAccept, AgentID: a, Now: tNow, Lease: 30 * time.Second} },
	"accept/past-expiry": func(a string) Event { return Event{Kind: EvAccept, AgentID: a, Now: tLate, Lease: 30 * time.Second} },
	"heartbeat":          func(a string) Event { return Event{Kind: EvHeartbeat, AgentID: a, Now: tNow, Lease: 30 * time.Second} },
	"complete":           func(a string) Event { return Event{Kind: EvComplete, AgentID: a, Now: tNow, Result: result} },
	"fail":               func(a string) Event { return Event{Kind: EvFail, AgentID: a, Now: tNow, Reason: "oom"} },
	"fail/retryable": func(a string) Event {
		return Event{Kind: EvFail, AgentID: a, Now: tNow, Reason: "flaky", Retryable: true}
	},
	"lease_expire/lapsed": func(a string) Event {
		return Event{Kind: EvLeaseExpire, AgentID: a, Now: tLapsed}
	},
	"lease_expire/live": func(a string) Event { return Event{Kind: EvLeaseExpire, AgentID: a, Now: tNow} },
	"cancel":            func(a string) Event { return Event{Kind: EvCancel, AgentID: a, Now: tNow, Reason: "withdrawn"} },
	"expire/past":       func(a string) Event { return Event{Kind: EvExpire, AgentID: a, Now: tLate} },
	"expire/early":      func(a string) Event { return Event{Kind: EvExpire, AgentID: a, Now: tNow} },
	"release":           func(a string) Event { return Event{Kind: EvRelease, AgentID: a, Now: tNow} },
}

// outcome is what Apply should return: the new status ("" for "as
// before"), whether the job changed and the error code.
type outcome struct {
	status  node3.JobStatus
	changed bool
	code    node3.Code
}

var (
	noop = outcome{}                         // unchanged, no error (a repeat, or nothing to do)
	conf = outcome{code: node3.CodeConflict} // not allowed in this state or for this actor
	to   = func(s node3.JobStatus) outcome { return outcome{status: s, changed: true} }
)

// transitionTable is the whole state machine: every fixture × every event
// variant, with the outcome for the holder and for another agent.
var transitionTable = []struct {
	state, event  string
	holder, other outcome
}{
	// Never taken.
	{"available", "accept", to(node3.StatusAccepted), to(node3.StatusAccepted)},
	{"available", "accept/past-expiry", conf, conf},
	{"available", "heartbeat", conf, conf},
	{"available", "complete", conf, conf},
	{"available", "fail", conf, conf},
	{"available", "fail/retryable", conf, conf},
	{"available", "lease_expire/lapsed", noop, noop},
	{"available", "lease_expire/live", noop, noop},
	{"available", "cancel", to(node3.StatusCancelled), to(node3.StatusCancelled)},
	{"available", "expire/past", to(node3.StatusExpired), to(node3.StatusExpired)},
	{"available", "expire/early", noop, noop},
	{"available", "release", noop, noop},

	// Requeued after a lapsed lease, not retaken: the last holder's late
	// completion is refused (its lease is gone), its repeated retryable
	// failure is a no-op.
	{"available/requeued", "accept", to(node3.StatusAccepted), to(node3.StatusAccepted)},
	{"available/requeued", "accept/past-expiry", conf, conf},
	{"available/requeued", "heartbeat", conf, conf},
	{"available/requeued", "complete", conf, conf},
	{"available/requeued", "fail", conf, conf},
	{"available/requeued", "fail/retryable", noop, conf},
	{"available/requeued", "lease_expire/lapsed", noop, noop},
	{"available/requeued", "lease_expire/live", noop, noop},
	{"available/requeued", "cancel", to(node3.StatusCancelled), to(node3.StatusCancelled)},
	{"available/requeued", "expire/past", to(node3.StatusExpired), to(node3.StatusExpired)},
	{"available/requeued", "expire/early", noop, noop},
	{"available/requeued", "release", noop, noop},

	// Leased: only the holder acts; a repeated accept is the same answer
	// (even past ExpiresAt, which only bounds taking an untaken job).
	{"accepted", "accept", noop, conf},
	{"accepted", "accept/past-expiry", noop, conf},
	{"accepted", "heartbeat", to(node3.StatusRunning), conf},
	{"accepted", "complete", to(node3.StatusCompleted), conf},
	{"accepted", "fail", to(node3.StatusFailed), conf},
	{"accepted", "fail/retryable", to(node3.StatusAvailable), conf},
	{"accepted", "lease_expire/lapsed", to(node3.StatusAvailable), to(node3.StatusAvailable)},
	{"accepted", "lease_expire/live", noop, noop},
	{"accepted", "cancel", to(node3.StatusCancelled), to(node3.StatusCancelled)},
	{"accepted", "expire/past", noop, noop},
	{"accepted", "expire/early", noop, noop},
	{"accepted", "release", to(node3.StatusAvailable), conf},

	{"running", "accept", noop, conf},
	{"running", "accept/past-expiry", noop, conf},
	{"running", "heartbeat", to(node3.StatusRunning), conf}, // extends the lease
	{"running", "complete", to(node3.StatusCompleted), conf},
	{"running", "fail", to(node3.StatusFailed), conf},
	{"running", "fail/retryable", to(node3.StatusAvailable), conf},
	{"running", "lease_expire/lapsed", to(node3.StatusAvailable), to(node3.StatusAvailable)},
	{"running", "lease_expire/live", noop, noop},
	{"running", "cancel", to(node3.StatusCancelled), to(node3.StatusCancelled)},
	{"running", "expire/past", noop, noop},
	{"running", "expire/early", noop, noop},
	{"running", "release", conf, conf},

	// Terminal: nothing leaves; the same report again is the same answer.
	{"completed", "accept", conf, conf},
	{"completed", "accept/past-expiry", conf, conf},
	{"completed", "heartbeat", conf, conf},
	{"completed", "complete", noop, conf},
	{"completed", "fail", conf, conf},
	{"completed", "fail/retryable", conf, conf},
	{"completed", "lease_expire/lapsed", noop, noop},
	{"completed", "lease_expire/live", noop, noop},
	{"completed", "cancel", conf, conf},
	{"completed", "expire/past", noop, noop},
	{"completed", "expire/early", noop, noop},
	{"completed", "release", conf, conf},

	{"failed", "accept", conf, conf},
	{"failed", "accept/past-expiry", conf, conf},
	{"failed", "heartbeat", conf, conf},
	{"failed", "complete", conf, conf},
	{"failed", "fail", noop, conf},
	{"failed", "fail/retryable", noop, conf},
	{"failed", "lease_expire/lapsed", noop, noop},
	{"failed", "lease_expire/live", noop, noop},
	{"failed", "cancel", conf, conf},
	{"failed", "expire/past", noop, noop},
	{"failed", "expire/early", noop, noop},
	{"failed", "release", conf, conf},

	{"cancelled", "accept", conf, conf},
	{"cancelled", "accept/past-expiry", conf, conf},
	{"cancelled", "heartbeat", conf, conf},
	{"cancelled", "complete", conf, conf},
	{"cancelled", "fail", conf, conf},
	{"cancelled", "fail/retryable", conf, conf},
	{"cancelled", "lease_expire/lapsed", noop, noop},
	{"cancelled", "lease_expire/live", noop, noop},
	{"cancelled", "cancel", noop, noop},
	{"cancelled", "expire/past", noop, noop},
	{"cancelled", "expire/early", noop, noop},
	{"cancelled", "release", conf, conf},

	{"expired", "accept", conf, conf},
	{"expired", "accept/past-expiry", conf, conf},
	{"expired", "heartbeat", conf, conf},
	{"expired", "complete", conf, conf},
	{"expired", "fail", conf, conf},
	{"expired", "fail/retryable", conf, conf},
	{"expired", "lease_expire/lapsed", noop, noop},
	{"expired", "lease_expire/live", noop, noop},
	{"expired", "cancel", conf, conf},
	{"expired", "expire/past", noop, noop},
	{"expired", "expire/early", noop, noop},
	{"expired", "release", conf, conf},
}

// deepCopy copies a job through JSON, so that a test can tell whether
// Apply wrote through a pointer or map it shares with its input.
func deepCopy(t *testing.T, j node3.Job) node3.Job {
	t.Helper()
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var out node3.Job
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplyTable(t *testing.T) {
	// The table must cover every fixture × event, once.
	seen := make(map[[2]string]bool)
	for _, r := range transitionTable {
		k := [2]string{r.state, r.event}
		if seen[k] {
			t.Errorf("row %s × %s appears twice", r.state, r.event)
		}
		if events[r.event] == nil {
			t.Errorf("row %s × %s: no such event variant", r.state, r.event)
		}
		seen[k] = true
	}
	for _, s := range fixtures {
		for e := range events {
			if !seen[[2]string{s, e}] {
				t.Errorf("no row for %s × %s", s, e)
			}
		}
	}

	for _, r := range transitionTable {
		for _, actor := range []struct {
			id   string
			want outcome
		}{{holder, r.holder}, {other, r.other}} {
			name := r.state + "×" + r.event + "×" + actor.id
			t.Run(name, func(t *testing.T) {
				in := fixture(r.state)
				before := deepCopy(t, in)
				ev := events[r.event](actor.id)
				got, changed, err := Apply(in, ev)

				if !reflect.DeepEqual(in, before) {
					t.Fatalf("Apply modified its input:\n got %+v\nwant %+v", in, before)
				}
				if c := node3.ErrorCode(err); c != actor.want.code {
					t.Fatalf("error code %q (%v), want %q", c, err, actor.want.code)
				}
				if changed != actor.want.changed {
					t.Fatalf("changed = %v, want %v", changed, actor.want.changed)
				}
				if !changed {
					if !reflect.DeepEqual(got, in) {
						t.Fatalf("unchanged job differs from its input:\n got %+v\nwant %+v", got, in)
					}
					return
				}
				if got.Status != actor.want.status {
					t.Fatalf("status %s, want %s", got.Status, actor.want.status)
				}
				checkChanged(t, in, got, ev)
			})
		}
	}
}

// checkChanged checks what every changing transition must do to a job.
func checkChanged(t *testing.T, in, got node3.Job, ev Event) {
	t.Helper()
	if got.ID != in.ID || !reflect.DeepEqual(got.JobSpec, in.JobSpec) || !got.CreatedAt.Equal(in.CreatedAt) || !got.ExpiresAt.Equal(in.ExpiresAt) {
		t.Errorf("identity, spec or deadlines changed: %+v", got)
	}
	if !got.UpdatedAt.Equal(ev.Now) {
		t.Errorf("UpdatedAt %v, want the event's time %v", got.UpdatedAt, ev.Now)
	}
	if got.Status.Leased() != !got.LeaseExpiresAt.IsZero() {
		t.Errorf("status %s with LeaseExpiresAt %v", got.Status, got.LeaseExpiresAt)
	}
	if got.Status.Terminal() && !got.FinishedAt.Equal(ev.Now) {
		t.Errorf("terminal status %s with FinishedAt %v, want %v", got.Status, got.FinishedAt, ev.Now)
	}
	if ev.Kind == EvAccept {
		if got.Attempt != in.Attempt+1 || got.AgentID != ev.AgentID || !got.AcceptedAt.Equal(ev.Now) ||
			!got.LeaseExpiresAt.Equal(ev.Now.Add(ev.Lease)) || !got.StartedAt.IsZero() || got.Error != "" {
			t.Errorf("accept: attempt %d (was %d), agent %q, accepted %v, lease %v, started %v, error %q",
				got.Attempt, in.Attempt, got.AgentID, got.AcceptedAt, got.LeaseExpiresAt, got.StartedAt, got.Error)
		}
		return
	}
	if ev.Kind == EvRelease {
		if got.Status != node3.StatusAvailable || got.Attempt != in.Attempt-1 || got.AgentID != "" || got.Wallet != "" || !got.AcceptedAt.IsZero() {
			t.Errorf("release: %s, attempt %d (was %d), agent %q, wallet %q, accepted %v", got.Status, got.Attempt, in.Attempt, got.AgentID, got.Wallet, got.AcceptedAt)
		}
		return
	}
	// Only accept (and release, which undoes one) counts an attempt or
	// changes the holder.
	if got.Attempt != in.Attempt || got.AgentID != in.AgentID {
		t.Errorf("attempt %d agent %q, want %d %q", got.Attempt, got.AgentID, in.Attempt, in.AgentID)
	}
	switch got.Status {
	case node3.StatusRunning:
		if got.StartedAt.IsZero() || got.LeaseExpiresAt.Before(ev.Now.Add(ev.Lease)) {
			t.Errorf("heartbeat: started %v, lease %v", got.StartedAt, got.LeaseExpiresAt)
		}
	case node3.StatusAvailable: // requeued
		if got.Error == "" {
			t.Errorf("requeued job carries no reason")
		}
	case node3.StatusCompleted:
		if got.Result == nil || !reflect.DeepEqual(*got.Result, *ev.Result) || got.Result == ev.Result || got.Error != "" || got.StartedAt.IsZero() {
			t.Errorf("complete: result %+v, error %q, started %v", got.Result, got.Error, got.StartedAt)
		}
	case node3.StatusFailed:
		if got.Error == "" {
			t.Errorf("failed job carries no reason")
		}
	case node3.StatusCancelled:
		if got.Error != ev.Reason {
			t.Errorf("cancel: error %q, want %q", got.Error, ev.Reason)
		}
	}
}

// step applies one event in a scenario and checks its outcome.
func step(t *testing.T, j node3.Job, ev Event, want outcome) node3.Job {
	t.Helper()
	got, changed, err := Apply(j, ev)
	if c := node3.ErrorCode(err); c != want.code || changed != want.changed {
		t.Fatalf("%s by %q on %s: changed %v, code %q (%v); want changed %v, code %q",
			ev.Kind, ev.AgentID, j.Status, changed, c, err, want.changed, want.code)
	}
	if want.status != "" && got.Status != want.status {
		t.Fatalf("%s by %q: status %s, want %s", ev.Kind, ev.AgentID, got.Status, want.status)
	}
	if !changed && !reflect.DeepEqual(got, j) {
		t.Fatalf("%s by %q: unchanged job differs from its input", ev.Kind, ev.AgentID)
	}
	return got
}

func acceptEv(a string, now time.Time) Event {
	return Event{Kind: EvAccept, AgentID: a, Now: now, Lease: 30 * time.Second}
}

func TestApplyRepeatsAreIdempotent(t *testing.T) {
	j := fixture("available")
	j = step(t, j, acceptEv(holder, tNow), to(node3.StatusAccepted))
	j = step(t, j, acceptEv(holder, tNow.Add(time.Second)), noop)
	j = step(t, j, acceptEv(other, tNow), conf)
	if j.Attempt != 1 {
		t.Fatalf("attempt %d after a repeated accept, want 1", j.Attempt)
	}
	done := Event{Kind: EvComplete, AgentID: holder, Now: tNow, Result: result}
	j = step(t, j, done, to(node3.StatusCompleted))
	done.Now = tNow.Add(time.Minute)
	step(t, j, done, noop)

	for _, retry := range []bool{false, true} {
		j := fixture("running")
		j.MaxAttempts = 1 // a retryable failure on the last attempt fails too
		f := Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "x", Retryable: retry}
		j = step(t, j, f, to(node3.StatusFailed))
		step(t, j, f, noop)
	}

	// A retryable failure that requeued the job: the same report again is
	// the same answer; a late non-retryable one is refused.
	j = step(t, fixture("running"), Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "flaky", Retryable: true}, to(node3.StatusAvailable))
	if j.Attempt != 1 || j.AgentID != holder || j.Error != "flaky" {
		t.Fatalf("requeued after a retryable failure: %+v", j)
	}
	step(t, j, Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "flaky", Retryable: true}, noop)
	step(t, j, Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "fatal"}, conf)

	c := step(t, fixture("accepted"), Event{Kind: EvCancel, Now: tNow}, to(node3.StatusCancelled))
	step(t, c, Event{Kind: EvCancel, Now: tNow.Add(time.Second)}, noop)
}

func TestApplyAcceptLimits(t *testing.T) {
	j := fixture("available")
	step(t, j, acceptEv(holder, tExpires), conf) // at ExpiresAt it is too late
	step(t, j, acceptEv(holder, tExpires.Add(-time.Nanosecond)), to(node3.StatusAccepted))

	j.Attempt = j.MaxAttempts
	step(t, j, acceptEv(holder, tNow), conf)

	_, _, err := Apply(fixture("available"), acceptEv("", tNow))
	wantCode(t, "accept with no agent", err, node3.CodeInvalid)

	// A job that needs a GPU goes only to an agent whose GPUs meet it.
	g := fixture("available")
	g.Requirements = node3.Requirements{GPU: true, MinGPUMemory: 40 << 30}
	_, _, err = Apply(g, acceptEv(holder, tNow))
	wantCode(t, "GPU job, agent without GPUs", err, node3.CodeForbidden)
	small := acceptEv(holder, tNow)
	small.GPUs = []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "T4", MemoryBytes: 16 << 30}}
	_, _, err = Apply(g, small)
	wantCode(t, "GPU job, agent with too little memory", err, node3.CodeForbidden)
	big := acceptEv(holder, tNow)
	big.GPUs = []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "A100", MemoryBytes: 80 << 30}}
	step(t, g, big, to(node3.StatusAccepted))
	_, _, err = Apply(fixture("available"), Event{Kind: "steal", AgentID: holder, Now: tNow})
	wantCode(t, "unknown event", err, node3.CodeInvalid)
	_, _, err = Apply(fixture("available"), Event{Kind: EvComplete, Now: tNow})
	wantCode(t, "complete with no agent on an untaken job", err, node3.CodeConflict)
}

func TestApplyLeaseExpiry(t *testing.T) {
	j := fixture("available")
	j.MaxAttempts = 2
	j = step(t, j, acceptEv(holder, t0), to(node3.StatusAccepted))

	// A heartbeat extends the lease, never shortens it.
	j = step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: t0.Add(time.Second), Lease: time.Minute}, to(node3.StatusRunning))
	lease := t0.Add(time.Second + time.Minute)
	started := j.StartedAt
	if !j.LeaseExpiresAt.Equal(lease) || !started.Equal(t0.Add(time.Second)) {
		t.Fatalf("after heartbeat: lease %v started %v", j.LeaseExpiresAt, started)
	}
	j = step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: t0.Add(2 * time.Second), Lease: time.Second}, to(node3.StatusRunning))
	if !j.LeaseExpiresAt.Equal(lease) || !j.StartedAt.Equal(started) {
		t.Fatalf("a short heartbeat moved the lease to %v or the start to %v", j.LeaseExpiresAt, j.StartedAt)
	}

	// Lapsed at exactly LeaseExpiresAt: requeued, attempt and last holder kept.
	step(t, j, Event{Kind: EvLeaseExpire, Now: lease.Add(-time.Nanosecond)}, noop)
	j = step(t, j, Event{Kind: EvLeaseExpire, Now: lease}, to(node3.StatusAvailable))
	if j.Attempt != 1 || j.AgentID != holder || !j.LeaseExpiresAt.IsZero() || j.Error == "" {
		t.Fatalf("requeued: %+v", j)
	}
	step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: lease, Lease: time.Minute}, conf)

	// Retaken by another agent: the old holder's late report is refused.
	now := lease.Add(time.Second)
	j = step(t, j, acceptEv(other, now), to(node3.StatusAccepted))
	if j.Attempt != 2 || j.AgentID != other {
		t.Fatalf("retaken: attempt %d agent %q", j.Attempt, j.AgentID)
	}
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: now, Result: result}, conf)
	step(t, j, Event{Kind: EvFail, AgentID: holder, Now: now, Retryable: true}, conf)

	// The last attempt's lease lapses: failed for good.
	j = step(t, j, Event{Kind: EvLeaseExpire, Now: j.LeaseExpiresAt}, to(node3.StatusFailed))
	if j.Attempt != 2 || j.Error != "lease lost on the last attempt" || j.FinishedAt.IsZero() {
		t.Fatalf("after the last lease lapsed: %+v", j)
	}
	step(t, j, acceptEv(holder, now), conf)
	step(t, j, Event{Kind: EvComplete, AgentID: other, Now: now}, conf)
}

// TestApplyLateReport: a result counts only while its lease runs. Once it
// lapses, swept or not, the holder's report and heartbeat are refused, so
// no payout is booked for work the lease no longer covered.
func TestApplyLateReport(t *testing.T) {
	j := step(t, fixture("available"), acceptEv(holder, t0), to(node3.StatusAccepted))
	lapsed := j.LeaseExpiresAt
	// Lapsed, not yet swept.
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: lapsed, Result: result}, conf)
	step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: lapsed, Lease: time.Minute}, conf)
	step(t, j, Event{Kind: EvFail, AgentID: holder, Now: lapsed, Reason: "boom"}, conf)
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: lapsed.Add(-time.Nanosecond), Result: result}, to(node3.StatusCompleted))
	// Swept.
	j = step(t, j, Event{Kind: EvLeaseExpire, Now: tLapsed}, to(node3.StatusAvailable))
	step(t, j, Event{Kind: EvComplete, AgentID: other, Now: tLapsed, Result: result}, conf)
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: tLapsed, Result: result}, conf)
}

// TestApplyAttempts: a heartbeat or report names the attempt it is for; one
// for an earlier attempt is refused even from the same provider, and a new
// attempt starts with nothing of the last one.
func TestApplyAttempts(t *testing.T) {
	j := step(t, fixture("available"), acceptEv(holder, t0), to(node3.StatusAccepted))
	j = step(t, j, Event{Kind: EvLeaseExpire, Now: j.LeaseExpiresAt}, to(node3.StatusAvailable))
	now := j.UpdatedAt.Add(time.Second)
	j = step(t, j, acceptEv(holder, now), to(node3.StatusAccepted))
	if j.Attempt != 2 {
		t.Fatalf("attempt %d, want 2", j.Attempt)
	}
	for _, ev := range []Event{
		{Kind: EvHeartbeat, AgentID: holder, Now: now, Lease: time.Minute, Attempt: 1},
		{Kind: EvComplete, AgentID: holder, Now: now, Result: result, Attempt: 1},
		{Kind: EvFail, AgentID: holder, Now: now, Reason: "x", Attempt: 1},
		{Kind: EvFail, AgentID: holder, Now: now, Reason: "x", Retryable: true, Attempt: 3},
	} {
		_, _, err := Apply(j, ev)
		wantCode(t, string(ev.Kind)+" for a stale attempt", err, node3.CodeConflict)
	}
	j = step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: now, Lease: time.Minute, Attempt: 2}, to(node3.StatusRunning))
	j = step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: now, Result: result, Attempt: 2}, to(node3.StatusCompleted))
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: now, Result: result, Attempt: 2}, noop)
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: now, Result: result}, noop)
	step(t, j, Event{Kind: EvComplete, AgentID: holder, Now: now, Result: result, Attempt: 1}, conf)

	// A retryable failure with a result: requeued without it, so the next
	// taker does not see the last attempt's output.
	j = step(t, fixture("running"), Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "flaky", Retryable: true, Result: &node3.JobResult{Output: "partial"}}, to(node3.StatusAvailable))
	if j.Result != nil {
		t.Fatalf("requeued with the failed attempt's result: %+v", j.Result)
	}
	f := fixture("completed")
	f.Status, f.Attempt, f.AgentID = node3.StatusAvailable, 1, holder // as if requeued with leftovers
	f.Error = "lease lost; requeued"
	j = step(t, f, Event{Kind: EvAccept, AgentID: other, Now: tNow, Lease: time.Minute, Wallet: "W2"}, to(node3.StatusAccepted))
	if j.Result != nil || !j.FinishedAt.IsZero() || j.Error != "" || j.Wallet != "W2" || !j.StartedAt.IsZero() {
		t.Fatalf("a new attempt kept the last one's state: %+v", j)
	}
}

// TestApplyLeaseCap: heartbeats extend a lease up to the job's timeout
// plus LeaseGrace after its accept, never further.
func TestApplyLeaseCap(t *testing.T) {
	j := fixture("available")
	j.TimeoutSecs = 60
	limit := t0.Add(60*time.Second + LeaseGrace)
	j = step(t, j, Event{Kind: EvAccept, AgentID: holder, Now: t0, Lease: 24 * time.Hour}, to(node3.StatusAccepted))
	if !j.LeaseExpiresAt.Equal(limit) {
		t.Fatalf("a long accept lease runs to %v, want the cap %v", j.LeaseExpiresAt, limit)
	}
	j = fixture("available")
	j.TimeoutSecs = 60
	j = step(t, j, acceptEv(holder, t0), to(node3.StatusAccepted))
	now := t0
	for now.Before(limit.Add(-30 * time.Second)) {
		now = now.Add(20 * time.Second)
		j = step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: now, Lease: 30 * time.Second}, to(node3.StatusRunning))
		if j.LeaseExpiresAt.After(limit) {
			t.Fatalf("heartbeat at %v ran the lease to %v, past the cap %v", now, j.LeaseExpiresAt, limit)
		}
	}
	if !j.LeaseExpiresAt.Equal(limit) {
		t.Fatalf("lease %v, want it to have reached the cap %v", j.LeaseExpiresAt, limit)
	}
	step(t, j, Event{Kind: EvHeartbeat, AgentID: holder, Now: limit, Lease: 30 * time.Second}, conf)
	j = step(t, j, Event{Kind: EvLeaseExpire, Now: limit}, to(node3.StatusAvailable))
}

// TestApplyBar: a provider whose retryable failure requeued a job cannot
// retake it until its bar ends; others can at once.
func TestApplyBar(t *testing.T) {
	j := fixture("available")
	j.MaxAttempts = 5
	j = step(t, j, acceptEv(holder, tNow), to(node3.StatusAccepted))
	j = step(t, j, Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "flaky", Retryable: true, Backoff: time.Minute}, to(node3.StatusAvailable))
	if got := j.BarredUntil(holder, tNow); !got.Equal(tNow.Add(time.Minute)) {
		t.Fatalf("bar until %v", got)
	}
	step(t, j, acceptEv(holder, tNow.Add(59*time.Second)), conf)
	step(t, j, acceptEv(holder, tNow.Add(time.Minute)), to(node3.StatusAccepted))
	j = step(t, j, acceptEv(other, tNow.Add(time.Second)), to(node3.StatusAccepted))
	// other fails too: both barred, one bar each.
	now := tNow.Add(2 * time.Second)
	j = step(t, j, Event{Kind: EvFail, AgentID: other, Now: now, Reason: "flaky", Retryable: true, Backoff: time.Minute}, to(node3.StatusAvailable))
	if len(j.Barred) != 2 {
		t.Fatalf("bars %+v, want two", j.Barred)
	}
	// Ended bars are dropped when the next one is added.
	later := tNow.Add(2 * time.Minute)
	j = step(t, j, acceptEv(holder, later), to(node3.StatusAccepted))
	j = step(t, j, Event{Kind: EvFail, AgentID: holder, Now: later, Reason: "flaky", Retryable: true, Backoff: time.Minute}, to(node3.StatusAvailable))
	if len(j.Barred) != 1 || j.Barred[0].AgentID != holder {
		t.Fatalf("bars %+v, want only the new one", j.Barred)
	}
	// Backoff 0 bars nobody.
	j = step(t, fixture("running"), Event{Kind: EvFail, AgentID: holder, Now: tNow, Retryable: true}, to(node3.StatusAvailable))
	step(t, j, acceptEv(holder, tNow), to(node3.StatusAccepted))
}

func TestApplyRetryableFailure(t *testing.T) {
	j := fixture("available")
	j.MaxAttempts = 2
	j = step(t, j, acceptEv(holder, tNow), to(node3.StatusAccepted))
	j = step(t, j, Event{Kind: EvFail, AgentID: holder, Now: tNow, Reason: "flaky", Retryable: true}, to(node3.StatusAvailable))
	j = step(t, j, acceptEv(other, tNow), to(node3.StatusAccepted))
	// Attempts used up: a retryable failure ends the job.
	j = step(t, j, Event{Kind: EvFail, AgentID: other, Now: tNow, Reason: "flaky", Retryable: true}, to(node3.StatusFailed))
	if j.Attempt != 2 || j.Error != "flaky" {
		t.Fatalf("after the last retryable failure: %+v", j)
	}

	// Past ExpiresAt nobody could retake it: failed, not requeued.
	j = fixture("running")
	j.LeaseExpiresAt = tLate
	j = step(t, j, Event{Kind: EvFail, AgentID: holder, Now: tExpires, Retryable: true}, to(node3.StatusFailed))
	if j.Error != "failed" {
		t.Fatalf("a failure without a reason: error %q", j.Error)
	}
}

// TestApplyRelease: a grant given back before it started leaves no trace:
// the attempt is not spent and the next taker starts clean.
func TestApplyRelease(t *testing.T) {
	j := fixture("available")
	j.MaxAttempts = 1
	j = step(t, j, Event{Kind: EvAccept, AgentID: holder, Now: tNow, Lease: time.Minute, Wallet: "W"}, to(node3.StatusAccepted))
	step(t, j, Event{Kind: EvRelease, AgentID: holder, Now: tNow, Attempt: 2}, conf)
	j = step(t, j, Event{Kind: EvRelease, AgentID: holder, Now: tNow, Attempt: 1}, to(node3.StatusAvailable))
	if j.Attempt != 0 || j.AgentID != "" || j.Wallet != "" || !j.AcceptedAt.IsZero() || !j.LeaseExpiresAt.IsZero() || len(j.Barred) != 0 {
		t.Fatalf("after a release: %+v", j)
	}
	step(t, j, Event{Kind: EvRelease, AgentID: holder, Now: tNow}, noop)
	// Its one attempt is still there for someone else.
	j = step(t, j, acceptEv(other, tNow), to(node3.StatusAccepted))
	if j.Attempt != 1 {
		t.Fatalf("attempt %d, want 1", j.Attempt)
	}
}
