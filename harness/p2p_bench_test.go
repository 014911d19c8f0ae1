package harness

import (
	"context"
	"fmt"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/p2p"
)

// Benchmarks of push dispatch over real loopback libp2p (TCP), every node
// a full node (ledger with fsync, HTTP APIs, libp2p host) in one process.
//
//	go test -run '^$' -bench P2PPosting -benchtime 200x ./harness/
//	go test -run '^$' -bench P2PDispatch -benchtime 500x ./harness/
//	go test -run '^$' -bench 'P2PNoop|RESTNoop' -benchtime 3000x ./harness/

// startBenchNetwork starts a P2P network and waits until every provider is
// on the jobs topic and known to the coordinator.
func startBenchNetwork(b *testing.B, cfg Config) (*Network, context.Context) {
	b.Helper()
	nodesCtx, stop := context.WithCancel(context.Background())
	cfg.Dir = b.TempDir()
	cfg.P2P = true
	nw, err := Start(nodesCtx, cfg)
	if err != nil {
		stop()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		nw.Close()
		stop()
	})
	ctx, cancel := context.WithTimeout(nodesCtx, 2*time.Minute+time.Duration(cfg.Providers)*6*time.Second)
	b.Cleanup(cancel)
	if err := nw.WaitRegistered(ctx); err != nil {
		b.Fatal(err)
	}
	// Let the start-up work (DHT provider records and routing table
	// refreshes, first adverts) settle: the benchmarks measure a network
	// at work, not one booting.
	idleCores.Store(b, settle())
	return nw, ctx
}

// idleCores holds, per benchmark, what its network cost at rest (settle),
// for the benchmark to report after ResetTimer (which drops metrics).
var idleCores sync.Map

func reportIdle(b *testing.B) {
	if v, ok := idleCores.LoadAndDelete(b); ok {
		b.ReportMetric(v.(float64), "idle-cores")
	}
}

// settle waits until the process's CPU use over a second falls below a
// fifth of a core, or stops falling, or 90 s pass; it returns the last
// second's use, in cores (what the network costs at rest).
func settle() float64 {
	const quiet = 0.2
	deadline := time.Now().Add(90 * time.Second)
	last := math.Inf(1)
	for {
		c0, t0 := cpuTime(), time.Now()
		time.Sleep(time.Second)
		use := (cpuTime() - c0).Seconds() / time.Since(t0).Seconds()
		if use < quiet || use > last*0.9 || time.Now().After(deadline) {
			return use
		}
		last = use
	}
}

// BenchmarkP2PPostingReceived measures how long a job posting takes from
// the coordinator's publish (its issued-at) to each other node's handler,
// across networks of 10, 30 and 50 nodes (a coordinator and N-1
// providers). b.N jobs are submitted one after another; every provider
// records every posting. The jobs ask for a GPU nobody has, so that no
// claim, status update or run competes with the postings (under dispatch
// load a node may get a job's "accepted" before its "posted" through
// another path, and then rightly drops the stale posting).
func BenchmarkP2PPostingReceived(b *testing.B) {
	for _, nodes := range []int{10, 30, 50} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			nw, ctx := startBenchNetwork(b, Config{Providers: nodes - 1, Slots: 8})
			var mu sync.Mutex
			var lat []time.Duration
			received := map[string]int{}
			for i := 0; i < nodes-1; i++ {
				nw.Provider(i).P2P().OnJobPosting(func(p p2p.JobPosting, _ peer.ID) {
					if p.Kind != p2p.PostingPosted {
						return
					}
					d := time.Since(p.IssuedAt)
					mu.Lock()
					lat = append(lat, d)
					received[p.JobID]++
					mu.Unlock()
				})
			}
			b.ResetTimer()
			ids := make([]string, 0, b.N)
			for i := 0; i < b.N; i++ {
				j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: []byte("0.000001"), RequiresGPU: true, GPUModel: "no-such-gpu"})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, j.ID)
			}
			if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				for _, id := range ids {
					if received[id] < nodes-1 {
						return false, nil
					}
				}
				return true, nil
			}); err != nil {
				mu.Lock()
				b.Logf("%s", diagnose(nw, nodes-1))
				b.Fatalf("not every node received every posting (%d samples of %d): %v", len(lat), b.N*(nodes-1), err)
			}
			b.StopTimer()
			reportIdle(b)
			mu.Lock()
			defer mu.Unlock()
			b.ReportMetric(ms(pct(lat, 50)), "p50-recv-ms")
			b.ReportMetric(ms(pct(lat, 99)), "p99-recv-ms")
			b.ReportMetric(ms(pct(lat, 100)), "max-recv-ms")
			b.ReportMetric(float64(nw.Coordinator().P2P().PeerCount()), "coord-peers")
		})
	}
}

// BenchmarkP2PDispatch measures posting→granted: from the coordinator's
// posting of a job (its issued-at, seen by a provider) to the grant of
// the first claim (the job's accepted-at, on the coordinator), with 10 and
// 50 providers, at a steady light load: one job every dispatchPace (20
// jobs/s), so that it measures dispatch rather than queueing (the
// throughput benchmark is BenchmarkP2PNoop).
func BenchmarkP2PDispatch(b *testing.B) { dispatchBench(b, false) }

// BenchmarkPushDispatch is BenchmarkP2PDispatch over push dispatch.
//
//	go test -run '^$' -bench 'PushDispatch|P2PDispatch' -benchtime 200x ./harness/
func BenchmarkPushDispatch(b *testing.B) { dispatchBench(b, true) }

func dispatchBench(b *testing.B, push bool) {
	for _, providers := range []int{10, 50} {
		b.Run(fmt.Sprintf("providers=%d", providers), func(b *testing.B) {
			// The providers follow the board, so provider 0 sees postings.
			nw, ctx := startBenchNetwork(b, Config{Providers: providers, Slots: 8, Push: push, Board: true})
			type seen struct{ issued, received time.Time }
			var issued sync.Map // job id → seen
			nw.Provider(0).P2P().OnJobPosting(func(p p2p.JobPosting, _ peer.ID) {
				if p.Kind == p2p.PostingPosted {
					issued.LoadOrStore(p.JobID, seen{p.IssuedAt, time.Now()})
				}
			})
			b.ResetTimer()
			ids := make([]string, 0, b.N)
			tick := time.NewTicker(dispatchPace())
			for i := 0; i < b.N; i++ {
				<-tick.C
				j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: []byte("0.000001")})
				if err != nil {
					b.Fatal(err)
				}
				ids = append(ids, j.ID)
			}
			tick.Stop()
			jobs, err := nw.WaitJobs(ctx, ids, node3.StatusCompleted)
			if err != nil {
				for _, id := range ids {
					if j, _ := nw.Coordinator().Ledger().Job(ctx, id); j.Status != node3.StatusCompleted {
						b.Logf("job %s: %s by %s attempt %d: %s", id, j.Status, j.AgentID, j.Attempt, j.Error)
					}
				}
				b.Fatal(err)
			}
			b.StopTimer()
			reportIdle(b)
			var grant, create, done, recv []time.Duration
			for _, j := range jobs {
				create = append(create, j.AcceptedAt.Sub(j.CreatedAt))
				done = append(done, j.FinishedAt.Sub(j.CreatedAt))
				if t, ok := issued.Load(j.ID); ok {
					grant = append(grant, j.AcceptedAt.Sub(t.(seen).issued))
					recv = append(recv, t.(seen).received.Sub(t.(seen).issued))
				}
			}
			b.ReportMetric(ms(pct(recv, 50)), "p50-post→recv-ms")
			b.ReportMetric(counterSum(nw, "node3_coordinator_claims_total", "denied")/float64(b.N), "denied/job")
			b.ReportMetric(ms(pct(grant, 50)), "p50-post→grant-ms")
			b.ReportMetric(ms(pct(grant, 99)), "p99-post→grant-ms")
			b.ReportMetric(ms(pct(create, 50)), "p50-create→grant-ms")
			b.ReportMetric(ms(pct(create, 99)), "p99-create→grant-ms")
			b.ReportMetric(ms(pct(done, 50)), "p50-create→completed-ms")
			b.ReportMetric(ms(pct(done, 99)), "p99-create→completed-ms")
		})
	}
}

// BenchmarkP2PNoop is BenchmarkRESTNoop over gossip: b.N noop jobs
// submitted by 8 parallel REST clients, pushed to 1, 4 and 16 providers,
// claimed and reported over streams, all durable. It reports jobs/s and
// submit→accepted / submit→completed percentiles.
func BenchmarkP2PNoop(b *testing.B) {
	for _, providers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("providers=%d", providers), func(b *testing.B) {
			nw, ctx := startBenchNetwork(b, Config{Providers: providers, Slots: 32})
			noopLoad(ctx, b, nw)
			b.ReportMetric(float64(counterSum(nw, "node3_coordinator_claims_total", "denied")), "denied-claims")
		})
	}
}

// BenchmarkPushNoop is BenchmarkP2PNoop over push dispatch: the
// coordinator grants each job to one provider over its work stream.
//
//	go test -run '^$' -bench 'PushNoop|P2PNoop' -benchtime 3000x ./harness/
func BenchmarkPushNoop(b *testing.B) {
	for _, providers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("providers=%d", providers), func(b *testing.B) {
			nw, ctx := startBenchNetwork(b, Config{Providers: providers, Slots: 32, Push: true})
			noopLoad(ctx, b, nw)
			b.ReportMetric(float64(counterSum(nw, "node3_coordinator_grants_total", "declined"))/float64(b.N), "declines/job")
			b.ReportMetric(float64(counterSum(nw, "node3_coordinator_claims_total", "denied")), "denied-claims")
		})
	}
}

// dispatchPace spaces the dispatch benchmark's jobs (20 jobs/s);
// NODE3_BENCH_PACE (a Go duration) overrides it.
func dispatchPace() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("NODE3_BENCH_PACE")); err == nil && d > 0 {
		return d
	}
	return 50 * time.Millisecond
}

func counterSum(nw *Network, name, result string) float64 {
	return counter(nw.Coordinator().Registry(), name, "result", result)
}

// diagnose describes how the providers stand with the coordinator.
func diagnose(nw *Network, providers int) string {
	c := nw.Coordinator().P2P()
	out := fmt.Sprintf("coordinator: %d peers, %d on jobs topic\n", c.PeerCount(), len(c.TopicPeers(p2p.JobsTopic(nw.P2PNetwork()))))
	for i := 0; i < providers; i++ {
		p := nw.Provider(i).P2P()
		cs, _ := c.PeerScore(p.ID())
		ps, _ := p.PeerScore(c.ID())
		out += fmt.Sprintf("  %s: connected=%v peers=%d topic=%d score@coord=%.1f coord@it=%.1f\n", ProviderName(i),
			c.Host().Network().Connectedness(p.ID()), p.PeerCount(), len(p.TopicPeers(p2p.JobsTopic(nw.P2PNetwork()))), cs, ps)
	}
	return out
}
