package p2p

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// BenchmarkPublishReceive measures gossip publish→receive latency between
// two nodes over loopback, one posting in flight at a time.
func BenchmarkPublishReceive(b *testing.B) {
	net := testNetwork(b)
	got := make(chan time.Time, 1)
	cfg := testConfig(b, net)
	cfg.OnJobPosting = func(JobPosting, peer.ID) { got <- time.Now() }
	recv := startNode(b, cfg)
	pub := startNode(b, testConfig(b, net))
	recv.SetTrustedCoordinators([]peer.ID{pub.ID()})
	connect(b, pub, recv)
	waitTopicPeer(b, pub, JobsTopic(net), recv.ID())
	ctx := context.Background()
	now := time.Now()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("job-%d", i)
		p := JobPosting{Kind: PostingPosted, JobID: id, Job: testJob(id, now)}
		start := time.Now()
		if err := pub.PublishJob(ctx, p); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-got:
			lat = append(lat, at.Sub(start))
		case <-time.After(5 * time.Second):
			b.Fatal("posting not delivered")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
