package provider

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
)

// testTransport is a coordinator the test plays: it hands out the jobs
// the test queues, grants every accept on attempt 3, and records what the
// provider asks and reports. completeFails makes the first deliveries of a
// completion fail as if the coordinator were unreachable.
type testTransport struct {
	mu            sync.Mutex
	queue         []node3.Job
	asked         []int // n of every Offers call
	withdrawn     []string
	beats         map[string][]int // job → attempts heartbeats named
	completes     map[string][]int // job → attempts completions named
	completeFails int
	assigned      map[string][]node3.GPU // GPUs the "coordinator" names per job
	queued        chan struct{}          // signalled when the test queues jobs
	wake          chan struct{}          // signalled when something is recorded
}

func newTestTransport() *testTransport {
	return &testTransport{beats: map[string][]int{}, completes: map[string][]int{},
		queued: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (t *testTransport) note() { signal(t.wake) }

func (t *testTransport) offer(jobs ...node3.Job) {
	t.mu.Lock()
	t.queue = append(t.queue, jobs...)
	t.mu.Unlock()
	signal(t.queued)
}

func (t *testTransport) Assigned(id string) []node3.GPU {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.assigned[id]
}

func (t *testTransport) Register(context.Context) error { return nil }
func (t *testTransport) AgentID() string                { return "agent-1" }
func (t *testTransport) Run(context.Context)            {}
func (t *testTransport) Connected() bool                { return true }
func (t *testTransport) Me(context.Context) (node3.Agent, error) {
	return node3.Agent{}, node3.Errorf(node3.CodeUnavailable, "test")
}

func (t *testTransport) Offers(ctx context.Context, free node3.Capacity, n int, wake <-chan struct{}) ([]node3.Job, error) {
	for {
		t.mu.Lock()
		if len(t.queue) > 0 {
			t.asked = append(t.asked, n)
			out := t.queue
			t.queue = nil
			t.mu.Unlock()
			t.note()
			return out, nil
		}
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil
		case <-wake:
			return nil, nil
		case <-t.queued:
		}
	}
}

func (t *testTransport) Withdraw(id string) {
	t.mu.Lock()
	t.withdrawn = append(t.withdrawn, id)
	t.mu.Unlock()
	t.note()
}

func (t *testTransport) Accept(_ context.Context, id string) (node3.Job, error) {
	return node3.Job{ID: id, JobSpec: node3.JobSpec{Kind: node3.KindTest}, Status: node3.StatusAccepted, Attempt: 3,
		AcceptedAt: time.Now(), LeaseExpiresAt: time.Now().Add(30 * time.Second)}, nil
}

func (t *testTransport) Heartbeat(_ context.Context, id string, attempt int) error {
	t.mu.Lock()
	t.beats[id] = append(t.beats[id], attempt)
	t.mu.Unlock()
	t.note()
	return nil
}

func (t *testTransport) Complete(_ context.Context, id string, attempt int, _ node3.JobResult) (Ack, error) {
	t.mu.Lock()
	defer t.note()
	defer t.mu.Unlock()
	t.completes[id] = append(t.completes[id], attempt)
	if t.completeFails > 0 {
		t.completeFails--
		return Ack{}, node3.Errorf(node3.CodeUnavailable, "coordinator down")
	}
	return Ack{Status: node3.StatusCompleted}, nil
}

func (t *testTransport) Fail(context.Context, string, int, string, bool, node3.JobResult) (Ack, error) {
	return Ack{Status: node3.StatusFailed}, nil
}

// gate is an executor whose jobs run until the test lets them finish.
type gate struct {
	mu      sync.Mutex
	running map[string]chan struct{}
	gpus    map[string][]node3.GPU // the GPUs each job was given
	started chan string
}

func newGate() *gate {
	return &gate{running: map[string]chan struct{}{}, gpus: map[string][]node3.GPU{}, started: make(chan string, 16)}
}

func (g *gate) Run(ctx context.Context, j node3.Job, gpus []node3.GPU) (node3.JobResult, error) {
	done := make(chan struct{})
	g.mu.Lock()
	g.running[j.ID] = done
	g.gpus[j.ID] = gpus
	g.mu.Unlock()
	g.started <- j.ID
	select {
	case <-done:
		return node3.JobResult{ExecutionTime: 1}, nil
	case <-ctx.Done():
		return node3.JobResult{}, ctx.Err()
	}
}

func (g *gate) finish(id string) {
	g.mu.Lock()
	close(g.running[id])
	g.mu.Unlock()
}

func start(t *testing.T, tr *testTransport, ex Executor, slots int, gpus ...node3.GPU) (*Provider, *ledger.Ledger) {
	t.Helper()
	p, led, _ := startStoppable(t, tr, ex, slots, gpus...)
	return p, led
}

// startStoppable is start, with a stop that returns once Run has: every
// run, delivery and outbox write it began has finished.
func startStoppable(t *testing.T, tr *testTransport, ex Executor, slots int, gpus ...node3.GPU) (*Provider, *ledger.Ledger, func()) {
	t.Helper()
	led, err := ledger.Open(ledger.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{Ledger: led, Transport: tr, Executor: ex, Slots: slots, GPUs: gpus})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		stop()
		led.Close()
	})
	return p, led, stop
}

func until(t *testing.T, tr *testTransport, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		tr.mu.Lock()
		ok := cond()
		tr.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-tr.wake:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func jobs(ids ...string) []node3.Job {
	var out []node3.Job
	for _, id := range ids {
		out = append(out, node3.Job{ID: id, JobSpec: node3.JobSpec{Kind: node3.KindTest}, Status: node3.StatusAvailable})
	}
	return out
}

// TestCapacity: a provider with two slots starts two jobs of three
// offered, gives the third back, asks for nothing while full and for one
// when a job ends.
func TestCapacity(t *testing.T) {
	tr, g := newTestTransport(), newGate()
	start(t, tr, g, 2)
	tr.offer(jobs("a", "b", "c")...)
	got := map[string]bool{<-g.started: true, <-g.started: true}
	until(t, tr, "the third job given back", func() bool { return len(tr.withdrawn) == 1 })
	if got[tr.withdrawn[0]] || len(got) != 2 {
		t.Fatalf("started %v, gave back %v", got, tr.withdrawn)
	}
	if tr.asked[0] != 2 {
		t.Fatalf("first poll asked for %d jobs, want 2", tr.asked[0])
	}
	for id := range got {
		g.finish(id)
		break
	}
	tr.offer(jobs("d")...)
	if id := <-g.started; id != "d" {
		t.Fatalf("started %s, want d", id)
	}
	until(t, tr, "a poll for the one free slot", func() bool { return len(tr.asked) == 2 })
	if tr.asked[1] != 1 {
		t.Fatalf("with one slot free the provider asked for %d", tr.asked[1])
	}
}

// TestOutboxRetriesWithAttempt: a completion the coordinator could not
// take waits in the outbox and is delivered again, each time naming the
// attempt the job was granted on, and only then leaves the outbox.
func TestOutboxRetriesWithAttempt(t *testing.T) {
	tr, g := newTestTransport(), newGate()
	tr.completeFails = 2
	_, led, stop := startStoppable(t, tr, g, 1)
	tr.offer(jobs("a")...)
	<-g.started
	g.finish("a")
	until(t, tr, "three deliveries", func() bool { return len(tr.completes["a"]) == 3 })
	// Stopped, the provider has finished the third delivery, and so
	// removed it from the outbox.
	stop()
	for _, a := range append(tr.completes["a"], tr.beats["a"]...) {
		if a != 3 {
			t.Fatalf("reports and heartbeats named attempts %v and %v, want 3", tr.completes["a"], tr.beats["a"])
		}
	}
	if pending, err := led.PendingReports(context.Background(), 0); err != nil || len(pending) != 0 {
		t.Fatalf("the delivered report is still in the outbox: %+v (%v)", pending, err)
	}
}

// TestAssignedGPUs: a job the coordinator assigned GPUs for runs on exactly
// those; one whose assigned GPU is busy or unknown is given back.
func TestAssignedGPUs(t *testing.T) {
	tr, g := newTestTransport(), newGate()
	gpus := []node3.GPU{
		{Index: 0, UUID: "GPU-a", Model: "A100", MemoryBytes: 80 << 30},
		{Index: 1, UUID: "GPU-b", Model: "A100", MemoryBytes: 80 << 30},
	}
	start(t, tr, g, 1, gpus...)
	gpuJob := func(id string) node3.Job {
		return node3.Job{ID: id, JobSpec: node3.JobSpec{Kind: node3.KindTest, Requirements: node3.Requirements{GPU: true}}, Status: node3.StatusAvailable}
	}
	tr.mu.Lock()
	tr.assigned = map[string][]node3.GPU{
		"second": {{Index: 1, UUID: "GPU-b"}}, // the provider would pick GPU-a itself
		"busy":   {{Index: 1, UUID: "GPU-b"}}, // already running "second"
		"ghost":  {{Index: 7, UUID: "GPU-z"}},
	}
	tr.mu.Unlock()
	tr.offer(gpuJob("second"))
	if id := <-g.started; id != "second" {
		t.Fatalf("started %s", id)
	}
	g.mu.Lock()
	used := g.gpus["second"]
	g.mu.Unlock()
	if len(used) != 1 || used[0].UUID != "GPU-b" {
		t.Fatalf("ran on %+v, want the assigned GPU-b", used)
	}
	tr.offer(gpuJob("busy"), gpuJob("ghost"))
	until(t, tr, "both given back", func() bool { return len(tr.withdrawn) == 2 })
}
