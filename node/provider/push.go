package provider

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
	"github.com/node3/node3/p2p"
)

// Push is a provider's transport for push dispatch: it keeps one work
// stream to each trusted coordinator, announces on it what it puts at the
// coordinator's disposal (its slots and GPUs, its price floor, its
// wallet), and runs what it is granted. The coordinator has decided and
// committed each grant before it arrives, so there is no claim to make:
// Accept acks, Withdraw declines. Heartbeats and reports go over the
// report stream, through the durable outbox, as on the gossip path.
type Push struct {
	cfg  PushConfig
	pn   *p2p.Node
	log  *slog.Logger
	self string

	mu     sync.Mutex
	conns  map[peer.ID]*p2p.WorkConn
	queue  []node3.Job          // granted, not yet handed to the provider
	grants map[string]pushGrant // granted and not yet acked or declined
	wake   chan struct{}        // buffered(1): a grant arrived
	stops  []func()

	*reporter
}

type pushGrant struct {
	coord   peer.ID
	job     node3.Job
	attempt int
	gpus    []node3.GPU // the GPUs the coordinator assigned (Index, UUID)
	ackBy   time.Time   // past it the coordinator has given the job back
}

// PushConfig configures the push transport.
type PushConfig struct {
	Node       *p2p.Node
	Trusted    []peer.ID
	GPUs       []node3.GPU
	Slots      int
	PriceFloor node3.Lamports
	Wallet     string
	Version    string
	Logger     *slog.Logger
	Now        func() time.Time // default time.Now
}

// NewPush returns the push transport; Run opens its work streams.
func NewPush(cfg PushConfig) *Push {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Push{
		cfg: cfg, pn: cfg.Node, log: cfg.Logger, self: cfg.Node.ID().String(),
		conns:    make(map[peer.ID]*p2p.WorkConn),
		grants:   make(map[string]pushGrant),
		wake:     make(chan struct{}, 1),
		reporter: newReporter(cfg.Node, cfg.Trusted),
	}
}

func (t *Push) Register(context.Context) error { return nil }
func (t *Push) AgentID() string                { return t.self }

// Me: a coordinator serves no agent record over libp2p yet.
func (t *Push) Me(context.Context) (node3.Agent, error) {
	return node3.Agent{}, node3.Errorf(node3.CodeUnavailable, "the coordinator's record of this provider is not served over libp2p")
}

// Connected reports whether a work stream to a coordinator is open.
func (t *Push) Connected() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns) > 0
}

// Run keeps a work stream open to every trusted coordinator until ctx ends.
func (t *Push) Run(ctx context.Context) {
	if len(t.cfg.Trusted) == 0 {
		t.log.Warn("push dispatch without a trusted coordinator (--trust-coordinator PEERID): no work will come")
	}
	for _, c := range t.cfg.Trusted {
		stop, err := t.pn.KeepWork(c, t.serve)
		if err != nil {
			t.log.Error("opening a work stream", "coordinator", c, "err", err)
			continue
		}
		t.mu.Lock()
		t.stops = append(t.stops, stop)
		t.mu.Unlock()
	}
	<-ctx.Done()
	t.mu.Lock()
	stops := t.stops
	t.stops = nil
	t.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// capacity is what this provider puts at a coordinator's disposal: all of
// it (the coordinator subtracts what it gave out).
func (t *Push) capacity() p2p.Capacity {
	gpus := make([]p2p.CapacityGPU, len(t.cfg.GPUs))
	for i, g := range t.cfg.GPUs {
		g.UUID = gpuUUID(g)
		gpus[i] = p2p.CapacityGPU{GPU: g}
	}
	return p2p.Capacity{
		FreeSlots: t.cfg.Slots, TotalSlots: t.cfg.Slots, GPUs: gpus,
		PriceFloor: t.cfg.PriceFloor, Wallet: t.cfg.Wallet, SoftwareVersion: node3.Truncate(t.cfg.Version, 64),
	}
}

// serve runs one work stream: it announces the capacity, then queues the
// grants that come.
func (t *Push) serve(c *p2p.WorkConn) {
	coord := c.Peer()
	if err := c.SendCapacity(t.capacity()); err != nil {
		t.log.Warn("announcing capacity", "coordinator", coord, "err", err)
		return
	}
	t.mu.Lock()
	t.conns[coord] = c
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		if t.conns[coord] == c {
			delete(t.conns, coord)
		}
		// Grants not yet taken die with the stream: the coordinator
		// requeues them when it sees the stream end.
		kept := t.queue[:0]
		for _, j := range t.queue {
			if g := t.grants[j.ID]; g.coord == coord {
				delete(t.grants, j.ID)
				continue
			}
			kept = append(kept, j)
		}
		t.queue = kept
		t.mu.Unlock()
	}()
	for m := range c.Messages() {
		switch {
		case m.Grant != nil:
			j := m.Grant.Job
			gpus := make([]node3.GPU, len(m.Grant.GPUs))
			for i, r := range m.Grant.GPUs {
				gpus[i] = node3.GPU{Index: r.Index, UUID: r.UUID}
			}
			t.mu.Lock()
			t.grants[j.ID] = pushGrant{coord: coord, job: j, attempt: m.Grant.Attempt, gpus: gpus, ackBy: m.Grant.AckBy}
			t.queue = append(t.queue, j)
			t.mu.Unlock()
			t.remember(j.ID, coord)
			select {
			case t.wake <- struct{}{}:
			default:
			}
		case m.Revoke != nil:
			// The heartbeat that follows learns it is no longer ours and
			// stops the run.
			t.log.Info("the coordinator took a job back", "job", m.Revoke.JobID, "reason", m.Revoke.Reason)
		}
	}
}

// Offers waits for grants: the coordinator already fitted them to what
// this provider announced.
func (t *Push) Offers(ctx context.Context, _ node3.Capacity, n int, wake <-chan struct{}) ([]node3.Job, error) {
	for {
		t.mu.Lock()
		if len(t.queue) > 0 {
			k := min(n, len(t.queue))
			out := append([]node3.Job(nil), t.queue[:k]...)
			t.queue = append(t.queue[:0], t.queue[k:]...)
			t.mu.Unlock()
			return out, nil
		}
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil
		case <-wake:
			return nil, nil
		case <-t.wake:
		}
	}
}

// take removes a grant waiting for its answer.
func (t *Push) take(jobID string) (pushGrant, *p2p.WorkConn, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g, ok := t.grants[jobID]
	if !ok {
		return pushGrant{}, nil, false
	}
	delete(t.grants, jobID)
	return g, t.conns[g.coord], true
}

// Assigned names the GPUs a grant assigned.
func (t *Push) Assigned(jobID string) []node3.GPU {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.grants[jobID].gpus
}

// gpuUUID is the UUID a GPU is announced by (its own, or one made from
// its index when it has none).
func gpuUUID(g node3.GPU) string {
	if g.UUID == "" {
		return fmt.Sprintf("gpu-%d", g.Index)
	}
	return g.UUID
}

// Withdraw declines a grant the provider cannot start after all.
func (t *Push) Withdraw(jobID string) {
	if g, c, ok := t.take(jobID); ok && c != nil {
		_ = c.SendDecline(jobID, g.attempt, "no capacity for it here now")
	}
}

// Accept acks a grant and returns the job as granted.
func (t *Push) Accept(_ context.Context, jobID string) (node3.Job, error) {
	g, c, ok := t.take(jobID)
	if !ok {
		return node3.Job{}, node3.Errorf(node3.CodeNotFound, "no grant of job %s waits here", jobID)
	}
	// A grant not acked by its deadline is the coordinator's again (it
	// may already run elsewhere): starting it now would run it twice.
	if !g.ackBy.IsZero() && t.cfg.Now().After(g.ackBy) {
		t.log.Warn("a grant waited here past its ack deadline; not starting it", "job", jobID, "ack_by", g.ackBy)
		return node3.Job{}, node3.Errorf(node3.CodeConflict, "the grant of job %s expired before it could start", jobID)
	}
	if c == nil {
		return node3.Job{}, node3.Errorf(node3.CodeConflict, "the work stream of job %s's grant is gone", jobID)
	}
	if err := c.SendAck(jobID, g.attempt); err != nil {
		return node3.Job{}, node3.Errorf(node3.CodeConflict, "acking job %s: %v", jobID, err)
	}
	return g.job, nil
}
