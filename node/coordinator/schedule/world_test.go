package schedule

import (
	"fmt"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const gib = 1 << 30

// world is a scheduler driven the way the coordinator drives it: a ledger
// of jobs moved by the real job state machine (ledger.Apply), whose every
// change is fed to Observe in order, and grants committed with the
// ledger's accept before anyone may ack them.
type world struct {
	t    tb
	s    *Scheduler
	led  map[string]node3.Job
	now  time.Time
	gpus map[string][]node3.GPU // each agent's GPUs, as its ledger agent has them
}

// tb is what the world needs of a *testing.T or a *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func newWorld(t tb, cfg Config) *world {
	return &world{t: t, s: New(cfg), led: make(map[string]node3.Job), now: t0, gpus: make(map[string][]node3.GPU)}
}

// mkJob returns an available job; r may ask for GPUs.
func mkJob(id string, reward node3.Lamports, r node3.Requirements) node3.Job {
	return node3.Job{
		ID:        id,
		JobSpec:   node3.JobSpec{Kind: node3.KindNoop, Reward: reward, Requirements: r, TimeoutSecs: 600, MaxAttempts: 20, TTLSecs: 3600},
		Status:    node3.StatusAvailable,
		CreatedAt: t0,
		UpdatedAt: t0,
		ExpiresAt: t0.Add(time.Hour),
	}
}

func gpu(uuid, vendor, model string, mem uint64) node3.GPU {
	return node3.GPU{UUID: uuid, Vendor: vendor, Model: model, MemoryBytes: mem}
}

// gpus returns n NVIDIA GPUs of mem bytes named prefix-0…
func gpus(prefix string, n int, mem uint64) []node3.GPU {
	out := make([]node3.GPU, n)
	for i := range out {
		out[i] = node3.GPU{Index: i, UUID: fmt.Sprintf("%s-%d", prefix, i), Vendor: "NVIDIA", Model: "A100", MemoryBytes: mem}
	}
	return out
}

func (w *world) add(jobs ...node3.Job) {
	for _, j := range jobs {
		w.led[j.ID] = j
		w.s.Observe(j)
	}
}

// apply moves a job through the ledger's state machine and feeds the
// change to the scheduler.
func (w *world) apply(id string, ev ledger.Event) error {
	if ev.Now.IsZero() {
		ev.Now = w.now
	}
	j, changed, err := ledger.Apply(w.led[id], ev)
	if err != nil {
		return err
	}
	if changed {
		w.led[id] = j
		w.s.Observe(j)
	}
	return nil
}

// accept is the ledger's accept by agent, with the GPUs it has (those it
// connected with, or registered: see registerGPUs).
func (w *world) accept(id, agent string) error {
	return w.apply(id, ledger.Event{Kind: ledger.EvAccept, AgentID: agent, Lease: 30 * time.Second, GPUs: w.gpus[agent]})
}

// registerGPUs records the GPUs of a polling agent, as its registration
// would.
func (w *world) registerGPUs(a node3.Agent) { w.gpus[a.ID] = a.GPUs }

// assign runs Assign and commits each grant as the coordinator would,
// aborting those whose accept fails.
func (w *world) assign() []Grant {
	w.t.Helper()
	gs := w.s.Assign(w.now)
	for _, g := range gs {
		if st := w.led[g.JobID].Status; st != node3.StatusAvailable {
			w.t.Fatalf("granted %s to %s while the ledger has it %s", g.JobID, g.Provider, st)
		}
		if err := w.accept(g.JobID, g.Provider); err != nil {
			if err := w.s.Abort(g.JobID, g.Provider); err != nil {
				w.t.Fatalf("abort %s: %v", g.JobID, err)
			}
		}
	}
	return gs
}

// requeue applies requeues the way the coordinator will: the provider's
// lease on that attempt ends and the job goes back on the board. (The
// ledger has no decline event yet; a retryable failure with no backoff is
// the same transition.)
func (w *world) requeue(rqs ...Requeue) {
	for _, rq := range rqs {
		_ = w.apply(rq.JobID, ledger.Event{Kind: ledger.EvFail, AgentID: rq.Provider, Attempt: rq.Attempt, Retryable: true, Reason: rq.Reason})
	}
}

func (w *world) complete(id string) {
	w.t.Helper()
	j := w.led[id]
	if err := w.apply(id, ledger.Event{Kind: ledger.EvComplete, AgentID: j.AgentID, Result: &node3.JobResult{}}); err != nil {
		w.t.Fatalf("complete %s: %v", id, err)
	}
}

func (w *world) connect(id string, c Capacity) {
	w.t.Helper()
	if err := w.s.Connect(id, c); err != nil {
		w.t.Fatalf("connect %s: %v", id, err)
	}
	w.gpus[id] = c.GPUs
}

func (w *world) holder(id string) string {
	a, _ := w.s.Holder(id)
	return a
}

func byJob(gs []Grant) map[string]Grant {
	m := make(map[string]Grant, len(gs))
	for _, g := range gs {
		m[g.JobID] = g
	}
	return m
}
