package ledger

import (
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
)

func TestCreateJobOnce(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	spec := noopSpec(5)
	first, replayed, err := l.CreateJobOnce(ctx, spec, t0, "key-1")
	if err != nil || replayed {
		t.Fatalf("first create: %v, replayed %v", err, replayed)
	}
	// The same request in other words (a default given explicitly) is the
	// same request: the same job, replayed, as it stands now.
	mustTransition(t, l, first.ID, Event{Kind: EvCancel, Now: t0.Add(time.Second), Reason: "changed my mind"})
	same := spec
	same.TimeoutSecs = node3.DefaultTimeout
	again, replayed, err := l.CreateJobOnce(ctx, same, t0.Add(time.Minute), "key-1")
	if err != nil || !replayed || again.ID != first.ID || again.Status != node3.StatusCancelled {
		t.Fatalf("repeat: %+v replayed %v, %v; want job %s as cancelled", again, replayed, err, first.ID)
	}
	// The same key for another job is refused, and creates nothing.
	other := noopSpec(6)
	if _, _, err := l.CreateJobOnce(ctx, other, t0.Add(time.Minute), "key-1"); node3.ErrorCode(err) != node3.CodeUnprocessable {
		t.Fatalf("another job under the key: %v, want unprocessable", err)
	}
	// Bad keys and bad specs are refused before anything is written.
	for _, k := range []string{" ", string(make([]byte, MaxIdempotencyKey+1)), "tab\there", "é"} {
		if _, _, err := l.CreateJobOnce(ctx, spec, t0, k); node3.ErrorCode(err) != node3.CodeInvalid {
			t.Fatalf("key %q: %v, want invalid", k, err)
		}
	}
	if _, _, err := l.CreateJobOnce(ctx, node3.JobSpec{Kind: "nope"}, t0, "key-2"); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("bad spec: %v", err)
	}
	if s, _ := l.Stats(ctx); s.JobsTotal != 1 {
		t.Fatalf("%d jobs, want 1", s.JobsTotal)
	}
	// Keys survive a restart.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openAt(t, dir, false)
	if again, replayed, err := l.CreateJobOnce(ctx, spec, t0.Add(time.Hour), "key-1"); err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("after a restart: %s replayed %v, %v", again.ID, replayed, err)
	}
	// Kept for IdempotencyTTL, then swept; the key may then name a new job.
	if n, err := l.ExpireIdempotencyKeys(ctx, t0.Add(IdempotencyTTL-time.Nanosecond), 100); err != nil || n != 0 {
		t.Fatalf("swept %d keys before their time (%v)", n, err)
	}
	if n, err := l.ExpireIdempotencyKeys(ctx, t0.Add(IdempotencyTTL), 100); err != nil || n != 1 {
		t.Fatalf("swept %d keys, want 1 (%v)", n, err)
	}
	if keys := keysWithPrefix(t, l, pIdem); len(keys) != 0 {
		t.Fatalf("left after the sweep: %q", keys)
	}
	fresh, replayed, err := l.CreateJobOnce(ctx, other, t0.Add(IdempotencyTTL+time.Second), "key-1")
	if err != nil || replayed || fresh.ID == first.ID {
		t.Fatalf("an expired key: %+v replayed %v, %v", fresh, replayed, err)
	}
}

// TestCreateJobOnceExpiredUnswept: a key past its time is reused even
// before the sweeper got to it, and the sweep of its old index entry
// leaves the new record alone.
func TestCreateJobOnceExpiredUnswept(t *testing.T) {
	l := openTest(t)
	ctx := t.Context()
	a, _, err := l.CreateJobOnce(ctx, noopSpec(1), t0, "k")
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(IdempotencyTTL + time.Minute)
	b, replayed, err := l.CreateJobOnce(ctx, noopSpec(2), later, "k")
	if err != nil || replayed || b.ID == a.ID {
		t.Fatalf("reuse of an expired key: %v replayed %v", err, replayed)
	}
	if _, err := l.ExpireIdempotencyKeys(ctx, later, 100); err != nil {
		t.Fatal(err)
	}
	if c, replayed, err := l.CreateJobOnce(ctx, noopSpec(2), later, "k"); err != nil || !replayed || c.ID != b.ID {
		t.Fatalf("the reused key was lost: %s replayed %v, %v", c.ID, replayed, err)
	}
}

// TestCreateJobOnceConcurrent: many creates racing under one key make one job.
func TestCreateJobOnceConcurrent(t *testing.T) {
	l := openTest(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	ids := make([]string, 32)
	for i := range ids {
		wg.Go(func() {
			j, _, err := l.CreateJobOnce(ctx, noopSpec(3), t0, "race")
			if err != nil {
				t.Error(err)
			}
			ids[i] = j.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("one key made jobs %s and %s", ids[0], id)
		}
	}
	if s, _ := l.Stats(ctx); s.JobsTotal != 1 {
		t.Fatalf("%d jobs, want 1", s.JobsTotal)
	}
}
