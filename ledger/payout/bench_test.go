package payout

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/localchain"
)

// The benchmarks run on the local endpoint with a realistic but fast
// clock: Solana's slot structure (confirmed 1 slot after landing,
// finalized 32 slots after, blockhashes valid 150 blocks) at 20ms a slot
// instead of 400ms, so a payout finalizes in about 0.7s instead of 13s.
// The engine's intervals are scaled the same way.
const benchSlot = 20 * time.Millisecond

func benchConfig(e *env, batchSize int) Config {
	cfg := e.engineConfig()
	cfg.BatchSize = batchSize
	cfg.PollInterval = 50 * time.Millisecond // 1s / 20
	cfg.ResendInterval = 100 * time.Millisecond
	cfg.Logger = nil
	return cfg
}

// BenchmarkPayouts pays b.N payouts, all pending when the engine starts,
// to 4 providers whose accounts exist, and reports payouts per second and
// the fee per payout, one transfer per transaction against batches.
func BenchmarkPayouts(b *testing.B) {
	for _, size := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			e := newEnv(b, localchain.Config{SlotInterval: benchSlot})
			e.fund(10_000 * sol)
			ps := e.providers(4)
			for _, p := range ps {
				if _, err := e.chain.Airdrop(p.addr(), uint64(sol)); err != nil {
					b.Fatal(err)
				}
			}
			var sum node3.Lamports
			for i := range b.N {
				j := complete(b, e.led, ps[i%len(ps)].agent, node3.Lamports(1_000_000+i))
				sum += j.Reward
			}
			e.waitFor("the airdrops to confirm", 10*time.Second, false, func() bool { return e.chain.Slot() > 2 })
			before := e.chain.Balance(e.payer.Address())
			b.ResetTimer()
			start := time.Now()
			_, stop := e.start(benchConfig(e, size))
			e.waitFor("every payout finalized", 10*time.Minute, false, e.finalized(b.N))
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			fees := before - e.chain.Balance(e.payer.Address()) - uint64(sum)
			txs := mustTxs(b, e.led)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "payouts/s")
			b.ReportMetric(float64(fees)/float64(b.N), "fee-lamports/payout")
			b.ReportMetric(float64(len(txs)), "txs")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkLatency completes b.N jobs one every 10ms while the engine runs
// (BatchSize 16, BatchDelay 25ms) and reports the p50 and p99 latency from
// a job's completion to its payout being finalized.
func BenchmarkLatency(b *testing.B) {
	e := newEnv(b, localchain.Config{SlotInterval: benchSlot})
	e.fund(10_000 * sol)
	ps := e.providers(4)
	for _, p := range ps {
		if _, err := e.chain.Airdrop(p.addr(), uint64(sol)); err != nil {
			b.Fatal(err)
		}
	}
	e.waitFor("the airdrops to confirm", 10*time.Second, false, func() bool { return e.chain.Slot() > 2 })
	var (
		mu   sync.Mutex
		done = make(map[string]time.Time) // job → completed
		lats []time.Duration
	)
	cfg := benchConfig(e, 16)
	cfg.BatchDelay = 25 * time.Millisecond // 500ms / 20
	cfg.hook = func(step string, tx ledger.PayoutTx) {
		if step != "finalized" {
			return
		}
		now := time.Now()
		mu.Lock()
		for _, p := range tx.Payouts {
			lats = append(lats, now.Sub(done[p.JobID]))
		}
		mu.Unlock()
	}
	eng, stop := e.start(cfg)
	b.ResetTimer()
	tick := time.NewTicker(10 * time.Millisecond)
	for i := range b.N {
		<-tick.C
		j := complete(b, e.led, ps[i%len(ps)].agent, node3.Lamports(1_000_000+i))
		mu.Lock()
		done[j.ID] = time.Now()
		mu.Unlock()
		eng.Notify()
	}
	tick.Stop()
	e.waitFor("every payout finalized", 10*time.Minute, false, e.finalized(b.N))
	b.StopTimer()
	stop()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lats)
	pct := func(q float64) float64 { return float64(lats[int(q*float64(len(lats)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(mustTxs(b, e.led))), "txs")
	b.ReportMetric(0, "ns/op")
}
