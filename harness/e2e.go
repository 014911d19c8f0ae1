package harness

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// E2EConfig configures the end-to-end check.
type E2EConfig struct {
	MarketplaceURL string
	AdminKey       string
	Timeout        time.Duration // per step (default 60 s)
	RequiresGPU    bool          // the test job asks for a GPU (the seed's flow)
	Reward         node3.Lamports
}

// E2E runs the seed's end-to-end test against a running system: health,
// an agent online and registered, a job created, accepted, executed, its
// payment recorded and the stats updated. It prints each step to out and
// returns the first failure.
func E2E(ctx context.Context, cfg E2EConfig, out io.Writer) error {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.Reward == 0 {
		cfg.Reward = node3.LamportsPerSOL / 1000
	}
	c, err := httpapi.NewClient(httpapi.ClientConfig{BaseURL: cfg.MarketplaceURL, AdminKey: cfg.AdminKey})
	if err != nil {
		return err
	}
	step := 0
	run := func(name string, f func(ctx context.Context) (string, error)) error {
		step++
		ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		start := time.Now()
		detail, err := f(ctx)
		if err != nil {
			fmt.Fprintf(out, "❌ %d. %s: %v\n", step, name, err)
			return fmt.Errorf("step %d (%s): %w", step, name, err)
		}
		fmt.Fprintf(out, "✅ %d. %s (%s) %s\n", step, name, time.Since(start).Round(time.Millisecond), detail)
		return nil
	}
	var before httpapi.StatsResponse
	var job node3.Job
	steps := []struct {
		name string
		f    func(ctx context.Context) (string, error)
	}{
		{"Marketplace health check", func(ctx context.Context) (string, error) {
			h, err := c.Health(ctx)
			if err != nil {
				return "", err
			}
			if h.Status != "healthy" {
				return "", fmt.Errorf("status %q", h.Status)
			}
			before, err = c.Stats(ctx)
			return fmt.Sprintf("%s %s", h.Service, h.Version), err
		}},
		{"Agent online and registered", func(ctx context.Context) (string, error) {
			var found string
			err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
				r, err := c.Agents(ctx)
				if err != nil {
					return false, err
				}
				for _, a := range r.Agents {
					if a.Status == "online" && (!cfg.RequiresGPU || len(a.GPUs) > 0) {
						found = fmt.Sprintf("%d online; e.g. %s with %s", r.Online, a.ID, a.GPUModel)
						return true, nil
					}
				}
				return false, nil
			})
			return found, err
		}},
		{"Job creation", func(ctx context.Context) (string, error) {
			var err error
			job, err = c.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "test", Reward: httpapi.SOL(cfg.Reward), RequiresGPU: cfg.RequiresGPU, Description: "node3 e2e"})
			return fmt.Sprintf("job %s, reward %s", job.ID, job.Reward), err
		}},
		{"Job acceptance by agent", func(ctx context.Context) (string, error) {
			j, err := waitJob(ctx, c, job.ID, func(j node3.Job) bool { return j.AgentID != "" })
			return fmt.Sprintf("by agent %s", j.AgentID), err
		}},
		{"Job execution on GPU", func(ctx context.Context) (string, error) {
			j, err := waitJob(ctx, c, job.ID, func(j node3.Job) bool { return j.Status.Terminal() })
			if err != nil {
				return "", err
			}
			if j.Status != node3.StatusCompleted {
				return "", fmt.Errorf("job ended %s: %s", j.Status, j.Error)
			}
			job = j
			var secs float64
			if j.Result != nil {
				secs = j.Result.ExecutionTime
			}
			return fmt.Sprintf("completed in %.3fs", secs), nil
		}},
		{"Payment processing", func(ctx context.Context) (string, error) {
			if _, err := c.Wallet(ctx); node3.ErrorCode(err) == node3.CodeUnavailable {
				return "", fmt.Errorf("payments are off on this coordinator (start it with SOLANA_RPC_URL): %w", err)
			}
			var found string
			err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
				r, err := c.Payments(ctx, "", 100)
				if err != nil {
					return false, err
				}
				for _, p := range r.Payments {
					if p.JobID != job.ID {
						continue
					}
					if p.Payout.Amount != job.Reward {
						return false, fmt.Errorf("payment of %s for a reward of %s", p.Payout.Amount, job.Reward)
					}
					found = fmt.Sprintf("%s to %s, %s", p.Payout.Amount, p.Wallet, p.Status)
					if p.Status == node3.PayoutFinalized {
						found += " in " + p.Signature
						return true, nil
					}
				}
				return false, nil
			})
			if err != nil && found != "" {
				err = fmt.Errorf("%w (last seen: %s)", err, found)
			}
			return found, err
		}},
		{"Stats updated", func(ctx context.Context) (string, error) {
			after, err := c.Stats(ctx)
			if err != nil {
				return "", err
			}
			if after.Jobs[node3.StatusCompleted] <= before.Jobs[node3.StatusCompleted] || after.JobsTotal <= before.JobsTotal {
				return "", fmt.Errorf("completed jobs %d → %d, total %d → %d", before.Jobs[node3.StatusCompleted], after.Jobs[node3.StatusCompleted], before.JobsTotal, after.JobsTotal)
			}
			return fmt.Sprintf("completed %d → %d, rewards %s SOL", before.Jobs[node3.StatusCompleted], after.Jobs[node3.StatusCompleted], after.RewardsCompletedSOL), nil
		}},
	}
	for _, s := range steps {
		if err := run(s.name, s.f); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "🎉 end-to-end test passed: %d steps\n", step)
	return nil
}

func waitJob(ctx context.Context, c *httpapi.Client, id string, done func(node3.Job) bool) (node3.Job, error) {
	var j node3.Job
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		var err error
		j, err = c.Job(ctx, id)
		return err == nil && done(j), err
	})
	return j, err
}
