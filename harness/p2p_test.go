package harness

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/p2p"
)

// The integration tests of push dispatch: real libp2p hosts over loopback
// TCP, gossip and streams, one process.

// TestP2PTenNodes runs 200 jobs through a 10-node network (a coordinator
// and 9 providers): every job is pushed by gossip, claimed over a stream,
// run and completed exactly once.
func TestP2PTenNodes(t *testing.T) { tenNodes(t, false) }

// TestPushTenNodes is the same over push dispatch: the coordinator picks
// each job's provider and grants it over the provider's work stream.
func TestPushTenNodes(t *testing.T) { tenNodes(t, true) }

func tenNodes(t *testing.T, push bool) {
	nw := startNetwork(t, Config{Providers: 9, P2P: true, Push: push})
	ctx := timeout(t, 60*time.Second)
	const n = 200
	ids, err := nw.SubmitN(ctx, n-20, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000001")})
	if err != nil {
		t.Fatal(err)
	}
	// Some need a GPU that only a few providers have (A100, H100: 80 GiB).
	gpuIDs, err := nw.SubmitN(ctx, 20, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000002"), RequiresGPU: true, MinGPUMemory: 80 << 30})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, gpuIDs...)
	jobs, err := nw.WaitJobs(ctx, ids, node3.StatusCompleted, node3.StatusFailed)
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	for i, j := range jobs {
		if j.Status != node3.StatusCompleted || j.Attempt != 1 {
			t.Fatalf("job %s ended %s after %d attempts: %s", j.ID, j.Status, j.Attempt, j.Error)
		}
		p, ok := nw.ProviderByAgent(j.AgentID)
		if !ok {
			t.Fatalf("job %s completed by unknown agent %s", j.ID, j.AgentID)
		}
		if i >= n-20 && nw.Provider(p).GPUs()[0].MemoryBytes < 80<<30 {
			t.Errorf("job %s needing 80 GiB ran on %s", j.ID, nw.Provider(p).GPUs()[0].Model)
		}
		ran[j.AgentID]++
	}
	// Exactly once: the providers ran 200 jobs between them, no job twice,
	// and each has its report acknowledged.
	seen := map[string]bool{}
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		clear(seen)
		total := 0
		for i := 0; i < 9; i++ {
			local, err := nw.Provider(i).LocalJobs(ctx, 1000)
			if err != nil {
				return false, err
			}
			for _, j := range local {
				if seen[j.ID] {
					t.Fatalf("job %s ran twice", j.ID)
				}
				seen[j.ID] = true
			}
			pending, err := nw.Provider(i).Ledger().PendingReports(ctx, 0)
			if err != nil {
				return false, err
			}
			total += len(local) - len(pending)
		}
		return total == n, nil
	}); err != nil {
		t.Fatalf("providers' books never showed %d delivered jobs (%d seen): %v", n, len(seen), err)
	}
	s, err := nw.Admin().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Jobs[node3.StatusCompleted] != n || s.PayoutsPending+s.PayoutsPaid != n {
		t.Fatalf("stats: %+v", s.Stats)
	}
	if len(ran) < 3 {
		t.Errorf("jobs spread over %d providers only: %v", len(ran), ran)
	}
	// The coordinator knows every provider by its peer ID, and a
	// provider's node API shows the gossiped providers and its p2p state.
	agents, err := nw.Admin().Agents(ctx)
	if err != nil || agents.Count != 9 || agents.Online != 9 {
		t.Fatalf("agents: %d (%d online), %v", agents.Count, agents.Online, err)
	}
	st, err := nw.Provider(0).Status(ctx)
	if err != nil || st.P2P == nil || st.P2P.Transport != "libp2p" || st.P2P.Peers < 1 || len(st.P2P.Topics) != 2 {
		t.Fatalf("status: %+v %v", st.P2P, err)
	}
	if err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		views, err := nw.Provider(0).MarketplaceAgents(ctx)
		return len(views) == 9, err
	}); err != nil {
		t.Fatalf("provider-1's table never held all 9 providers: %v", err)
	}
}

// TestP2PForgedPosting has a peer that no provider trusts publish a
// posting: every provider rejects it (penalising the sender), none puts it
// on its board or runs it, and real work still flows.
func TestP2PForgedPosting(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, P2P: true})
	ctx := timeout(t, 30*time.Second)
	cfg := p2p.Config{
		Network:           nw.P2PNetwork(),
		ListenAddrs:       []string{"/ip4/127.0.0.1/tcp/0"},
		Bootstrap:         nw.CoordinatorAddrs(),
		DiscoveryInterval: -1,
		Logger:            testLogger(t),
	}
	evil, err := p2p.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	topic := p2p.JobsTopic(nw.P2PNetwork())
	for i := 0; i < 2; i++ {
		if err := evil.Connect(ctx, nw.Provider(i).P2P().AddrInfo()); err != nil {
			t.Fatal(err)
		}
		waitOnTopic(t, ctx, evil, topic, nw.Provider(i).PeerID())
	}
	now := time.Now()
	fake := node3.Job{
		ID:        "0190f000-0000-7000-8000-0000000000f1",
		JobSpec:   node3.JobSpec{Kind: node3.KindCommand, Command: []string{"sh", "-c", "echo pwned"}, Reward: node3.LamportsPerSOL},
		Status:    node3.StatusAvailable,
		CreatedAt: now,
		UpdatedAt: now,
		ExpiresAt: now.Add(time.Hour),
	}
	if err := evil.PublishJob(ctx, p2p.JobPosting{Kind: p2p.PostingPosted, JobID: fake.ID, Job: &fake}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		reg := nw.Provider(i).Registry()
		if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
			return counter(reg, "node3_p2p_messages_rejected_total", "reason", "untrusted") >= 1, nil
		}); err != nil {
			t.Fatalf("%s never rejected the forged posting: %v", ProviderName(i), err)
		}
	}
	// Real work still flows, and the forged job is on no board and in no
	// provider's history.
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000001")})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = nw.WaitJob(ctx, j.ID, node3.StatusCompleted); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		board, _ := nw.Provider(i).MarketplaceJobs(ctx)
		local, _ := nw.Provider(i).LocalJobs(ctx, 100)
		for _, x := range append(board, local...) {
			if x.ID == fake.ID {
				t.Fatalf("%s took the forged job: %+v", ProviderName(i), x)
			}
		}
	}
	if s, _ := nw.Provider(0).P2P().PeerScore(evil.ID()); s > 0 {
		t.Logf("score of the forger at provider-1: %v", s)
	}
}

// TestP2PPartitionAfterAccept cuts a provider off from the coordinator
// while it runs a job: it finishes the job, keeps the report in its
// outbox, and the report lands once the partition heals.
func TestP2PPartitionAfterAccept(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, P2P: true, AllowCommands: true, Lease: 30 * time.Second})
	ctx := timeout(t, 30*time.Second)
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "command", Reward: reward("0.002"), Command: []string{"sleep", "0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = nw.WaitJob(ctx, j.ID, node3.StatusRunning); err != nil {
		t.Fatal(err)
	}
	p, _ := nw.ProviderByAgent(j.AgentID)
	if err := nw.Partition(CoordinatorNode, p); err != nil {
		t.Fatal(err)
	}
	prov := nw.Provider(p)
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		r, err := prov.Ledger().PendingReports(ctx, 0)
		return len(r) == 1 && r[0].JobID == j.ID, err
	}); err != nil {
		t.Fatalf("the report never waited in the outbox: %v", err)
	}
	if got, _ := nw.Coordinator().Ledger().Job(ctx, j.ID); got.Status != node3.StatusRunning {
		t.Fatalf("during the partition the coordinator has the job %s", got.Status)
	}
	// Heal only once a delivery attempt has failed for real.
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		return counter(prov.Registry(), "node3_provider_reports_total", "result", "retry") >= 1, nil
	}); err != nil {
		t.Fatalf("no delivery was tried during the partition: %v", err)
	}
	if err := nw.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	done, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted, node3.StatusFailed)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != node3.StatusCompleted || done.AgentID != j.AgentID || done.Attempt != 1 {
		t.Fatalf("after healing: %s by %s, attempt %d", done.Status, done.AgentID, done.Attempt)
	}
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		e, err := prov.Earnings(ctx)
		return e.Completed == 1 && e.Total == done.Reward, err
	}); err != nil {
		t.Fatalf("the provider never booked its earnings: %v", err)
	}
}

// TestP2PKilledProviderRequeued kills the provider running a job: its
// lease lapses, the job is posted again and the other provider completes
// it. The killed provider comes back with the same identity.
func TestP2PKilledProviderRequeued(t *testing.T) { killedProviderRequeued(t, false) }

func TestPushKilledProviderRequeued(t *testing.T) { killedProviderRequeued(t, true) }

func killedProviderRequeued(t *testing.T, push bool) {
	nw := startNetwork(t, Config{Providers: 2, P2P: true, Push: push, AllowCommands: true, Lease: time.Second, SweepInterval: 50 * time.Millisecond})
	ctx := timeout(t, 30*time.Second)
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "command", Reward: reward("0.01"), Command: []string{"sleep", "1"}, TimeoutSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = nw.WaitJob(ctx, j.ID, node3.StatusRunning); err != nil {
		t.Fatalf("%v (job error %q)", err, j.Error)
	}
	first, ok := nw.ProviderByAgent(j.AgentID)
	if !ok {
		t.Fatalf("unknown agent %s", j.AgentID)
	}
	if err := nw.Kill(first); err != nil {
		t.Fatal(err)
	}
	done, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted, node3.StatusFailed)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != node3.StatusCompleted || done.AgentID == j.AgentID || done.Attempt != 2 {
		t.Fatalf("job ended %s by %s after %d attempts; want completed by the other provider on attempt 2", done.Status, done.AgentID, done.Attempt)
	}
	if err := nw.Restart(first); err != nil {
		t.Fatal(err)
	}
	if got := nw.Provider(first).AgentID(); got != j.AgentID {
		t.Errorf("restarted provider is %s; want the same identity %s", got, j.AgentID)
	}
	if err := nw.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestP2PCoordinatorRestart takes the coordinator down while a provider
// runs a job: the coordinator comes back on the same address and identity,
// providers reconnect and resync, the waiting report lands and new jobs
// are pushed again.
func TestP2PCoordinatorRestart(t *testing.T) { coordinatorRestart(t, false) }

func TestPushCoordinatorRestart(t *testing.T) { coordinatorRestart(t, true) }

func coordinatorRestart(t *testing.T, push bool) {
	nw := startNetwork(t, Config{Providers: 2, P2P: true, Push: push, AllowCommands: true, Lease: 20 * time.Second, SweepInterval: 50 * time.Millisecond})
	ctx := timeout(t, 30*time.Second)
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "command", Reward: reward("0.003"), Command: []string{"sleep", "0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = nw.WaitJob(ctx, j.ID, node3.StatusRunning); err != nil {
		t.Fatal(err)
	}
	p, _ := nw.ProviderByAgent(j.AgentID)
	if err := nw.KillCoordinator(); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		r, err := nw.Provider(p).Ledger().PendingReports(ctx, 0)
		return len(r) == 1, err
	}); err != nil {
		t.Fatalf("report never reached the outbox: %v", err)
	}
	if err := nw.RestartCoordinator(); err != nil {
		t.Fatal(err)
	}
	done, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted, node3.StatusFailed)
	if err != nil || done.Status != node3.StatusCompleted || done.AgentID != j.AgentID {
		t.Fatalf("after restart: %s by %s, %v", done.Status, done.AgentID, err)
	}
	ids, err := nw.SubmitN(ctx, 4, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000001")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nw.WaitJobs(ctx, ids, node3.StatusCompleted); err != nil {
		t.Fatal(err)
	}
}

// TestP2PLateJoiner posts jobs that only a stopped provider can run; when
// it comes up it fetches the open board from the coordinator (gossip
// carried the postings while it was away) and runs them.
func TestP2PLateJoiner(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, P2P: true})
	ctx := timeout(t, 30*time.Second)
	late := 1 // provider-2: the only A100
	if err := nw.Kill(late); err != nil {
		t.Fatal(err)
	}
	ids, err := nw.SubmitN(ctx, 5, httpapi.CreateJobRequest{JobType: "test", Reward: reward("0.001"), RequiresGPU: true, GPUModel: "A100"})
	if err != nil {
		t.Fatal(err)
	}
	// The postings went out while it was away; nobody else can take them.
	var open []node3.Job
	if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		var err error
		open, err = nw.Provider(0).MarketplaceJobs(ctx)
		return len(open) == 5, err
	}); err != nil {
		t.Fatalf("provider-1's board holds %d jobs (%v); want the 5 open ones", len(open), err)
	}
	for _, id := range ids {
		if j, _ := nw.Coordinator().Ledger().Job(ctx, id); j.Status != node3.StatusAvailable {
			t.Fatalf("job %s is %s while its only provider is away", id, j.Status)
		}
	}
	if err := nw.Restart(late); err != nil {
		t.Fatal(err)
	}
	jobs, err := nw.WaitJobs(ctx, ids, node3.StatusCompleted, node3.StatusFailed)
	if err != nil {
		t.Fatal(err)
	}
	want := nw.Provider(late).AgentID()
	for _, j := range jobs {
		if j.Status != node3.StatusCompleted || j.AgentID != want {
			t.Fatalf("job %s: %s by %s; want completed by the late joiner %s", j.ID, j.Status, j.AgentID, want)
		}
	}
}

func waitOnTopic(t *testing.T, ctx context.Context, n *p2p.Node, topic string, p peer.ID) {
	t.Helper()
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		for _, q := range n.TopicPeers(topic) {
			if q == p {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("%s never seen on %s: %v", p, topic, err)
	}
}

// counter sums the samples of a counter family whose label has the value.
func counter(reg prometheus.Gatherer, name, label, value string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if hasLabel(m, label, value) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// hasLabel reports whether m has the label name=value; every metric has
// the empty label.
func hasLabel(m *dto.Metric, name, value string) bool {
	if name == "" {
		return true
	}
	for _, l := range m.Label {
		if l.GetName() == name && strings.EqualFold(l.GetValue(), value) {
			return true
		}
	}
	return false
}

// TestPushBoardOnDemand: under push dispatch a provider stays off the
// jobs topic (its work comes over its work stream), yet its node API's
// marketplace view lists the open board, fetched from the coordinator
// when asked; with Board it follows the topic.
func TestPushBoardOnDemand(t *testing.T) {
	for _, board := range []bool{false, true} {
		t.Run(fmt.Sprintf("board=%v", board), func(t *testing.T) {
			nw := startNetwork(t, Config{Providers: 1, P2P: true, Push: true, Board: board})
			ctx := timeout(t, 30*time.Second)
			ids, err := nw.SubmitN(ctx, 3, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000001"), RequiresGPU: true, GPUModel: "no-such-gpu"})
			if err != nil {
				t.Fatal(err)
			}
			prov := nw.Provider(0)
			onTopic := slices.Contains(nw.Coordinator().P2P().TopicPeers(p2p.JobsTopic(nw.P2PNetwork())), prov.PeerID())
			if !board && onTopic {
				t.Fatal("a push provider without Board is on the jobs topic")
			}
			var open []node3.Job
			if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
				open, err = prov.MarketplaceJobs(ctx)
				return len(open) == len(ids), err
			}); err != nil {
				t.Fatalf("the provider's marketplace lists %d jobs (%v), want %d", len(open), err, len(ids))
			}
			if board {
				if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
					return slices.Contains(nw.Coordinator().P2P().TopicPeers(p2p.JobsTopic(nw.P2PNetwork())), prov.PeerID()), nil
				}); err != nil {
					t.Fatal("a provider with Board never joined the jobs topic")
				}
			}
		})
	}
}
