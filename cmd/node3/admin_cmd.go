package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

type adminFlags struct {
	url, key, keyFile string
	asJSON            bool
}

func (a *adminFlags) client() (*httpapi.Client, error) {
	key := a.key
	if key == "" && a.keyFile != "" {
		b, err := os.ReadFile(a.keyFile)
		if err != nil {
			return nil, fmt.Errorf("admin key file: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key == "" {
		return nil, fmt.Errorf("the admin API key is required: set ADMIN_API_KEY or --admin-key-file")
	}
	return httpapi.NewClient(httpapi.ClientConfig{BaseURL: a.url, AdminKey: key})
}

func newAdminCmd() *cobra.Command {
	var a adminFlags
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a marketplace: create jobs, list them, read statistics",
		Long: `Talk to a coordinator's admin REST API. The marketplace is MARKETPLACE_URL
(default http://localhost:8000) and the key ADMIN_API_KEY.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&a.url, "marketplace-url", "http://localhost:8000", "marketplace URL")
	pf.StringVar(&a.key, "admin-key", "", "admin API key (prefer the environment variable)")
	pf.StringVar(&a.keyFile, "admin-key-file", "", "read the admin key from this file (e.g. <data-dir>/admin_api_key)")
	pf.BoolVar(&a.asJSON, "json", false, "print JSON instead of text")
	bindEnv(pf, "marketplace-url", "MARKETPLACE_URL")
	bindEnv(pf, "admin-key", "ADMIN_API_KEY")
	cmd.AddCommand(newCreateJobCmd(&a), newStatsCmd(&a), newJobsCmd(&a), newCancelCmd(&a), newPaymentsCmd(&a),
		newWalletInfoCmd(&a), newFundWalletCmd(&a), newReconcileCmd(&a), newLoadCmd(&a))
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newCreateJobCmd(a *adminFlags) *cobra.Command {
	var (
		req              httpapi.CreateJobRequest
		reward, minMem   string
		env              []string
		timeout, expires time.Duration
		retryFor         time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create-job [-- COMMAND ARGS…]",
		Short: "Create a job",
		Long: `Create a job on the marketplace. Job types: noop, test (GPU query and a small
computation), benchmark (a short compute benchmark), command (an argv run
natively, on providers that allow it; give it after --) and container.`,
		Example: `  node3 admin create-job --job-type test --reward 0.001 --requires-gpu
  node3 admin create-job --job-type benchmark --reward 0.01 --requires-gpu --min-gpu-memory 40GiB --gpu-vendor nvidia
  node3 admin create-job --job-type command --reward 0.002 --timeout 5m -- python3 train.py --epochs 1`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if reward == "" {
				return fmt.Errorf("--reward is required (SOL, e.g. 0.001)")
			}
			if retryFor <= 0 {
				return fmt.Errorf("--retry-for %s: want a positive duration", retryFor)
			}
			lamports, err := node3.ParseSOL(reward)
			if err != nil {
				return fmt.Errorf("--reward: %w", err)
			}
			req.Reward = httpapi.SOL(lamports)
			if minMem != "" {
				b, err := humanize.ParseBytes(minMem)
				if err != nil {
					return fmt.Errorf("--min-gpu-memory %q: %w", minMem, err)
				}
				req.MinGPUMemory = b
			}
			if len(env) > 0 {
				req.Env = map[string]string{}
				for _, kv := range env {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return fmt.Errorf("--env %q: want KEY=VALUE", kv)
					}
					req.Env[k] = v
				}
			}
			req.Command = args
			req.TimeoutSeconds = int(timeout / time.Second)
			req.ExpiresIn = int(expires / time.Second)
			c, err := a.client()
			if err != nil {
				return err
			}
			// One key per invocation: retries after a lost answer (the
			// coordinator restarting, a dropped connection) cannot make a
			// second job.
			ctx, cancel := context.WithTimeout(cmd.Context(), retryFor)
			defer cancel()
			j, err := c.CreateJobOnce(ctx, httpapi.NewIdempotencyKey(), req, httpapi.Retry{
				Attempts: 1000, // --retry-for bounds it
				OnRetry: func(err error, wait time.Duration) {
					fmt.Fprintf(cmd.ErrOrStderr(), "create-job: %v; retrying in %s with the same idempotency key\n", err, wait)
				},
			})
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), j)
			}
			gpu := "no GPU"
			if j.Requirements.GPU {
				gpu = fmt.Sprintf("needs %d GPU", j.Requirements.Count())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Created job %s: %s, reward %s, %s, status %s\n", j.ID, j.Kind, j.Reward, gpu, j.Status)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&req.JobType, "job-type", "test", "noop, test, benchmark, command or container")
	fs.StringVar(&reward, "reward", "", "reward in SOL, e.g. 0.001 (required)")
	fs.BoolVar(&req.RequiresGPU, "requires-gpu", false, "the job needs a GPU")
	fs.StringVar(&minMem, "min-gpu-memory", "", "minimum memory per GPU, e.g. 24GiB")
	fs.StringVar(&req.GPUVendor, "gpu-vendor", "", "GPU vendor, e.g. nvidia")
	fs.StringVar(&req.GPUModel, "gpu-model", "", "GPU model substring, e.g. a100")
	fs.IntVar(&req.GPUCount, "gpu-count", 0, "number of GPUs (default 1 when --requires-gpu)")
	fs.StringVar(&req.Framework, "framework", "", "framework tag: pytorch, tensorflow, jax, …")
	fs.StringVar(&req.Image, "image", "", "container image (container jobs)")
	fs.StringArrayVar(&env, "env", nil, "KEY=VALUE for the job's environment (repeatable)")
	fs.DurationVar(&timeout, "timeout", 0, "run time limit (default 10m)")
	fs.DurationVar(&retryFor, "retry-for", 30*time.Second, "keep retrying a create whose answer was lost for this long (one idempotency key per invocation: never a second job)")
	fs.IntVar(&req.MaxAttempts, "max-attempts", 0, "attempts before the job fails (default 3)")
	fs.DurationVar(&expires, "expires-in", 0, "how long the job may wait to be taken (default 24h)")
	fs.StringVar(&req.InputURL, "input-url", "", "input to download before the run")
	fs.StringVar(&req.InputSHA256, "input-sha256", "", "expected sha256 of the input")
	fs.StringVar(&req.OutputURL, "output-url", "", "where to PUT the output")
	fs.StringVar(&req.Description, "description", "", "free text")
	return cmd
}

func newStatsCmd(a *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show marketplace statistics",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.Stats(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), s)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "Jobs\t%d\n", s.JobsTotal)
			states := make([]string, 0, len(s.Jobs))
			for st := range s.Jobs {
				states = append(states, string(st))
			}
			sort.Strings(states)
			for _, st := range node3.AllStatuses {
				fmt.Fprintf(w, "  %s\t%d\n", st, s.Jobs[st])
			}
			fmt.Fprintf(w, "Agents\t%d (%d online)\n", s.Agents, s.AgentsOnline)
			fmt.Fprintf(w, "Rewards of completed jobs\t%s SOL\n", s.RewardsCompletedSOL)
			fmt.Fprintf(w, "Payouts pending\t%d (%s SOL)\n", s.PayoutsPending, s.PayoutsPendingSOL)
			fmt.Fprintf(w, "Payouts in flight\t%d\n", s.PayoutsInFlight)
			fmt.Fprintf(w, "Payouts failed\t%d\n", s.PayoutsFailed)
			fmt.Fprintf(w, "Payouts finalized\t%d (%s SOL)\n", s.PayoutsPaid, s.PayoutsPaidSOL)
			if wi, err := c.Wallet(cmd.Context()); err == nil && wi.LastError != "" {
				fmt.Fprintf(w, "Payouts waiting because\t%s\n", wi.LastError)
			} else if node3.ErrorCode(err) == node3.CodeUnavailable {
				fmt.Fprintf(w, "Payments\toff on this coordinator (no SOLANA_RPC_URL)\n")
			}
			return w.Flush()
		},
	}
}

func newJobsCmd(a *adminFlags) *cobra.Command {
	var (
		status string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			jobs, err := c.Jobs(cmd.Context(), node3.JobStatus(status), limit)
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), jobs)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tTYPE\tSTATUS\tREWARD\tAGENT\tCREATED")
			for _, j := range jobs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Kind, j.Status, j.Reward, j.AgentID, j.CreatedAt.Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only jobs in this state")
	cmd.Flags().IntVar(&limit, "limit", 50, "how many")
	return cmd
}

func newCancelCmd(a *adminFlags) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel-job JOB_ID",
		Short: "Cancel a job that has not ended",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			j, err := c.Cancel(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Job %s is %s\n", j.ID, j.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	return cmd
}

func newPaymentsCmd(a *adminFlags) *cobra.Command {
	var (
		status string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "payment-history",
		Short: "List payouts: job, provider, amount, signature, status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Payments(cmd.Context(), node3.PayoutStatus(status), limit)
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "JOB\tPROVIDER WALLET\tAMOUNT (SOL)\tSTATUS\tSIGNATURE")
			for _, p := range r.Payments {
				sig := p.Signature
				if sig == "" {
					sig = "-"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", p.JobID, p.Wallet, p.Amount, p.Status, sig)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only payouts in this state (pending, sent, confirmed, finalized, failed)")
	cmd.Flags().IntVar(&limit, "limit", 50, "how many")
	return cmd
}

func newGPUCmd() *cobra.Command {
	var skip bool
	cmd := &cobra.Command{
		Use:   "gpu",
		Short: "Show the GPUs this machine would offer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return showGPUs(cmd, skip)
		},
	}
	cmd.Flags().BoolVar(&skip, "skip-gpu-check", false, "demo mode: show the simulated GPU")
	bindEnv(cmd.Flags(), "skip-gpu-check", "SKIP_GPU_CHECK")
	return cmd
}
