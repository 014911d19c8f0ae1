package coordinator

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/p2p"
)

// Gossip is the coordinator's libp2p side:
//
//   - it follows the ledger's job-change feed and publishes, signed and
//     in batches, each job's latest state: new or requeued (a "posted"
//     posting), or accepted, completed, failed, cancelled or expired (a
//     "status" posting);
//   - it serves claims, reports and sync over streams, through the same
//     Coordinator methods (and so the same ledger transitions) as the REST
//     API;
//   - it keeps a ledger agent per provider peer, keyed by the peer ID the
//     transport authenticated, created from its advert or its first claim.
type Gossip struct {
	c      *Coordinator
	led    *ledger.Ledger
	pn     *p2p.Node
	advert func(peer.ID, time.Time) (p2p.ProviderAdvert, bool)
	log    *slog.Logger
	now    func() time.Time

	// queue holds the job changes waiting to be published: filled by the
	// ledger's writer goroutine (which must not block), drained by
	// RunPublisher.
	queue    pubQueue
	interval time.Duration
	clock    clockwork.Clock
	// last is the status last published per unfinished job; only
	// RunPublisher uses it.
	last map[string]node3.JobStatus

	amu    sync.Mutex
	agents map[peer.ID]node3.Agent // provider peers with a ledger agent
	ensure chan agentWant          // adverts of peers whose agent needs writing
	// Adverts are free to send, so new agents from adverts are rate
	// limited (a claim for an open job always gets its agent).
	newWindow time.Time
	newInWin  int

	metrics gossipMetrics
}

// pubQueue is the latest change of each job not yet published, in the
// order the jobs first changed.
type pubQueue struct {
	mu    sync.Mutex
	order []string
	jobs  map[string]node3.Job
	cap   int
	wake  chan struct{}
}

// DefaultBoardInterval is the least time between two posting batches: a
// board is for people and late joiners, and a tenth of a second is fresh
// to them, while batches that far apart let a busy coordinator sign, and
// every node forward and verify, one message for hundreds of changes.
const DefaultBoardInterval = 100 * time.Millisecond

type agentWant struct {
	peer peer.ID
	ad   p2p.ProviderAdvert
}

type gossipMetrics struct {
	published *prometheus.CounterVec
	dropped   prometheus.Counter
	claims    *prometheus.CounterVec
	dropCount sync.Mutex
	drops     uint64
}

// GossipConfig configures the coordinator's libp2p side.
type GossipConfig struct {
	Coordinator *Coordinator
	Ledger      *ledger.Ledger
	Node        *p2p.Node
	// Advert returns a provider's live advert, if this node holds one.
	Advert func(peer.ID, time.Time) (p2p.ProviderAdvert, bool)
	// PublishQueue bounds the jobs whose changes wait to be published
	// (default 4096); past it the oldest are dropped.
	PublishQueue int
	// BoardInterval is the least time between two batches of postings
	// (default DefaultBoardInterval; negative: none).
	BoardInterval time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
	Registerer    prometheus.Registerer
}

// NewGossip builds the coordinator's libp2p side. It follows the ledger's
// job-change feed from now on.
func NewGossip(cfg GossipConfig) *Gossip {
	if cfg.PublishQueue <= 0 {
		cfg.PublishQueue = 4096
	}
	if cfg.BoardInterval == 0 {
		cfg.BoardInterval = DefaultBoardInterval
	}
	c, led, pn, log, now, reg := cfg.Coordinator, cfg.Ledger, cfg.Node, cfg.Logger, cfg.Now, cfg.Registerer
	cp := &Gossip{
		c: c, led: led, pn: pn, advert: cfg.Advert, log: log, now: now,
		agents: make(map[peer.ID]node3.Agent),
		ensure: make(chan agentWant, 256),
		queue: pubQueue{
			jobs: make(map[string]node3.Job),
			cap:  cfg.PublishQueue,
			wake: make(chan struct{}, 1),
		},
		interval: cfg.BoardInterval,
		clock:    cfg.Coordinator.cfg.Clock, // the coordinator's clock times the batches
		last:     make(map[string]node3.JobStatus),
		metrics: gossipMetrics{
			published: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_coordinator_postings_total",
				Help: "Job postings published over gossip, by kind (posted, status).",
			}, []string{"kind"}),
			dropped: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "node3_coordinator_postings_dropped_total",
				Help: "Job changes dropped from a full publish queue (oldest first) or that failed to publish.",
			}),
			claims: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "node3_coordinator_claims_total",
				Help: "Claims served over libp2p, by result (granted, denied, error).",
			}, []string{"result"}),
		},
	}
	if reg != nil {
		reg.MustRegister(cp.metrics.published, cp.metrics.dropped, cp.metrics.claims)
	}
	led.Watch(cp.enqueue)
	return cp
}

// enqueue runs on the ledger's writer goroutine: it only queues. A job
// changed again before the publisher took the last change is queued once,
// in its latest state; past the queue's bound the oldest job is dropped.
func (cp *Gossip) enqueue(j node3.Job) {
	q := &cp.queue
	q.mu.Lock()
	if _, ok := q.jobs[j.ID]; !ok {
		if len(q.order) >= q.cap {
			delete(q.jobs, q.order[0])
			q.order[0] = ""
			q.order = q.order[1:]
			cp.noteDrop()
		}
		q.order = append(q.order, j.ID)
	}
	q.jobs[j.ID] = j
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (cp *Gossip) noteDrop() {
	cp.metrics.dropped.Inc()
	cp.metrics.dropCount.Lock()
	cp.metrics.drops++
	cp.metrics.dropCount.Unlock()
}

func (cp *Gossip) DroppedCount() uint64 {
	cp.metrics.dropCount.Lock()
	defer cp.metrics.dropCount.Unlock()
	return cp.metrics.drops
}

// RunPublisher publishes queued job changes until ctx ends: whatever
// queued since the last publish goes out as one signed batch (or as few
// as fit a message), and batches are at least BoardInterval apart, so
// under load one signature, one forward and one verification per node
// covers many job changes, while an idle coordinator publishes a change
// at once.
func (cp *Gossip) RunPublisher(ctx context.Context) {
	q := &cp.queue
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		q.mu.Lock()
		order, jobs := q.order, q.jobs
		q.order, q.jobs = nil, make(map[string]node3.Job, len(jobs))
		q.mu.Unlock()
		ps := make([]p2p.JobPosting, 0, len(order))
		for _, id := range order {
			if p, ok := cp.posting(jobs[id]); ok {
				ps = append(ps, p)
			}
		}
		if len(ps) == 0 {
			continue
		}
		cp.publish(ctx, ps)
		if cp.interval > 0 {
			select {
			case <-ctx.Done():
				return
			case <-cp.clock.After(cp.interval):
			}
		}
	}
}

// posting turns a job's latest change into a posting, if it is one worth
// telling the network about: new and requeued jobs, and the changes to
// accepted, running (if its acceptance was not told), completed, failed,
// cancelled and expired. Lease extensions are not. A status posting of a
// job whose "posted" the network never got (it was taken, or ended,
// before the publisher came round) carries the public job, so every board
// can list it.
func (cp *Gossip) posting(j node3.Job) (p2p.JobPosting, bool) {
	prev, seen := cp.last[j.ID]
	if j.Status.Terminal() {
		delete(cp.last, j.ID)
	} else {
		cp.last[j.ID] = j.Status
	}
	switch {
	case j.Status == node3.StatusAvailable:
		pub := j.Public()
		return p2p.JobPosting{Kind: p2p.PostingPosted, JobID: j.ID, Job: &pub, Status: j.Status}, true
	case seen && (prev == j.Status || prev == node3.StatusAccepted && j.Status == node3.StatusRunning):
		return p2p.JobPosting{}, false
	}
	p := p2p.JobPosting{Kind: p2p.PostingStatus, JobID: j.ID, Status: j.Status} // error texts are not public (node3.Job.Public)
	if id, ok := p2p.AgentPeer(j.AgentID); ok && j.Status != node3.StatusExpired && j.Status != node3.StatusCancelled {
		p.Provider = id
	}
	if !seen {
		pub := j.Public()
		p.Job = &pub
	}
	return p, true
}

// publish sends postings, counting them by kind; what fails to go out is
// counted as dropped.
func (cp *Gossip) publish(ctx context.Context, ps []p2p.JobPosting) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sent, err := cp.pn.PublishJobs(pctx, ps)
	for _, p := range ps[:sent] {
		cp.metrics.published.WithLabelValues(string(p.Kind)).Inc()
	}
	if err != nil {
		for range ps[sent:] {
			cp.noteDrop()
		}
		if ctx.Err() == nil {
			cp.log.Warn("publishing job postings failed", "postings", len(ps)-sent, "first", ps[sent].JobID, "err", err)
		}
	}
}

func truncateText(s string, n int) string { return node3.Truncate(s, n) }

// OnAdvert runs on the p2p delivery goroutine: it marks the provider seen
// and, if its ledger agent is missing or out of date, queues the write.
func (cp *Gossip) OnAdvert(a p2p.ProviderAdvert, from peer.ID) {
	cp.c.touch(from.String())
	cp.amu.Lock()
	have, ok := cp.agents[from]
	cp.amu.Unlock()
	if ok && have.WalletAddress == a.Wallet && have.Version == a.SoftwareVersion && slices.Equal(have.GPUs, a.GPUs) {
		return
	}
	select {
	case cp.ensure <- agentWant{peer: from, ad: a}:
	default: // busy: the next advert, or the provider's first claim, will do it
	}
}

// maxNewAgentsPerMinute bounds the agents adverts create.
const maxNewAgentsPerMinute = 600

// RunAgents writes the ledger agents of advertising providers.
func (cp *Gossip) RunAgents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-cp.ensure:
			if w.ad.Wallet == "" {
				continue // nothing to pay: it gets an agent when it claims with a wallet
			}
			cp.amu.Lock()
			_, known := cp.agents[w.peer]
			cp.amu.Unlock()
			if !known {
				if now := cp.now(); now.Sub(cp.newWindow) > time.Minute {
					cp.newWindow, cp.newInWin = now, 0
				}
				if cp.newInWin >= maxNewAgentsPerMinute {
					continue // it gets one when it claims
				}
				cp.newInWin++
			}
			_, err := cp.upsertAgent(ctx, w.peer, node3.Agent{WalletAddress: w.ad.Wallet, GPUs: w.ad.GPUs, Version: w.ad.SoftwareVersion})
			if err != nil && ctx.Err() == nil {
				cp.log.Warn("recording a provider peer", "peer", w.peer, "err", err)
			}
		}
	}
}

// upsertAgent makes sure peer p has a ledger agent with these fields.
func (cp *Gossip) upsertAgent(ctx context.Context, p peer.ID, want node3.Agent) (node3.Agent, error) {
	if want.GPUs == nil {
		want.GPUs = []node3.GPU{}
	}
	a, created, err := cp.led.UpsertPeerAgent(ctx, p.String(), want, cp.now())
	if err != nil {
		return node3.Agent{}, err
	}
	if created {
		cp.log.Info("provider peer recorded", "agent", a.ID, "wallet", a.WalletAddress, "gpus", len(a.GPUs))
	}
	cp.amu.Lock()
	cp.agents[p] = a
	cp.amu.Unlock()
	return a, nil
}

// knownAgent returns the ledger agent this coordinator last wrote or read
// for peer p, if it holds one.
func (cp *Gossip) knownAgent(p peer.ID) (node3.Agent, bool) {
	cp.amu.Lock()
	defer cp.amu.Unlock()
	a, ok := cp.agents[p]
	return a, ok
}

// agentFor returns the ledger agent of the claiming peer, creating or
// updating it from the claim (and the peer's advert, for what the claim
// leaves out).
func (cp *Gossip) agentFor(ctx context.Context, from peer.ID, req p2p.ClaimRequest) (node3.Agent, error) {
	cp.amu.Lock()
	have, ok := cp.agents[from]
	cp.amu.Unlock()
	if ok && (req.Wallet == "" || req.Wallet == have.WalletAddress) && (len(req.GPUs) == 0 || slices.Equal(req.GPUs, have.GPUs)) {
		return have, nil
	}
	want := node3.Agent{}
	if ok {
		want = node3.Agent{WalletAddress: have.WalletAddress, GPUs: have.GPUs, Version: have.Version}
	} else if a, err := cp.led.Agent(ctx, from.String()); err == nil {
		want = node3.Agent{WalletAddress: a.WalletAddress, GPUs: a.GPUs, Version: a.Version}
	}
	if ad, ok := cp.advert(from, cp.now()); ok {
		want.Version = ad.SoftwareVersion
		if want.WalletAddress == "" {
			want.WalletAddress = ad.Wallet
		}
		if want.GPUs == nil {
			want.GPUs = ad.GPUs
		}
	}
	if req.Wallet != "" {
		want.WalletAddress = req.Wallet
	}
	if len(req.GPUs) > 0 {
		want.GPUs = req.GPUs
	}
	if want.WalletAddress == "" {
		return node3.Agent{}, node3.Errorf(node3.CodeInvalid, "a claim needs a wallet address to pay the reward to")
	}
	return cp.upsertAgent(ctx, from, want)
}

// HandleClaim grants a job to the first claimant through Coordinator.Accept
// (the REST accept's ledger transition) and denies the rest. A claim for a
// job that is plainly not available is denied from a read, without a
// durable write; a repeated claim by the holder gets the same grant.
func (cp *Gossip) HandleClaim(ctx context.Context, from peer.ID, req p2p.ClaimRequest) (p2p.ClaimResponse, error) {
	agentID := from.String()
	cp.c.touch(agentID)
	deny := func(reason string) (p2p.ClaimResponse, error) {
		cp.metrics.claims.WithLabelValues("denied").Inc()
		return p2p.ClaimResponse{Granted: false, Reason: truncateText(reason, 1000)}, nil
	}
	// The job first: a claim that cannot succeed creates no agent.
	j, err := cp.led.Job(ctx, req.JobID)
	switch {
	case node3.ErrorCode(err) == node3.CodeNotFound:
		return deny("no such job")
	case err != nil:
		cp.metrics.claims.WithLabelValues("error").Inc()
		return p2p.ClaimResponse{}, err
	case j.Status.Leased() && j.AgentID == agentID:
		// Ours already (a retried claim): the same answer.
	case j.Status != node3.StatusAvailable:
		return deny(fmt.Sprintf("job %s is %s", j.ID, j.Status))
	default:
		agent, err := cp.agentFor(ctx, from, req)
		if err != nil {
			cp.metrics.claims.WithLabelValues("error").Inc()
			return p2p.ClaimResponse{}, err
		}
		j, err = cp.c.Accept(ctx, agent, req.JobID, "")
		if node3.Refused(err) {
			return deny(node3.ErrorMessage(err))
		}
		if err != nil {
			cp.metrics.claims.WithLabelValues("error").Inc()
			return p2p.ClaimResponse{}, err
		}
	}
	cp.metrics.claims.WithLabelValues("granted").Inc()
	return p2p.ClaimResponse{Granted: true, LeaseExpiresAt: j.LeaseExpiresAt, Job: &j}, nil
}

// HandleReport takes heartbeats and final reports from the provider on
// the stream; the peer ID is its agent id.
func (cp *Gossip) HandleReport(ctx context.Context, from peer.ID, r p2p.Report) (p2p.ReportAck, error) {
	agentID := from.String()
	cp.c.touch(agentID)
	switch r.Kind {
	case p2p.ReportHeartbeat:
		j, err := cp.c.Heartbeat(ctx, agentID, r.JobID, r.Attempt)
		if node3.Refused(err) {
			return p2p.ReportAck{Cancel: true, Reason: truncateText(node3.ErrorMessage(err), 1000)}, nil
		}
		if err != nil {
			return p2p.ReportAck{}, err
		}
		return p2p.ReportAck{LeaseExpiresAt: j.LeaseExpiresAt}, nil
	case p2p.ReportCompleted:
		j, err := cp.c.Complete(ctx, agentID, r.JobID, r.Attempt, *r.Result)
		if err != nil {
			return p2p.ReportAck{}, err
		}
		return p2p.ReportAck{Status: j.Status}, nil
	case p2p.ReportFailed:
		var res node3.JobResult
		if r.Result != nil {
			res = *r.Result
		}
		j, err := cp.c.Fail(ctx, agentID, r.JobID, r.Attempt, r.Reason, r.Retryable, res)
		if err != nil {
			return p2p.ReportAck{}, err
		}
		return p2p.ReportAck{Status: j.Status}, nil
	}
	return p2p.ReportAck{}, node3.Errorf(node3.CodeInvalid, "unknown report kind")
}

// HandleSync serves the open board, in job id order, to a late joiner.
func (cp *Gossip) HandleSync(ctx context.Context, from peer.ID, req p2p.SyncRequest) (p2p.SyncResponse, error) {
	jobs := cp.c.openJobs(req.After, req.Limit+1, cp.now())
	resp := p2p.SyncResponse{Postings: make([]p2p.JobPosting, 0, len(jobs))}
	for _, j := range jobs {
		pub := j.Public()
		resp.Postings = append(resp.Postings, p2p.JobPosting{Kind: p2p.PostingPosted, JobID: j.ID, Job: &pub, Status: node3.StatusAvailable})
	}
	return resp, nil // HandleSync cuts it to the limit and sets More
}

// openJobs returns up to limit available, unexpired jobs with ids after
// after, in id (creation) order, from the in-memory board.
func (c *Coordinator) openJobs(after string, limit int, now time.Time) []node3.Job {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.board.page(after, limit, now)
}
