// Package coordinator is the marketplace role: the scheduler that decides
// who gets which job (schedule.Scheduler: REST polls are offered from it,
// push dispatch grants from it), leases and the sweeper, the REST API's
// Marketplace (httpapi) over the ledger, push dispatch over work streams
// (dispatch.go), and its gossip side (gossip.go): postings published from
// the ledger's job-change feed, and claims, reports and sync served over
// streams through the same ledger transitions. Every rule about a job's
// state lives in ledger.Apply.
package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/node/coordinator/schedule"
	"github.com/node3/node3/p2p"
)

// Config configures the marketplace role.
type Config struct {
	Ledger *ledger.Ledger
	Logger *slog.Logger
	// Clock drives the sweeper, long-poll waits and offer rechecks (nil:
	// the real clock); Now defaults to its Now.
	Clock         clockwork.Clock
	Now           func() time.Time
	Registerer    prometheus.Registerer
	Lease         time.Duration // how long an accept or heartbeat holds a job (default 30 s)
	SweepInterval time.Duration // how often lapsed leases and stale jobs are swept (default 1 s)
	OnlineWindow  time.Duration // an agent seen within this is online (default 60 s)
	OfferTTL      time.Duration // how long a job shown to one agent is held back from others (default 2 s)
	// RetryBackoff is how long a provider whose retryable failure put a
	// job back is kept from retaking it (default 30 s; negative: not at all).
	RetryBackoff time.Duration
}

// Coordinator is the marketplace: it implements the REST API's
// httpapi.Marketplace over the ledger and runs the sweeper that requeues
// lapsed leases and expires untaken jobs.
type Coordinator struct {
	cfg Config
	led *ledger.Ledger
	log *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when jobs become available
	board   *board        // the available jobs in creation order, for listings and sync
	// sched decides who gets which job: REST polls are offered from it
	// and push dispatch grants from it, so one job never goes to two.
	sched    *schedule.Scheduler
	onChange func()               // push dispatch's wake-up, if it runs
	lastSeen map[string]time.Time // agent id → last call

	metrics coordMetrics
}

type coordMetrics struct {
	transitions *prometheus.CounterVec
	polls       prometheus.Counter
	waiting     prometheus.Gauge
}

// New returns a coordinator over cfg.Ledger. It must be made
// before anything else writes jobs to that ledger: it follows the ledger's
// job changes from then on, after loading the open board.
func New(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Clock.Now
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	if cfg.OnlineWindow <= 0 {
		cfg.OnlineWindow = 60 * time.Second
	}
	if cfg.OfferTTL <= 0 {
		cfg.OfferTTL = 2 * time.Second
	}
	switch {
	case cfg.RetryBackoff == 0:
		cfg.RetryBackoff = 30 * time.Second
	case cfg.RetryBackoff < 0:
		cfg.RetryBackoff = 0
	}
	c := &Coordinator{
		cfg:      cfg,
		led:      cfg.Ledger,
		log:      cfg.Logger,
		changed:  make(chan struct{}),
		board:    newBoard(),
		sched:    schedule.New(schedule.Config{OfferTTL: cfg.OfferTTL}),
		lastSeen: make(map[string]time.Time),
		metrics: coordMetrics{
			transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_coordinator_job_transitions_total",
				Help: "Job state changes made by this coordinator, by resulting state.",
			}, []string{"status"}),
			polls: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "node3_coordinator_polls_total",
				Help: "Calls for available jobs.",
			}),
			waiting: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "node3_coordinator_polls_waiting",
				Help: "Long-polls waiting for a job right now.",
			}),
		},
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.metrics.transitions, c.metrics.polls, c.metrics.waiting)
	}
	c.led.Watch(c.observe)
	open, err := c.led.Jobs(ctx, ledger.JobFilter{Status: node3.StatusAvailable, Oldest: true, Limit: math.MaxInt})
	if err != nil {
		return nil, fmt.Errorf("loading the open board: %w", err)
	}
	var held []node3.Job
	for _, s := range []node3.JobStatus{node3.StatusAccepted, node3.StatusRunning} {
		js, err := c.led.Jobs(ctx, ledger.JobFilter{Status: s, Limit: math.MaxInt})
		if err != nil {
			return nil, fmt.Errorf("loading leased jobs: %w", err)
		}
		held = append(held, js...)
	}
	c.mu.Lock()
	for _, j := range open {
		c.board.update(j)
		c.sched.Observe(j)
	}
	for _, j := range held {
		c.sched.Observe(j)
	}
	c.mu.Unlock()
	return c, nil
}

// observe follows every committed job change, in commit order.
func (c *Coordinator) observe(j node3.Job) {
	c.metrics.transitions.WithLabelValues(string(j.Status)).Inc()
	c.mu.Lock()
	c.board.update(j)
	c.sched.Observe(j)
	wake := c.onChange
	if j.Status == node3.StatusAvailable {
		close(c.changed) // wake every long-poll
		c.changed = make(chan struct{})
	}
	c.mu.Unlock()
	if wake != nil {
		wake()
	}
}

// Run sweeps lapsed leases and expired jobs until ctx ends.
func (c *Coordinator) Run(ctx context.Context) {
	t := c.cfg.Clock.NewTicker(c.cfg.SweepInterval)
	defer t.Stop()
	for {
		c.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
	}
}

func (c *Coordinator) sweep(ctx context.Context) {
	now := c.cfg.Now()
	requeued, err := c.led.Sweep(ctx, ledger.EvLeaseExpire, now, 1000)
	if err != nil && ctx.Err() == nil {
		c.log.Error("sweeping leases", "err", err)
	}
	for _, j := range requeued {
		c.log.Warn("lease lost", "job", j.ID, "agent", j.AgentID, "attempt", j.Attempt, "now", j.Status)
	}
	expired, err := c.led.Sweep(ctx, ledger.EvExpire, now, 1000)
	if err != nil && ctx.Err() == nil {
		c.log.Error("sweeping expired jobs", "err", err)
	}
	for _, j := range expired {
		c.log.Info("job expired untaken", "job", j.ID)
	}
	if _, err := c.led.ExpireIdempotencyKeys(ctx, now, 1000); err != nil && ctx.Err() == nil {
		c.log.Error("expiring idempotency keys", "err", err)
	}
}

func (c *Coordinator) touch(agentID string) {
	now := c.cfg.Now()
	c.mu.Lock()
	c.lastSeen[agentID] = now
	c.mu.Unlock()
}

// RegisterAgent registers an HTTP agent. An agent that names its GPU only
// by the seed's fields (gpu_model, gpu_vendor, gpu_memory) is taken to have
// one such GPU.
func (c *Coordinator) RegisterAgent(ctx context.Context, a node3.Agent) (node3.Agent, string, error) {
	seedGPUs(&a)
	out, key, err := c.led.RegisterAgent(ctx, a, c.cfg.Now())
	if err != nil {
		return out, "", err
	}
	c.touch(out.ID)
	c.log.Info("agent registered", "agent", out.ID, "wallet", out.WalletAddress, "gpus", len(out.GPUs))
	return out, key, nil
}

// seedGPUs reconciles the seed's one-GPU fields (gpu_model, gpu_vendor,
// gpu_memory) with the GPU list: an agent that names its GPU only by
// those is taken to have one such GPU, and the list's first GPU fills
// them in when they are missing.
func seedGPUs(a *node3.Agent) {
	if len(a.GPUs) == 0 && strings.TrimSpace(a.GPUModel) != "" {
		a.GPUs = []node3.GPU{{Vendor: a.GPUVendor, Model: a.GPUModel, MemoryBytes: a.GPUMemory}}
	}
	if len(a.GPUs) > 0 && a.GPUModel == "" {
		a.GPUModel, a.GPUVendor, a.GPUMemory = a.GPUs[0].Model, a.GPUs[0].Vendor, a.GPUs[0].MemoryBytes
	}
}

// SetAgentGPUs takes the GPUs an agent reports with a poll as its current
// capabilities (in the registration's fields) and returns the agent as it
// now stands.
func (c *Coordinator) SetAgentGPUs(ctx context.Context, a node3.Agent, caps node3.Agent) (node3.Agent, error) {
	seedGPUs(&caps)
	return c.led.SetAgentGPUs(ctx, a, caps.GPUs, caps.GPUModel, caps.GPUVendor, caps.GPUMemory)
}

// AgentByKey authenticates an agent.
func (c *Coordinator) AgentByKey(ctx context.Context, key string) (node3.Agent, error) {
	a, err := c.led.AgentByKey(ctx, key)
	if err == nil {
		c.touch(a.ID)
	}
	return a, err
}

// AvailableJobs returns up to limit available jobs that fit the agent's
// free capacity, oldest first, skipping jobs on offer to another agent.
// With wait > 0 it blocks until there is at least one or the wait is over.
func (c *Coordinator) AvailableJobs(ctx context.Context, a node3.Agent, limit int, free *node3.Capacity, wait time.Duration) ([]node3.Job, error) {
	c.metrics.polls.Inc()
	var deadline <-chan time.Time
	if wait > 0 {
		t := c.cfg.Clock.NewTimer(wait)
		defer t.Stop()
		deadline = t.Chan()
	}
	// Offers to other agents lapse without any event: look again at least
	// once per offer lifetime.
	recheck := c.cfg.Clock.NewTicker(c.cfg.OfferTTL)
	defer recheck.Stop()
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		jobs, err := c.offer(a, limit, free)
		if err != nil || len(jobs) > 0 || wait <= 0 {
			if len(jobs) > 0 && ctx.Err() != nil {
				c.withdraw(a.ID, jobs) // the agent hung up: nobody will take these
				return nil, ctx.Err()
			}
			return jobs, err
		}
		c.metrics.waiting.Inc()
		over, gone := false, false
		select {
		case <-changed:
		case <-recheck.Chan():
		case <-deadline:
			over = true
		case <-ctx.Done():
			gone = true
		}
		c.metrics.waiting.Dec()
		switch {
		case over:
			return nil, nil
		case gone:
			return nil, ctx.Err()
		}
	}
}

// withdraw cancels offers an agent will never see.
func (c *Coordinator) withdraw(agentID string, jobs []node3.Job) {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	c.mu.Lock()
	c.sched.Withdraw(agentID, ids)
	c.mu.Unlock()
}

// offer hands out up to limit jobs that fit the agent's free capacity,
// from the scheduler: not on offer or granted to anyone else, not barred
// for this agent, and never more offered and leased at once than the
// agent declared (asking again releases what it did not take).
func (c *Coordinator) offer(a node3.Agent, limit int, free *node3.Capacity) ([]node3.Job, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sched.Offer(a, free, limit, now), nil
}

// Accept grants a job to an agent whose GPUs meet its requirements: the
// first accept wins, every other gets CodeConflict. wallet, when not
// empty, is where this job's reward goes instead of the agent's
// registered wallet (the seed's agents name it as they accept). An HTTP
// agent already holding its declared capacity in leases is refused.
func (c *Coordinator) Accept(ctx context.Context, a node3.Agent, jobID, wallet string) (node3.Job, error) {
	if wallet != "" {
		if err := node3.CheckWalletAddress("wallet_address", wallet); err != nil {
			return node3.Job{}, err
		}
	}
	// HTTP agents declared their capacity at registration; libp2p
	// providers announce theirs on their work streams, and the scheduler
	// grants within it.
	if _, peer := p2p.AgentPeer(a.ID); !peer {
		j, err := c.led.Job(ctx, jobID)
		if err != nil {
			return j, err
		}
		if !(j.Status.Leased() && j.AgentID == a.ID) {
			c.mu.Lock()
			_, held := c.sched.Holds(a.ID)
			c.mu.Unlock()
			if held >= a.Capacity() {
				return node3.Job{}, node3.Errorf(node3.CodeConflict, "this agent holds %d jobs, its declared capacity: finish one first", held)
			}
		}
	}
	return c.transition(ctx, jobID, ledger.Event{Kind: ledger.EvAccept, AgentID: a.ID, Lease: c.cfg.Lease, Wallet: wallet, GPUs: a.GPUs})
}

func (c *Coordinator) transition(ctx context.Context, jobID string, ev ledger.Event) (node3.Job, error) {
	ev.Now = c.cfg.Now()
	return c.led.Transition(ctx, jobID, ev)
}

// Heartbeat marks the job running and extends its lease. attempt is the
// attempt the agent holds (0: whichever is current).
func (c *Coordinator) Heartbeat(ctx context.Context, agentID, jobID string, attempt int) (node3.Job, error) {
	return c.transition(ctx, jobID, ledger.Event{Kind: ledger.EvHeartbeat, AgentID: agentID, Lease: c.cfg.Lease, Attempt: attempt})
}

// Complete books a job as completed, with its pending payout. A report for
// an attempt other than the current one, or after its lease lapsed, is a
// CodeConflict and books nothing.
func (c *Coordinator) Complete(ctx context.Context, agentID, jobID string, attempt int, res node3.JobResult) (node3.Job, error) {
	j, err := c.transition(ctx, jobID, ledger.Event{Kind: ledger.EvComplete, AgentID: agentID, Result: &res, Attempt: attempt})
	if err == nil {
		c.log.Debug("job completed", "job", jobID, "agent", agentID, "seconds", res.ExecutionTime)
	}
	return j, err
}

// Fail books a failure; a retryable one requeues the job while attempts remain.
func (c *Coordinator) Fail(ctx context.Context, agentID, jobID string, attempt int, reason string, retryable bool, res node3.JobResult) (node3.Job, error) {
	j, err := c.transition(ctx, jobID, ledger.Event{Kind: ledger.EvFail, AgentID: agentID, Reason: reason, Retryable: retryable, Result: &res, Attempt: attempt, Backoff: c.cfg.RetryBackoff})
	if err == nil {
		c.log.Info("job failed", "job", jobID, "agent", agentID, "reason", reason, "now", j.Status)
	}
	return j, err
}

// Cancel withdraws a job.
func (c *Coordinator) Cancel(ctx context.Context, jobID, reason string) (node3.Job, error) {
	if reason == "" {
		reason = "cancelled by the admin"
	}
	return c.transition(ctx, jobID, ledger.Event{Kind: ledger.EvCancel, Reason: reason})
}

// CreateJob puts a new job on the board and wakes waiting agents. With an
// idempotency key, a repeat of the same request returns the job the first
// one made (replayed), and another request under the key is refused.
func (c *Coordinator) CreateJob(ctx context.Context, spec node3.JobSpec, idemKey string) (node3.Job, bool, error) {
	return c.led.CreateJobOnce(ctx, spec, c.cfg.Now(), idemKey)
}

// Agents lists registered agents with their last-seen times.
func (c *Coordinator) Agents(ctx context.Context) ([]node3.Agent, error) {
	agents, err := c.led.Agents(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range agents {
		if t, ok := c.lastSeen[agents[i].ID]; ok && t.After(agents[i].LastSeen) {
			agents[i].LastSeen = t
		}
	}
	return agents, nil
}

// Online reports whether an agent called within the online window.
func (c *Coordinator) Online(a node3.Agent) bool {
	c.mu.Lock()
	t, ok := c.lastSeen[a.ID]
	c.mu.Unlock()
	if !ok || a.LastSeen.After(t) {
		t = a.LastSeen
	}
	return c.cfg.Now().Sub(t) < c.cfg.OnlineWindow
}

// Job returns one job.
func (c *Coordinator) Job(ctx context.Context, id string) (node3.Job, error) {
	return c.led.Job(ctx, id)
}

// Jobs lists jobs, newest first; available jobs oldest first (board order).
func (c *Coordinator) Jobs(ctx context.Context, status node3.JobStatus, limit int) ([]node3.Job, error) {
	return c.led.Jobs(ctx, ledger.JobFilter{Status: status, Limit: limit, Oldest: status == node3.StatusAvailable})
}

// Stats returns the ledger's counters plus how many agents are online.
func (c *Coordinator) Stats(ctx context.Context) (node3.Stats, error) {
	s, err := c.led.Stats(ctx)
	if err != nil {
		return s, err
	}
	agents, err := c.Agents(ctx)
	if err != nil {
		return s, err
	}
	for _, a := range agents {
		if c.Online(a) {
			s.AgentsOnline++
		}
	}
	return s, nil
}

// Payouts lists payouts.
func (c *Coordinator) Payouts(ctx context.Context, status node3.PayoutStatus, limit int) ([]node3.Payout, error) {
	return c.led.Payouts(ctx, status, limit)
}
