package schedule

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/node3/node3"
)

func slots(n int) Capacity { return Capacity{Slots: n} }

// TestPolicy is the table of the assignment policy: fit, price floor,
// load, ties, bars, expiry, oldest first, which GPUs a job takes.
func TestPolicy(t *testing.T) {
	gpuJob := func(id string, r node3.Requirements) node3.Job {
		r.GPU = true
		return mkJob(id, 1000, r)
	}
	barred := mkJob("j1", 1000, node3.Requirements{})
	barred.Barred = []node3.Bar{{AgentID: "a", Until: t0.Add(time.Minute)}}
	lapsedBar := mkJob("j1", 1000, node3.Requirements{})
	lapsedBar.Barred = []node3.Bar{{AgentID: "b", Until: t0}}
	expired := mkJob("j1", 1000, node3.Requirements{})
	expired.ExpiresAt = t0

	cases := []struct {
		name      string
		providers map[string]Capacity
		jobs      []node3.Job
		want      map[string]string   // job → provider; absent: not granted
		wantGPUs  map[string][]string // job → reserved GPU UUIDs
	}{
		{
			name:      "cpu job takes a slot; a provider with no slots gets none",
			providers: map[string]Capacity{"a": {GPUs: gpus("a", 1, 80*gib)}, "b": slots(1)},
			jobs:      []node3.Job{mkJob("j1", 1000, node3.Requirements{})},
			want:      map[string]string{"j1": "b"},
		},
		{
			name:      "gpu count: two GPUs need a provider with two free",
			providers: map[string]Capacity{"a": {GPUs: gpus("a", 1, 80*gib)}, "b": {GPUs: gpus("b", 2, 80*gib)}},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{GPUCount: 2})},
			want:      map[string]string{"j1": "b"},
			wantGPUs:  map[string][]string{"j1": {"b-0", "b-1"}},
		},
		{
			name:      "gpu job never takes a slot",
			providers: map[string]Capacity{"a": slots(8)},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{})},
		},
		{
			name:      "memory per GPU",
			providers: map[string]Capacity{"a": {GPUs: gpus("a", 4, 24*gib)}, "b": {GPUs: gpus("b", 1, 80*gib)}},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{MinGPUMemory: 40 * gib})},
			want:      map[string]string{"j1": "b"},
		},
		{
			name: "vendor, case-insensitive",
			providers: map[string]Capacity{
				"a": {GPUs: []node3.GPU{gpu("a-0", "NVIDIA", "A100", 80*gib)}},
				"b": {GPUs: []node3.GPU{gpu("b-0", "AMD", "MI300X", 192*gib)}},
			},
			jobs: []node3.Job{gpuJob("j1", node3.Requirements{GPUVendor: "amd"})},
			want: map[string]string{"j1": "b"},
		},
		{
			name: "model, a case-insensitive substring",
			providers: map[string]Capacity{
				"a": {GPUs: []node3.GPU{gpu("a-0", "NVIDIA", "H100 80GB HBM3", 80*gib)}},
				"b": {GPUs: []node3.GPU{gpu("b-0", "NVIDIA", "NVIDIA A100-SXM4-80GB", 80*gib)}},
			},
			jobs: []node3.Job{gpuJob("j1", node3.Requirements{GPUModel: "a100"})},
			want: map[string]string{"j1": "b"},
		},
		{
			name:      "count and memory together: only GPUs that each fit count",
			providers: map[string]Capacity{"a": {GPUs: []node3.GPU{gpu("a-0", "NVIDIA", "A100", 80*gib), gpu("a-1", "NVIDIA", "A10", 24*gib), gpu("a-2", "NVIDIA", "A100", 80*gib)}}},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{GPUCount: 2, MinGPUMemory: 40 * gib})},
			want:      map[string]string{"j1": "a"},
			wantGPUs:  map[string][]string{"j1": {"a-0", "a-2"}},
		},
		{
			name:      "best fit: the smallest GPU that fits, big ones kept free",
			providers: map[string]Capacity{"a": {GPUs: []node3.GPU{gpu("a-0", "NVIDIA", "A100", 80*gib), gpu("a-1", "NVIDIA", "A10", 24*gib)}}},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{MinGPUMemory: 16 * gib}), gpuJob("j2", node3.Requirements{MinGPUMemory: 40 * gib})},
			want:      map[string]string{"j1": "a", "j2": "a"},
			wantGPUs:  map[string][]string{"j1": {"a-1"}, "j2": {"a-0"}},
		},
		{
			name:      "nothing fits: the job waits",
			providers: map[string]Capacity{"a": {GPUs: gpus("a", 2, 24*gib)}},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{MinGPUMemory: 40 * gib}), gpuJob("j2", node3.Requirements{GPUCount: 3})},
		},
		{
			name:      "price floor: below it never goes there",
			providers: map[string]Capacity{"a": {Slots: 1, PriceFloor: 500}, "b": {Slots: 1, PriceFloor: 50}},
			jobs:      []node3.Job{mkJob("j1", 100, node3.Requirements{}), mkJob("j2", 10, node3.Requirements{})},
			want:      map[string]string{"j1": "b"},
		},
		{
			name:      "price floor met exactly",
			providers: map[string]Capacity{"a": {Slots: 1, PriceFloor: 100}},
			jobs:      []node3.Job{mkJob("j1", 100, node3.Requirements{})},
			want:      map[string]string{"j1": "a"},
		},
		{
			name:      "least loaded, as a share of declared capacity",
			providers: map[string]Capacity{"a": slots(4), "b": slots(2)},
			jobs:      []node3.Job{mkJob("j1", 1000, node3.Requirements{}), mkJob("j2", 1000, node3.Requirements{}), mkJob("j3", 1000, node3.Requirements{}), mkJob("j4", 1000, node3.Requirements{})},
			// j1: tie 0/4 0/2 → a; j2: a 1/4, b 0 → b; j3: a 1/4 < b 1/2 → a; j4: a 2/4 = b 1/2 → a.
			want: map[string]string{"j1": "a", "j2": "b", "j3": "a", "j4": "a"},
		},
		{
			name:      "GPUs count towards load",
			providers: map[string]Capacity{"a": {Slots: 1, GPUs: gpus("a", 3, 80*gib)}, "b": slots(1)},
			jobs:      []node3.Job{gpuJob("j1", node3.Requirements{}), mkJob("j2", 1000, node3.Requirements{})},
			want:      map[string]string{"j1": "a", "j2": "b"},
		},
		{
			name:      "ties go to the lowest provider id",
			providers: map[string]Capacity{"c": slots(1), "b": slots(1), "a": slots(1)},
			jobs:      []node3.Job{mkJob("j1", 1000, node3.Requirements{})},
			want:      map[string]string{"j1": "a"},
		},
		{
			name:      "oldest job first when capacity is short",
			providers: map[string]Capacity{"a": slots(1)},
			jobs:      []node3.Job{mkJob("j2", 1000, node3.Requirements{}), mkJob("j1", 1000, node3.Requirements{})},
			want:      map[string]string{"j1": "a"},
		},
		{
			name:      "a provider the ledger bars gets nothing of that job",
			providers: map[string]Capacity{"a": slots(4), "b": slots(1)},
			jobs:      []node3.Job{barred},
			want:      map[string]string{"j1": "b"},
		},
		{
			name:      "a bar that lapsed no longer counts",
			providers: map[string]Capacity{"b": slots(1)},
			jobs:      []node3.Job{lapsedBar},
			want:      map[string]string{"j1": "b"},
		},
		{
			name:      "barred everywhere: it waits",
			providers: map[string]Capacity{"a": slots(1)},
			jobs:      []node3.Job{barred},
		},
		{
			name:      "an expired job is not granted",
			providers: map[string]Capacity{"a": slots(1)},
			jobs:      []node3.Job{expired},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, Config{})
			for id, c := range tc.providers {
				w.connect(id, c)
			}
			w.add(tc.jobs...)
			got := byJob(w.assign())
			for _, j := range tc.jobs {
				want, g := tc.want[j.ID], got[j.ID]
				if g.Provider != want {
					t.Errorf("%s went to %q, want %q", j.ID, g.Provider, want)
				}
				if want == "" {
					if h := w.holder(j.ID); h != "" {
						t.Errorf("%s held by %q, want waiting", j.ID, h)
					}
					continue
				}
				if g.Attempt != 1 || !g.Deadline.Equal(t0.Add(5*time.Second)) || g.Job.ID != j.ID {
					t.Errorf("%s: grant %+v, want attempt 1, deadline +5s", j.ID, g)
				}
				if wg, ok := tc.wantGPUs[j.ID]; ok {
					var uu []string
					for _, x := range g.GPUs {
						uu = append(uu, x.UUID)
					}
					if !slices.Equal(uu, wg) {
						t.Errorf("%s reserved %v, want %v", j.ID, uu, wg)
					}
				}
				if j.Requirements.Count() != len(g.GPUs) {
					t.Errorf("%s reserved %d GPUs, needs %d", j.ID, len(g.GPUs), j.Requirements.Count())
				}
			}
			if again := w.s.Assign(w.now); len(again) != 0 {
				t.Errorf("a second Assign with nothing changed granted %v", again)
			}
		})
	}
}

// A decline goes to another provider at once; the decliner gets it back
// only after DeclineBar, and only if nobody else took it.
func TestDeclineRequeuesToAnother(t *testing.T) {
	w := newWorld(t, Config{DeclineBar: time.Minute})
	w.connect("a", slots(1))
	w.connect("b", slots(1))
	w.add(mkJob("j1", 1000, node3.Requirements{}))
	if g := w.assign(); len(g) != 1 || g[0].Provider != "a" {
		t.Fatalf("grants %+v, want j1 to a", g)
	}
	rq, err := w.s.Decline("j1", "a", w.now)
	if err != nil || rq.JobID != "j1" || rq.Provider != "a" || rq.Attempt != 1 {
		t.Fatalf("Decline = %+v, %v", rq, err)
	}
	if n, _, _ := w.s.Free("a"); n != 1 {
		t.Fatalf("a has %d free slots after declining, want 1", n)
	}
	w.requeue(rq)
	if g := w.assign(); len(g) != 1 || g[0].Provider != "b" || g[0].Attempt != 2 {
		t.Fatalf("after the decline: grants %+v, want j1 to b on attempt 2", g)
	}

	// Only the decliner left: it waits out the bar.
	rq, err = w.s.Decline("j1", "b", w.now)
	if err != nil {
		t.Fatal(err)
	}
	w.requeue(rq)
	w.s.Disconnect("a")
	if g := w.assign(); len(g) != 0 {
		t.Fatalf("granted %+v back to the decliner inside its bar", g)
	}
	if d := w.s.NextDeadline(); !d.Equal(t0.Add(time.Minute)) {
		t.Fatalf("NextDeadline = %v, want the bar's end %v", d, t0.Add(time.Minute))
	}
	w.now = t0.Add(time.Minute)
	if g := w.assign(); len(g) != 1 || g[0].Provider != "b" {
		t.Fatalf("after the bar: grants %+v, want j1 to b", g)
	}
}

// A grant not acked by its deadline is taken back and goes to another.
func TestMissingAckRequeues(t *testing.T) {
	w := newWorld(t, Config{AckTimeout: 2 * time.Second})
	w.connect("a", slots(1))
	w.connect("b", slots(1))
	w.add(mkJob("j1", 1000, node3.Requirements{}))
	g := w.assign()
	if len(g) != 1 || g[0].Provider != "a" || !g[0].Deadline.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("grants %+v", g)
	}
	if d := w.s.NextDeadline(); !d.Equal(g[0].Deadline) {
		t.Fatalf("NextDeadline = %v, want the ack deadline", d)
	}
	if rq := w.s.Tick(t0.Add(time.Second)); len(rq) != 0 {
		t.Fatalf("Tick before the deadline requeued %+v", rq)
	}
	w.now = t0.Add(2 * time.Second)
	rqs := w.s.Tick(w.now)
	if len(rqs) != 1 || rqs[0].JobID != "j1" || rqs[0].Provider != "a" {
		t.Fatalf("Tick at the deadline = %+v", rqs)
	}
	if err := w.s.Ack("j1", "a"); !isCode(err, node3.CodeConflict) {
		t.Fatalf("a late ack: %v, want a conflict (the provider must not run it)", err)
	}
	if err := w.s.Ack("j1", "c"); !isCode(err, node3.CodeNotFound) {
		t.Fatalf("an ack of a grant never made: %v, want not found", err)
	}
	w.requeue(rqs...)
	if g := w.assign(); len(g) != 1 || g[0].Provider != "b" {
		t.Fatalf("after the lapse: grants %+v, want j1 to b", g)
	}
	if err := w.s.Ack("j1", "b"); err != nil {
		t.Fatal(err)
	}
	if rq := w.s.Tick(t0.Add(time.Hour)); len(rq) != 0 {
		t.Fatalf("an acked grant lapsed: %+v", rq)
	}
}

// A provider that goes away gives back its grants not yet acked; what it
// acked stays held against it until the ledger ends it, across a reconnect.
func TestDisconnectRequeuesPending(t *testing.T) {
	w := newWorld(t, Config{})
	w.connect("a", slots(2))
	w.add(mkJob("j1", 1000, node3.Requirements{}), mkJob("j2", 1000, node3.Requirements{}))
	if g := w.assign(); len(g) != 2 {
		t.Fatalf("grants %+v", g)
	}
	if err := w.s.Ack("j1", "a"); err != nil {
		t.Fatal(err)
	}
	rqs := w.s.Disconnect("a")
	if len(rqs) != 1 || rqs[0].JobID != "j2" {
		t.Fatalf("Disconnect = %+v, want j2 requeued", rqs)
	}
	w.requeue(rqs...)
	if w.s.Waiting() != 1 || w.holder("j1") != "a" {
		t.Fatalf("waiting %d, j1 held by %q", w.s.Waiting(), w.holder("j1"))
	}
	w.connect("a", slots(2))
	if n, _, _ := w.s.Free("a"); n != 1 {
		t.Fatalf("reconnected with %d free slots, want 1 (j1 still runs)", n)
	}
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j2" {
		t.Fatalf("after reconnect: %+v", g)
	}
	if w.s.Disconnect("nobody") != nil {
		t.Fatal("Disconnect of an unknown provider did something")
	}
}

// Capacity comes back when the ledger ends the job, and waiting work
// takes it.
func TestCapacityReturnsOnRelease(t *testing.T) {
	w := newWorld(t, Config{})
	w.connect("a", Capacity{GPUs: gpus("a", 1, 80*gib)})
	r := node3.Requirements{GPU: true}
	w.add(mkJob("j1", 1000, r), mkJob("j2", 1000, r))
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j1" {
		t.Fatalf("grants %+v", g)
	}
	if err := w.s.Ack("j1", "a"); err != nil {
		t.Fatal(err)
	}
	if _, free, _ := w.s.Free("a"); len(free) != 0 {
		t.Fatalf("free GPUs %v while j1 runs", free)
	}
	// A fresh announcement does not free what j1 holds.
	w.connect("a", Capacity{GPUs: gpus("a", 1, 80*gib)})
	if g := w.assign(); len(g) != 0 {
		t.Fatalf("re-announcing freed a held GPU: %+v", g)
	}
	w.complete("j1")
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j2" || g[0].GPUs[0].UUID != "a-0" {
		t.Fatalf("after j1 completed: %+v", g)
	}
	if w.s.Jobs() != 1 {
		t.Fatalf("tracking %d jobs, want 1 (j1 is forgotten)", w.s.Jobs())
	}
}

// REST offers and stream grants draw from one board and never overlap.
func TestOffersAndGrantsNeverOverlap(t *testing.T) {
	w := newWorld(t, Config{OfferTTL: 2 * time.Second})
	agent := node3.Agent{ID: "rest", Slots: 1}
	w.add(mkJob("j1", 1000, node3.Requirements{}), mkJob("j2", 1000, node3.Requirements{}))
	offered := w.s.Offer(agent, nil, 10, w.now)
	if len(offered) != 1 || offered[0].ID != "j1" {
		t.Fatalf("offered %v, want j1 alone (capacity 1)", offered)
	}
	w.connect("a", slots(2))
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j2" {
		t.Fatalf("grants %+v, want j2 only: j1 is on offer", g)
	}
	if got := w.s.Offer(node3.Agent{ID: "rest2", Slots: 4}, nil, 10, w.now); len(got) != 0 {
		t.Fatalf("another agent was offered %v", got)
	}
	// The offer lapses untaken: j1 goes to the stream provider.
	w.now = t0.Add(2 * time.Second)
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j1" || g[0].Provider != "a" {
		t.Fatalf("after the offer lapsed: %+v", g)
	}
	if got := w.s.Offer(agent, nil, 10, w.now); len(got) != 0 {
		t.Fatalf("offered %v while every job is granted", got)
	}
}

// A REST accept that beats a stream grant's commit wins; the grant is
// aborted and the lease is the agent's.
func TestRESTAcceptBeatsGrant(t *testing.T) {
	w := newWorld(t, Config{})
	w.connect("a", slots(1))
	w.add(mkJob("j1", 1000, node3.Requirements{}))
	g := w.s.Assign(w.now)
	if len(g) != 1 {
		t.Fatalf("grants %+v", g)
	}
	if err := w.accept("j1", "rest"); err != nil { // accepted by id, without an offer
		t.Fatal(err)
	}
	if w.holder("j1") != "rest" {
		t.Fatalf("j1 held by %q, want rest", w.holder("j1"))
	}
	if n, _, _ := w.s.Free("a"); n != 1 {
		t.Fatalf("a kept %d slots used", 1-n)
	}
	if err := w.accept("j1", "a"); err == nil {
		t.Fatal("the ledger accepted twice")
	}
	if err := w.s.Abort("j1", "a"); !isCode(err, node3.CodeNotFound) {
		t.Fatalf("Abort after losing = %v, want not found", err)
	}
	w.complete("j1")
	if w.s.Jobs() != 0 {
		t.Fatalf("tracking %d jobs", w.s.Jobs())
	}
}

// Offer keeps board.go's semantics: an agent holds at most its capacity
// in offers and leases; a quick re-poll is not handed the same job; a
// re-poll after ReofferAfter releases and may re-offer it.
func TestOfferSemantics(t *testing.T) {
	w := newWorld(t, Config{OfferTTL: 2 * time.Second, ReofferAfter: 250 * time.Millisecond})
	a := node3.Agent{ID: "rest", Slots: 2, GPUs: []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "A100", MemoryBytes: 80 * gib}}}
	w.registerGPUs(a)
	g := node3.Requirements{GPU: true}
	w.add(mkJob("j1", 1000, g), mkJob("j2", 1000, g), mkJob("j3", 1000, node3.Requirements{}), mkJob("j4", 1000, node3.Requirements{}), mkJob("j5", 1000, node3.Requirements{}))
	ids := func(js []node3.Job) (out []string) {
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	// Free: one slot, the GPU. Capacity 3.
	got := ids(w.s.Offer(a, &node3.Capacity{Slots: 1, GPUs: []int{0}}, 10, w.now))
	if !slices.Equal(got, []string{"j1", "j3"}) {
		t.Fatalf("offered %v, want [j1 j3]", got)
	}
	w.now = w.now.Add(100 * time.Millisecond)
	if got := ids(w.s.Offer(a, &node3.Capacity{Slots: 2, GPUs: []int{0}}, 10, w.now)); !slices.Equal(got, []string{"j4"}) {
		t.Fatalf("quick re-poll offered %v, want [j4] (its live offers hold the GPU and a slot)", got)
	}
	if o, h := w.s.Holds("rest"); o != 3 || h != 0 {
		t.Fatalf("Holds = %d offers, %d held; want 3, 0", o, h)
	}
	if err := w.accept("j1", "rest"); err != nil {
		t.Fatal(err)
	}
	if o, h := w.s.Holds("rest"); o != 2 || h != 1 {
		t.Fatalf("Holds after accepting j1 = %d offers, %d held; want 2, 1", o, h)
	}
	w.now = w.now.Add(300 * time.Millisecond)
	// j3, j4 released; j1 leased: 2 of capacity 3 left.
	if got := ids(w.s.Offer(a, &node3.Capacity{Slots: 2}, 10, w.now)); !slices.Equal(got, []string{"j3", "j4"}) {
		t.Fatalf("re-poll after ReofferAfter offered %v, want [j3 j4]", got)
	}
	w.s.Withdraw("rest", []string{"j3", "j4"})
	if w.s.Waiting() != 4 {
		t.Fatalf("waiting %d after withdraw, want 4", w.s.Waiting())
	}
	if got := w.s.Offer(a, nil, 0, w.now); len(got) != 0 {
		t.Fatalf("limit 0 offered %v", got)
	}
	w.connect("peer", slots(1))
	if got := w.s.Offer(node3.Agent{ID: "peer", Slots: 1}, nil, 1, w.now); len(got) != 0 {
		t.Fatalf("a stream provider was offered %v by poll", got)
	}
}

func isCode(err error, c node3.Code) bool { return err != nil && node3.ErrorCode(err) == c }

// Bad announcements are refused and change nothing; unknown events are
// errors that change nothing.
func TestValidation(t *testing.T) {
	dup := gpus("x", 2, gib)
	dup[1].UUID = dup[0].UUID
	bad := []struct {
		name string
		id   string
		c    Capacity
	}{
		{"empty id", "", slots(1)},
		{"long id", string(make([]byte, MaxIDBytes+1)), slots(1)},
		{"negative slots", "p", slots(-1)},
		{"too many slots", "p", slots(MaxSlots + 1)},
		{"too many GPUs", "p", Capacity{GPUs: gpus("x", MaxGPUs+1, gib)}},
		{"GPU without uuid", "p", Capacity{GPUs: []node3.GPU{{Model: "A100"}}}},
		{"GPU uuid twice", "p", Capacity{GPUs: dup}},
		{"floor above max reward", "p", Capacity{Slots: 1, PriceFloor: node3.MaxReward + 1}},
	}
	w := newWorld(t, Config{})
	w.add(mkJob("j1", 1000, node3.Requirements{}))
	for _, tc := range bad {
		if err := w.s.Connect(tc.id, tc.c); !isCode(err, node3.CodeInvalid) {
			t.Errorf("%s: Connect = %v, want invalid", tc.name, err)
		}
	}
	if w.s.Providers() != 0 || len(w.s.Assign(w.now)) != 0 {
		t.Fatal("a refused announcement left a provider")
	}
	if err := w.s.Connect("p", Capacity{Slots: MaxSlots, GPUs: gpus("x", MaxGPUs, gib)}); err != nil {
		t.Fatalf("the largest valid announcement: %v", err)
	}
	for name, err := range map[string]error{
		"ack":     w.s.Ack("nope", "p"),
		"abort":   w.s.Abort("nope", "p"),
		"decline": func() error { _, err := w.s.Decline("nope", "p", w.now); return err }(),
	} {
		if !isCode(err, node3.CodeNotFound) {
			t.Errorf("%s of an unknown grant = %v, want not found", name, err)
		}
	}
	// Ack from the wrong provider.
	g := w.assign()
	if len(g) != 1 {
		t.Fatalf("grants %+v", g)
	}
	if err := w.s.Ack("j1", "q"); !isCode(err, node3.CodeNotFound) {
		t.Fatalf("ack by another provider = %v", err)
	}
	ghost := mkJob("ghost", 1, node3.Requirements{})
	ghost.Status = node3.StatusCompleted
	w.s.Observe(ghost)
	if w.s.Jobs() != 1 {
		t.Fatal("a finished unknown job was remembered")
	}
}

func TestMaxProviders(t *testing.T) {
	s := New(Config{MaxProviders: 2})
	for _, id := range []string{"a", "b"} {
		if err := s.Connect(id, slots(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Connect("c", slots(1)); !isCode(err, node3.CodeUnavailable) {
		t.Fatalf("a third provider: %v", err)
	}
	if err := s.Connect("a", slots(2)); err != nil {
		t.Fatalf("re-announcing at the limit: %v", err)
	}
}

// One Assign that places many jobs at once (more than the waiting list's
// compaction threshold) grants each exactly once.
func TestAssignMany(t *testing.T) {
	w := newWorld(t, Config{})
	w.connect("a", slots(MaxSlots))
	for i := range 2000 {
		w.add(mkJob(fmt.Sprintf("j%05d", i), 1000, node3.Requirements{}))
	}
	gs := w.assign()
	if len(gs) != MaxSlots || gs[0].JobID != "j00000" || gs[MaxSlots-1].JobID != fmt.Sprintf("j%05d", MaxSlots-1) {
		t.Fatalf("granted %d, want the oldest %d", len(gs), MaxSlots)
	}
	if w.s.Waiting() != 2000-MaxSlots {
		t.Fatalf("waiting %d", w.s.Waiting())
	}
	for _, g := range gs {
		w.complete(g.JobID)
	}
	if gs := w.assign(); len(gs) != 2000-MaxSlots {
		t.Fatalf("second round granted %d", len(gs))
	}
}

// A new announcement with other GPUs keeps what runs on the old ones held
// and offers the new ones at once; a smaller one stops new grants.
func TestReannounce(t *testing.T) {
	w := newWorld(t, Config{})
	r := node3.Requirements{GPU: true, GPUCount: 2}
	w.connect("a", Capacity{Slots: 1, GPUs: gpus("a", 2, 80*gib)})
	w.add(mkJob("j1", 1000, r), mkJob("j2", 1000, r), mkJob("j3", 1000, node3.Requirements{}), mkJob("j4", 1000, node3.Requirements{}))
	if g := w.assign(); len(g) != 2 || g[0].JobID != "j1" || g[1].JobID != "j3" {
		t.Fatalf("grants %+v", g)
	}
	// a-0 and a-1 run j1; it now offers a-1 … a-3 and no slots.
	c := Capacity{GPUs: gpus("a", 4, 80*gib)[1:]}
	w.connect("a", c)
	if n, free, _ := w.s.Free("a"); n != 0 || len(free) != 2 {
		t.Fatalf("free %d slots, %v; want 0 and a-2, a-3", n, free)
	}
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j2" || g[0].GPUs[0].UUID != "a-2" || g[0].GPUs[1].UUID != "a-3" {
		t.Fatalf("after re-announcing: %+v", g)
	}
	w.complete("j3")
	if g := w.assign(); len(g) != 0 {
		t.Fatalf("a slot freed that the announcement withdrew: %+v", g)
	}
	w.complete("j1") // a-0 is no longer announced; a-1 is
	if _, free, _ := w.s.Free("a"); len(free) != 1 || free[0].UUID != "a-1" {
		t.Fatalf("free after j1: %v", free)
	}
}

// A grant is settled by its commit: until the ledger's accept lands it
// cannot be acked, declined or lapse; a provider that leaves meanwhile
// leaves a grant that lapses at the first Tick after the commit; Abort
// gives back only what the ledger did not commit.
func TestGrantSettlesByCommit(t *testing.T) {
	w := newWorld(t, Config{AckTimeout: time.Second})
	w.connect("a", slots(1))
	w.connect("b", slots(1))
	w.add(mkJob("j1", 1000, node3.Requirements{}))
	g := w.s.Assign(w.now) // the accept is under way
	if len(g) != 1 || g[0].Provider != "a" {
		t.Fatalf("grants %+v", g)
	}
	if rqs := w.s.Tick(t0.Add(time.Hour)); len(rqs) != 0 {
		t.Fatalf("an uncommitted grant lapsed: %+v", rqs)
	}
	if d := w.s.NextDeadline(); !d.IsZero() {
		t.Fatalf("NextDeadline = %v with only an uncommitted grant", d)
	}
	if err := w.s.Ack("j1", "a"); !isCode(err, node3.CodeConflict) {
		t.Fatalf("ack before the commit = %v, want conflict", err)
	}
	if _, err := w.s.Decline("j1", "a", w.now); !isCode(err, node3.CodeConflict) {
		t.Fatalf("decline before the commit = %v, want conflict", err)
	}
	if rqs := w.s.Disconnect("a"); len(rqs) != 0 {
		t.Fatalf("Disconnect requeued an uncommitted grant: %+v", rqs)
	}
	w.now = t0.Add(10 * time.Second)
	if err := w.accept("j1", "a"); err != nil { // the slow commit lands
		t.Fatal(err)
	}
	if h := w.holder("j1"); h != "a" {
		t.Fatalf("j1 held by %q", h)
	}
	if d := w.s.NextDeadline(); !d.Equal(w.now) {
		t.Fatalf("NextDeadline = %v, want the commit time %v (its provider left)", d, w.now)
	}
	if err := w.s.Abort("j1", "a"); !isCode(err, node3.CodeConflict) {
		t.Fatalf("abort of a committed grant = %v, want conflict", err)
	}
	rqs := w.s.Tick(w.now)
	if len(rqs) != 1 || rqs[0].JobID != "j1" || rqs[0].Attempt != 1 {
		t.Fatalf("Tick after the commit = %+v", rqs)
	}
	w.requeue(rqs...)
	g = w.assign()
	if len(g) != 1 || g[0].Provider != "b" || g[0].Attempt != 2 {
		t.Fatalf("after the requeue: %+v", g)
	}
	// The ack clock of a committed grant runs from the commit.
	if d := w.s.NextDeadline(); !d.Equal(w.now.Add(time.Second)) {
		t.Fatalf("NextDeadline = %v, want commit + AckTimeout", d)
	}

	// A failed accept is aborted: the job waits again, nobody is barred.
	w.add(mkJob("j2", 1000, node3.Requirements{}))
	w.complete("j1")
	g = w.s.Assign(w.now)
	if len(g) != 1 || g[0].JobID != "j2" {
		t.Fatalf("grants %+v", g)
	}
	if err := w.s.Abort("j2", "b"); err != nil {
		t.Fatal(err)
	}
	if g := w.assign(); len(g) != 1 || g[0].Provider != "b" {
		t.Fatalf("after the abort: %+v", g)
	}
}

// Leases seen before their provider connects (a coordinator restart)
// hold its capacity once it does.
func TestLeasesFromBeforeConnect(t *testing.T) {
	w := newWorld(t, Config{})
	w.add(mkJob("j1", 1000, node3.Requirements{GPU: true}), mkJob("j2", 1000, node3.Requirements{}), mkJob("j3", 1000, node3.Requirements{GPU: true}))
	w.registerGPUs(node3.Agent{ID: "a", GPUs: gpus("a", 1, 80*gib)}) // its ledger agent, from before the restart
	for _, id := range []string{"j1", "j2"} {
		if err := w.accept(id, "a"); err != nil {
			t.Fatal(err)
		}
	}
	w.connect("a", Capacity{Slots: 1, GPUs: gpus("a", 1, 80*gib)})
	if n, free, _ := w.s.Free("a"); n != 0 || len(free) != 0 {
		t.Fatalf("free %d slots, %v; want nothing (j1, j2 run)", n, free)
	}
	if g := w.assign(); len(g) != 0 {
		t.Fatalf("granted %+v onto held capacity", g)
	}
	w.complete("j1")
	if g := w.assign(); len(g) != 1 || g[0].JobID != "j3" {
		t.Fatalf("after j1: %+v", g)
	}
}

// With DeclineBar negative a decline bars nobody: the decliner may get
// the job straight back. A polling agent the ledger bars is not offered
// the job.
func TestNoDeclineBarAndBarredPoller(t *testing.T) {
	w := newWorld(t, Config{DeclineBar: -1})
	w.connect("a", slots(1))
	w.add(mkJob("j1", 1000, node3.Requirements{}))
	w.assign()
	rq, err := w.s.Decline("j1", "a", w.now)
	if err != nil {
		t.Fatal(err)
	}
	w.requeue(rq)
	if g := w.assign(); len(g) != 1 || g[0].Provider != "a" {
		t.Fatalf("grants %+v, want j1 straight back to a", g)
	}

	j2 := mkJob("j2", 1000, node3.Requirements{})
	j2.Barred = []node3.Bar{{AgentID: "rest", Until: t0.Add(time.Minute)}}
	w.add(j2)
	if got := w.s.Offer(node3.Agent{ID: "rest", Slots: 1}, nil, 1, w.now); len(got) != 0 {
		t.Fatalf("a barred agent was offered %v", got)
	}
	if got := w.s.Offer(node3.Agent{ID: "other", Slots: 1}, nil, 1, w.now); len(got) != 1 || got[0].ID != "j2" {
		t.Fatalf("another agent was offered %v, want j2", got)
	}
}
