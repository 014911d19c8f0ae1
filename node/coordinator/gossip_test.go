package coordinator

import (
	"testing"

	"github.com/node3/node3"
	"github.com/node3/node3/p2p"
)

// TestPostingRule: what the public board is told of each job change.
func TestPostingRule(t *testing.T) {
	const prov = "12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5"
	job := func(id string, st node3.JobStatus) node3.Job {
		j := node3.Job{ID: id, Status: st, JobSpec: node3.JobSpec{Kind: node3.KindNoop, Reward: 1000, Command: []string{"secret"}}}
		if st != node3.StatusAvailable && st != node3.StatusExpired {
			j.AgentID = prov
		}
		if st == node3.StatusCompleted {
			j.Result = &node3.JobResult{Output: "private"}
		}
		return j
	}
	type want struct {
		none     bool
		kind     p2p.PostingKind
		withJob  bool
		provider bool
	}
	steps := []struct {
		name string
		job  node3.Job
		want want
	}{
		{"new job is posted", job("a", node3.StatusAvailable), want{kind: p2p.PostingPosted, withJob: true}},
		{"accepted", job("a", node3.StatusAccepted), want{kind: p2p.PostingStatus, provider: true}},
		{"accepted again (lease extended)", job("a", node3.StatusAccepted), want{none: true}},
		{"running after accepted is a heartbeat", job("a", node3.StatusRunning), want{none: true}},
		{"running again", job("a", node3.StatusRunning), want{none: true}},
		{"requeued is posted again", job("a", node3.StatusAvailable), want{kind: p2p.PostingPosted, withJob: true}},
		{"completed", job("a", node3.StatusCompleted), want{kind: p2p.PostingStatus, provider: true}},
		{"taken before it was told: carries the job", job("b", node3.StatusAccepted), want{kind: p2p.PostingStatus, withJob: true, provider: true}},
		{"running before it was told", job("c", node3.StatusRunning), want{kind: p2p.PostingStatus, withJob: true, provider: true}},
		{"ended before it was told", job("d", node3.StatusCompleted), want{kind: p2p.PostingStatus, withJob: true, provider: true}},
		{"expired names no provider", job("e", node3.StatusExpired), want{kind: p2p.PostingStatus, withJob: true}},
	}
	cp := &Gossip{last: make(map[string]node3.JobStatus)}
	for _, s := range steps {
		p, ok := cp.posting(s.job)
		if s.want.none {
			if ok {
				t.Fatalf("%s: posted %+v, want nothing", s.name, p)
			}
			continue
		}
		if !ok {
			t.Fatalf("%s: nothing posted", s.name)
		}
		if p.Kind != s.want.kind || p.JobID != s.job.ID || p.Status != s.job.Status || (p.Job != nil) != s.want.withJob || (p.Provider != "") != s.want.provider {
			t.Fatalf("%s: got %+v", s.name, p)
		}
		if p.Job != nil && (p.Job.Command != nil || p.Job.Result != nil || p.Job.Status != s.job.Status) {
			t.Fatalf("%s: posting carries a job that is not its public view: %+v", s.name, p.Job)
		}
	}
	if len(cp.last) != 2 { // b and c are unfinished; a, d and e ended
		t.Fatalf("tracks %d unfinished jobs, want 2: %v", len(cp.last), cp.last)
	}
}

// TestPublishQueueCoalesces: a job changed several times before the
// publisher came round is queued once, in its latest state; past the
// bound the oldest job is dropped and counted.
func TestPublishQueueCoalesces(t *testing.T) {
	e := newEnv(t, Config{})
	cp := NewGossip(GossipConfig{Coordinator: e.c, Ledger: e.led, PublishQueue: 2, Logger: e.c.log})
	a, _, c := e.job(), e.job(), e.job() // queued by the ledger's feed
	if _, err := e.c.Cancel(t.Context(), a.ID, "test"); err != nil {
		t.Fatal(err)
	}
	// The ledger calls its watchers before a write returns.
	q := &cp.queue
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) != 2 || q.order[0] != c.ID || q.order[1] != a.ID || q.jobs[a.ID].Status != node3.StatusCancelled {
		t.Fatalf("queue %v, a is %s; want [c a] with a cancelled", q.order, q.jobs[a.ID].Status)
	}
	// c dropped a's first change, and a's cancel dropped b.
	if cp.DroppedCount() != 2 {
		t.Fatalf("dropped %d, want 2", cp.DroppedCount())
	}
}
