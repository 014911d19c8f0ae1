package schedule

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/node3/node3"
)

// benchProviders connects n providers, each with slots CPU slots and
// 8 80 GiB A100s.
func benchProviders(s *Scheduler, n, slots int) {
	for i := range n {
		id := fmt.Sprintf("prov-%03d", i)
		if err := s.Connect(id, Capacity{Slots: slots, GPUs: gpus(id, 8, 80*gib)}); err != nil {
			panic(err)
		}
	}
}

func benchJob(i int, r node3.Requirements) node3.Job {
	return mkJob(fmt.Sprintf("job-%08d", i), 1000, r)
}

// commit plays the ledger's accept for a grant.
func commit(s *Scheduler, g Grant) node3.Job {
	j := g.Job
	j.Status, j.AgentID, j.Attempt = node3.StatusAccepted, g.Provider, g.Attempt
	s.Observe(j)
	return j
}

func finish(s *Scheduler, j node3.Job) {
	j.Status = node3.StatusCompleted
	s.Observe(j)
}

func reportQuantiles(b *testing.B, d []time.Duration) {
	slices.Sort(d)
	if len(d) == 0 {
		return
	}
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// One job arrives with 100 idle providers: from the feed's event to its
// grant.
func BenchmarkJobArrives100Idle(b *testing.B) {
	s := New(Config{})
	benchProviders(s, 100, 16)
	now := t0
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		i++
		r := node3.Requirements{}
		if i%2 == 0 {
			r = node3.Requirements{GPU: true, MinGPUMemory: 40 * gib}
		}
		j := benchJob(i, r)
		start := time.Now()
		s.Observe(j)
		gs := s.Assign(now)
		lat = append(lat, time.Since(start))
		if len(gs) != 1 {
			b.Fatalf("grants %d", len(gs))
		}
		j = commit(s, gs[0])
		if err := s.Ack(gs[0].JobID, gs[0].Provider); err != nil {
			b.Fatal(err)
		}
		finish(s, j)
	}
	reportQuantiles(b, lat)
}

// 10,000 jobs over 100 providers: every job arrives at once and one
// Assign places them.
func Benchmark10kJobs100ProvidersBatch(b *testing.B) {
	var grants, total int
	var spent time.Duration
	for b.Loop() {
		b.StopTimer()
		s := New(Config{})
		benchProviders(s, 100, 100)
		for i := range 10_000 {
			r := node3.Requirements{}
			if i%10 == 0 {
				r = node3.Requirements{GPU: true, GPUCount: 1 + i%2}
			}
			s.Observe(benchJob(i, r))
		}
		b.StartTimer()
		start := time.Now()
		gs := s.Assign(t0)
		spent += time.Since(start)
		grants += len(gs)
		total++
	}
	b.ReportMetric(float64(grants)/spent.Seconds(), "assignments/s")
	b.ReportMetric(float64(grants)/float64(total), "grants/op")
}

// 10,000 jobs over 100 providers the way the coordinator's loop runs: each
// arrives from the feed and Assign follows; a tenth of the jobs end as
// others arrive, so capacity keeps coming back.
func Benchmark10kJobs100ProvidersStream(b *testing.B) {
	var grants int
	var spent time.Duration
	lat := make([]time.Duration, 0, 10_000)
	for b.Loop() {
		b.StopTimer()
		s := New(Config{})
		benchProviders(s, 100, 90)
		var running []node3.Job
		b.StartTimer()
		for i := range 10_000 {
			r := node3.Requirements{}
			if i%10 == 0 {
				r = node3.Requirements{GPU: true, GPUCount: 1 + i%2}
			}
			start := time.Now()
			s.Observe(benchJob(i, r))
			gs := s.Assign(t0)
			for _, g := range gs {
				running = append(running, commit(s, g))
			}
			if i%10 == 9 && len(running) > 0 {
				finish(s, running[0])
				running = running[1:]
				grants += len(s.Assign(t0))
			}
			d := time.Since(start)
			spent += d
			lat = append(lat, d)
			grants += len(gs)
		}
	}
	b.ReportMetric(float64(grants)/spent.Seconds(), "assignments/s")
	reportQuantiles(b, lat)
}

// A capacity announcement with 10,000 jobs waiting that it cannot take:
// Assign looks at the waiting jobs against that one provider only.
func BenchmarkAnnounceWith10kWaiting(b *testing.B) {
	s := New(Config{})
	benchProviders(s, 100, 0)
	for i := range 10_000 {
		s.Observe(benchJob(i, node3.Requirements{GPU: true, MinGPUMemory: 100 * gib}))
	}
	if gs := s.Assign(t0); len(gs) != 0 {
		b.Fatalf("granted %d", len(gs))
	}
	lat := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("prov-%03d", i%100)
		i++
		start := time.Now()
		if err := s.Connect(id, Capacity{GPUs: gpus(id, 8, 80*gib)}); err != nil {
			b.Fatal(err)
		}
		if gs := s.Assign(t0); len(gs) != 0 {
			b.Fatalf("granted %d", len(gs))
		}
		lat = append(lat, time.Since(start))
	}
	reportQuantiles(b, lat)
}

// Capacity frees on one provider with 10,000 jobs waiting: the first
// waiting job takes it.
func BenchmarkReleaseWith10kWaiting(b *testing.B) {
	s := New(Config{})
	benchProviders(s, 100, 1)
	for i := range 100 * 9 { // fill every slot and GPU
		r := node3.Requirements{}
		if i >= 100 {
			r = node3.Requirements{GPU: true}
		}
		s.Observe(benchJob(i, r))
	}
	var running []node3.Job
	for _, g := range s.Assign(t0) {
		running = append(running, commit(s, g))
	}
	for i := range 10_000 {
		s.Observe(benchJob(1_000_000+i, node3.Requirements{}))
	}
	if gs := s.Assign(t0); len(gs) != 0 {
		b.Fatalf("granted %d with everything full", len(gs))
	}
	lat := make([]time.Duration, 0, b.N)
	k := 0
	for b.Loop() {
		// finish a running CPU job; its slot takes the oldest waiting job
		for running[k%len(running)].Requirements.Count() != 0 {
			k++
		}
		j := running[k%len(running)]
		start := time.Now()
		finish(s, j)
		gs := s.Assign(t0)
		lat = append(lat, time.Since(start))
		if len(gs) != 1 {
			b.Fatalf("granted %d", len(gs))
		}
		running[k%len(running)] = commit(s, gs[0])
		if s.Waiting() == 0 {
			b.StopTimer()
			for i := range 10_000 {
				s.Observe(benchJob(2_000_000+k*10_000+i, node3.Requirements{}))
			}
			s.Assign(t0)
			b.StartTimer()
		}
		k++
	}
	reportQuantiles(b, lat)
}
