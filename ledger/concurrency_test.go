package ledger

import (
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
)

// TestConcurrentAcceptOneWinner has 50 registered agents race to accept
// one job, with fsync on so that their requests share commits.
func TestConcurrentAcceptOneWinner(t *testing.T) {
	l := openAt(t, t.TempDir(), false)
	const n = 50
	agents := make([]node3.Agent, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, _, err := l.RegisterAgent(ctx, node3.Agent{WalletAddress: wallet(i)}, t0)
			if err != nil {
				t.Errorf("RegisterAgent: %v", err)
			}
			agents[i] = a
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	job := mustCreate(t, l, noopSpec(1), t0)

	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = l.Transition(ctx, job.ID, Event{Kind: EvAccept, AgentID: agents[i].ID, Now: t0.Add(time.Second), Lease: time.Minute})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch node3.ErrorCode(err) {
		case "":
			if winner >= 0 {
				t.Fatalf("agents %d and %d both won", winner, i)
			}
			winner = i
		case node3.CodeConflict:
		default:
			t.Fatalf("agent %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("nobody won")
	}
	j := mustJob(t, l, job.ID)
	if j.Status != node3.StatusAccepted || j.Attempt != 1 || j.AgentID != agents[winner].ID {
		t.Fatalf("job after the race: status %s attempt %d agent %q, winner %q", j.Status, j.Attempt, j.AgentID, agents[winner].ID)
	}
	s, _ := l.Stats(ctx)
	if s.Jobs[node3.StatusAccepted] != 1 || s.Jobs[node3.StatusAvailable] != 0 || s.Agents != n {
		t.Fatalf("stats after the race: %+v", s)
	}
	// The winner's retry is the same answer; a loser's retry still loses.
	mustTransition(t, l, job.ID, Event{Kind: EvAccept, AgentID: agents[winner].ID, Now: t0.Add(2 * time.Second), Lease: time.Minute})
	_, err := l.Transition(ctx, job.ID, Event{Kind: EvAccept, AgentID: agents[(winner+1)%n].ID, Now: t0.Add(2 * time.Second)})
	wantCode(t, "a loser's retry", err, node3.CodeConflict)
}

// TestGroupCommit has many writers of distinct jobs: every write succeeds
// and the writer gathers them into fewer commits than requests.
func TestGroupCommit(t *testing.T) {
	l := openAt(t, t.TempDir(), false)
	const writers = 64
	b0, r0 := l.WriteStats()
	var wg sync.WaitGroup
	ids := make([]string, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			agent := "agent-" + string(rune('A'+i%26)) + string(rune('a'+i/26))
			j, err := l.CreateJob(ctx, noopSpec(node3.Lamports(i+1)), t0)
			if err == nil {
				_, err = l.Transition(ctx, j.ID, Event{Kind: EvAccept, AgentID: agent, Now: t0, Lease: time.Minute})
			}
			if err == nil {
				_, err = l.Transition(ctx, j.ID, Event{Kind: EvComplete, AgentID: agent, Now: t0.Add(time.Second)})
			}
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
			ids[i] = j.ID
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	b1, r1 := l.WriteStats()
	batches, requests := b1-b0, r1-r0
	t.Logf("%d requests in %d commits", requests, batches)
	if requests != 3*writers {
		t.Fatalf("%d requests committed, want %d", requests, 3*writers)
	}
	if batches >= requests {
		t.Fatalf("%d commits for %d requests: no group commit", batches, requests)
	}
	for _, id := range ids {
		if j := mustJob(t, l, id); j.Status != node3.StatusCompleted {
			t.Fatalf("job %s is %s", id, j.Status)
		}
	}
	s, _ := l.Stats(ctx)
	if s.Jobs[node3.StatusCompleted] != writers || s.JobsTotal != writers || s.PayoutsPending != writers {
		t.Fatalf("stats %+v", s)
	}
}
