package ledger

import (
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/node3/node3"
)

func TestCreateJobValidates(t *testing.T) {
	l := openTest(t)
	bad := map[string]node3.JobSpec{
		"no kind":              {},
		"unknown kind":         {Kind: "mine-bitcoin"},
		"command without argv": {Kind: node3.KindCommand},
		"noop with an image":   {Kind: node3.KindNoop, Image: "alpine"},
		"reward too large":     {Kind: node3.KindNoop, Reward: node3.MaxReward + 1},
		"negative timeout":     {Kind: node3.KindNoop, TimeoutSecs: -1},
		"too many attempts":    {Kind: node3.KindNoop, MaxAttempts: node3.MaxMaxAttempts + 1},
		"network on noop":      {Kind: node3.KindNoop, Network: true},
		"gpu mem without gpu":  {Kind: node3.KindNoop, Requirements: node3.Requirements{MinGPUMemory: 1}},
		"ftp input":            {Kind: node3.KindNoop, InputURL: "ftp://example.com/x"},
	}
	for name, spec := range bad {
		_, err := l.CreateJob(ctx, spec, t0)
		wantCode(t, name, err, node3.CodeInvalid)
	}
	if s, err := l.Stats(ctx); err != nil || s.JobsTotal != 0 {
		t.Fatalf("after refused specs: total %d, err %v", s.JobsTotal, err)
	}
	if jobs, err := l.Jobs(ctx, JobFilter{}); err != nil || len(jobs) != 0 {
		t.Fatalf("refused specs were stored: %d jobs, err %v", len(jobs), err)
	}

	j := mustCreate(t, l, node3.JobSpec{Kind: node3.KindContainer, Image: "alpine", Command: []string{"echo", "hi"}, Reward: 5}, t0)
	if j.ID == "" || j.Status != node3.StatusAvailable || j.Attempt != 0 || j.AgentID != "" {
		t.Fatalf("new job: %+v", j)
	}
	if j.TimeoutSecs != node3.DefaultTimeout || j.MaxAttempts != node3.DefaultMaxAttempts || j.TTLSecs != node3.DefaultTTL {
		t.Fatalf("defaults not filled: timeout %d attempts %d ttl %d", j.TimeoutSecs, j.MaxAttempts, j.TTLSecs)
	}
	if !j.CreatedAt.Equal(t0) || !j.UpdatedAt.Equal(t0) || !j.ExpiresAt.Equal(t0.Add(node3.DefaultTTL*time.Second)) {
		t.Fatalf("times: created %v updated %v expires %v", j.CreatedAt, j.UpdatedAt, j.ExpiresAt)
	}
	if got := mustJob(t, l, j.ID); !reflect.DeepEqual(got, j) {
		t.Fatalf("stored job differs:\n got %+v\nwant %+v", got, j)
	}
	_, err := l.Job(ctx, "no-such-job")
	wantCode(t, "Job of an unknown id", err, node3.CodeNotFound)
	_, err = l.Transition(ctx, "no-such-job", acceptEv(holder, t0))
	wantCode(t, "Transition of an unknown id", err, node3.CodeNotFound)
}

// TestTransitionsProperty runs a seeded random sequence of creations,
// transitions and sweeps against the ledger and against a model that is
// Apply on plain values, then checks the stored jobs, the status, lease and
// expiry indexes, the counters, payouts and agent books against the model,
// before and after a reopen.
func TestTransitionsProperty(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir, true)
	rng := rand.New(rand.NewPCG(20260301, 3))

	var agents []string
	for i := range 3 {
		a, _ := mustRegister(t, l, i)
		agents = append(agents, a.ID)
	}
	model := make(map[string]node3.Job)
	var ids []string
	now := t0
	seen := make(map[node3.JobStatus]int)
	kinds := []EventKind{EvAccept, EvAccept, EvAccept, EvHeartbeat, EvHeartbeat, EvComplete, EvComplete, EvFail, EvCancel}

	for op := range 200 {
		now = now.Add(time.Duration(rng.IntN(10_000)) * time.Millisecond)
		switch r := rng.IntN(12); {
		case r < 2 || len(ids) < 3:
			spec := noopSpec(node3.Lamports(1 + rng.IntN(1_000_000)))
			spec.TTLSecs = []int{30, 300, 900}[rng.IntN(3)]
			spec.MaxAttempts = 1 + rng.IntN(3)
			j := mustCreate(t, l, spec, now)
			model[j.ID] = j
			ids = append(ids, j.ID)
		case r < 10:
			id := ids[rng.IntN(len(ids))]
			ev := Event{
				Kind:      kinds[rng.IntN(len(kinds))],
				AgentID:   agents[rng.IntN(len(agents))],
				Now:       now,
				Lease:     time.Duration(10+rng.IntN(110)) * time.Second,
				Reason:    "r",
				Retryable: rng.IntN(2) == 0,
			}
			if ev.Kind == EvComplete {
				ev.Result = &node3.JobResult{ExecutionTime: 1.5, Metrics: map[string]float64{"op": float64(op)}}
			}
			if m := model[id]; m.Status.Leased() && rng.IntN(3) > 0 {
				ev.AgentID = m.AgentID // mostly the holder, so jobs finish
			}
			want, _, wantErr := Apply(model[id], ev)
			got, err := l.Transition(ctx, id, ev)
			if node3.ErrorCode(err) != node3.ErrorCode(wantErr) {
				t.Fatalf("op %d: %s on %s: error %v, model says %v", op, ev.Kind, model[id].Status, err, wantErr)
			}
			if err == nil {
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("op %d: %s returned\n %+v\nmodel\n %+v", op, ev.Kind, got, want)
				}
				model[id] = want
			}
		default:
			kind := EvLeaseExpire
			if r == 11 {
				kind = EvExpire
			}
			changed, err := l.Sweep(ctx, kind, now, 1000)
			if err != nil {
				t.Fatalf("op %d: sweep %s: %v", op, kind, err)
			}
			got := make(map[string]node3.Job)
			for _, j := range changed {
				got[j.ID] = j
			}
			for id, m := range model {
				want, ch, err := Apply(m, Event{Kind: kind, Now: now})
				if err != nil {
					t.Fatalf("model sweep: %v", err)
				}
				g, swept := got[id]
				if swept != ch || (ch && !reflect.DeepEqual(g, want)) {
					t.Fatalf("op %d: sweep %s at %v: job %s (%s) swept %v, model says %v", op, kind, now, id, m.Status, swept, ch)
				}
				model[id] = want
			}
		}
		for _, j := range model {
			seen[j.Status]++
		}
		if op%50 == 49 {
			checkAgainstModel(t, l, model, agents)
		}
	}
	checkAgainstModel(t, l, model, agents)
	// The sequence must have passed through every state, or it tests little.
	for _, st := range node3.AllStatuses {
		if seen[st] == 0 {
			t.Errorf("no job was ever %s: %v", st, seen)
		}
	}
	t.Logf("%d jobs; job-states seen after each op: %v", len(model), seen)

	// Everything above was committed without fsync; Close still writes it
	// out, and a reopened ledger holds the same books.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openAt(t, dir, true)
	checkAgainstModel(t, l, model, agents)
}

func checkAgainstModel(t *testing.T, l *Ledger, model map[string]node3.Job, agents []string) {
	t.Helper()
	count := make(map[node3.JobStatus]int64)
	byStatus := make(map[node3.JobStatus][]string)
	var wantIndex []string
	var rewards node3.Lamports
	completed := make(map[string]int64)
	failed := make(map[string]int64)
	earned := make(map[string]node3.Lamports)
	for id, j := range model {
		count[j.Status]++
		byStatus[j.Status] = append(byStatus[j.Status], id)
		wantIndex = append(wantIndex, indexKeys(j)...)
		switch j.Status {
		case node3.StatusCompleted:
			rewards += j.Reward
			completed[j.AgentID]++
			earned[j.AgentID] += j.Reward
		case node3.StatusFailed:
			failed[j.AgentID]++
		}
	}

	s, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.JobsTotal != int64(len(model)) {
		t.Errorf("JobsTotal %d, want %d", s.JobsTotal, len(model))
	}
	for _, st := range node3.AllStatuses {
		if s.Jobs[st] != count[st] {
			t.Errorf("Stats.Jobs[%s] = %d, want %d", st, s.Jobs[st], count[st])
		}
		got, err := l.Jobs(ctx, JobFilter{Status: st, Limit: 10_000})
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, j := range got {
			if j.Status != st {
				t.Errorf("Jobs(%s) lists job %s, which is %s", st, j.ID, j.Status)
			}
			gotIDs = append(gotIDs, j.ID)
		}
		want := slices.Clone(byStatus[st])
		sort.Sort(sort.Reverse(sort.StringSlice(want))) // newest first
		if !slices.Equal(gotIDs, want) {
			t.Errorf("Jobs(%s) = %v, want %v", st, gotIDs, want)
		}
	}
	all, err := l.Jobs(ctx, JobFilter{Limit: 10_000, Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(model) {
		t.Errorf("Jobs lists %d jobs, want %d", len(all), len(model))
	}
	for i, j := range all {
		if i > 0 && all[i-1].ID >= j.ID {
			t.Errorf("Jobs(Oldest) out of order at %d", i)
		}
		if !reflect.DeepEqual(j, model[j.ID]) {
			t.Errorf("stored job %s\n %+v\nmodel\n %+v", j.ID, j, model[j.ID])
		}
	}

	var gotIndex []string
	for _, p := range []string{pByStatus, pLease, pExpiry} {
		gotIndex = append(gotIndex, keysWithPrefix(t, l, p)...)
	}
	sort.Strings(gotIndex)
	sort.Strings(wantIndex)
	if !slices.Equal(gotIndex, wantIndex) {
		t.Errorf("index keys\n %v\nwant\n %v", gotIndex, wantIndex)
	}

	if s.RewardsCompleted != rewards || s.PayoutsPending != count[node3.StatusCompleted] || s.PayoutsPendingSum != rewards {
		t.Errorf("rewards %d, pending payouts %d (sum %d); want %d completed worth %d",
			s.RewardsCompleted, s.PayoutsPending, s.PayoutsPendingSum, count[node3.StatusCompleted], rewards)
	}
	pays, err := l.Payouts(ctx, "", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(pays)) != count[node3.StatusCompleted] {
		t.Errorf("%d payouts for %d completed jobs", len(pays), count[node3.StatusCompleted])
	}
	for _, p := range pays {
		if j := model[p.JobID]; j.Status != node3.StatusCompleted || p.Amount != j.Reward || p.AgentID != j.AgentID {
			t.Errorf("payout %+v for job %+v", p, j)
		}
	}
	for _, id := range agents {
		a, err := l.Agent(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.JobsCompleted != completed[id] || a.JobsFailed != failed[id] || a.Earned != earned[id] {
			t.Errorf("agent %s: completed %d failed %d earned %d; want %d %d %d",
				id, a.JobsCompleted, a.JobsFailed, a.Earned, completed[id], failed[id], earned[id])
		}
	}
}

func TestSweepLeaseExpire(t *testing.T) {
	l := openTest(t)
	lapsed := mustCreate(t, l, noopSpec(1), t0)
	atNow := mustCreate(t, l, noopSpec(1), t0)
	live := mustCreate(t, l, noopSpec(1), t0)
	last := mustCreate(t, l, node3.JobSpec{Kind: node3.KindNoop, MaxAttempts: 1}, t0)
	untaken := mustCreate(t, l, noopSpec(1), t0)
	now := t0.Add(time.Minute)
	mustTransition(t, l, lapsed.ID, Event{Kind: EvAccept, AgentID: "a1", Now: t0, Lease: 10 * time.Second})
	mustTransition(t, l, atNow.ID, Event{Kind: EvAccept, AgentID: "a2", Now: t0, Lease: time.Minute})
	mustTransition(t, l, live.ID, Event{Kind: EvAccept, AgentID: "a3", Now: t0, Lease: 10 * time.Second})
	mustTransition(t, l, live.ID, Event{Kind: EvHeartbeat, AgentID: "a3", Now: t0.Add(5 * time.Second), Lease: 5 * time.Minute})
	mustTransition(t, l, last.ID, Event{Kind: EvAccept, AgentID: "a4", Now: t0, Lease: time.Second})

	if _, err := l.Sweep(ctx, EvCancel, now, 10); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("Sweep(cancel): %v, want invalid", err)
	}
	// The limit bounds how many are taken per call.
	first, err := l.Sweep(ctx, EvLeaseExpire, now, 1)
	if err != nil || len(first) != 1 {
		t.Fatalf("Sweep limit 1: %d jobs, %v", len(first), err)
	}
	rest, err := l.Sweep(ctx, EvLeaseExpire, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	swept := map[string]node3.Job{}
	for _, j := range append(first, rest...) {
		swept[j.ID] = j
	}
	if len(swept) != 3 || swept[live.ID].ID != "" || swept[untaken.ID].ID != "" {
		t.Fatalf("swept %v, want the lapsed, at-now and last-attempt jobs", slices.Collect(maps.Keys(swept)))
	}
	for _, id := range []string{lapsed.ID, atNow.ID} {
		j := mustJob(t, l, id)
		if j.Status != node3.StatusAvailable || j.Attempt != 1 || !j.LeaseExpiresAt.IsZero() || j.AgentID == "" {
			t.Errorf("requeued job: %+v", j)
		}
	}
	if j := mustJob(t, l, last.ID); j.Status != node3.StatusFailed {
		t.Errorf("last attempt's lapsed lease: %s, want failed", j.Status)
	}
	if j := mustJob(t, l, live.ID); j.Status != node3.StatusRunning {
		t.Errorf("live lease: %s, want running", j.Status)
	}
	if again, err := l.Sweep(ctx, EvLeaseExpire, now, 100); err != nil || len(again) != 0 {
		t.Fatalf("second sweep: %d jobs, %v", len(again), err)
	}
	if keys := keysWithPrefix(t, l, pLease); len(keys) != 1 || !strings.HasSuffix(keys[0], live.ID) {
		t.Fatalf("lease index %v, want only the live job", keys)
	}
	avail, _ := l.Jobs(ctx, JobFilter{Status: node3.StatusAvailable})
	if len(avail) != 3 {
		t.Fatalf("%d available jobs, want 3 (two requeued, one untaken)", len(avail))
	}
}

func TestSweepExpire(t *testing.T) {
	l := openTest(t)
	short := mustCreate(t, l, node3.JobSpec{Kind: node3.KindNoop, TTLSecs: 60}, t0)
	long := mustCreate(t, l, node3.JobSpec{Kind: node3.KindNoop, TTLSecs: 3600}, t0)
	taken := mustCreate(t, l, node3.JobSpec{Kind: node3.KindNoop, TTLSecs: 60}, t0)
	mustTransition(t, l, taken.ID, Event{Kind: EvAccept, AgentID: "a", Now: t0, Lease: time.Hour})

	if got, err := l.Sweep(ctx, EvExpire, t0.Add(59*time.Second), 100); err != nil || len(got) != 0 {
		t.Fatalf("sweep before any deadline: %d jobs, %v", len(got), err)
	}
	got, err := l.Sweep(ctx, EvExpire, t0.Add(60*time.Second), 100) // at the deadline
	if err != nil || len(got) != 1 || got[0].ID != short.ID || got[0].Status != node3.StatusExpired {
		t.Fatalf("sweep: %+v, %v; want the short job expired", got, err)
	}
	for id, want := range map[string]node3.JobStatus{short.ID: node3.StatusExpired, long.ID: node3.StatusAvailable, taken.ID: node3.StatusAccepted} {
		if j := mustJob(t, l, id); j.Status != want {
			t.Errorf("job %s: %s, want %s", id, j.Status, want)
		}
	}
	if keys := keysWithPrefix(t, l, pExpiry); len(keys) != 1 || !strings.HasSuffix(keys[0], long.ID) {
		t.Fatalf("expiry index %v, want only the long job", keys)
	}
	s, _ := l.Stats(ctx)
	if s.Jobs[node3.StatusExpired] != 1 || s.Jobs[node3.StatusAvailable] != 1 || s.Jobs[node3.StatusAccepted] != 1 {
		t.Fatalf("counters %v", s.Jobs)
	}
}

func TestCompletedJobPaysOnce(t *testing.T) {
	l := openTest(t)
	a, _ := mustRegister(t, l, 1)
	const reward = node3.Lamports(12_345_678)
	j := mustCreate(t, l, noopSpec(reward), t0)
	mustTransition(t, l, j.ID, Event{Kind: EvAccept, AgentID: a.ID, Now: t0, Lease: time.Minute})
	mustTransition(t, l, j.ID, Event{Kind: EvHeartbeat, AgentID: a.ID, Now: t0.Add(time.Second), Lease: time.Minute})
	done := Event{Kind: EvComplete, AgentID: a.ID, Now: t0.Add(2 * time.Second), Result: &node3.JobResult{ExecutionTime: 1}}
	first := mustTransition(t, l, j.ID, done)
	for i := range 3 {
		done.Now = done.Now.Add(time.Second)
		if again := mustTransition(t, l, j.ID, done); !reflect.DeepEqual(again, first) {
			t.Fatalf("repeat %d of complete changed the job:\n %+v\n %+v", i, again, first)
		}
	}
	if _, err := l.Transition(ctx, j.ID, Event{Kind: EvComplete, AgentID: "someone-else", Now: done.Now}); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("complete by another agent: %v", err)
	}

	p, err := l.Payout(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != node3.PayoutPending || p.Amount != reward || p.Wallet != a.WalletAddress || p.AgentID != a.ID || !p.CreatedAt.Equal(first.FinishedAt) {
		t.Fatalf("payout %+v", p)
	}
	for _, st := range []node3.PayoutStatus{"", node3.PayoutPending} {
		if ps, err := l.Payouts(ctx, st, 0); err != nil || len(ps) != 1 || ps[0] != p {
			t.Fatalf("Payouts(%q) = %+v, %v", st, ps, err)
		}
	}
	got, _ := l.Agent(ctx, a.ID)
	if got.JobsCompleted != 1 || got.Earned != reward || got.JobsFailed != 0 {
		t.Fatalf("agent after one completion: completed %d earned %d failed %d", got.JobsCompleted, got.Earned, got.JobsFailed)
	}
	s, _ := l.Stats(ctx)
	if s.PayoutsPending != 1 || s.PayoutsPendingSum != reward || s.RewardsCompleted != reward || s.Jobs[node3.StatusCompleted] != 1 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := l.Payout(ctx, "other-job"); node3.ErrorCode(err) != node3.CodeNotFound {
		t.Fatalf("Payout of a job without one: %v", err)
	}

	// A late completion after the lease lapsed is refused and pays nothing;
	// the retaken attempt pays the wallet its provider named at the accept.
	late := mustCreate(t, l, noopSpec(7), t0)
	mustTransition(t, l, late.ID, Event{Kind: EvAccept, AgentID: a.ID, Now: t0, Lease: time.Second})
	if sw, err := l.Sweep(ctx, EvLeaseExpire, t0.Add(time.Minute), 10); err != nil || len(sw) != 1 {
		t.Fatalf("sweep: %d, %v", len(sw), err)
	}
	if _, err := l.Transition(ctx, late.ID, Event{Kind: EvComplete, AgentID: a.ID, Now: t0.Add(2 * time.Minute), Attempt: 1}); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("late completion: %v, want a conflict", err)
	}
	if _, err := l.Payout(ctx, late.ID); node3.ErrorCode(err) != node3.CodeNotFound {
		t.Fatalf("late completion booked a payout: %v", err)
	}
	named := wallet(99)
	mustTransition(t, l, late.ID, Event{Kind: EvAccept, AgentID: a.ID, Now: t0.Add(3 * time.Minute), Lease: time.Minute, Wallet: named})
	mustTransition(t, l, late.ID, Event{Kind: EvComplete, AgentID: a.ID, Now: t0.Add(3 * time.Minute), Attempt: 2})
	if p, err := l.Payout(ctx, late.ID); err != nil || p.Amount != 7 || p.Wallet != named {
		t.Fatalf("second attempt's payout %+v, %v; want 7 lamports to %s", p, err, named)
	}
	bad := mustCreate(t, l, noopSpec(9), t0)
	mustTransition(t, l, bad.ID, Event{Kind: EvAccept, AgentID: a.ID, Now: t0, Lease: time.Minute})
	for range 2 {
		mustTransition(t, l, bad.ID, Event{Kind: EvFail, AgentID: a.ID, Now: t0.Add(time.Second), Reason: "oom"})
	}
	if _, err := l.Payout(ctx, bad.ID); node3.ErrorCode(err) != node3.CodeNotFound {
		t.Fatalf("failed job has a payout: %v", err)
	}
	got, _ = l.Agent(ctx, a.ID)
	if got.JobsCompleted != 2 || got.Earned != reward+7 || got.JobsFailed != 1 {
		t.Fatalf("agent: completed %d earned %d failed %d", got.JobsCompleted, got.Earned, got.JobsFailed)
	}
}
