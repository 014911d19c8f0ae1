package p2p

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/node3/node3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var testListen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("P2P_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

func testNetwork(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("test-%x", b)
}

func testConfig(t testing.TB, network string) Config {
	return Config{
		ListenAddrs:          testListen,
		Network:              network,
		Logger:               testLogger(t),
		Registerer:           prometheus.NewRegistry(),
		DiscoveryInterval:    -1,
		ReconnectMin:         50 * time.Millisecond,
		ReconnectMax:         500 * time.Millisecond,
		ScoreInspectInterval: 50 * time.Millisecond,
		BootstrapTimeout:     5 * time.Second,
		DialTimeout:          5 * time.Second,
	}
}

func startNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func addrStrings(n *Node) []string {
	var out []string
	for _, a := range n.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func connect(t testing.TB, a, b *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatal(err)
	}
}

// waitTopicPeer waits until n sees p subscribed to topic (so a flood
// publish from n reaches p, and vice versa).
func waitTopicPeer(t testing.TB, n *Node, topic string, p peer.ID) {
	t.Helper()
	eventually(t, 5*time.Second, "topic peer "+p.ShortString()+" on "+topic, func() bool {
		for _, q := range n.TopicPeers(topic) {
			if q == p {
				return true
			}
		}
		return false
	})
}

// rawPeer is a plain libp2p host with GossipSub and no node3 validators:
// it can publish anything, signed with its own key, like a misbehaving
// peer would.
type rawPeer struct {
	h      host.Host
	ps     *pubsub.PubSub
	topics map[string]*pubsub.Topic
	subs   []*pubsub.Subscription
	cancel context.CancelFunc
}

func newRawPeer(t testing.TB, network string) *rawPeer {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.PrometheusRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictSign), pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	r := &rawPeer{h: h, ps: ps, topics: map[string]*pubsub.Topic{}, cancel: cancel}
	for _, name := range []string{JobsTopic(network), ProvidersTopic(network)} {
		tp, err := ps.Join(name)
		if err != nil {
			t.Fatal(err)
		}
		sub, err := tp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		r.topics[name] = tp
		r.subs = append(r.subs, sub)
	}
	t.Cleanup(func() {
		for _, s := range r.subs {
			s.Cancel()
		}
		cancel()
		_ = h.Close()
	})
	return r
}

func (r *rawPeer) connectTo(t testing.TB, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.h.Connect(ctx, n.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	for topic := range r.topics {
		waitTopicPeer(t, n, topic, r.h.ID())
		eventually(t, 5*time.Second, "raw peer sees node on "+topic, func() bool {
			for _, q := range r.ps.ListPeers(topic) {
				if q == n.ID() {
					return true
				}
			}
			return false
		})
	}
}

func (r *rawPeer) publish(t testing.TB, topic string, data []byte) {
	t.Helper()
	if err := r.topics[topic].Publish(context.Background(), data); err != nil {
		t.Fatal(err)
	}
}

// testJob is a valid, normalized noop job.
func testJob(id string, now time.Time) *node3.Job {
	j := &node3.Job{
		ID:        id,
		JobSpec:   node3.JobSpec{Kind: node3.KindNoop, Reward: 1000},
		Status:    node3.StatusAvailable,
		CreatedAt: now,
		UpdatedAt: now,
		ExpiresAt: now.Add(time.Hour),
	}
	if err := j.JobSpec.Normalize(); err != nil {
		panic(err)
	}
	return j
}

func testPosting(coord peer.ID, id string, seq uint64, now time.Time) JobPosting {
	return JobPosting{
		Version:     Version,
		Kind:        PostingPosted,
		JobID:       id,
		Job:         testJob(id, now),
		Status:      node3.StatusAvailable,
		Coordinator: coord,
		Seq:         seq,
		IssuedAt:    now,
		ExpiresAt:   now.Add(time.Hour),
	}
}

func testAdvert(p peer.ID, seq uint64, now time.Time) ProviderAdvert {
	return ProviderAdvert{
		Version:         Version,
		Peer:            p,
		GPUs:            []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "H200", MemoryBytes: 141 << 30}},
		FreeSlots:       1,
		PriceFloor:      5000,
		Wallet:          "11111111111111111111111111111111",
		SoftwareVersion: "node3/test",
		Seq:             seq,
		IssuedAt:        now,
		TTLSecs:         60,
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
