package provider

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
	"github.com/node3/node3/p2p"
)

// Gossip is a provider's libp2p transport. It keeps a board of the
// open jobs its trusted coordinators posted (gossip, plus a sync at start,
// on every reconnection and every SyncInterval), offers the provider the
// ones that fit its free capacity, claims them over a stream, and sends
// heartbeats and reports over streams. Its agent id is its peer ID: the
// coordinator knows it by the key the stream is authenticated with.
type Gossip struct {
	cfg  GossipConfig
	pn   *p2p.Node
	log  *slog.Logger
	self string

	mu       sync.Mutex
	board    map[string]*boardEntry // open jobs, and tombstones of closed ones
	changed  chan struct{}          // closed and replaced when a job is posted
	ops      int
	rivals   []Rival // other providers' adverts, as of rivalsAt
	rivalsAt time.Time
	// queues hold the ids of open jobs by this provider's claim rank
	// (the last one for every rank beyond), each in id order; ids of
	// jobs since closed or re-ranked are dropped as picks find them.
	queues [rankBuckets][]string

	// claims bounds the claims in flight, below the per-peer stream
	// limit of the claim protocol (16).
	claims chan struct{}

	refreshMu sync.Mutex // one Refresh at a time
	synced    time.Time  // when the last sync (with any coordinator) began; under mu

	*reporter // heartbeats and reports over streams
}

type GossipConfig struct {
	Node        *p2p.Node
	Trusted     []peer.ID
	GPUs        []node3.GPU
	Wallet      string
	SyncEvery   time.Duration
	Rivals      func(now time.Time) []Rival // the other providers, from their adverts
	Logger      *slog.Logger
	Now         func() time.Time
	MaxBoardLen int
}

type boardEntry struct {
	job      node3.Job // as posted: redacted
	coord    peer.ID
	seq      uint64
	seen     time.Time // when we last heard of it
	posted   time.Time // when it was (re)opened, as far as we know
	rank     int       // this provider's claim rank for it
	delay    time.Duration
	gone     bool      // a tombstone: taken, finished or withdrawn
	mine     bool      // granted to this provider
	claiming bool      // a claim is in flight
	denied   bool      // the coordinator said no: wait for a new posting
	retryAt  time.Time // after a failed claim
}

// tombstoneTTL is how long a closed job is remembered, so that a stale
// posting (a late sync answer) does not reopen it.
const tombstoneTTL = time.Minute

func NewGossip(cfg GossipConfig) *Gossip {
	if cfg.Rivals == nil {
		cfg.Rivals = func(time.Time) []Rival { return nil }
	}
	t := &Gossip{
		cfg:      cfg,
		pn:       cfg.Node,
		log:      cfg.Logger,
		self:     cfg.Node.ID().String(),
		board:    make(map[string]*boardEntry),
		changed:  make(chan struct{}),
		claims:   make(chan struct{}, maxInFlight),
		reporter: newReporter(cfg.Node, cfg.Trusted),
	}
	cfg.Node.OnJobPosting(t.onPosting)
	return t
}

func (t *Gossip) trusted(p peer.ID) bool { return containsPeer(t.cfg.Trusted, p) }

// onPosting applies a posting from a trusted coordinator (gossip validated
// the signature and the trust; sync postings come from the coordinator's
// own stream). It runs on the p2p delivery goroutine: no I/O.
func (t *Gossip) onPosting(p p2p.JobPosting, author peer.ID) {
	t.apply(p, author, time.Time{})
}

// apply merges one posting into the board. syncBegan is when the sync it
// came from started (zero for gossip): a sync answer is a snapshot, so it
// does not reopen a job that closed after the snapshot may have been
// taken, nor one granted to this provider (its lease lapsing brings a
// fresh posting by gossip, or the next sync once the tombstone is gone).
func (t *Gossip) apply(p p2p.JobPosting, author peer.ID, syncBegan time.Time) {
	if !t.trusted(author) {
		return
	}
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ops++; t.ops%4096 == 0 {
		t.pruneLocked(now)
	}
	e := t.board[p.JobID]
	if e != nil && e.coord == author && p.Seq <= e.seq {
		return // stale or repeated
	}
	if p.Status == node3.StatusAvailable && p.Job != nil {
		if e != nil && e.gone && !syncBegan.IsZero() && (e.mine || !e.seen.Before(syncBegan)) {
			return
		}
		if e == nil {
			if len(t.board) >= t.cfg.MaxBoardLen {
				return
			}
			e = &boardEntry{}
			t.board[p.JobID] = e
		}
		claiming := e.claiming && !e.gone
		queued, oldRank := !e.gone && e.job.ID != "", min(e.rank, rankBuckets-1)
		*e = boardEntry{job: *p.Job, coord: author, seq: p.Seq, seen: now, posted: now, claiming: claiming}
		if !e.job.Requirements.MatchedBy(t.cfg.GPUs) {
			return // listed, never claimed: no need to rank or queue it
		}
		e.rank = t.rankLocked(e.job, now)
		e.delay = time.Duration(e.rank) * claimStep
		if !queued || oldRank != min(e.rank, rankBuckets-1) {
			t.enqueueLocked(e)
		}
		close(t.changed)
		t.changed = make(chan struct{})
		return
	}
	if e == nil {
		return // closed before we heard of it
	}
	e.coord, e.seq, e.seen = author, p.Seq, now
	e.close()
}

// close turns an entry into a tombstone, keeping only what it needs.
func (e *boardEntry) close() {
	e.gone = true
	e.job = node3.Job{ID: e.job.ID}
}

// pruneLocked forgets tombstones and expired jobs.
func (t *Gossip) pruneLocked(now time.Time) {
	for id, e := range t.board {
		if e.claiming {
			continue
		}
		if (e.gone && now.Sub(e.seen) > tombstoneTTL) || (!e.gone && !now.Before(e.job.ExpiresAt)) {
			delete(t.board, id)
		}
	}
}

func (t *Gossip) Register(ctx context.Context) error {
	if len(t.cfg.Trusted) > 0 {
		t.log.Info("taking jobs over libp2p", "peer", t.self, "coordinators", t.cfg.Trusted)
	}
	return nil
}

func (t *Gossip) AgentID() string { return t.self }

// Assigned: a claim leaves the GPUs to the provider.
func (t *Gossip) Assigned(string) []node3.GPU { return nil }

// Me: a coordinator serves no agent record over libp2p yet.
func (t *Gossip) Me(context.Context) (node3.Agent, error) {
	return node3.Agent{}, node3.Errorf(node3.CodeUnavailable, "the coordinator's record of this provider is not served over libp2p")
}

// Connected reports whether a trusted coordinator is connected.
func (t *Gossip) Connected() bool {
	for _, c := range t.cfg.Trusted {
		if connected(t.pn, c) {
			return true
		}
	}
	return false
}

// Offers waits until the board holds jobs that fit free, and marks up to n
// of them as being claimed.
func (t *Gossip) Offers(ctx context.Context, free node3.Capacity, n int, wake <-chan struct{}) ([]node3.Job, error) {
	for {
		now := t.cfg.Now()
		t.mu.Lock()
		jobs, retry := t.pickLocked(free, n, now)
		changed := t.changed
		t.mu.Unlock()
		if len(jobs) > 0 {
			return jobs, nil
		}
		wait := time.Minute
		if !retry.IsZero() {
			wait = max(retry.Sub(now), time.Millisecond)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil
		case <-wake:
			timer.Stop()
			return nil, nil
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// Claim ranking. Every provider hearing a posting could claim it at once,
// and all but one would be denied: with 50 providers, 49 wasted claims per
// job, and under a burst everyone racing for the same oldest jobs. Instead
// each provider ranks itself among the providers whose adverts show GPUs
// for the job, by a hash of peer ID and job ID (rendezvous hashing). It
// claims the jobs it ranks first for at once, and the one it ranks k-th
// for only k claim steps after the posting, by which time the "accepted"
// posting has usually told it the job is gone (a step shorter than gossip
// takes under load costs denied claims: 15 ms cost 2-7 per job in a burst
// of 3,000 on 4-16 providers, 50 ms 0.5-1.3); and it takes the jobs it
// ranks first for before others'. So a burst is shared out among the
// providers without any coordination, and a dead or busy first choice
// costs a job a step or two.
const (
	claimStep   = 50 * time.Millisecond
	rivalsTTL   = 250 * time.Millisecond
	rankBuckets = 4
)

// Rival is another provider as its advert describes it.
type Rival struct {
	Peer string // peer ID, in its string form
	GPUs []node3.GPU
	Free int
}

func rendezvous(p, jobID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(p))
	h.Write([]byte{0})
	h.Write([]byte(jobID))
	return h.Sum64()
}

// rankLocked is this provider's rank for job j among the providers that
// could run it (0: first).
func (t *Gossip) rankLocked(j node3.Job, now time.Time) int {
	if now.Sub(t.rivalsAt) > rivalsTTL {
		t.rivals, t.rivalsAt = t.cfg.Rivals(now), now
	}
	mine := rendezvous(t.self, j.ID)
	rank := 0
	for _, r := range t.rivals {
		if r.Peer != t.self && rendezvous(r.Peer, j.ID) < mine && j.Requirements.MatchedBy(r.GPUs) {
			rank++
		}
	}
	return rank
}

// enqueueLocked puts e's job in the queue of its rank, in id order.
func (t *Gossip) enqueueLocked(e *boardEntry) {
	b := min(e.rank, rankBuckets-1)
	q := t.queues[b]
	i, found := slices.BinarySearch(q, e.job.ID)
	if !found {
		t.queues[b] = slices.Insert(q, i, e.job.ID)
	}
}

// pickLocked chooses up to n open jobs that fit free and whose claim time
// has come: first the ones this provider ranks first for, oldest first;
// then, with capacity to spare, others' jobs newest first — work stealing:
// a job's first choice takes its jobs from the old end, so a helper
// taking from the new end rarely races it. It also returns when the next
// held-back job may be claimed.
func (t *Gossip) pickLocked(free node3.Capacity, n int, now time.Time) ([]node3.Job, time.Time) {
	var retry time.Time
	later := func(at time.Time) {
		if retry.IsZero() || at.Before(retry) {
			retry = at
		}
	}
	fit := node3.NewFitter(t.cfg.GPUs, &free, n)
	var out []node3.Job
	for b := range t.queues {
		q := t.queues[b]
		dropped := 0
		for k := 0; k < len(q) && len(out) < n; k++ {
			i := k
			if b > 0 {
				i = len(q) - 1 - k // newest first
			}
			e := t.board[q[i]]
			if e == nil || e.gone || min(e.rank, rankBuckets-1) != b || !now.Before(e.job.ExpiresAt) {
				q[i] = "" // closed, re-ranked or expired: drop it from the queue
				dropped++
				continue
			}
			switch {
			case e.claiming || e.denied:
				continue
			case now.Before(e.retryAt):
				later(e.retryAt)
				continue
			}
			if at := e.posted.Add(e.delay); now.Before(at) {
				later(at)
				continue
			}
			if !fit.Take(e.job.Requirements) {
				continue
			}
			e.claiming = true
			out = append(out, e.job)
		}
		if dropped > 0 {
			t.queues[b] = slices.DeleteFunc(q, func(id string) bool { return id == "" })
		}
	}
	// Oldest first, as the REST path offers them.
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, retry
}

func (t *Gossip) Withdraw(jobID string) {
	t.mu.Lock()
	if e := t.board[jobID]; e != nil {
		e.claiming = false
	}
	t.mu.Unlock()
}

// claimTimeout bounds one claim.
const (
	claimTimeout = 10 * time.Second

	maxInFlight = 12
)

// acquire takes a slot of sem, or fails when ctx ends.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Accept claims the job from the coordinator that posted it.
func (t *Gossip) Accept(ctx context.Context, jobID string) (node3.Job, error) {
	t.mu.Lock()
	e := t.board[jobID]
	var coord peer.ID
	if e != nil {
		coord = e.coord
	}
	t.mu.Unlock()
	if coord == "" {
		if len(t.cfg.Trusted) == 0 {
			return node3.Job{}, errNoCoordinator
		}
		coord = t.cfg.Trusted[0]
	}
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	var resp p2p.ClaimResponse
	err := acquire(cctx, t.claims)
	if err == nil {
		resp, err = t.pn.RequestClaim(cctx, coord, p2p.ClaimRequest{JobID: jobID, GPUs: t.cfg.GPUs, Wallet: t.cfg.Wallet})
		<-t.claims
	}
	cancel()
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	e = t.board[jobID]
	switch {
	case err != nil:
		if e != nil {
			e.claiming = false
			e.retryAt = now.Add(time.Second)
		}
		if node3.Refused(err) {
			if e != nil {
				e.denied = true
			}
			return node3.Job{}, err
		}
		return node3.Job{}, fmt.Errorf("claiming job %s from %s: %w", jobID, coord.ShortString(), err)
	case !resp.Granted:
		if e != nil {
			e.claiming, e.denied = false, true
		}
		return node3.Job{}, node3.Errorf(node3.CodeConflict, "claim of job %s denied: %s", jobID, resp.Reason)
	}
	if e != nil {
		e.claiming, e.mine, e.seen = false, true, now
		e.close()
	}
	t.remember(jobID, coord)
	if resp.Job == nil {
		// The posting is the public view (node3.Job.Public): no argv, env
		// or URLs to run the job with.
		return node3.Job{}, fmt.Errorf("claim of job %s granted without the job's spec", jobID)
	}
	return *resp.Job, nil
}

// Run keeps the board in step with the trusted coordinators: it connects
// to them (finding them through the DHT when their address is unknown)
// and syncs the open board at start, whenever one (re)connects, and every
// SyncEvery.
func (t *Gossip) Run(ctx context.Context) {
	if len(t.cfg.Trusted) == 0 {
		<-ctx.Done()
		return
	}
	sub, err := t.pn.Host().EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		t.log.Error("watching connections", "err", err)
		<-ctx.Done()
		return
	}
	defer sub.Close()
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.syncLoop(ctx, kick)
	}()
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			ev, _ := e.(event.EvtPeerConnectednessChanged)
			if ev.Connectedness == network.Connected && t.trusted(ev.Peer) {
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (t *Gossip) syncLoop(ctx context.Context, kick <-chan struct{}) {
	b := backoff{min: 250 * time.Millisecond, max: 15 * time.Second}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-kick:
			timer.Stop()
		}
		err := t.syncAll(ctx)
		t.mu.Lock()
		t.pruneLocked(t.cfg.Now())
		t.mu.Unlock()
		wait := t.cfg.SyncEvery
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = b.next()
			t.log.Debug("syncing the open board failed", "err", err, "retry_in", wait)
		} else {
			b.reset()
		}
		timer.Reset(wait)
	}
}

// syncAll syncs with every trusted coordinator, connecting first where
// needed; it fails if any could not be synced.
func (t *Gossip) syncAll(ctx context.Context) error {
	var errs []error
	for _, c := range t.cfg.Trusted {
		if !connected(t.pn, c) {
			if err := t.connect(ctx, c); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := t.syncWith(ctx, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// connect dials coordinator c at the addresses known for it, or finds it
// among the coordinators advertised in the DHT.
func (t *Gossip) connect(ctx context.Context, c peer.ID) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pi := t.pn.Host().Peerstore().PeerInfo(c)
	if len(pi.Addrs) > 0 {
		if err := t.pn.Connect(cctx, pi); err == nil {
			return nil
		}
	}
	found, err := t.pn.FindPeers(cctx, t.pn.Namespace(p2p.RoleCoordinators))
	if err != nil {
		return fmt.Errorf("finding coordinator %s: %w", c.ShortString(), err)
	}
	for _, f := range found {
		if f.ID == c {
			return t.pn.Connect(cctx, f)
		}
	}
	return fmt.Errorf("coordinator %s is not reachable and not found in the DHT", c.ShortString())
}

// syncWith fetches c's open board page by page and merges it: jobs it
// lists are (re)opened unless we know newer news, and open jobs of c that
// it no longer lists, and that we heard of before the sync began, are
// dropped.
func (t *Gossip) syncWith(ctx context.Context, c peer.ID) error {
	began := t.cfg.Now()
	listed := make(map[string]bool)
	after := ""
	for {
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		resp, err := t.pn.RequestSync(sctx, c, p2p.SyncRequest{After: after, Limit: 1000})
		cancel()
		if err != nil {
			return fmt.Errorf("syncing with %s: %w", c.ShortString(), err)
		}
		for _, p := range resp.Postings {
			listed[p.JobID] = true
			t.apply(p, c, began)
		}
		if !resp.More || len(resp.Postings) == 0 {
			break
		}
		after = resp.Postings[len(resp.Postings)-1].JobID
	}
	t.mu.Lock()
	for id, e := range t.board {
		if e.coord == c && !e.gone && !e.claiming && !listed[id] && e.seen.Before(began) {
			delete(t.board, id)
		}
	}
	t.synced = began
	t.mu.Unlock()
	t.log.Debug("synced the open board", "coordinator", c, "open", len(listed))
	return nil
}

// Refresh syncs the open board from the trusted coordinators unless the
// last sync is younger than maxAge (one sync at a time; callers that
// arrive during one share it). For a node off the jobs topic, whose board
// only syncs keep.
func (t *Gossip) Refresh(ctx context.Context, maxAge time.Duration) {
	t.refreshMu.Lock()
	defer t.refreshMu.Unlock()
	t.mu.Lock()
	synced := t.synced
	t.mu.Unlock()
	if !synced.IsZero() && t.cfg.Now().Sub(synced) < maxAge {
		return
	}
	if err := t.syncAll(ctx); err != nil {
		t.log.Debug("refreshing the open board", "err", err)
		return
	}
}

// OpenJobs lists up to limit open jobs, oldest first.
func (t *Gossip) OpenJobs(now time.Time, limit int) []node3.Job {
	t.mu.Lock()
	out := make([]node3.Job, 0, min(len(t.board), limit))
	for _, e := range t.board {
		if !e.gone && now.Before(e.job.ExpiresAt) {
			out = append(out, e.job)
		}
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// BoardSize is the number of open jobs on the board.
func (t *Gossip) BoardSize() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, e := range t.board {
		if !e.gone {
			n++
		}
	}
	return n
}

// connected reports whether pn has a connection to p.
func connected(pn *p2p.Node, p peer.ID) bool {
	return pn.Host().Network().Connectedness(p) == network.Connected
}

var errNoCoordinator = node3.Errorf(node3.CodeUnavailable, "no trusted coordinator to talk to")

// containsPeer reports whether ids holds p.
func containsPeer(ids []peer.ID, p peer.ID) bool { return slices.Contains(ids, p) }
