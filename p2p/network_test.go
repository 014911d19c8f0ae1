package p2p

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/node3/node3"
)

// inbox collects delivered messages for assertions.
type inbox[T any] struct {
	mu   sync.Mutex
	got  []T
	from []peer.ID
	at   []time.Time
	ch   chan struct{}
}

func newInbox[T any]() *inbox[T] { return &inbox[T]{ch: make(chan struct{}, 1024)} }

func (b *inbox[T]) add(v T, from peer.ID) {
	b.mu.Lock()
	b.got = append(b.got, v)
	b.from = append(b.from, from)
	b.at = append(b.at, time.Now())
	b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
}

func (b *inbox[T]) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.got)
}

func (b *inbox[T]) snapshot() ([]T, []peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got), slices.Clone(b.from)
}

// TestNetworkDiscoveryAndGossip: four nodes know only one bootstrap peer,
// find each other through the DHT, and a coordinator's posting reaches all.
func TestNetworkDiscoveryAndGossip(t *testing.T) {
	net := testNetwork(t)
	const n = 4
	boot := startNode(t, testConfig(t, net))
	nodes := []*Node{boot}
	boxes := []*inbox[JobPosting]{newInbox[JobPosting]()}
	boot.OnJobPosting(boxes[0].add)
	for range n {
		cfg := testConfig(t, net)
		cfg.Bootstrap = addrStrings(boot)
		box := newInbox[JobPosting]()
		cfg.OnJobPosting = box.add
		nodes = append(nodes, startNode(t, cfg))
		boxes = append(boxes, box)
	}
	coord := nodes[1]
	for _, x := range nodes {
		x.SetTrustedCoordinators([]peer.ID{coord.ID()})
	}
	for _, x := range nodes[1:] {
		if x.PeerCount() < 1 {
			t.Fatal("not connected to bootstrap")
		}
	}

	// Everyone advertises as a provider; the routing table may need a
	// moment after identify.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns := nodes[0].Namespace(RoleProviders)
	for _, x := range nodes {
		eventually(t, 10*time.Second, "advertise", func() bool { return x.AdvertiseOnce(ctx, ns) == nil })
	}
	for i, x := range nodes[1:] {
		var found []peer.AddrInfo
		eventually(t, 10*time.Second, fmt.Sprintf("node %d finds all providers", i+1), func() bool {
			var err error
			found, err = x.FindPeers(ctx, ns)
			return err == nil && len(found) == n // everyone but itself
		})
		for _, pi := range found {
			if pi.ID == x.ID() {
				t.Fatal("FindPeers returned self")
			}
			if err := x.Connect(ctx, pi); err != nil {
				t.Fatalf("connect to discovered %s: %v", pi.ID, err)
			}
		}
	}
	for _, x := range nodes {
		if x.PeerCount() != n {
			t.Fatalf("%s has %d peers, want %d", x.ID().ShortString(), x.PeerCount(), n)
		}
		for _, y := range nodes {
			if x != y {
				waitTopicPeer(t, x, JobsTopic(net), y.ID())
			}
		}
	}

	now := time.Now()
	const count = 20
	pubAt := make([]time.Time, count)
	for i := range count {
		id := fmt.Sprintf("job-%03d", i)
		pubAt[i] = time.Now()
		if err := coord.PublishJob(ctx, JobPosting{Kind: PostingPosted, JobID: id, Job: testJob(id, now)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, b := range boxes {
		if nodes[i] == coord {
			continue
		}
		eventually(t, 5*time.Second, fmt.Sprintf("node %d receives %d postings", i, count), func() bool { return b.len() >= count })
	}
	var lat []time.Duration
	for i, b := range boxes {
		got, from := b.snapshot()
		if nodes[i] == coord {
			if len(got) != 0 {
				t.Fatalf("coordinator got its own postings back: %d", len(got))
			}
			continue
		}
		if len(got) != count {
			t.Fatalf("node %d got %d postings (duplicates?)", i, len(got))
		}
		for j, p := range got {
			if from[j] != coord.ID() || p.Coordinator != coord.ID() || p.Seq == 0 || p.Job == nil {
				t.Fatalf("posting %+v from %s", p, from[j])
			}
		}
		b.mu.Lock()
		for j, p := range b.got {
			var k int
			fmt.Sscanf(p.JobID, "job-%03d", &k)
			lat = append(lat, b.at[j].Sub(pubAt[k]))
		}
		b.mu.Unlock()
	}
	slices.Sort(lat)
	t.Logf("publish→receive over loopback, %d deliveries: p50 %s p99 %s max %s",
		len(lat), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])

	// Metrics of a receiver.
	m := nodes[2].metrics
	if got := metricValue(m.received.WithLabelValues(labelJobs)); got < count {
		t.Fatalf("received counter %v", got)
	}
	eventually(t, 5*time.Second, "peers gauge", func() bool { return metricValue(m.peers) == n })
	if got := metricValue(coord.metrics.published.WithLabelValues(labelJobs)); got != count {
		t.Fatalf("published counter %v", got)
	}

	// A batch: more postings than one message holds go out as a few
	// messages, and every node gets each posting once (gossip does not
	// order messages; Seq orders a job's postings).
	const batched = MaxBatchPostings + 100
	ps := make([]JobPosting, batched)
	for i := range ps {
		ps[i] = JobPosting{Kind: PostingStatus, JobID: fmt.Sprintf("batch-%04d", i), Status: node3.StatusCompleted}
	}
	ps[0] = JobPosting{Kind: PostingPosted, JobID: "batch-0000", Job: testJob("batch-0000", now)}
	if sent, err := coord.PublishJobs(ctx, ps); err != nil || sent != batched {
		t.Fatalf("PublishJobs: %d sent, %v", sent, err)
	}
	if got := metricValue(coord.metrics.published.WithLabelValues(labelJobs)); got != count+2 {
		t.Fatalf("published counter %v after a batch of %d, want %d messages", got, batched, count+2)
	}
	for i, b := range boxes {
		if nodes[i] == coord {
			continue
		}
		eventually(t, 5*time.Second, fmt.Sprintf("node %d receives the batch", i), func() bool { return b.len() >= count+batched })
		got, _ := b.snapshot()
		if len(got) != count+batched {
			t.Fatalf("node %d got %d postings, want %d", i, len(got), count+batched)
		}
		seen := map[string]bool{}
		for _, p := range got[count:] {
			if seen[p.JobID] || p.Coordinator != coord.ID() {
				t.Fatalf("node %d: posting %s twice, or from %s", i, p.JobID, p.Coordinator)
			}
			seen[p.JobID] = true
		}
		for _, p := range ps {
			if !seen[p.JobID] {
				t.Fatalf("node %d: posting %s missing", i, p.JobID)
			}
		}
	}
}

// TestAutoDiscovery: the background loop connects nodes that only know
// the bootstrap peer.
func TestAutoDiscovery(t *testing.T) {
	net := testNetwork(t)
	boot := startNode(t, testConfig(t, net))
	var nodes []*Node
	for range 3 {
		cfg := testConfig(t, net)
		cfg.Bootstrap = addrStrings(boot)
		cfg.DiscoveryInterval = 200 * time.Millisecond
		nodes = append(nodes, startNode(t, cfg))
	}
	eventually(t, 20*time.Second, "full mesh through discovery", func() bool {
		for _, x := range nodes {
			if x.PeerCount() < 3 {
				return false
			}
		}
		return true
	})
}

func TestUntrustedPostingRejected(t *testing.T) {
	net := testNetwork(t)
	cfg := testConfig(t, net)
	box := newInbox[JobPosting]()
	cfg.OnJobPosting = box.add
	recv := startNode(t, cfg)
	trusted := startNode(t, testConfig(t, net))
	rogue := startNode(t, testConfig(t, net))
	recv.SetTrustedCoordinators([]peer.ID{trusted.ID()})
	for _, x := range []*Node{trusted, rogue} {
		connect(t, x, recv)
		waitTopicPeer(t, x, JobsTopic(net), recv.ID())
	}
	ctx := context.Background()
	now := time.Now()
	// The rogue node trusts itself, so its own validator lets it publish.
	for i := range 3 {
		id := fmt.Sprintf("rogue-%d", i)
		if err := rogue.PublishJob(ctx, JobPosting{Kind: PostingPosted, JobID: id, Job: testJob(id, now)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := trusted.PublishJob(ctx, JobPosting{Kind: PostingPosted, JobID: "good", Job: testJob("good", now)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "trusted posting delivered", func() bool { return box.len() >= 1 })
	eventually(t, 5*time.Second, "rogue postings rejected", func() bool {
		return metricValue(recv.metrics.rejected.WithLabelValues(labelJobs, reasonUntrusted)) == 3
	})
	eventually(t, 5*time.Second, "rogue's score drops", func() bool {
		s, ok := recv.PeerScore(rogue.ID())
		return ok && s < 0
	})
	// All four postings are accounted for (one delivered, three
	// rejected): nothing else can arrive.
	got, from := box.snapshot()
	if len(got) != 1 || got[0].JobID != "good" || from[0] != trusted.ID() {
		t.Fatalf("delivered %v from %v", got, from)
	}
	rs, _ := recv.PeerScore(rogue.ID())
	ts, _ := recv.PeerScore(trusted.ID())
	t.Logf("scores at the receiver: rogue %.1f, trusted %.1f", rs, ts)
	if ts < 0 {
		t.Fatalf("trusted coordinator penalised: %v", ts)
	}
}

func TestAdvertForgedPeerRejected(t *testing.T) {
	net := testNetwork(t)
	cfg := testConfig(t, net)
	box := newInbox[ProviderAdvert]()
	cfg.OnAdvert = box.add
	recv := startNode(t, cfg)
	honest := startNode(t, testConfig(t, net))
	connect(t, honest, recv)
	waitTopicPeer(t, honest, ProvidersTopic(net), recv.ID())
	raw := newRawPeer(t, net)
	raw.connectTo(t, recv)

	now := time.Now()
	// The raw peer signs an advert that claims to be the honest provider.
	forged := testAdvert(honest.ID(), 1, now)
	raw.publish(t, ProvidersTopic(net), mustJSON(t, forged))
	if err := honest.PublishAdvert(context.Background(), ProviderAdvert{GPUs: forged.GPUs, FreeSlots: 1, Wallet: forged.Wallet}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "honest advert delivered", func() bool { return box.len() >= 1 })
	eventually(t, 5*time.Second, "forged advert rejected", func() bool {
		return metricValue(recv.metrics.rejected.WithLabelValues(labelProviders, reasonAuthor)) == 1
	})
	// Both adverts are accounted for: nothing else can arrive.
	got, from := box.snapshot()
	if len(got) != 1 || from[0] != honest.ID() || got[0].Peer != honest.ID() {
		t.Fatalf("delivered %+v from %v", got, from)
	}
	// A node refuses to publish an advert for someone else.
	forged.Peer = raw.h.ID()
	if err := honest.PublishAdvert(context.Background(), forged); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("PublishAdvert for another peer: %v", err)
	}
}

func TestExpiredAndReplayedRejected(t *testing.T) {
	net := testNetwork(t)
	cfg := testConfig(t, net)
	box := newInbox[JobPosting]()
	cfg.OnJobPosting = box.add
	recv := startNode(t, cfg)
	raw := newRawPeer(t, net)
	recv.SetTrustedCoordinators([]peer.ID{raw.h.ID()}) // a trusted coordinator, or someone replaying its messages
	raw.connectTo(t, recv)
	topic := JobsTopic(net)
	now := time.Now()

	// One at a time: validation runs on several workers, so messages
	// published back to back may be validated out of order.
	sent := 0
	send := func(p JobPosting) {
		t.Helper()
		raw.publish(t, topic, mustJSON(t, p))
		sent++
		eventually(t, 5*time.Second, fmt.Sprintf("message %d validated", sent), func() bool {
			return metricValue(recv.metrics.received.WithLabelValues(labelJobs)) == float64(sent)
		})
	}
	send(testPosting(raw.h.ID(), "old", 1, now.Add(-2*time.Hour)))      // expired an hour ago
	send(testPosting(raw.h.ID(), "future", 1, now.Add(10*time.Minute))) // issued in the future
	fresh := testPosting(raw.h.ID(), "fresh", 7, now)
	send(fresh)
	send(fresh)                                    // same content, new pubsub seqno: a replay
	send(testPosting(raw.h.ID(), "fresh", 6, now)) // stale seq
	next := testPosting(raw.h.ID(), "fresh", 8, now)
	next.Kind, next.Job, next.Status = PostingStatus, nil, node3.StatusCancelled
	send(next)
	m := recv.metrics
	counts := []struct {
		v    *prometheus.CounterVec
		why  string
		want float64
	}{
		{m.rejected, reasonExpired, 1},
		{m.rejected, reasonFuture, 1},
		{m.ignored, reasonReplay, 2},
	}
	// Wait until all six are accounted for (two delivered, four refused);
	// then nothing else can arrive.
	eventually(t, 5*time.Second, "every posting delivered or refused", func() bool {
		for _, c := range counts {
			if metricValue(c.v.WithLabelValues(labelJobs, c.why)) < c.want {
				return false
			}
		}
		return box.len() >= 2
	})
	got, _ := box.snapshot()
	if len(got) != 2 || got[0].JobID != "fresh" || got[0].Seq != 7 || got[1].Seq != 8 {
		t.Fatalf("delivered %+v", got)
	}
	for _, c := range counts {
		if got := metricValue(c.v.WithLabelValues(labelJobs, c.why)); got != c.want {
			t.Errorf("%s = %v, want %v", c.why, got, c.want)
		}
	}
}

func TestSharedRegistererAndTwoNodes(t *testing.T) {
	reg := prometheus.NewRegistry()
	net := testNetwork(t)
	a := testConfig(t, net)
	a.Registerer = reg
	b := testConfig(t, net)
	b.Registerer = reg
	na, nb := startNode(t, a), startNode(t, b)
	connect(t, na, nb)
	eventually(t, 5*time.Second, "peers gauge counts both sides", func() bool {
		return metricValue(na.metrics.peers) == 2
	})
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if len(na.Topics()) != 2 || na.Topics()[0] != JobsTopic(net) {
		t.Fatalf("topics %v", na.Topics())
	}
	for _, addr := range na.Addrs() {
		if _, id := peer.SplitAddr(addr); id != na.ID() {
			t.Fatalf("addr %s lacks /p2p/", addr)
		}
	}
}

func TestCloseIsIdempotentAndStopsEverything(t *testing.T) {
	net := testNetwork(t)
	before := goleak.IgnoreCurrent()
	boot := startNode(t, testConfig(t, net))
	cfg := testConfig(t, net)
	cfg.Bootstrap = addrStrings(boot)
	cfg.DiscoveryInterval = 100 * time.Millisecond
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Advertise(context.Background(), n.Namespace(RoleCoordinators))
	n.Handle("/node3/test/x/1", func(context.Context, peer.ID, []byte) ([]byte, error) { return nil, nil })
	if _, err := boot.Request(context.Background(), n.ID(), "/node3/test/x/1", nil); err != nil {
		t.Fatal(err)
	}
	// Close while discovery is at work: it has found the bootstrap node's
	// advertisement namespace at least once.
	eventually(t, 5*time.Second, "n connected to its bootstrap peer", func() bool { return n.PeerCount() >= 1 })
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close nothing starts again.
	n.Advertise(context.Background(), "x")
	n.Handle("/node3/test/y/1", nil)
	if err := n.PublishJob(context.Background(), JobPosting{Kind: PostingStatus, JobID: "j", Status: node3.StatusFailed}); err == nil {
		t.Fatal("publish after Close succeeded")
	}
	// Everything either node started is gone once both are closed (the
	// bootstrap node's own goroutines for n could otherwise outlive n).
	if err := boot.Close(); err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, before)
}

func TestNoGlobalRegistry(t *testing.T) {
	net := testNetwork(t)
	a, b := startNode(t, testConfig(t, net)), startNode(t, testConfig(t, net))
	connect(t, a, b)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "go_") && !strings.HasPrefix(mf.GetName(), "process_") {
			t.Errorf("metric %s in the global registry", mf.GetName())
		}
	}
}

// metricValue reads a counter or gauge (the testutil package needs a
// module this repository does not carry).
func metricValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
