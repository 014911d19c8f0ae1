package p2p

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
)

func newPeerID(t testing.TB) peer.ID {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func resultName(r pubsub.ValidationResult) string {
	switch r {
	case pubsub.ValidationAccept:
		return "accept"
	case pubsub.ValidationReject:
		return "reject"
	case pubsub.ValidationIgnore:
		return "ignore"
	}
	return fmt.Sprint(int(r))
}

func TestValidateJob(t *testing.T) {
	self, coord, stranger := newPeerID(t), newPeerID(t), newPeerID(t)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	trust := &trustSet{}
	trust.replace([]peer.ID{coord})
	v := &validator{self: self, clock: clock.now, skew: 30 * time.Second, trust: trust,
		jobs: newReplayCache(100), adverts: newReplayCache(100)}
	now := clock.now()

	mod := func(f func(p *JobPosting)) []byte {
		p := testPosting(coord, "job-1", 1, now)
		f(&p)
		return mustJSON(t, p)
	}
	seq := uint64(100)
	fresh := func(f func(p *JobPosting)) []byte { // a new seq per case, so replays don't interfere
		seq++
		s := seq
		return mod(func(p *JobPosting) { p.Seq = s; f(p) })
	}
	cases := []struct {
		name   string
		author peer.ID
		data   []byte
		want   pubsub.ValidationResult
		reason string
	}{
		{"valid", coord, fresh(func(*JobPosting) {}), pubsub.ValidationAccept, ""},
		{"status update without job", coord, fresh(func(p *JobPosting) {
			p.Kind, p.Job, p.Status, p.Provider = PostingStatus, nil, node3.StatusAccepted, stranger
		}), pubsub.ValidationAccept, ""},
		{"own posting, untrusted self", self, fresh(func(p *JobPosting) { p.Coordinator = self }), pubsub.ValidationAccept, ""},
		{"not json", coord, []byte("{nope"), pubsub.ValidationReject, reasonMalformed},
		{"trailing data", coord, append(fresh(func(*JobPosting) {}), []byte(" {}")...), pubsub.ValidationReject, reasonMalformed},
		{"oversize", coord, []byte(`{"v":1,"reason":"` + strings.Repeat("x", MaxJobMessageSize) + `"}`), pubsub.ValidationReject, reasonOversize},
		{"no version", coord, fresh(func(p *JobPosting) { p.Version = 0 }), pubsub.ValidationReject, reasonMalformed},
		{"newer version", coord, fresh(func(p *JobPosting) { p.Version = 2 }), pubsub.ValidationIgnore, reasonVersion},
		{"bad kind", coord, fresh(func(p *JobPosting) { p.Kind = "gift" }), pubsub.ValidationReject, reasonMalformed},
		{"posted without job", coord, fresh(func(p *JobPosting) { p.Job = nil }), pubsub.ValidationReject, reasonMalformed},
		{"job id mismatch", coord, fresh(func(p *JobPosting) { p.Job.ID = "job-2" }), pubsub.ValidationReject, reasonMalformed},
		{"bad job id", coord, fresh(func(p *JobPosting) { p.JobID = "a/b"; p.Job.ID = "a/b" }), pubsub.ValidationReject, reasonMalformed},
		{"invalid spec", coord, fresh(func(p *JobPosting) { p.Job.Kind = "mine-bitcoin" }), pubsub.ValidationReject, reasonMalformed},
		{"unknown status", coord, fresh(func(p *JobPosting) { p.Kind = PostingStatus; p.Job = nil; p.Status = "paused" }), pubsub.ValidationReject, reasonMalformed},
		{"zero seq", coord, mod(func(p *JobPosting) { p.Seq = 0 }), pubsub.ValidationReject, reasonMalformed},
		{"lives too long", coord, fresh(func(p *JobPosting) { p.ExpiresAt = now.Add(MaxPostingLifetime + time.Hour) }), pubsub.ValidationReject, reasonMalformed},
		{"coordinator is not the signer", stranger, fresh(func(*JobPosting) {}), pubsub.ValidationReject, reasonAuthor},
		{"untrusted coordinator", stranger, fresh(func(p *JobPosting) { p.Coordinator = stranger }), pubsub.ValidationReject, reasonUntrusted},
		{"issued in the future", coord, fresh(func(p *JobPosting) {
			p.IssuedAt, p.ExpiresAt = now.Add(time.Minute), now.Add(2*time.Hour)
		}), pubsub.ValidationReject, reasonFuture},
		{"issued slightly ahead (skew)", coord, fresh(func(p *JobPosting) { p.IssuedAt = now.Add(10 * time.Second) }), pubsub.ValidationAccept, ""},
		{"expired long ago", coord, fresh(func(p *JobPosting) {
			p.IssuedAt, p.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
		}), pubsub.ValidationReject, reasonExpired},
		{"expired just now", coord, fresh(func(p *JobPosting) {
			p.IssuedAt, p.ExpiresAt = now.Add(-time.Hour), now.Add(-time.Second)
		}), pubsub.ValidationIgnore, reasonExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps, vd := v.job(c.author, c.data)
			if vd.result != c.want || vd.reason != c.reason {
				t.Fatalf("got %s/%q (%v), want %s/%q", resultName(vd.result), vd.reason, vd.err, resultName(c.want), c.reason)
			}
			if c.want == pubsub.ValidationAccept && (len(ps) != 1 || ps[0].JobID == "") {
				t.Fatal("accepted posting not returned")
			}
		})
	}

	t.Run("replay and stale seq", func(t *testing.T) {
		data := mod(func(p *JobPosting) { p.JobID, p.Job.ID, p.Seq = "job-r", "job-r", 10 })
		if _, vd := v.job(coord, data); vd.result != pubsub.ValidationAccept {
			t.Fatalf("first: %s %v", resultName(vd.result), vd.err)
		}
		if _, vd := v.job(coord, data); vd.result != pubsub.ValidationIgnore || vd.reason != reasonReplay {
			t.Fatalf("replay: %s %q", resultName(vd.result), vd.reason)
		}
		stale := mod(func(p *JobPosting) { p.JobID, p.Job.ID, p.Seq = "job-r", "job-r", 9 })
		if _, vd := v.job(coord, stale); vd.result != pubsub.ValidationIgnore || vd.reason != reasonReplay {
			t.Fatalf("stale: %s %q", resultName(vd.result), vd.reason)
		}
		next := mod(func(p *JobPosting) {
			p.Kind, p.JobID, p.Job, p.Status, p.Seq = PostingStatus, "job-r", nil, node3.StatusAccepted, 11
		})
		if _, vd := v.job(coord, next); vd.result != pubsub.ValidationAccept {
			t.Fatalf("next seq: %s %v", resultName(vd.result), vd.err)
		}
	})

	t.Run("batch", func(t *testing.T) {
		posting := func(id string, seq uint64, f func(p *JobPosting)) JobPosting {
			p := testPosting(coord, id, seq, now)
			if f != nil {
				f(&p)
			}
			return p
		}
		batch := func(ps ...JobPosting) []byte {
			return mustJSON(t, PostingBatch{Version: Version, Coordinator: coord, Postings: ps})
		}
		ps, vd := v.job(coord, batch(posting("b-1", 5, nil), posting("b-2", 5, nil)))
		if vd.result != pubsub.ValidationAccept || len(ps) != 2 || ps[0].JobID != "b-1" || ps[1].JobID != "b-2" {
			t.Fatalf("valid batch: %s %v, %d postings", resultName(vd.result), vd.err, len(ps))
		}
		// A replayed entry is dropped alone; the new one is delivered.
		ps, vd = v.job(coord, batch(posting("b-1", 5, nil), posting("b-3", 5, nil)))
		if vd.result != pubsub.ValidationAccept || len(ps) != 1 || ps[0].JobID != "b-3" {
			t.Fatalf("batch with a replay: %s %v, %+v", resultName(vd.result), vd.err, ps)
		}
		// Nothing new: ignored, not rejected.
		if _, vd := v.job(coord, batch(posting("b-1", 5, nil), posting("b-3", 4, nil))); vd.result != pubsub.ValidationIgnore || vd.reason != reasonReplay {
			t.Fatalf("all replays: %s/%q", resultName(vd.result), vd.reason)
		}
		// One bad entry rejects the batch, and leaves the replay cache
		// untouched: b-4 is accepted afterwards.
		bad := []struct {
			name   string
			p      JobPosting
			reason string
		}{
			{"malformed entry", posting("b-bad", 6, func(p *JobPosting) { p.Kind = "gift" }), reasonMalformed},
			{"another coordinator's entry", posting("b-bad", 6, func(p *JobPosting) { p.Coordinator = stranger }), reasonMalformed},
			{"entry from the future", posting("b-bad", 6, func(p *JobPosting) {
				p.IssuedAt, p.ExpiresAt = now.Add(time.Minute), now.Add(2*time.Hour)
			}), reasonFuture},
		}
		for _, c := range bad {
			if _, vd := v.job(coord, batch(posting("b-4", 1, nil), c.p)); vd.result != pubsub.ValidationReject || vd.reason != c.reason {
				t.Fatalf("%s: %s/%q (%v), want reject/%q", c.name, resultName(vd.result), vd.reason, vd.err, c.reason)
			}
		}
		if ps, vd := v.job(coord, batch(posting("b-4", 1, nil))); vd.result != pubsub.ValidationAccept || len(ps) != 1 {
			t.Fatalf("b-4 after rejected batches: %s %v", resultName(vd.result), vd.err)
		}
		// A just-expired entry is dropped alone.
		ps, vd = v.job(coord, batch(posting("b-5", 1, func(p *JobPosting) {
			p.IssuedAt, p.ExpiresAt = now.Add(-time.Hour), now.Add(-time.Second)
		}), posting("b-6", 1, nil)))
		if vd.result != pubsub.ValidationAccept || len(ps) != 1 || ps[0].JobID != "b-6" {
			t.Fatalf("batch with a just-expired entry: %s %v, %+v", resultName(vd.result), vd.err, ps)
		}
		shapes := []struct {
			name string
			data []byte
		}{
			{"empty batch", []byte(`{"v":1,"coordinator":"` + coord.String() + `","postings":[]}`)},
			{"batch without coordinator", mustJSON(t, PostingBatch{Version: Version, Postings: []JobPosting{posting("b-7", 1, nil)}})},
			{"batch that is also a posting", []byte(`{"v":1,"coordinator":"` + coord.String() + `","job_id":"x","postings":[` + string(mustJSON(t, posting("b-7", 1, nil))) + `]}`)},
			{"too many postings", batch(slicesRepeat(posting("b-8", 1, func(p *JobPosting) {
				p.Kind, p.Job, p.Status, p.JobID = PostingStatus, nil, node3.StatusCompleted, "b"
			}), MaxBatchPostings+1)...)},
		}
		for _, c := range shapes {
			if _, vd := v.job(coord, c.data); vd.result != pubsub.ValidationReject || vd.reason != reasonMalformed {
				t.Fatalf("%s: %s/%q (%v), want reject/malformed", c.name, resultName(vd.result), vd.reason, vd.err)
			}
		}
		// A batch signed by someone other than the coordinator it names.
		if _, vd := v.job(stranger, batch(posting("b-9", 1, nil))); vd.result != pubsub.ValidationReject || vd.reason != reasonAuthor {
			t.Fatalf("batch signed by another: %s/%q", resultName(vd.result), vd.reason)
		}
	})

	t.Run("trust changes at run time", func(t *testing.T) {
		data := fresh(func(p *JobPosting) { p.Coordinator = stranger })
		trust.replace([]peer.ID{coord, stranger})
		defer trust.replace([]peer.ID{coord})
		if _, vd := v.job(stranger, data); vd.result != pubsub.ValidationAccept {
			t.Fatalf("newly trusted: %s %v", resultName(vd.result), vd.err)
		}
	})

	t.Run("trust func", func(t *testing.T) {
		other := newPeerID(t)
		ts := &trustSet{fn: func(p peer.ID) bool { return p == other }}
		v2 := *v
		v2.trust = ts
		if _, vd := v2.job(other, fresh(func(p *JobPosting) { p.Coordinator = other })); vd.result != pubsub.ValidationAccept {
			t.Fatalf("trusted by func: %s %v", resultName(vd.result), vd.err)
		}
	})
}

func slicesRepeat(p JobPosting, n int) []JobPosting {
	out := make([]JobPosting, n)
	for i := range out {
		out[i] = p
	}
	return out
}

func TestValidateAdvert(t *testing.T) {
	self, prov, other := newPeerID(t), newPeerID(t), newPeerID(t)
	clock := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	v := &validator{self: self, clock: clock.now, skew: 30 * time.Second, trust: &trustSet{},
		jobs: newReplayCache(100), adverts: newReplayCache(100)}
	now := clock.now()
	seq := uint64(0)
	adv := func(f func(a *ProviderAdvert)) []byte {
		seq++
		a := testAdvert(prov, seq, now)
		f(&a)
		return mustJSON(t, a)
	}
	cases := []struct {
		name   string
		author peer.ID
		data   []byte
		want   pubsub.ValidationResult
		reason string
	}{
		{"valid", prov, adv(func(*ProviderAdvert) {}), pubsub.ValidationAccept, ""},
		{"no GPUs (CPU provider)", prov, adv(func(a *ProviderAdvert) { a.GPUs = nil }), pubsub.ValidationAccept, ""},
		{"claims another peer", other, adv(func(*ProviderAdvert) {}), pubsub.ValidationReject, reasonAuthor},
		{"bad wallet", prov, adv(func(a *ProviderAdvert) { a.Wallet = "not-a-wallet!" }), pubsub.ValidationReject, reasonMalformed},
		{"too many GPUs", prov, adv(func(a *ProviderAdvert) { a.GPUs = make([]node3.GPU, node3.MaxGPUCount+1) }), pubsub.ValidationReject, reasonMalformed},
		{"negative slots", prov, adv(func(a *ProviderAdvert) { a.FreeSlots = -1 }), pubsub.ValidationReject, reasonMalformed},
		{"ttl too long", prov, adv(func(a *ProviderAdvert) { a.TTLSecs = 7200 }), pubsub.ValidationReject, reasonMalformed},
		{"no ttl", prov, adv(func(a *ProviderAdvert) { a.TTLSecs = 0 }), pubsub.ValidationReject, reasonMalformed},
		{"price above max reward", prov, adv(func(a *ProviderAdvert) { a.PriceFloor = node3.MaxReward + 1 }), pubsub.ValidationReject, reasonMalformed},
		{"oversize", prov, []byte(`{"v":1,"software_version":"` + strings.Repeat("x", MaxAdvertMessageSize) + `"}`), pubsub.ValidationReject, reasonOversize},
		{"expired", prov, adv(func(a *ProviderAdvert) { a.IssuedAt = now.Add(-10 * time.Minute) }), pubsub.ValidationReject, reasonExpired},
		{"future", prov, adv(func(a *ProviderAdvert) { a.IssuedAt = now.Add(5 * time.Minute) }), pubsub.ValidationReject, reasonFuture},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, vd := v.advert(c.author, c.data)
			if vd.result != c.want || vd.reason != c.reason {
				t.Fatalf("got %s/%q (%v), want %s/%q", resultName(vd.result), vd.reason, vd.err, resultName(c.want), c.reason)
			}
		})
	}
	t.Run("replay", func(t *testing.T) {
		data := adv(func(*ProviderAdvert) {})
		if _, vd := v.advert(prov, data); vd.result != pubsub.ValidationAccept {
			t.Fatalf("first: %v", vd.err)
		}
		if _, vd := v.advert(prov, data); vd.result != pubsub.ValidationIgnore || vd.reason != reasonReplay {
			t.Fatalf("replay: %s %q", resultName(vd.result), vd.reason)
		}
	})
}

func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(3)
	now := time.Unix(1000, 0)
	for i, k := range []string{"a", "b", "c"} {
		if !c.admit(k, 1, now.Add(time.Duration(i+1)*time.Minute), now) {
			t.Fatalf("admit %s", k)
		}
	}
	if c.admit("a", 1, now.Add(time.Hour), now) {
		t.Fatal("replay of a admitted")
	}
	// Full: d evicts the entry closest to expiry (a).
	if !c.admit("d", 1, now.Add(time.Hour), now) {
		t.Fatal("admit d")
	}
	if c.len() != 3 || c.evicted != 1 {
		t.Fatalf("len %d evicted %d", c.len(), c.evicted)
	}
	if c.admit("b", 1, now.Add(time.Hour), now) {
		t.Fatal("b forgotten too early")
	}
	// After b and c expire they are pruned.
	later := now.Add(4 * time.Minute)
	if !c.admit("e", 1, later.Add(time.Hour), later) {
		t.Fatal("admit e")
	}
	if c.len() != 2 {
		t.Fatalf("len after expiry = %d, want 2 (d, e)", c.len())
	}
	for i := range 10000 {
		c.admit(fmt.Sprint(i), 1, later.Add(time.Hour), later)
	}
	if c.len() != 3 {
		t.Fatalf("cache grew to %d", c.len())
	}
}
