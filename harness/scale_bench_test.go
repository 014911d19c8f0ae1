package harness

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
)

// BenchmarkPushScale runs b.N noop jobs on 100 providers in this process
// over push dispatch, and proves none was lost or run twice: every job
// completed at its first attempt, no grant was given back, and the
// providers' own histories hold each job exactly once.
//
//	go test -run '^$' -bench PushScale -benchtime 10000x -timeout 30m ./harness/
func BenchmarkPushScale(b *testing.B) {
	const providers = 100
	nw, ctx := startBenchNetwork(b, Config{Providers: providers, Slots: 8, Push: true})
	noopLoad(ctx, b, nw)

	jobs, err := nw.Coordinator().Ledger().Jobs(ctx, jobsFilter(b.N+1))
	if err != nil {
		b.Fatal(err)
	}
	if len(jobs) != b.N {
		b.Fatalf("%d jobs completed, want %d", len(jobs), b.N)
	}
	retried := 0
	for _, j := range jobs {
		if j.Attempt != 1 {
			retried++
		}
	}
	ran := make(map[string]int, b.N) // job → providers whose history holds it
	busy := 0
	for i := range providers {
		local, err := nw.Provider(i).Ledger().LocalJobs(ctx, b.N+1)
		if err != nil {
			b.Fatal(err)
		}
		if len(local) > 0 {
			busy++
		}
		for _, j := range local {
			ran[j.ID]++
		}
	}
	lost, twice := 0, 0
	for _, j := range jobs {
		switch ran[j.ID] {
		case 0:
			lost++
		case 1:
		default:
			if twice++; twice <= 5 {
				b.Logf("job %s ran on %d providers; completed by %s, accepted %s after creation", j.ID, ran[j.ID], j.AgentID, j.AcceptedAt.Sub(j.CreatedAt))
			}
		}
	}
	requeues := counter(nw.Coordinator().Registry(), "node3_coordinator_grant_requeues_total", "", "")
	b.ReportMetric(float64(busy), "providers-used")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(twice), "run-twice")
	b.ReportMetric(float64(retried), "retried")
	b.ReportMetric(requeues, "requeues")
	b.ReportMetric(counterSum(nw, "node3_coordinator_grants_total", "late"), "late-acks")
	if rss, err := selfRSSMiB(); err == nil {
		b.ReportMetric(rss/float64(providers+1), "rss-MiB/node")
	}
	for _, why := range []string{"the provider declined the grant", "the provider did not ack the grant in time", "the provider disconnected before acking"} {
		if n := counter(nw.Coordinator().Registry(), "node3_coordinator_grant_requeues_total", "reason", why); n > 0 {
			b.Logf("given back because %s: %v", why, n)
		}
	}
	b.Logf("grants: %v acked, %v late acks, %v declined, %v given back; p2p work streams dropped: %v",
		counterSum(nw, "node3_coordinator_grants_total", "acked"), counterSum(nw, "node3_coordinator_grants_total", "late"),
		counterSum(nw, "node3_coordinator_grants_total", "declined"), requeues,
		counter(nw.Coordinator().Registry(), "node3_p2p_work_dropped_total", "", ""))
	if lost > 0 || twice > 0 || retried > 0 || requeues > 0 {
		b.Fatalf("%d jobs in no provider's history, %d in several, %d retried, %d grants given back", lost, twice, retried, int(requeues))
	}
}

// selfRSSMiB is this process's resident set.
func selfRSSMiB() (float64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(data)
	if m == nil {
		return 0, fmt.Errorf("no VmRSS")
	}
	kb, err := strconv.ParseFloat(string(m[1]), 64)
	return kb / 1024, err
}
