package provider

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/ledger"
)

// Executor runs one job on the GPUs assigned to it.
type Executor interface {
	Run(ctx context.Context, job node3.Job, gpus []node3.GPU) (node3.JobResult, error)
}

// DefaultSlots is how many jobs needing no GPU a provider runs at once
// unless told otherwise.
const DefaultSlots = 8

// abandonAfter is how long a poll must have waited before a change of
// capacity abandons it for a new one.
const abandonAfter = 50 * time.Millisecond

// Settings the provider keeps in its ledger.
const (
	settingAPIKey  = "agent.api_key"
	settingAgentID = "agent.id"
	settingMarket  = "agent.marketplace_url"
)

// Config configures the provider role.
type Config struct {
	Ledger *ledger.Ledger
	// Transport is how the provider learns of jobs and talks to its
	// coordinator. Nil means the REST API through Client.
	Transport Transport
	Client    *httpapi.Client // the coordinator's API, without an agent key (REST transport)
	Executor  Executor
	GPUs      []node3.GPU
	Wallet    string // address rewards are paid to
	Version   string
	Slots     int           // jobs needing no GPU that may run at once (default 8)
	PollWait  time.Duration // long-poll wait (default 25 s)
	Logger    *slog.Logger
	Now       func() time.Time
	// Registerer receives the provider's metrics; nil skips them.
	Registerer prometheus.Registerer
}

// Provider takes jobs from a coordinator, runs them and reports back
// through a durable outbox.
type Provider struct {
	cfg Config
	log *slog.Logger
	led *ledger.Ledger

	tr Transport

	mu        sync.Mutex
	active    map[string]bool // jobs accepted or being accepted
	freeGPU   []bool
	freeSlots int
	capWake   chan struct{} // closed and replaced when capacity frees up
	capChange chan struct{} // buffered(1): a job started or ended (adverts)

	inflight  sync.Map      // report job id → struct{}: deliveries in progress
	retryWake chan struct{} // buffered(1): the outbox has something to retry
	connected atomic.Bool
	aborted   atomic.Bool // crash simulation: nothing more is written or sent
	wg        sync.WaitGroup

	metrics provMetrics
}

type provMetrics struct {
	jobs    *prometheus.CounterVec
	reports *prometheus.CounterVec
}

// NewProvider returns a provider; Run starts it.
func New(cfg Config) *Provider {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Slots <= 0 {
		cfg.Slots = DefaultSlots
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 25 * time.Second
	}
	p := &Provider{
		cfg:       cfg,
		log:       cfg.Logger,
		led:       cfg.Ledger,
		tr:        cfg.Transport,
		active:    make(map[string]bool),
		freeGPU:   make([]bool, len(cfg.GPUs)),
		freeSlots: cfg.Slots,
		capWake:   make(chan struct{}),
		capChange: make(chan struct{}, 1),
		retryWake: make(chan struct{}, 1),
		metrics: provMetrics{
			jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_provider_jobs_total",
				Help: "Jobs this provider ran, by outcome.",
			}, []string{"outcome"}),
			reports: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_provider_reports_total",
				Help: "Report deliveries to the coordinator, by result.",
			}, []string{"result"}),
		},
	}
	for i := range p.freeGPU {
		p.freeGPU[i] = true
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(p.metrics.jobs, p.metrics.reports)
	}
	if p.tr == nil {
		p.tr = newHTTPTransport(cfg, &p.connected)
	}
	return p
}

// Run registers (or reuses the stored registration), then polls, runs and
// reports until ctx ends. Jobs still running then are stopped and
// reported as retryable failures, so the coordinator can requeue them at
// once instead of waiting for their leases to lapse.
func (p *Provider) Run(ctx context.Context) error {
	if err := p.tr.Register(ctx); err != nil {
		return err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.tr.Run(ctx)
	}()
	p.wg.Add(1)
	go p.outbox(ctx)
	p.poll(ctx)
	p.wg.Wait()
	return nil
}

// Abort makes the provider stop as if the process had died: no report is
// written or sent from now on. For fault tests.
func (p *Provider) Abort() { p.aborted.Store(true) }

// capacity returns what could start now, how many jobs that is at most,
// and a channel that is closed when it changes.
func (p *Provider) capacity() (node3.Capacity, int, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := node3.Capacity{Slots: p.freeSlots, GPUs: []int{}}
	for i, f := range p.freeGPU {
		if f {
			c.GPUs = append(c.GPUs, p.cfg.GPUs[i].Index)
		}
	}
	return c, c.Slots + len(c.GPUs), p.capWake
}

// take reserves what job needs: a slot for a CPU job, fitting free GPUs
// for a GPU job. It returns the GPUs assigned, or false.
func (p *Provider) take(j node3.Job, assigned []node3.GPU) ([]int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active[j.ID] {
		return nil, false
	}
	need := j.Requirements.Count()
	if need > 0 && len(assigned) > 0 {
		return p.takeAssigned(j, assigned)
	}
	if need == 0 {
		if p.freeSlots == 0 {
			return nil, false
		}
		p.freeSlots--
		p.active[j.ID] = true
		return nil, true
	}
	var idx []int
	for i, g := range p.cfg.GPUs {
		if p.freeGPU[i] && j.Requirements.Fits(g) {
			idx = append(idx, i)
			if len(idx) == need {
				break
			}
		}
	}
	if len(idx) < need {
		return nil, false
	}
	for _, i := range idx {
		p.freeGPU[i] = false
	}
	p.active[j.ID] = true
	return idx, true
}

// takeAssigned reserves exactly the GPUs the coordinator assigned (by
// UUID, else by index), or nothing if any of them is not free or does not
// fit: then the job is declined and the coordinator decides again.
// Called with mu held.
func (p *Provider) takeAssigned(j node3.Job, assigned []node3.GPU) ([]int, bool) {
	if len(assigned) != j.Requirements.Count() {
		return nil, false
	}
	var idx []int
	for _, a := range assigned {
		found := -1
		for i, g := range p.cfg.GPUs {
			if (a.UUID != "" && gpuUUID(g) == a.UUID) || (a.UUID == "" && g.Index == a.Index) {
				found = i
				break
			}
		}
		if found < 0 || !p.freeGPU[found] || !j.Requirements.Fits(p.cfg.GPUs[found]) || slices.Contains(idx, found) {
			return nil, false
		}
		idx = append(idx, found)
	}
	for _, i := range idx {
		p.freeGPU[i] = false
	}
	p.active[j.ID] = true
	return idx, true
}

// signalCapacity tells the advertiser that capacity changed: a job
// started or ended. Claims that fail do not count, so a denied claim
// sends no advert.
func (p *Provider) signalCapacity() {
	select {
	case p.capChange <- struct{}{}:
	default:
	}
}

func (p *Provider) release(j node3.Job, idx []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.active, j.ID)
	if len(idx) == 0 && j.Requirements.Count() == 0 {
		p.freeSlots++
	}
	for _, i := range idx {
		p.freeGPU[i] = true
	}
	close(p.capWake)
	p.capWake = make(chan struct{})
}

// poll asks the transport for jobs while there is capacity and starts
// each job it can take.
func (p *Provider) poll(ctx context.Context) {
	b := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for ctx.Err() == nil {
		free, n, wake := p.capacity()
		if n == 0 {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		jobs, err := p.tr.Offers(ctx, free, n, wake)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.connected.Store(false)
			p.log.Warn("asking for jobs failed", "err", err, "retry_in", b.peek())
			sleep(ctx, b.next())
			continue
		}
		b.reset()
		started := 0
		for _, j := range jobs {
			idx, ok := p.take(j, p.tr.Assigned(j.ID))
			if !ok {
				p.tr.Withdraw(j.ID)
				continue
			}
			started++
			p.wg.Add(1)
			go p.runJob(ctx, j, idx)
		}
		if started == 0 && len(jobs) > 0 {
			// Offered only jobs we cannot start now (their GPUs are busy, or
			// we are still accepting them): wait for capacity, briefly.
			select {
			case <-wake:
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
	}
}

// runJob accepts, runs and reports one job.
func (p *Provider) runJob(ctx context.Context, offered node3.Job, idx []int) {
	defer p.wg.Done()
	j, err := p.tr.Accept(ctx, offered.ID)
	if err != nil {
		p.release(offered, idx)
		if c := node3.ErrorCode(err); c == node3.CodeConflict || c == node3.CodeNotFound {
			p.log.Debug("job taken by another provider", "job", offered.ID)
		} else if ctx.Err() == nil {
			p.log.Warn("accepting a job failed", "job", offered.ID, "err", err)
		}
		return
	}
	p.signalCapacity()
	gpus := make([]node3.GPU, len(idx))
	for i, k := range idx {
		gpus[i] = p.cfg.GPUs[k]
	}
	p.log.Info("job accepted", "job", j.ID, "type", j.Kind, "reward", j.Reward, "gpus", len(gpus))

	jobCtx, cancel := context.WithCancel(ctx)
	var lost atomic.Value // why the job was taken away, if it was
	hbDone := make(chan struct{})
	if j.Kind != node3.KindNoop {
		go p.heartbeat(jobCtx, j, cancel, &lost, hbDone)
	} else {
		close(hbDone)
	}
	res, runErr := p.cfg.Executor.Run(jobCtx, j, gpus)
	cancel()
	<-hbDone
	// The GPUs and the slot are free again; reporting needs neither.
	p.release(offered, idx)
	p.signalCapacity()

	if p.aborted.Load() {
		return
	}
	r := node3.Report{JobID: j.ID, Attempt: j.Attempt, Kind: node3.ReportCompleted, Result: res, At: p.cfg.Now()}
	local := j
	local.Result = &res
	local.FinishedAt = r.At
	local.Status = node3.StatusCompleted
	if why, ok := lost.Load().(string); ok {
		p.metrics.jobs.WithLabelValues("lost").Inc()
		p.log.Warn("job taken away while running; not reporting it", "job", j.ID, "why", why)
		local.Status, local.Error = node3.StatusCancelled, why
		if err := p.led.RecordLocalJob(context.WithoutCancel(ctx), local); err != nil {
			p.log.Error("recording job", "job", j.ID, "err", err)
		}
		return
	}
	if runErr != nil {
		r.Kind = node3.ReportFailed
		r.Reason = runErr.Error()
		local.Status, local.Error = node3.StatusFailed, r.Reason
		if ctx.Err() != nil {
			r.Reason = "the provider shut down while the job was running"
			r.Retryable = true
		}
		p.metrics.jobs.WithLabelValues("failed").Inc()
		p.log.Warn("job failed", "job", j.ID, "err", runErr, "retryable", r.Retryable)
	} else {
		p.metrics.jobs.WithLabelValues("completed").Inc()
		p.log.Info("job completed", "job", j.ID, "seconds", res.ExecutionTime)
	}
	// The report must be written even when shutting down: that is the
	// outbox's whole point.
	if err := p.led.EnqueueReport(context.WithoutCancel(ctx), local, r); err != nil {
		p.log.Error("storing the job's report failed; the lease will lapse and the job will be requeued", "job", j.ID, "err", err)
		return
	}
	p.deliver(ctx, r)
}

// heartbeat keeps the lease of a running job. If the coordinator says the
// job is no longer ours (cancelled, requeued and retaken), it stops the run.
func (p *Provider) heartbeat(ctx context.Context, j node3.Job, stop context.CancelFunc, lost *atomic.Value, done chan<- struct{}) {
	defer close(done)
	every := j.LeaseExpiresAt.Sub(j.AcceptedAt) / 3
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTimer(0) // the first beat marks the job running
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.tr.Heartbeat(ctx, j.ID, j.Attempt)
		switch c := node3.ErrorCode(err); {
		case err == nil:
			p.connected.Store(true)
		case ctx.Err() != nil:
			return
		case c == node3.CodeConflict || c == node3.CodeNotFound || c == node3.CodeForbidden:
			lost.Store(err.Error())
			stop()
			return
		default:
			p.connected.Store(false)
			p.log.Warn("heartbeat failed; the job keeps running", "job", j.ID, "err", err)
		}
		t.Reset(every)
	}
}

// deliver sends one report. Success or a final refusal removes it from the
// outbox; anything else leaves it there for the retry loop.
func (p *Provider) deliver(ctx context.Context, r node3.Report) bool {
	if _, busy := p.inflight.LoadOrStore(r.JobID, struct{}{}); busy {
		return false
	}
	defer p.inflight.Delete(r.JobID)
	// A report outlives the context of the job it reports on.
	sendCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if ctx.Err() != nil {
		// Shutting down: one quick try, then the outbox keeps it for next start.
		sendCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
	}
	var (
		ack Ack
		err error
	)
	if r.Kind == node3.ReportCompleted {
		ack, err = p.tr.Complete(sendCtx, r.JobID, r.Attempt, r.Result)
	} else {
		ack, err = p.tr.Fail(sendCtx, r.JobID, r.Attempt, truncateReason(r.Reason), r.Retryable, r.Result)
	}
	if p.aborted.Load() {
		return false
	}
	switch c := node3.ErrorCode(err); {
	case err == nil:
		p.metrics.reports.WithLabelValues("delivered").Inc()
		p.connected.Store(true)
	case c == node3.CodeConflict || c == node3.CodeNotFound || c == node3.CodeForbidden || c == node3.CodeInvalid:
		ack = Ack{}
		p.metrics.reports.WithLabelValues("refused").Inc()
		p.log.Warn("the coordinator refused a report; dropping it", "job", r.JobID, "err", err)
	default:
		p.metrics.reports.WithLabelValues("retry").Inc()
		p.connected.Store(false)
		p.log.Warn("report not delivered; it stays in the outbox", "job", r.JobID, "err", err)
		select {
		case p.retryWake <- struct{}{}:
		default:
		}
		return false
	}
	self := p.tr.AgentID()
	var aerr error
	if ack.Job == nil && ack.Status != "" {
		aerr = p.led.AckReportAs(context.WithoutCancel(ctx), r.JobID, ack.Status, self, p.cfg.Now())
	} else {
		aerr = p.led.AckReport(context.WithoutCancel(ctx), r.JobID, ack.Job, self, p.cfg.Now())
	}
	if err := aerr; err != nil {
		p.log.Error("removing a delivered report from the outbox", "job", r.JobID, "err", err)
	}
	return true
}

func truncateReason(s string) string { return node3.Truncate(s, 4000) }

// outbox redelivers reports that could not be sent: at start (reports left
// by an earlier run) and after failures, with backoff.
func (p *Provider) outbox(ctx context.Context) {
	defer p.wg.Done()
	b := backoff{min: 250 * time.Millisecond, max: 15 * time.Second}
	wait := time.Duration(0)
	for {
		if !sleep(ctx, wait) {
			return
		}
		pending, err := p.led.PendingReports(ctx, 256)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Error("reading the outbox", "err", err)
		}
		failed := false
		for _, r := range pending {
			if ctx.Err() != nil {
				return
			}
			if _, busy := p.inflight.Load(r.JobID); busy {
				continue
			}
			if !p.deliver(ctx, r) {
				failed = true
				break
			}
		}
		if failed {
			wait = b.next()
			continue
		}
		b.reset()
		wait = 0
		if len(pending) == 256 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.retryWake:
			wait = b.next()
		case <-time.After(30 * time.Second):
		}
	}
}

// FreeSlots is how many more jobs needing no GPU the provider could
// start now, plus its idle GPUs: what its advert announces.
func (p *Provider) FreeSlots() int {
	_, n, _ := p.capacity()
	return n
}

// CapacityChanged is signalled (without blocking; it may coalesce) when
// the provider's free capacity changes.
func (p *Provider) CapacityChanged() <-chan struct{} { return p.capChange }

// Slots is how many jobs needing no GPU it runs at once.
func (p *Provider) Slots() int { return p.cfg.Slots }

// ActiveJobs lists the jobs this provider holds.
func (p *Provider) ActiveJobs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.active))
	for id := range p.active {
		out = append(out, id)
	}
	return out
}

// Me asks the coordinator how it sees this provider: what it earned and
// was paid (CodeUnavailable where the transport cannot ask).
func (p *Provider) Me(ctx context.Context) (node3.Agent, error) { return p.tr.Me(ctx) }

// AgentID is this provider's id at the coordinator ("" before registration).
func (p *Provider) AgentID() string { return p.tr.AgentID() }

// Connected reports whether the provider can reach its coordinator: for
// the REST transport, whether the last call went through.
func (p *Provider) Connected() bool { return p.tr.Connected() }

// backoff is exponential with jitter.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) peek() time.Duration {
	if b.cur == 0 {
		return b.min
	}
	return b.cur
}

func (b *backoff) next() time.Duration {
	d := b.peek()
	b.cur = min(d*2, b.max)
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
