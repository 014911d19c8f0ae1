package coordinator

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
)

const (
	walletA = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
	walletB = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	t     *testing.T
	led   *ledger.Ledger
	clock *clockwork.FakeClock
	c     *Coordinator
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	led, err := ledger.Open(ledger.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	e := &env{t: t, led: led, clock: clockwork.NewFakeClockAt(t0)}
	cfg.Ledger, cfg.Clock = led, e.clock
	if e.c, err = New(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) agent(wallet string, slots int) node3.Agent {
	e.t.Helper()
	a, _, err := e.c.RegisterAgent(e.t.Context(), node3.Agent{WalletAddress: wallet, Slots: slots})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) job() node3.Job {
	e.t.Helper()
	j, _, err := e.c.CreateJob(e.t.Context(), node3.JobSpec{Kind: node3.KindNoop, Reward: 1000}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

type polled struct {
	jobs []node3.Job
	err  error
}

// poll starts a long-poll and returns where its answer will arrive, once
// the poll waits on the clock (its deadline timer and recheck ticker).
func (e *env) poll(a node3.Agent, wait time.Duration) <-chan polled {
	e.t.Helper()
	out := make(chan polled, 1)
	go func() {
		jobs, err := e.c.AvailableJobs(e.t.Context(), a, 10, nil, wait)
		out <- polled{jobs, err}
	}()
	ctx, cancel := context.WithTimeout(e.t.Context(), 5*time.Second)
	defer cancel()
	if err := e.clock.BlockUntilContext(ctx, 2); err != nil {
		e.t.Fatalf("the long-poll never waited: %v", err)
	}
	return out
}

func recv(t *testing.T, ch <-chan polled) polled {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no answer from the long-poll")
		return polled{}
	}
}

// TestLongPollWakes: a waiting poll answers with a job created meanwhile,
// and one that waits out its time answers empty, on the injected clock.
func TestLongPollWakes(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.agent(walletA, 1)
	ch := e.poll(a, 10*time.Second)
	j := e.job()
	if got := recv(t, ch); got.err != nil || len(got.jobs) != 1 || got.jobs[0].ID != j.ID {
		t.Fatalf("woken poll: %+v", got)
	}
	if _, err := e.c.Accept(t.Context(), a, j.ID, ""); err != nil {
		t.Fatal(err)
	}
	ch = e.poll(a, 10*time.Second)
	e.clock.Advance(10 * time.Second)
	if got := recv(t, ch); got.err != nil || len(got.jobs) != 0 {
		t.Fatalf("a poll past its wait: %+v", got)
	}
}

// TestOfferHeldUntilTTL: a job offered to one agent is kept from others
// for OfferTTL, then offered to them.
func TestOfferHeldUntilTTL(t *testing.T) {
	e := newEnv(t, Config{OfferTTL: 2 * time.Second})
	a, b := e.agent(walletA, 1), e.agent(walletB, 1)
	j := e.job()
	if got, _ := e.c.AvailableJobs(t.Context(), a, 10, nil, 0); len(got) != 1 {
		t.Fatalf("a was offered %d jobs", len(got))
	}
	if got, _ := e.c.AvailableJobs(t.Context(), b, 10, nil, 0); len(got) != 0 {
		t.Fatalf("b was offered a's job: %+v", got)
	}
	e.clock.Advance(2 * time.Second)
	if got, _ := e.c.AvailableJobs(t.Context(), b, 10, nil, 0); len(got) != 1 || got[0].ID != j.ID {
		t.Fatalf("after the offer lapsed b was offered %+v", got)
	}
}

// TestSweeperRequeues: the sweeper, ticking on the injected clock, puts a
// job whose lease lapsed back on the board.
func TestSweeperRequeues(t *testing.T) {
	e := newEnv(t, Config{Lease: 30 * time.Second, SweepInterval: time.Second})
	a := e.agent(walletA, 1)
	j := e.job()
	if _, err := e.c.Accept(t.Context(), a, j.ID, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { e.c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := e.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	requeued := make(chan node3.Job, 1)
	e.led.Watch(func(got node3.Job) {
		if got.ID == j.ID && got.Status == node3.StatusAvailable {
			select {
			case requeued <- got:
			default:
			}
		}
	})
	e.clock.Advance(31 * time.Second)
	select {
	case got := <-requeued:
		if got.Attempt != 1 || got.Error == "" {
			t.Fatalf("requeued: %+v", got)
		}
	case <-time.After(5 * time.Second):
		got, _ := e.led.Job(t.Context(), j.ID)
		t.Fatalf("the lapsed lease was never swept: %s", got.Status)
	}
}

// TestLeasesSurviveRestart: what an agent holds is counted from the
// ledger when a coordinator starts, so its capacity holds across restarts.
func TestLeasesSurviveRestart(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.agent(walletA, 1) // capacity 1: one slot, no GPU
	first, second := e.job(), e.job()
	if _, err := e.c.Accept(t.Context(), a, first.ID, ""); err != nil {
		t.Fatal(err)
	}
	again, err := New(t.Context(), Config{Ledger: e.led, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Accept(t.Context(), a, second.ID, ""); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("accept past capacity after a restart: %v", err)
	}
	if got, _ := again.AvailableJobs(t.Context(), a, 10, nil, 0); len(got) != 0 {
		t.Fatalf("offered %d jobs past capacity after a restart", len(got))
	}
}
