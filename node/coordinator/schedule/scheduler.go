package schedule

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/node3/node3"
)

// Limits on what a provider may announce, and on how many may be connected.
const (
	MaxSlots        = node3.MaxSlots    // CPU slots one provider may announce
	MaxGPUs         = node3.MaxGPUCount // GPUs one provider may announce
	MaxIDBytes      = 256               // provider and GPU UUID lengths
	DefaultMaxConns = 10_000            // connected stream providers at once
)

// Config tunes a Scheduler. Zero fields take the defaults.
type Config struct {
	// AckTimeout is how long a stream provider has to ack a grant before
	// it is taken back (default 5 s).
	AckTimeout time.Duration
	// OfferTTL is how long a job offered to a polling agent is held back
	// from everyone else (default 2 s, as the REST coordinator's).
	OfferTTL time.Duration
	// ReofferAfter is how long a job offered to a polling agent is held
	// back from that same agent: an agent that polls again after this did
	// not take it (default 250 ms, as board.go's).
	ReofferAfter time.Duration
	// DeclineBar is how long a provider that declined a grant, or let its
	// ack deadline pass, is not granted that job again (default 30 s;
	// negative: not at all).
	DeclineBar time.Duration
	// MaxProviders bounds the connected stream providers (default
	// DefaultMaxConns).
	MaxProviders int
}

// DefaultAckTimeout is Config.AckTimeout's default.
const DefaultAckTimeout = 5 * time.Second

func (c *Config) fill() {
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.OfferTTL <= 0 {
		c.OfferTTL = 2 * time.Second
	}
	if c.ReofferAfter <= 0 {
		c.ReofferAfter = 250 * time.Millisecond
	}
	switch {
	case c.DeclineBar == 0:
		c.DeclineBar = 30 * time.Second
	case c.DeclineBar < 0:
		c.DeclineBar = 0
	}
	if c.MaxProviders <= 0 {
		c.MaxProviders = DefaultMaxConns
	}
}

// Capacity is what a stream provider puts at this coordinator's disposal:
// CPU slots, GPUs (each named by a UUID unique within the provider) and
// the lowest reward it takes. It is the whole of it, including what the
// jobs this coordinator already gave it use — not only what is idle —
// so that an announcement racing a grant on the wire cannot double-book
// anything: the scheduler subtracts its own holds.
type Capacity struct {
	Slots      int
	GPUs       []node3.GPU
	PriceFloor node3.Lamports
}

// Check validates an announcement.
func (c Capacity) Check() error {
	if c.Slots < 0 || c.Slots > MaxSlots {
		return node3.Errorf(node3.CodeInvalid, "slots must be between 0 and %d", MaxSlots)
	}
	if len(c.GPUs) > MaxGPUs {
		return node3.Errorf(node3.CodeInvalid, "a provider may announce at most %d GPUs", MaxGPUs)
	}
	if c.PriceFloor > node3.MaxReward {
		return node3.Errorf(node3.CodeInvalid, "price floor %s is above the maximum reward %s", c.PriceFloor, node3.MaxReward)
	}
	seen := make(map[string]bool, len(c.GPUs))
	for _, g := range c.GPUs {
		if g.UUID == "" || len(g.UUID) > MaxIDBytes {
			return node3.Errorf(node3.CodeInvalid, "every GPU needs a uuid of 1 to %d bytes", MaxIDBytes)
		}
		if seen[g.UUID] {
			return node3.Errorf(node3.CodeInvalid, "GPU uuid %q announced twice", truncate(g.UUID, 64))
		}
		seen[g.UUID] = true
	}
	return nil
}

// Grant gives one job to one stream provider. The caller commits it with
// the ledger's accept (agent Provider), pushes it with the job's full spec
// on the provider's stream, and reports the answer with Ack or Decline.
// If the accept fails, it calls Abort.
type Grant struct {
	JobID    string
	Job      node3.Job // as it stands on the board (public and private fields)
	Provider string
	Attempt  int         // the attempt the accept will make (Job.Attempt+1)
	GPUs     []node3.GPU // reserved for it; empty for a CPU job
	// Deadline is when the ack is due if the accept commits at once; the
	// ack clock really runs from the commit (Job.AcceptedAt + AckTimeout).
	Deadline time.Time
}

// Requeue asks the caller to put a job the ledger holds as accepted by
// Provider (for Attempt) back on the board at once: the provider declined
// it, did not ack in time, or went away before acking. Requeues come only
// for grants whose accept the ledger committed. The scheduler has already
// released the provider's hold (and, for a decline or a lapse, bars it
// from the job for Config.DeclineBar). A requeue for a job that is no
// longer leased by Provider on that attempt is a conflict the caller may
// ignore.
type Requeue struct {
	JobID    string
	Provider string
	Attempt  int
	Reason   string
}

type holdState uint8

const (
	offered holdState = iota + 1 // on offer to a polling agent (pull)
	granted                      // granted to a stream provider, waiting for its ack
	acked                        // the stream provider acked; held until the job ends
	leased                       // the ledger shows it leased and no offer or grant explains it
)

// hold is one job's claim on one agent's capacity.
type hold struct {
	agent     string
	state     holdState
	slot      bool        // a CPU job: takes a slot
	gpus      []node3.GPU // reserved GPUs (stream providers; offers by Index)
	attempt   int         // grants: the attempt the accept makes
	committed bool        // the ledger shows the job leased by agent
	orphan    bool        // granted, then its provider left before the commit
	at        time.Time   // offers: when made
	deadline  time.Time   // offers: until; grants: ack deadline
}

// entry is one job the scheduler knows: on the board (available in the
// ledger) and/or held by an agent.
type entry struct {
	// What Assign reads of every waiting job, together at the front so
	// that a pass over thousands of them touches one cache line each.
	onBoard bool
	waiting bool // onBoard, not held: in Scheduler.waiting
	fresh   bool // waiting and not yet tried against every provider
	barred  bool // job.Barred or bars is not empty
	reward  node3.Lamports
	expires time.Time
	req     node3.Requirements

	job     node3.Job
	hold    *hold
	bars    []node3.Bar // decliners, kept from it for a while
	wakeAt  time.Time   // the earliest of its wakes
	dropped struct {    // the last grant given back: its late ledger echo holds nothing
		agent   string
		attempt int
	}
}

// wake is when a bar that kept a waiting job from a provider with room
// lapses: the job is then tried against every provider again.
type wake struct {
	e  *entry
	at time.Time
}

// set takes the job as the ledger last committed it.
func (e *entry) set(j node3.Job, onBoard bool) {
	e.job, e.onBoard = j, onBoard
	e.reward, e.expires, e.req = j.Reward, j.ExpiresAt, j.Requirements
	e.barred = len(j.Barred) > 0 || len(e.bars) > 0
}

// provider is one connected stream provider.
type provider struct {
	id        string
	cap       Capacity
	usedSlots int
	busy      map[string]string // GPU UUID → job holding it (announced or not)
	free      int               // announced GPUs not busy
	grown     bool              // gained capacity since the last Assign
	// miss holds the GPU requirements that did not fit in Assign pass
	// missPass: capacity only shrinks during a pass, so they still do not.
	miss     map[node3.Requirements]bool
	lastMiss node3.Requirements // the latest of miss: jobs alike often come in runs
	missPass uint64
}

// agent counts the holds of any agent, connected stream provider or
// polling agent; it exists while it holds something or is connected.
type agent struct {
	holds map[string]*hold // job id → its hold
	p     *provider        // nil for a polling agent or a disconnected provider
}

// Scheduler decides which provider gets which job. It is a pure state
// machine: no locks, no timers, no I/O; the caller feeds it events and the
// time, and acts on what it returns. It is not safe for concurrent use.
// See the package documentation for the policy and the loop that drives it.
type Scheduler struct {
	cfg     Config
	jobs    map[string]*entry // every job on the board or held
	waiting []*entry          // waiting jobs in id (creation) order; may hold stale entries
	stale   int               // entries in waiting no longer waiting
	fresh   int               // waiting entries with fresh set
	agents  map[string]*agent
	conns   map[string]*provider // connected stream providers by id
	order   []*provider          // conns sorted by id, for deterministic ties
	grown   int                  // providers with grown set
	wakes   []wake               // waiting jobs a bar kept from a provider that fits
	offers  map[string]*hold     // job id → live offer
	pass    uint64               // Assign calls that scanned, for provider.miss
	grants  map[string]*hold     // job id → grant waiting for its ack
}

// New returns an empty scheduler.
func New(cfg Config) *Scheduler {
	cfg.fill()
	return &Scheduler{
		cfg:    cfg,
		jobs:   make(map[string]*entry),
		agents: make(map[string]*agent),
		conns:  make(map[string]*provider),
		offers: make(map[string]*hold),
		grants: make(map[string]*hold),
	}
}

// Observe applies one committed job change from the ledger's feed. It must
// see every change, in commit order, and see a grant's accept before the
// grant's Ack or Decline (feed the change before pushing the grant).
//
// An available job goes on the board (a requeued one keeps its place and
// ends any lease it had); a leased job leaves the board and holds its
// agent's capacity (the grant or offer that led to it, or a new hold); any
// other state forgets the job and frees what it held.
func (s *Scheduler) Observe(j node3.Job) {
	defer s.tidy()
	e := s.jobs[j.ID]
	switch {
	case j.Status == node3.StatusAvailable:
		if e == nil {
			e = &entry{}
			s.jobs[j.ID] = e
		}
		e.set(j, true)
		if h := e.hold; h != nil && (h.committed || h.state == acked) {
			s.release(j.ID, e) // the lease ended: requeued
		}
		if e.hold == nil {
			s.wait(e)
		}
	case j.Status.Leased():
		if e == nil {
			e = &entry{}
			s.jobs[j.ID] = e
		}
		e.set(j, false)
		s.unwait(e)
		if h := e.hold; h != nil {
			if h.agent == j.AgentID {
				if h.state == granted && !h.committed && !j.AcceptedAt.IsZero() {
					// The ack clock runs from the commit; a grant whose
					// provider left meanwhile lapses at once.
					h.deadline = j.AcceptedAt.Add(s.cfg.AckTimeout)
					if h.orphan {
						h.deadline = j.AcceptedAt
					}
				}
				h.committed = true
				if h.state == offered {
					// A polling agent reports its own free GPUs; its lease
					// counts against its declared capacity only.
					delete(s.offers, j.ID)
					h.state, h.gpus = leased, nil
					if p := s.conns[h.agent]; p != nil && h.slot {
						p.usedSlots++
					}
				}
				return
			}
			s.release(j.ID, e)
		}
		if e.dropped.agent == j.AgentID && e.dropped.attempt == j.Attempt {
			return // the echo of a grant already given back
		}
		s.holdLease(j, e)
	default:
		if e == nil {
			return
		}
		s.unwait(e)
		if e.hold != nil {
			s.release(j.ID, e)
		}
		delete(s.jobs, j.ID)
	}
}

// holdLease records a lease nobody here granted (a REST accept, or one
// from before a restart) against its agent, reserving on a connected
// stream provider what fits of its free capacity.
func (s *Scheduler) holdLease(j node3.Job, e *entry) {
	h := &hold{agent: j.AgentID, state: leased, committed: true, slot: j.Requirements.Count() == 0}
	if p := s.conns[j.AgentID]; p != nil && !h.slot {
		h.gpus, _ = p.pick(j.Requirements)
	}
	s.attach(j.ID, e, h)
}

// Connect registers a stream provider with its capacity, or takes a new
// announcement from one already connected. Holds it already has (jobs it
// runs, also from before a reconnect) keep their reservations; a smaller
// announcement revokes none of them but stops new grants until it fits.
func (s *Scheduler) Connect(id string, c Capacity) error {
	if id == "" || len(id) > MaxIDBytes {
		return node3.Errorf(node3.CodeInvalid, "provider id must be 1 to %d bytes", MaxIDBytes)
	}
	if err := c.Check(); err != nil {
		return err
	}
	c.GPUs = slices.Clone(c.GPUs)
	p := s.conns[id]
	if p == nil {
		if len(s.conns) >= s.cfg.MaxProviders {
			return node3.Errorf(node3.CodeUnavailable, "%d providers are connected, the most this coordinator takes", len(s.conns))
		}
		p = &provider{id: id, busy: make(map[string]string)}
		s.conns[id] = p
		i, _ := slices.BinarySearchFunc(s.order, id, func(q *provider, id string) int { return strings.Compare(q.id, id) })
		s.order = slices.Insert(s.order, i, p)
		a := s.agent(id)
		a.p = p
		for _, jobID := range sortedKeys(a.holds) { // held from before a reconnect
			h := a.holds[jobID]
			if h.state == offered {
				continue
			}
			if r := s.jobs[jobID].job.Requirements; len(h.gpus) == 0 && r.Count() > 0 {
				// A lease seen while it was away (a restart): reserve
				// what fits of the new announcement.
				p.cap = c
				h.gpus, _ = p.pick(r)
			}
			if h.slot {
				p.usedSlots++
			}
			for _, g := range h.gpus {
				p.busy[g.UUID] = jobID
			}
		}
	}
	p.cap = c
	p.free = 0
	for _, g := range c.GPUs {
		if _, ok := p.busy[g.UUID]; !ok {
			p.free++
		}
	}
	s.grow(p)
	return nil
}

// Disconnect forgets a stream provider's capacity. Its committed grants
// not yet acked are taken back and returned for the caller to requeue;
// one whose accept is still being committed is settled by its Abort, or
// lapses at the first Tick after the commit. Acked jobs stay held against
// it (it may still run them and reconnect) until the ledger ends or
// requeues them. Unknown providers are a no-op.
func (s *Scheduler) Disconnect(id string) []Requeue {
	p := s.conns[id]
	if p == nil {
		return nil
	}
	a := s.agents[id]
	var out []Requeue
	for _, jobID := range sortedKeys(a.holds) {
		h := a.holds[jobID]
		switch {
		case h.state != granted:
		case h.committed:
			out = append(out, s.giveBack(jobID, h, "the provider disconnected before acking"))
		default:
			h.orphan = true // its commit is under way: Abort or a lapse settles it
		}
	}
	delete(s.conns, id)
	i, _ := slices.BinarySearchFunc(s.order, id, func(q *provider, id string) int { return strings.Compare(q.id, id) })
	s.order = slices.Delete(s.order, i, i+1)
	if p.grown {
		s.grown--
	}
	a.p = nil
	s.dropAgent(id, a)
	return out
}

// Ack records that a provider took its grant: its capacity stays held
// until the ledger ends or requeues the job.
//
// An ack of a grant given back (its deadline passed, its provider's
// stream broke) is a CodeConflict error: the provider must not run the
// job. An ack of a grant the scheduler no longer knows otherwise — the
// job ended already, its report having overtaken the ack — is
// CodeNotFound.
func (s *Scheduler) Ack(jobID, providerID string) error {
	h := s.grants[jobID]
	if h == nil || h.agent != providerID {
		if e := s.jobs[jobID]; e != nil && e.dropped.agent == providerID {
			return node3.Errorf(node3.CodeConflict, "the grant of job %s to %s was given back before its ack came", truncate(jobID, 64), truncate(providerID, 64))
		}
		return node3.Errorf(node3.CodeNotFound, "no grant of job %s to %s waits for an ack", truncate(jobID, 64), truncate(providerID, 64))
	}
	if !h.committed {
		return errUncommitted(jobID)
	}
	delete(s.grants, jobID)
	h.state, h.deadline = acked, time.Time{}
	return nil
}

// Decline takes back a grant the provider refused, frees its capacity,
// bars it from the job for Config.DeclineBar and returns the requeue the
// caller must apply to the ledger.
func (s *Scheduler) Decline(jobID, providerID string, now time.Time) (Requeue, error) {
	h := s.grants[jobID]
	if h == nil || h.agent != providerID {
		return Requeue{}, node3.Errorf(node3.CodeNotFound, "no grant of job %s to %s waits for an answer", truncate(jobID, 64), truncate(providerID, 64))
	}
	if !h.committed {
		return Requeue{}, errUncommitted(jobID)
	}
	s.bar(jobID, providerID, now)
	return s.giveBack(jobID, h, "the provider declined the grant"), nil
}

// Abort takes back a grant whose ledger accept failed (the job was
// cancelled, expired, or taken by another first). Nothing needs a
// requeue and nobody is barred. A grant the ledger committed cannot be
// aborted (CodeConflict): it is declined or lapses. CodeNotFound (the
// ledger's feed already moved the job elsewhere) is harmless.
func (s *Scheduler) Abort(jobID, providerID string) error {
	h := s.grants[jobID]
	if h == nil || h.agent != providerID {
		return node3.Errorf(node3.CodeNotFound, "no grant of job %s to %s", truncate(jobID, 64), truncate(providerID, 64))
	}
	if h.committed {
		return node3.Errorf(node3.CodeConflict, "the grant of job %s is committed: decline it or let it lapse", truncate(jobID, 64))
	}
	s.giveBack(jobID, h, "")
	return nil
}

func errUncommitted(jobID string) error {
	return node3.Errorf(node3.CodeConflict, "the grant of job %s is not committed yet: push it only after its accept", truncate(jobID, 64))
}

// Tick takes back every committed grant whose ack deadline has passed
// (barring its provider from the job) and every offer past its TTL, and
// returns the requeues the caller must apply to the ledger. A grant whose
// accept is still being committed does not lapse: its commit or its
// Abort settles it.
func (s *Scheduler) Tick(now time.Time) []Requeue {
	s.expireOffers(now)
	var lapsed []string
	for jobID, h := range s.grants {
		if h.committed && !now.Before(h.deadline) {
			lapsed = append(lapsed, jobID)
		}
	}
	slices.Sort(lapsed)
	var out []Requeue
	for _, jobID := range lapsed {
		h := s.grants[jobID]
		s.bar(jobID, h.agent, now)
		out = append(out, s.giveBack(jobID, h, "the provider did not ack the grant in time"))
	}
	return out
}

// NextDeadline is when Tick next has something to do, or a bar on a
// waiting job lapses and Assign may find it a provider; zero when nothing
// is pending.
func (s *Scheduler) NextDeadline() time.Time {
	var t time.Time
	earlier := func(u time.Time) {
		if !u.IsZero() && (t.IsZero() || u.Before(t)) {
			t = u
		}
	}
	for _, h := range s.grants {
		if h.committed {
			earlier(h.deadline)
		}
	}
	for _, h := range s.offers {
		earlier(h.deadline)
	}
	for _, w := range s.wakes {
		earlier(w.at)
	}
	return t
}

// Assign gives waiting jobs, oldest first, to stream providers under the
// policy in the package documentation, reserving what each takes, and
// returns the grants made. It only looks again at jobs and providers
// that changed since the last call, so that calling it after every event
// is cheap.
func (s *Scheduler) Assign(now time.Time) []Grant {
	s.expireOffers(now)
	s.wakeUp(now)
	if s.fresh == 0 && s.grown == 0 {
		return nil
	}
	var grown []*provider
	for _, p := range s.order {
		if p.grown {
			grown = append(grown, p)
		}
	}
	s.pass++
	var out []Grant
	freshLeft, room := s.fresh, anyFree(grown)
	for _, e := range s.waiting {
		if freshLeft == 0 && !room {
			break // nothing new to try and nothing freed to try it on
		}
		if !e.waiting {
			continue
		}
		cands := grown
		if e.fresh {
			cands = s.order
			e.fresh = false
			s.fresh--
			freshLeft--
		}
		if !now.Before(e.expires) {
			continue // the ledger's sweep will expire it
		}
		p := s.best(e, cands, now)
		if p == nil {
			continue
		}
		out = append(out, s.grant(e, p, now))
		if p.grown {
			room = anyFree(grown)
		}
	}
	for _, p := range grown {
		p.grown = false
	}
	s.grown = 0
	s.tidy()
	return out
}

// best picks, among ps, the provider e's job goes to: it fits, its floor
// is met, it is not barred; the least loaded wins, ties to the lower id
// (ps is in id order). It notes when a bar will lapse.
func (s *Scheduler) best(e *entry, ps []*provider, now time.Time) *provider {
	var win *provider
	for _, p := range ps {
		if !s.fits(p, e) {
			continue
		}
		if until := s.barredUntil(e, p.id, now); !until.IsZero() {
			if e.wakeAt.IsZero() || until.Before(e.wakeAt) {
				e.wakeAt = until
				s.wakes = append(s.wakes, wake{e, until})
			}
			continue
		}
		if win == nil || p.lessLoaded(win) {
			win = p
		}
	}
	return win
}

func (s *Scheduler) barredUntil(e *entry, id string, now time.Time) time.Time {
	if !e.barred {
		return time.Time{} // the common case
	}
	if t := e.job.BarredUntil(id, now); !t.IsZero() {
		return t
	}
	for _, b := range e.bars {
		if b.AgentID == id && now.Before(b.Until) {
			return b.Until
		}
	}
	return time.Time{}
}

func (s *Scheduler) grant(e *entry, p *provider, now time.Time) Grant {
	gpus, _ := p.pick(e.job.Requirements)
	h := &hold{
		agent:    p.id,
		state:    granted,
		slot:     e.job.Requirements.Count() == 0,
		gpus:     gpus,
		attempt:  e.job.Attempt + 1,
		deadline: now.Add(s.cfg.AckTimeout),
	}
	s.unwait(e)
	s.attach(e.job.ID, e, h)
	s.grants[e.job.ID] = h
	return Grant{JobID: e.job.ID, Job: e.job, Provider: p.id, Attempt: h.attempt, GPUs: slices.Clone(gpus), Deadline: h.deadline}
}

// Offer hands a polling agent up to limit waiting jobs, oldest first, that
// fit the free capacity it reports (nil: all its registered GPUs and its
// slots), holding each back from everyone else for Config.OfferTTL. As
// the REST coordinator always did: asking again releases what it was
// offered at least Config.ReofferAfter ago and did not take, and the agent
// never holds more offers and leases together than its declared capacity.
// Stream grants and offers draw from the same waiting jobs, so no job is
// ever offered or granted to two at once. A connected stream provider is
// never offered anything by poll: its jobs come as grants.
func (s *Scheduler) Offer(a node3.Agent, free *node3.Capacity, limit int, now time.Time) []node3.Job {
	s.expireOffers(now)
	st := s.agents[a.ID]
	if st != nil {
		for _, jobID := range sortedKeys(st.holds) {
			if h := st.holds[jobID]; h.state == offered && now.Sub(h.at) >= s.cfg.ReofferAfter {
				s.giveBack(jobID, h, "")
			}
		}
		st = s.agents[a.ID]
	}
	held := 0
	if st != nil {
		held = len(st.holds)
	}
	limit = min(limit, a.Capacity()-held)
	if limit <= 0 || a.ID == "" || s.conns[a.ID] != nil {
		return nil
	}
	// What the agent reports free, less what its own live offers hold.
	gpus, slots := slices.Clone(a.GPUs), limit
	if free != nil {
		slots = free.Slots
		gpus = slices.DeleteFunc(gpus, func(g node3.GPU) bool { return !slices.Contains(free.GPUs, g.Index) })
	}
	if st != nil {
		for _, h := range st.holds {
			if h.state != offered {
				continue
			}
			if h.slot {
				slots--
			}
			gpus = slices.DeleteFunc(gpus, func(g node3.GPU) bool { return holdsIndex(h.gpus, g.Index) })
		}
	}
	var out []node3.Job
	for _, e := range s.waiting {
		if len(out) == limit {
			break
		}
		if !e.waiting || !now.Before(e.expires) || !s.barredUntil(e, a.ID, now).IsZero() {
			continue
		}
		r := e.req
		var taken []node3.GPU
		if r.Count() == 0 {
			if slots <= 0 {
				continue
			}
			slots--
		} else {
			for _, g := range gpus {
				if r.Fits(g) {
					if taken = append(taken, g); len(taken) == r.Count() {
						break
					}
				}
			}
			if len(taken) < r.Count() {
				continue
			}
			gpus = slices.DeleteFunc(gpus, func(g node3.GPU) bool { return holdsIndex(taken, g.Index) })
		}
		h := &hold{agent: a.ID, state: offered, slot: r.Count() == 0, gpus: taken, at: now, deadline: now.Add(s.cfg.OfferTTL)}
		s.unwait(e)
		s.attach(e.job.ID, e, h)
		s.offers[e.job.ID] = h
		out = append(out, e.job)
	}
	s.tidy()
	return out
}

// Withdraw cancels offers an agent will never see (it hung up). Jobs not
// on offer to it are left alone.
func (s *Scheduler) Withdraw(agentID string, jobIDs []string) {
	for _, id := range jobIDs {
		if h := s.offers[id]; h != nil && h.agent == agentID {
			s.giveBack(id, h, "")
		}
	}
}

func holdsIndex(gpus []node3.GPU, i int) bool {
	return slices.ContainsFunc(gpus, func(g node3.GPU) bool { return g.Index == i })
}

// Waiting is the number of jobs on the board that no agent holds.
func (s *Scheduler) Waiting() int { return len(s.waiting) - s.stale }

// Jobs is the number of jobs the scheduler tracks (on the board or held).
func (s *Scheduler) Jobs() int { return len(s.jobs) }

// Providers is the number of connected stream providers.
func (s *Scheduler) Providers() int { return len(s.conns) }

// Holder returns the agent holding a job (offered, granted or leased)
// and whether one does.
func (s *Scheduler) Holder(jobID string) (string, bool) {
	if e := s.jobs[jobID]; e != nil && e.hold != nil {
		return e.hold.agent, true
	}
	return "", false
}

// Holds counts what an agent holds: jobs on offer to it, and jobs granted
// or leased to it (what the REST accept checks against its capacity).
func (s *Scheduler) Holds(agentID string) (offers, held int) {
	a := s.agents[agentID]
	if a == nil {
		return 0, 0
	}
	for _, h := range a.holds {
		if h.state == offered {
			offers++
		} else {
			held++
		}
	}
	return offers, held
}

// Free returns a connected provider's free slots and free GPUs (in
// announced order); ok is false for an unknown provider.
func (s *Scheduler) Free(providerID string) (slots int, gpus []node3.GPU, ok bool) {
	p := s.conns[providerID]
	if p == nil {
		return 0, nil, false
	}
	return p.freeSlots(), p.freeGPUs(), true
}

// --- internals ---

func (s *Scheduler) agent(id string) *agent {
	a := s.agents[id]
	if a == nil {
		a = &agent{holds: make(map[string]*hold)}
		s.agents[id] = a
	}
	return a
}

func (s *Scheduler) dropAgent(id string, a *agent) {
	if a.p == nil && len(a.holds) == 0 {
		delete(s.agents, id)
	}
}

// attach gives e's job to h's agent, reserving on its provider.
func (s *Scheduler) attach(jobID string, e *entry, h *hold) {
	e.hold = h
	s.agent(h.agent).holds[jobID] = h
	if p := s.conns[h.agent]; p != nil && h.state != offered {
		if h.slot {
			p.usedSlots++
		}
		for _, g := range h.gpus {
			p.reserve(g, jobID)
		}
	}
}

// release frees e's hold; the job does not go back to waiting here.
func (s *Scheduler) release(jobID string, e *entry) {
	h := e.hold
	e.hold = nil
	delete(s.offers, jobID)
	delete(s.grants, jobID)
	a := s.agents[h.agent]
	if a == nil {
		return
	}
	delete(a.holds, jobID)
	if p := s.conns[h.agent]; p != nil && h.state != offered {
		if h.slot {
			p.usedSlots--
		}
		for _, g := range h.gpus {
			p.unreserve(g, jobID)
		}
		s.grow(p)
	}
	s.dropAgent(h.agent, a)
}

// giveBack releases an offer or grant; the job waits again if it is still
// on the board. A grant given back is remembered, so that the ledger's
// late echo of its accept holds nothing.
func (s *Scheduler) giveBack(jobID string, h *hold, reason string) Requeue {
	e := s.jobs[jobID]
	r := Requeue{JobID: jobID, Provider: h.agent, Attempt: h.attempt, Reason: reason}
	if h.state == granted {
		e.dropped.agent, e.dropped.attempt = h.agent, h.attempt
	}
	s.release(jobID, e)
	if e.onBoard {
		s.wait(e)
	}
	return r
}

func (s *Scheduler) bar(jobID, agentID string, now time.Time) {
	if s.cfg.DeclineBar <= 0 {
		return
	}
	e := s.jobs[jobID]
	e.bars = slices.DeleteFunc(e.bars, func(b node3.Bar) bool { return b.AgentID == agentID || !now.Before(b.Until) })
	e.bars = append(e.bars, node3.Bar{AgentID: agentID, Until: now.Add(s.cfg.DeclineBar)})
	e.barred = true
}

func (s *Scheduler) expireOffers(now time.Time) {
	if len(s.offers) == 0 {
		return
	}
	for jobID, h := range s.offers { // any order: waiting is kept in id order
		if !now.Before(h.deadline) {
			s.giveBack(jobID, h, "")
		}
	}
}

// wakeUp makes fresh again the waiting jobs whose bar lapsed by now, and
// drops wakes that no longer matter.
func (s *Scheduler) wakeUp(now time.Time) {
	if len(s.wakes) == 0 {
		return
	}
	keep := s.wakes[:0]
	for _, w := range s.wakes {
		switch {
		case w.e.wakeAt != w.at:
			// superseded by an earlier wake, or already woken
		case now.Before(w.at):
			keep = append(keep, w)
			continue
		default:
			w.e.wakeAt = time.Time{}
			if w.e.waiting && !w.e.fresh {
				w.e.fresh = true
				s.fresh++
			}
		}
	}
	clear(s.wakes[len(keep):])
	s.wakes = keep
}

func (s *Scheduler) grow(p *provider) {
	if !p.grown {
		p.grown = true
		s.grown++
	}
}

// wait puts e among the waiting jobs, in id order, as fresh.
func (s *Scheduler) wait(e *entry) {
	if e.waiting {
		return
	}
	e.waiting = true
	if !e.fresh {
		e.fresh = true
		s.fresh++
	}
	id := e.job.ID
	i, found := slices.BinarySearchFunc(s.waiting, id, func(x *entry, id string) int { return strings.Compare(x.job.ID, id) })
	if found {
		if s.waiting[i] == e {
			s.stale-- // its stale slot is live again
			return
		}
		s.waiting[i] = e // a stale entry of the same id (forgotten and re-added)
		s.stale--
		return
	}
	s.waiting = slices.Insert(s.waiting, i, e)
}

// unwait takes e out of the waiting jobs (lazily: its slot goes stale,
// so that it is safe while ranging over waiting).
func (s *Scheduler) unwait(e *entry) {
	if !e.waiting {
		return
	}
	e.waiting = false
	if e.fresh {
		e.fresh = false
		s.fresh--
	}
	s.stale++
}

// tidy compacts waiting once most of it is stale. Never call it while
// ranging over waiting.
func (s *Scheduler) tidy() {
	// The oldest jobs go first, so stale slots gather at the front.
	for len(s.waiting) > 0 && !s.waiting[0].waiting {
		s.waiting[0] = nil
		s.waiting = s.waiting[1:]
		s.stale--
	}
	if s.stale > 256 && s.stale > len(s.waiting)/2 {
		s.compact()
	}
}

// compact drops stale slots from waiting.
func (s *Scheduler) compact() {
	if s.stale == 0 {
		return
	}
	live := s.waiting[:0]
	for _, e := range s.waiting {
		if e.waiting {
			live = append(live, e)
		}
	}
	clear(s.waiting[len(live):])
	s.waiting, s.stale = live, 0
}

func anyFree(ps []*provider) bool {
	for _, p := range ps {
		if p.freeSlots() > 0 || p.free > 0 {
			return true
		}
	}
	return false
}

// reserve marks g busy with a job; g is free and announced (pick chose it).
func (p *provider) reserve(g node3.GPU, jobID string) {
	if _, ok := p.busy[g.UUID]; !ok && p.announced(g.UUID) {
		p.free--
	}
	p.busy[g.UUID] = jobID
}

func (p *provider) unreserve(g node3.GPU, jobID string) {
	if p.busy[g.UUID] != jobID {
		return
	}
	delete(p.busy, g.UUID)
	if p.announced(g.UUID) {
		p.free++
	}
}

func (p *provider) announced(uuid string) bool {
	return slices.ContainsFunc(p.cap.GPUs, func(g node3.GPU) bool { return g.UUID == uuid })
}

func (p *provider) freeSlots() int { return max(p.cap.Slots-p.usedSlots, 0) }

func (p *provider) freeGPUs() []node3.GPU {
	var out []node3.GPU
	for _, g := range p.cap.GPUs {
		if _, ok := p.busy[g.UUID]; !ok {
			out = append(out, g)
		}
	}
	return out
}

// fits reports whether j may go to p now: its reward meets p's floor and
// p's free capacity holds it. Within one Assign pass it remembers the GPU
// requirements p could not hold, so that many waiting jobs alike cost one
// look each.
func (s *Scheduler) fits(p *provider, e *entry) bool {
	if e.reward < p.cap.PriceFloor {
		return false
	}
	r := e.req
	need := r.Count()
	if need == 0 {
		return p.freeSlots() > 0
	}
	if need > p.free {
		return false
	}
	if p.missPass == s.pass && (r == p.lastMiss || p.miss[r]) {
		return false
	}
	n := 0
	for _, g := range p.cap.GPUs {
		if _, ok := p.busy[g.UUID]; !ok && r.Fits(g) {
			if n++; n == need {
				return true
			}
		}
	}
	if p.missPass != s.pass {
		if p.miss == nil {
			p.miss = make(map[node3.Requirements]bool)
		}
		clear(p.miss)
		p.missPass = s.pass
	}
	p.miss[r], p.lastMiss = true, r
	return false
}

// pick chooses the free GPUs a job takes on p: those that fit with the
// least memory first (ties in announced order), so that big GPUs stay free
// for jobs that need them. A CPU job takes none.
func (p *provider) pick(r node3.Requirements) ([]node3.GPU, bool) {
	need := r.Count()
	if need == 0 {
		return nil, p.freeSlots() > 0
	}
	var fit []node3.GPU
	for _, g := range p.cap.GPUs {
		if _, ok := p.busy[g.UUID]; !ok && r.Fits(g) {
			fit = append(fit, g)
		}
	}
	if len(fit) < need {
		return nil, false
	}
	slices.SortStableFunc(fit, func(a, b node3.GPU) int { return cmp.Compare(a.MemoryBytes, b.MemoryBytes) })
	return fit[:need:need], true
}

// load is the share of p's announced capacity in use, as a fraction.
func (p *provider) load() (used, total int) {
	return p.usedSlots + len(p.busy), p.cap.Slots + len(p.cap.GPUs)
}

func (p *provider) lessLoaded(q *provider) bool {
	pu, pt := p.load()
	qu, qt := q.load()
	return pu*max(qt, 1) < qu*max(pt, 1)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
