package ledger

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/node3/node3"
)

// benchCycles runs b.N create+accept+complete cycles, each call synced to
// disk, from the given number of goroutines, and reports durable writes
// ("transitions": create, accept and complete each count one) per second,
// the p50 and p99 latency of one call, and the group-commit factor.
func benchCycles(b *testing.B, workers int) {
	l := openAt(b, b.TempDir(), false) // fsync on every commit
	a, _ := mustRegister(b, l, 0)
	b0, r0 := l.WriteStats()
	var (
		mu   sync.Mutex
		lats = make([]time.Duration, 0, 3*b.N)
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			var mine []time.Duration
			timed := func(f func() error) {
				t := time.Now()
				if err := f(); err != nil {
					b.Error(err)
				}
				mine = append(mine, time.Since(t))
			}
			for next.Add(1) <= int64(b.N) {
				var j node3.Job
				now := time.Now()
				timed(func() (err error) { j, err = l.CreateJob(ctx, noopSpec(1000), now); return err })
				timed(func() error {
					_, err := l.Transition(ctx, j.ID, Event{Kind: EvAccept, AgentID: a.ID, Now: now, Lease: time.Minute})
					return err
				})
				timed(func() error {
					_, err := l.Transition(ctx, j.ID, Event{Kind: EvComplete, AgentID: a.ID, Now: now})
					return err
				})
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	slices.Sort(lats)
	ms := func(q float64) float64 { return float64(lats[int(q*float64(len(lats)-1))]) / float64(time.Millisecond) }
	b1, r1 := l.WriteStats()
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "transitions/s")
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(r1-r0)/float64(max(b1-b0, 1)), "writes/commit")
}

// BenchmarkDurableTransitions: 32 concurrent clients, sharing commits.
func BenchmarkDurableTransitions(b *testing.B) { benchCycles(b, 32) }

// BenchmarkSingleWriterFsync: one client, so one fsync per call.
func BenchmarkSingleWriterFsync(b *testing.B) { benchCycles(b, 1) }
