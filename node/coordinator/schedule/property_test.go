package schedule

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
)

var (
	propProviders = []string{"p0", "p1", "p2", "p3"}
	propAgents    = []node3.Agent{
		{ID: "r0", Slots: 2},
		{ID: "r1", Slots: 1, GPUs: []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "A100", MemoryBytes: 80 * gib}, {Index: 1, Vendor: "AMD", Model: "MI300X", MemoryBytes: 192 * gib}}},
	}
	propVendors = []string{"NVIDIA", "AMD"}
	propModels  = []string{"A100", "H100", "MI300X"}
	propMems    = []uint64{24 * gib, 48 * gib, 80 * gib}
)

// TestSchedulerProperties runs random event sequences — jobs arriving,
// providers connecting, announcing and leaving, grants acked, declined
// and lapsing, jobs finishing, failing, cancelled and expiring, REST polls
// and accepts — through the scheduler and the real job state machine, and
// checks the invariants after every step.
func TestSchedulerProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := newWorld(rt, Config{AckTimeout: 2 * time.Second, OfferTTL: time.Second, ReofferAfter: 250 * time.Millisecond, DeclineBar: time.Second})
		for _, a := range propAgents {
			w.registerGPUs(a)
		}
		next := 0
		var uncommitted []Grant      // granted, the accept not yet committed
		pending := func() []string { // committed grants waiting for an answer
			var out []string
			for _, id := range sortedKeys(w.s.grants) {
				if w.s.grants[id].committed {
					out = append(out, id)
				}
			}
			return out
		}
		leasedJobs := func() []string {
			var out []string
			for _, id := range sortedKeys(w.led) {
				if w.led[id].Status.Leased() {
					out = append(out, id)
				}
			}
			return out
		}
		rt.Repeat(map[string]func(*rapid.T){
			"": func(rt *rapid.T) { checkInvariants(rt, w) },
			"job": func(rt *rapid.T) {
				next++
				var r node3.Requirements
				if rapid.Bool().Draw(rt, "gpu") {
					r.GPU = true
					r.GPUCount = rapid.IntRange(0, 3).Draw(rt, "count")
					r.MinGPUMemory = rapid.SampledFrom([]uint64{0, 40 * gib, 100 * gib}).Draw(rt, "mem")
					r.GPUVendor = rapid.SampledFrom([]string{"", "nvidia", "amd"}).Draw(rt, "vendor")
					r.GPUModel = rapid.SampledFrom([]string{"", "a100", "mi300"}).Draw(rt, "model")
				}
				j := mkJob(fmt.Sprintf("j%04d", next), rapid.SampledFrom([]node3.Lamports{0, 100, 1000}).Draw(rt, "reward"), r)
				j.MaxAttempts = rapid.IntRange(1, 4).Draw(rt, "attempts")
				j.CreatedAt = w.now
				j.ExpiresAt = w.now.Add(time.Duration(rapid.IntRange(1, 120).Draw(rt, "ttl")) * time.Second)
				w.add(j)
			},
			"connect": func(rt *rapid.T) {
				id := rapid.SampledFrom(propProviders).Draw(rt, "provider")
				c := Capacity{Slots: rapid.IntRange(0, 3).Draw(rt, "slots"), PriceFloor: rapid.SampledFrom([]node3.Lamports{0, 0, 100, 500}).Draw(rt, "floor")}
				n := rapid.IntRange(0, 4).Draw(rt, "gpus")
				for i := range n {
					c.GPUs = append(c.GPUs, node3.GPU{
						Index: i, UUID: fmt.Sprintf("%s-gpu%d", id, i),
						Vendor:      rapid.SampledFrom(propVendors).Draw(rt, "vendor"),
						Model:       rapid.SampledFrom(propModels).Draw(rt, "model"),
						MemoryBytes: rapid.SampledFrom(propMems).Draw(rt, "mem"),
					})
				}
				w.connect(id, c)
			},
			"disconnect": func(rt *rapid.T) {
				w.requeue(w.s.Disconnect(rapid.SampledFrom(propProviders).Draw(rt, "provider"))...)
			},
			"assign": func(rt *rapid.T) {
				before := make(map[string]struct {
					slots int
					gpus  []string
				})
				for _, p := range propProviders {
					if n, gs, ok := w.s.Free(p); ok {
						var uu []string
						for _, g := range gs {
							uu = append(uu, g.UUID)
						}
						before[p] = struct {
							slots int
							gpus  []string
						}{n, uu}
					}
				}
				gs := w.s.Assign(w.now)
				// Grants take only what was free, each slot and GPU once.
				for _, g := range gs {
					if st := w.led[g.JobID].Status; st != node3.StatusAvailable {
						rt.Fatalf("granted %s to %s while the ledger has it %s", g.JobID, g.Provider, st)
					}
					f, ok := before[g.Provider]
					if !ok {
						rt.Fatalf("granted %s to %s, not connected", g.JobID, g.Provider)
					}
					if len(g.GPUs) == 0 {
						if f.slots--; f.slots < 0 {
							rt.Fatalf("%s granted more CPU jobs than its free slots", g.Provider)
						}
					}
					for _, x := range g.GPUs {
						i := slices.Index(f.gpus, x.UUID)
						if i < 0 {
							rt.Fatalf("%s granted GPU %s that was not free", g.Provider, x.UUID)
						}
						f.gpus = slices.Delete(f.gpus, i, i+1)
						if !g.Job.Requirements.Fits(x) {
							rt.Fatalf("%s got GPU %+v it does not fit", g.JobID, x)
						}
					}
					if len(g.GPUs) != g.Job.Requirements.Count() {
						rt.Fatalf("%s got %d GPUs, needs %d", g.JobID, len(g.GPUs), g.Job.Requirements.Count())
					}
					if g.Job.Reward < w.s.conns[g.Provider].cap.PriceFloor {
						rt.Fatalf("%s (reward %d) went to %s below its floor", g.JobID, g.Job.Reward, g.Provider)
					}
					before[g.Provider] = f
				}
				checkWorkConserved(rt, w)
				uncommitted = append(uncommitted, gs...)
			},
			"commit": func(rt *rapid.T) { // the accept of one grant returns
				if len(uncommitted) == 0 {
					rt.Skip("no accept under way")
				}
				i := rapid.IntRange(0, len(uncommitted)-1).Draw(rt, "grant")
				g := uncommitted[i]
				uncommitted = slices.Delete(uncommitted, i, i+1)
				if err := w.accept(g.JobID, g.Provider); err != nil {
					if err := w.s.Abort(g.JobID, g.Provider); err != nil && node3.ErrorCode(err) != node3.CodeNotFound {
						rt.Fatalf("abort after a failed accept: %v", err)
					}
				}
			},
			"grab": func(rt *rapid.T) { // a REST agent accepts a job by id, unoffered
				a := rapid.SampledFrom(propAgents).Draw(rt, "agent")
				var open []string
				for _, id := range sortedKeys(w.led) {
					if w.led[id].Status == node3.StatusAvailable {
						open = append(open, id)
					}
				}
				if len(open) == 0 {
					rt.Skip("nothing available")
				}
				if st := w.s.agents[a.ID]; st != nil && len(st.holds) >= a.Capacity() {
					rt.Skip("the agent is full") // the coordinator refuses it
				}
				_ = w.accept(rapid.SampledFrom(open).Draw(rt, "job"), a.ID)
			},
			"ack": func(rt *rapid.T) {
				ps := pending()
				if len(ps) == 0 {
					rt.Skip("no grant waits")
				}
				id := rapid.SampledFrom(ps).Draw(rt, "job")
				if err := w.s.Ack(id, w.s.grants[id].agent); err != nil {
					rt.Fatalf("ack: %v", err)
				}
			},
			"decline": func(rt *rapid.T) {
				ps := pending()
				if len(ps) == 0 {
					rt.Skip("no grant waits")
				}
				id := rapid.SampledFrom(ps).Draw(rt, "job")
				rq, err := w.s.Decline(id, w.s.grants[id].agent, w.now)
				if err != nil {
					rt.Fatalf("decline: %v", err)
				}
				w.requeue(rq)
			},
			"tick": func(rt *rapid.T) {
				w.now = w.now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "ms")) * time.Millisecond)
				w.requeue(w.s.Tick(w.now)...)
			},
			"sweep": func(rt *rapid.T) { // the ledger's sweeper
				for _, id := range sortedKeys(w.led) {
					_ = w.apply(id, ledger.Event{Kind: ledger.EvExpire})
					_ = w.apply(id, ledger.Event{Kind: ledger.EvLeaseExpire})
				}
			},
			"finish": func(rt *rapid.T) {
				ls := leasedJobs()
				if len(ls) == 0 {
					rt.Skip("nothing runs")
				}
				id := rapid.SampledFrom(ls).Draw(rt, "job")
				j := w.led[id]
				ev := ledger.Event{Kind: ledger.EvComplete, AgentID: j.AgentID, Result: &node3.JobResult{}}
				if rapid.Bool().Draw(rt, "fails") {
					ev = ledger.Event{Kind: ledger.EvFail, AgentID: j.AgentID, Retryable: rapid.Bool().Draw(rt, "retryable"), Backoff: 2 * time.Second, Reason: "boom"}
				}
				_ = w.apply(id, ev) // a lapsed lease is refused: fine
			},
			"cancel": func(rt *rapid.T) {
				if len(w.led) == 0 {
					rt.Skip("no jobs")
				}
				_ = w.apply(rapid.SampledFrom(sortedKeys(w.led)).Draw(rt, "job"), ledger.Event{Kind: ledger.EvCancel})
			},
			"poll": func(rt *rapid.T) {
				a := rapid.SampledFrom(propAgents).Draw(rt, "agent")
				var free *node3.Capacity
				if rapid.Bool().Draw(rt, "reports") {
					free = &node3.Capacity{Slots: rapid.IntRange(0, 2).Draw(rt, "slots")}
					for _, g := range a.GPUs {
						if rapid.Bool().Draw(rt, "gpufree") {
							free.GPUs = append(free.GPUs, g.Index)
						}
					}
				}
				for _, j := range w.s.Offer(a, free, rapid.IntRange(0, 3).Draw(rt, "limit"), w.now) {
					if st := w.led[j.ID].Status; st != node3.StatusAvailable {
						rt.Fatalf("offered %s to %s while the ledger has it %s", j.ID, a.ID, st)
					}
					if rapid.Bool().Draw(rt, "accept") {
						if err := w.accept(j.ID, a.ID); err != nil {
							rt.Fatalf("accepting an offered job: %v", err)
						}
					}
				}
			},
		})
	})
}

// checkInvariants holds after every step.
func checkInvariants(t *rapid.T, w *world) {
	s := w.s
	// Every job is held by at most one agent, and the books agree.
	holds := 0
	for id, a := range s.agents {
		if a.p == nil && len(a.holds) == 0 {
			t.Fatalf("agent %s kept with nothing held", id)
		}
		for jobID, h := range a.holds {
			holds++
			if e := s.jobs[jobID]; e == nil || e.hold != h || h.agent != id {
				t.Fatalf("hold of %s by %s is not its job's hold", jobID, id)
			}
		}
	}
	tracked := 0
	for id, e := range s.jobs {
		if e.hold != nil {
			tracked++
		}
		j := w.led[id]
		switch {
		case j.Status == node3.StatusAvailable:
			if !e.onBoard {
				t.Fatalf("%s available but off the board", id)
			}
			if h := e.hold; h != nil && !(h.state == offered || h.state == granted && !h.committed) {
				t.Fatalf("%s available but held %v (committed %v) by %s", id, h.state, h.committed, h.agent)
			}
			if e.waiting != (e.hold == nil) {
				t.Fatalf("%s: waiting %v with hold %v", id, e.waiting, e.hold)
			}
		case j.Status.Leased():
			if e.hold == nil || e.hold.agent != j.AgentID {
				t.Fatalf("%s leased by %s but held by %+v", id, j.AgentID, e.hold)
			}
		default:
			t.Fatalf("%s is %s and still tracked", id, j.Status)
		}
		if h := s.offers[id]; h != nil && (h != e.hold || h.state != offered) {
			t.Fatalf("%s: offer book disagrees", id)
		}
		if h := s.grants[id]; h != nil && (h != e.hold || h.state != granted) {
			t.Fatalf("%s: grant book disagrees", id)
		}
	}
	if holds != tracked {
		t.Fatalf("%d holds by agents, %d held jobs", holds, tracked)
	}
	// Bounded: exactly the ledger's open jobs are tracked.
	open := 0
	for _, j := range w.led {
		if j.Status == node3.StatusAvailable || j.Status.Leased() {
			open++
		}
	}
	if open != len(s.jobs) {
		t.Fatalf("tracking %d jobs, the ledger has %d open", len(s.jobs), open)
	}
	if s.Waiting() < 0 || s.fresh < 0 || s.grown < 0 {
		t.Fatalf("counters below zero: waiting %d fresh %d grown %d", s.Waiting(), s.fresh, s.grown)
	}
	// Each provider's books: slots and GPUs used are those its holds reserve,
	// each GPU by one job.
	for id, p := range s.conns {
		slots, owner := 0, make(map[string]string)
		for jobID, h := range s.agents[id].holds {
			if h.state == offered {
				continue
			}
			if h.slot {
				slots++
			}
			for _, g := range h.gpus {
				if o, dup := owner[g.UUID]; dup {
					t.Fatalf("GPU %s of %s held by %s and %s", g.UUID, id, o, jobID)
				}
				owner[g.UUID] = jobID
			}
		}
		if p.free != len(p.freeGPUs()) {
			t.Fatalf("%s: counts %d free GPUs, has %d", id, p.free, len(p.freeGPUs()))
		}
		if slots != p.usedSlots || len(owner) != len(p.busy) {
			t.Fatalf("%s: %d slots, %d GPUs used by its books; holds say %d, %d", id, p.usedSlots, len(p.busy), slots, len(owner))
		}
		for u, j := range owner {
			if p.busy[u] != j {
				t.Fatalf("%s: GPU %s busy with %q, held by %s", id, u, p.busy[u], j)
			}
		}
	}
	// A polling agent never holds more than its declared capacity.
	for _, a := range propAgents {
		if st := s.agents[a.ID]; st != nil && len(st.holds) > a.Capacity() {
			t.Fatalf("agent %s holds %d, capacity %d", a.ID, len(st.holds), a.Capacity())
		}
	}
}

// checkWorkConserved holds right after Assign: no waiting, unexpired job
// fits the free capacity of a provider that may take it. The fit here is
// computed afresh from Free, not by the scheduler's own code.
func checkWorkConserved(t *rapid.T, w *world) {
	for _, e := range w.s.waiting {
		if !e.waiting || !w.now.Before(e.job.ExpiresAt) {
			continue
		}
		j := e.job
		for _, pid := range propProviders {
			slots, free, ok := w.s.Free(pid)
			if !ok || j.Reward < w.s.conns[pid].cap.PriceFloor {
				continue
			}
			if !j.BarredUntil(pid, w.now).IsZero() || slices.ContainsFunc(e.bars, func(b node3.Bar) bool { return b.AgentID == pid && w.now.Before(b.Until) }) {
				continue
			}
			fits := slots > 0
			if n := j.Requirements.Count(); n > 0 {
				k := 0
				for _, g := range free {
					if j.Requirements.Fits(g) {
						k++
					}
				}
				fits = k >= n
			}
			if fits {
				t.Fatalf("after Assign, %s (%+v) waits though %s has room (slots %d, GPUs %s)", j.ID, j.Requirements, pid, slots, gpuNames(free))
			}
		}
	}
}

func gpuNames(gs []node3.GPU) string {
	var b strings.Builder
	for _, g := range gs {
		fmt.Fprintf(&b, "%s:%s/%s/%dG ", g.UUID, g.Vendor, g.Model, g.MemoryBytes/gib)
	}
	return b.String()
}
