package coordinator

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/node/coordinator/schedule"
	"github.com/node3/node3/p2p"
)

// Dispatch is push dispatch: the coordinator decides, once, which provider
// runs each job. Providers hold a work stream to it and announce what they
// put at its disposal; the pure scheduler (schedule.Scheduler) picks one
// provider per job; Dispatch commits the pick with the ledger's accept
// (the REST accept's transition), pushes the grant with the whole job on
// the provider's stream, and gives the job back at once (ledger.EvRelease)
// when the provider declines, does not ack in time, or goes away. No
// claim races, no work by providers that do not get the job.
//
// The scheduler is the coordinator's (the REST polls are offered from the
// same one) and so is its lock; the ledger's job-change feed (through the
// coordinator), the work streams and a timer at the scheduler's next
// deadline feed it. The lock is never held across a ledger write (the
// feed runs inside it).
type Dispatch struct {
	cfg   DispatchConfig
	log   *slog.Logger
	clock clockwork.Clock
	led   *ledger.Ledger

	mu    *sync.Mutex              // the coordinator's
	s     *schedule.Scheduler      // the coordinator's
	conns map[string]*p2p.WorkConn // provider (peer ID) → its stream; under mu

	kick    chan struct{}
	commits chan struct{} // bounds the grants being committed at once
	wg      sync.WaitGroup
	metrics dispatchMetrics
}

// maxCommits is how many grants are committed at once: enough for the
// ledger's group commit to batch them into few fsyncs.
const maxCommits = 64

type dispatchMetrics struct {
	grants   *prometheus.CounterVec
	requeues *prometheus.CounterVec
}

// DispatchConfig configures push dispatch.
type DispatchConfig struct {
	Coordinator *Coordinator // its ledger, clock, lock and scheduler
	Gossip      *Gossip      // records provider peers as ledger agents
	Logger      *slog.Logger
	Registerer  prometheus.Registerer
}

// NewDispatch builds push dispatch over the coordinator's scheduler; the
// coordinator wakes it on every job change.
func NewDispatch(cfg DispatchConfig) *Dispatch {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := cfg.Coordinator
	d := &Dispatch{
		cfg: cfg, log: cfg.Logger, clock: c.cfg.Clock, led: c.led,
		mu:      &cfg.Coordinator.mu,
		s:       cfg.Coordinator.sched,
		conns:   make(map[string]*p2p.WorkConn),
		kick:    make(chan struct{}, 1),
		commits: make(chan struct{}, maxCommits),
		metrics: dispatchMetrics{
			grants: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_coordinator_grants_total",
				Help: "Jobs pushed to providers over work streams, by result (granted, acked, declined, failed, late: acked after it was given back).",
			}, []string{"result"}),
			requeues: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_coordinator_grant_requeues_total",
				Help: "Grants given back, by reason: declined, not acked in time, or the provider went away.",
			}, []string{"reason"}),
		},
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(d.metrics.grants, d.metrics.requeues)
	}
	d.mu.Lock()
	c.onChange = d.poke
	d.mu.Unlock()
	return d
}

func (d *Dispatch) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// HandleWork serves one provider's work stream until it ends (for
// p2p.Node.HandleWork).
func (d *Dispatch) HandleWork(c *p2p.WorkConn) {
	id := c.Peer().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer func() {
		d.mu.Lock()
		var requeues []schedule.Requeue
		if d.conns[id] == c {
			delete(d.conns, id)
			requeues = d.s.Disconnect(id)
		}
		d.mu.Unlock()
		d.release(ctx, requeues)
		d.poke()
	}()
	for m := range c.Messages() {
		switch {
		case m.Capacity != nil:
			d.connect(ctx, c, id, *m.Capacity)
		case m.Ack != nil:
			d.mu.Lock()
			err := d.s.Ack(m.Ack.JobID, id)
			d.mu.Unlock()
			if err == nil {
				d.metrics.grants.WithLabelValues("acked").Inc()
				continue
			}
			if node3.ErrorCode(err) != node3.CodeConflict {
				continue // the job ended first: its report overtook the ack
			}
			// An ack after the grant was given back: the provider must
			// not run it (it may run elsewhere already).
			d.metrics.grants.WithLabelValues("late").Inc()
			if err := c.SendRevoke(m.Ack.JobID, m.Ack.Attempt, "the grant was given back before its ack came"); err != nil {
				d.log.Debug("revoking a late-acked grant", "job", m.Ack.JobID, "provider", id, "err", err)
			}
		case m.Decline != nil:
			d.mu.Lock()
			rq, err := d.s.Decline(m.Decline.JobID, id, d.clock.Now())
			d.mu.Unlock()
			if err == nil {
				d.metrics.grants.WithLabelValues("declined").Inc()
				d.release(ctx, []schedule.Requeue{rq})
				d.poke()
			}
		}
	}
}

// connect records a provider's announcement: its ledger agent (paid to
// the wallet it names), and its capacity in the scheduler.
func (d *Dispatch) connect(ctx context.Context, c *p2p.WorkConn, id string, m p2p.Capacity) {
	gpus := make([]node3.GPU, len(m.GPUs))
	for i, g := range m.GPUs {
		gpus[i] = g.GPU
	}
	if m.Wallet == "" {
		d.log.Warn("a provider announced no wallet; it gets no work", "peer", id)
		return
	}
	if _, err := d.cfg.Gossip.upsertAgent(ctx, c.Peer(), node3.Agent{WalletAddress: m.Wallet, GPUs: gpus, Slots: m.TotalSlots, Version: m.SoftwareVersion}); err != nil {
		d.log.Warn("recording a provider", "peer", id, "err", err)
		return
	}
	d.cfg.Coordinator.touch(id)
	d.mu.Lock()
	err := d.s.Connect(id, schedule.Capacity{Slots: m.TotalSlots, GPUs: gpus, PriceFloor: m.PriceFloor})
	if err == nil {
		d.conns[id] = c
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Warn("a provider's announcement was refused", "peer", id, "err", err)
		c.Close()
		return
	}
	d.poke()
}

// Run assigns jobs as they come and capacity frees up, and gives back
// grants whose ack is overdue, until ctx ends.
func (d *Dispatch) Run(ctx context.Context) {
	timer := d.clock.NewTimer(time.Hour)
	defer timer.Stop()
	defer d.wg.Wait()
	for {
		now := d.clock.Now()
		d.mu.Lock()
		requeues := d.s.Tick(now)
		grants := d.s.Assign(now)
		next := d.s.NextDeadline()
		d.mu.Unlock()
		d.release(ctx, requeues)
		for _, g := range grants {
			// Commits run side by side (each waits for its fsync); the
			// scheduler already holds the capacity they use.
			select {
			case d.commits <- struct{}{}:
			case <-ctx.Done():
				return
			}
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer func() { <-d.commits }()
				d.grant(ctx, g)
			}()
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(d.clock.Now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-timer.Chan():
		}
	}
}

// grant commits one of the scheduler's picks and pushes it.
func (d *Dispatch) grant(ctx context.Context, g schedule.Grant) {
	abort := func(why string, err error) {
		d.mu.Lock()
		_ = d.s.Abort(g.JobID, g.Provider)
		d.mu.Unlock()
		d.metrics.grants.WithLabelValues("failed").Inc()
		if ctx.Err() == nil && !node3.Refused(err) {
			d.log.Warn(why, "job", g.JobID, "provider", g.Provider, "err", err)
		}
	}
	// The agent its announcement wrote (connect); the ledger's if not.
	agent, ok := d.agentOf(g.Provider)
	if !ok {
		var err error
		if agent, err = d.led.Agent(ctx, g.Provider); err != nil {
			abort("granting a job: the provider's agent", err)
			return
		}
	}
	j, err := d.cfg.Coordinator.Accept(ctx, agent, g.JobID, "")
	if err != nil {
		abort("granting a job", err)
		return
	}
	d.mu.Lock()
	c := d.conns[g.Provider]
	d.mu.Unlock()
	refs := make([]p2p.GPURef, len(g.GPUs))
	for i, x := range g.GPUs {
		refs[i] = p2p.GPURef{Index: x.Index, UUID: x.UUID}
	}
	// The ack is due before the lease could lapse.
	ackBy := j.AcceptedAt.Add(d.ackTimeout())
	if j.LeaseExpiresAt.Before(ackBy) {
		ackBy = j.LeaseExpiresAt
	}
	if c == nil {
		return // the stream is gone: its end requeued the grant, or the ack deadline will
	}
	if err := c.SendGrant(p2p.Grant{Job: j, Attempt: j.Attempt, GPUs: refs, LeaseExpiresAt: j.LeaseExpiresAt, AckBy: ackBy}); err != nil {
		d.log.Warn("pushing a grant", "job", j.ID, "provider", g.Provider, "err", err)
		return // the ack deadline gives it back
	}
	d.metrics.grants.WithLabelValues("granted").Inc()
}

// agentOf is provider id's ledger agent as its announcement recorded it.
func (d *Dispatch) agentOf(id string) (node3.Agent, bool) {
	p, err := peer.Decode(id)
	if err != nil {
		return node3.Agent{}, false
	}
	return d.cfg.Gossip.knownAgent(p)
}

func (d *Dispatch) ackTimeout() time.Duration {
	return schedule.DefaultAckTimeout // the coordinator's scheduler runs with the default
}

// release puts given-back grants on the board again, their attempt not spent.
func (d *Dispatch) release(ctx context.Context, requeues []schedule.Requeue) {
	for _, rq := range requeues {
		d.metrics.requeues.WithLabelValues(rq.Reason).Inc()
		_, err := d.led.Transition(context.WithoutCancel(ctx), rq.JobID, ledger.Event{
			Kind: ledger.EvRelease, AgentID: rq.Provider, Attempt: rq.Attempt, Now: d.clock.Now(), Reason: rq.Reason,
		})
		if err != nil && !node3.Refused(err) {
			d.log.Warn("giving a job back", "job", rq.JobID, "provider", rq.Provider, "err", err)
		}
	}
}
