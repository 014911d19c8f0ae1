package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// loadReport is what `admin load` measured.
type loadReport struct {
	Jobs        int     `json:"jobs"`
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`      // first submit → last completion
	JobsPerSec  float64 `json:"jobs_per_sec"` // completed jobs / seconds
	CreateP50ms float64 `json:"create_p50_ms"`
	CreateP99ms float64 `json:"create_p99_ms"`
	// Submit → completed, from the coordinator's own timestamps.
	CompleteP50ms float64 `json:"complete_p50_ms"`
	CompleteP99ms float64 `json:"complete_p99_ms"`
	NotCompleted  int     `json:"not_completed"` // jobs that ended otherwise, or not in time
}

func newLoadCmd(a *adminFlags) *cobra.Command {
	var (
		jobs, concurrency int
		reward            string
		timeout           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Submit noop jobs as fast as the marketplace takes them and measure jobs/s",
		Long: `Submit --jobs noop jobs over the REST API from --concurrency clients (each
under its own idempotency key), wait until every one has ended, and report
jobs/s from the first submission to the last completion, with create and
submit→completed latencies. For test networks (e.g. node3 up): it spends
--reward per job.`,
		Example: `  node3 admin load --marketplace-url http://localhost:8000 --admin-key-file ~/.node3/up/coordinator/admin_api_key --jobs 2000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jobs < 1 || concurrency < 1 {
				return fmt.Errorf("--jobs and --concurrency must be at least 1")
			}
			if _, err := node3.ParseSOL(reward); err != nil {
				return fmt.Errorf("--reward: %w", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			r, err := runLoad(ctx, c, jobs, concurrency, httpapi.CreateJobRequest{JobType: string(node3.KindNoop), Reward: []byte(reward)})
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "Jobs\t%d (%d clients)\n", r.Jobs, r.Concurrency)
			fmt.Fprintf(w, "Throughput\t%.0f jobs/s over %.2f s\n", r.JobsPerSec, r.Seconds)
			fmt.Fprintf(w, "Create\tp50 %.1f ms, p99 %.1f ms\n", r.CreateP50ms, r.CreateP99ms)
			fmt.Fprintf(w, "Submit → completed\tp50 %.1f ms, p99 %.1f ms\n", r.CompleteP50ms, r.CompleteP99ms)
			if r.NotCompleted > 0 {
				fmt.Fprintf(w, "Not completed\t%d\n", r.NotCompleted)
			}
			return w.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&jobs, "jobs", 1000, "how many noop jobs")
	f.IntVar(&concurrency, "concurrency", 8, "clients submitting at once")
	f.StringVar(&reward, "reward", "0.000001", "reward per job, in SOL")
	f.DurationVar(&timeout, "timeout", 10*time.Minute, "time allowed for the whole run")
	return cmd
}

// runLoad submits n jobs from conc clients, then waits for each to end.
func runLoad(ctx context.Context, c *httpapi.Client, n, conc int, req httpapi.CreateJobRequest) (loadReport, error) {
	ids := make([]string, n)
	creates := make([]time.Duration, n)
	var (
		next int
		mu   sync.Mutex
		wg   sync.WaitGroup
		fail error
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || fail != nil {
			return 0, false
		}
		next++
		return next - 1, true
	}
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, ok := take()
				if !ok {
					return
				}
				t0 := time.Now()
				j, err := c.CreateJobOnce(ctx, httpapi.NewIdempotencyKey(), req, httpapi.Retry{Attempts: 5})
				if err != nil {
					mu.Lock()
					fail = firstErr(fail, fmt.Errorf("creating job %d: %w", i+1, err))
					mu.Unlock()
					return
				}
				ids[i], creates[i] = j.ID, time.Since(t0)
			}
		}()
	}
	wg.Wait()
	if fail != nil {
		return loadReport{}, fail
	}
	// Wait for every job to end: poll each unfinished one, oldest first
	// (they end roughly in order), from the same clients.
	done := make([]node3.Job, n)
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		var left []int
		var lmu sync.Mutex
		work := make(chan int)
		var pw sync.WaitGroup
		for range conc {
			pw.Add(1)
			go func() {
				defer pw.Done()
				for i := range work {
					j, err := c.Job(ctx, ids[i])
					lmu.Lock()
					if err == nil && j.Status.Terminal() {
						done[i] = j
					} else {
						left = append(left, i)
					}
					lmu.Unlock()
				}
			}()
		}
		for _, i := range pending {
			work <- i
		}
		close(work)
		pw.Wait()
		if err := ctx.Err(); err != nil {
			return loadReport{}, fmt.Errorf("%d of %d jobs had not ended: %w", len(left), n, err)
		}
		slices.Sort(left)
		pending = left
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	r := loadReport{Jobs: n, Concurrency: conc}
	var last time.Time
	var completed []time.Duration
	for _, j := range done {
		if j.Status != node3.StatusCompleted {
			r.NotCompleted++
			continue
		}
		completed = append(completed, j.FinishedAt.Sub(j.CreatedAt))
		if j.FinishedAt.After(last) {
			last = j.FinishedAt
		}
	}
	// The coordinator's clock marks the last completion; this machine's
	// clock the first submission: the same clock on one machine, close on
	// two.
	r.Seconds = last.Sub(start).Seconds()
	if r.Seconds <= 0 {
		r.Seconds = time.Since(start).Seconds()
	}
	r.JobsPerSec = float64(len(completed)) / r.Seconds
	r.CreateP50ms, r.CreateP99ms = percentileMs(creates, 50), percentileMs(creates, 99)
	r.CompleteP50ms, r.CompleteP99ms = percentileMs(completed, 50), percentileMs(completed, 99)
	return r, nil
}

func firstErr(have, err error) error {
	if have != nil {
		return have
	}
	return err
}

func percentileMs(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[min(len(s)-1, len(s)*p/100)]) / float64(time.Millisecond)
}
