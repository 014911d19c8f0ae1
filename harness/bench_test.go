package harness

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/ledger"
)

// BenchmarkRESTNoop pushes b.N noop jobs through the REST path — admin
// submit, provider long-poll, accept, complete, payout booked — with 1, 4
// and 16 providers, all durable (fsync on every commit). It reports jobs/s
// and the p50/p99 of submit→accepted and submit→completed, measured on the
// coordinator's clock from each job's own timestamps.
//
//	go test -run '^$' -bench RESTNoop -benchtime 5000x ./harness/
func BenchmarkRESTNoop(b *testing.B) {
	for _, providers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("providers=%d", providers), func(b *testing.B) {
			benchNoop(b, providers)
		})
	}
}

func benchNoop(b *testing.B, providers int) {
	nodesCtx, stopNodes := context.WithCancel(context.Background())
	defer stopNodes()
	ctx, cancel := context.WithTimeout(nodesCtx, 5*time.Minute)
	defer cancel()
	nw, err := Start(nodesCtx, Config{Dir: b.TempDir(), Providers: providers, Slots: 32})
	if err != nil {
		b.Fatal(err)
	}
	defer nw.Close()
	if err := nw.WaitRegistered(ctx); err != nil {
		b.Fatal(err)
	}
	noopLoad(ctx, b, nw)
}

// noopLoad submits b.N noop jobs from 8 parallel REST clients, waits until
// all are completed, and reports jobs/s and the p50/p99 of submit→accepted
// and submit→completed, measured on the coordinator's clock from each
// job's own timestamps.
func noopLoad(ctx context.Context, b *testing.B, nw *Network) {
	admin := nw.Admin()
	const submitters = 8
	var next atomic.Int64
	led := nw.Coordinator().Ledger()
	batches0, reqs0 := led.WriteStats()
	syncs0 := led.Syncs()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, submitters)
	var cmu sync.Mutex
	var creates []time.Duration
	for w := 0; w < submitters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if _, err := admin.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: []byte("0.000001")}); err != nil {
					errs <- err
					return
				}
				d := time.Since(t0)
				cmu.Lock()
				creates = append(creates, d)
				cmu.Unlock()
			}
		}()
	}
	wg.Wait()
	submitted := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	if err := poll(ctx, time.Millisecond, func() (bool, error) {
		s, err := led.Stats(ctx)
		return s.Jobs[node3.StatusCompleted] >= int64(b.N), err
	}); err != nil {
		s, _ := led.Stats(context.Background())
		b.Fatalf("%v; jobs by state: %v", err, s.Jobs)
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	jobs, err := led.Jobs(ctx, jobsFilter(b.N))
	if err != nil {
		b.Fatal(err)
	}
	var accepted, completed []time.Duration
	for _, j := range jobs {
		accepted = append(accepted, j.AcceptedAt.Sub(j.CreatedAt))
		completed = append(completed, j.FinishedAt.Sub(j.CreatedAt))
	}
	batches, reqs := led.WriteStats()
	b.ReportMetric(float64(reqs-reqs0)/float64(max(batches-batches0, 1)), "writes/commit")
	b.ReportMetric(float64(reqs-reqs0)/float64(b.N), "writes/job")
	b.ReportMetric(float64(led.Syncs()-syncs0)/float64(b.N), "fsyncs/job")
	reportIdle(b)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	// CPU of every node in the process per job, and how busy the
	// machine's cores were: a run near all cores is CPU-bound.
	b.ReportMetric(ms(cpu)/float64(b.N), "cpu-ms/job")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	b.ReportMetric(float64(b.N)/submitted.Seconds(), "submits/s")
	b.ReportMetric(ms(pct(creates, 50)), "p50-create-ms")
	b.ReportMetric(ms(pct(accepted, 50)), "p50-accept-ms")
	b.ReportMetric(ms(pct(accepted, 99)), "p99-accept-ms")
	b.ReportMetric(ms(pct(completed, 50)), "p50-complete-ms")
	b.ReportMetric(ms(pct(completed, 99)), "p99-complete-ms")
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[min(len(d)-1, len(d)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func jobsFilter(n int) ledger.JobFilter {
	return ledger.JobFilter{Status: node3.StatusCompleted, Limit: n}
}
