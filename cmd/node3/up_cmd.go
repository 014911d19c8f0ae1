package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/node3/node3/harness"
)

func newUpCmd() *cobra.Command {
	var (
		providers             int
		dataDir, logLevel     string
		adminKey              string
		marketPort, agentPort int
		check, fresh, cmds    bool
		usep2p, push          bool
		lease                 time.Duration
		timeout               time.Duration
		slot                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole network on this machine: a coordinator and N providers",
		Long: `Start a local Solana endpoint, a coordinator (its wallet funded by airdrop) and
N providers in one process, each with its own data directory, ports and a
different simulated GPU, and print their URLs. The nodes form a real libp2p
network over loopback: each provider holds a work stream to the coordinator,
which assigns every job to one provider and pushes it there (--push=false:
providers claim gossiped postings; --p2p=false: they poll the REST API). This is the seed's integrated
startup and the quickest way to try node3, offline: jobs run, and their
rewards are paid in real signed Solana transfers on the local chain.

Everything is kept in --data-dir: the coordinator's ledger and wallet, each
provider's data, and the local chain's ledger (<data-dir>/localchain), so a
second ` + "`node3 up`" + ` on the same directory goes on with the same jobs, payouts and
balances (the wallet is funded by airdrop only while it holds nothing).
--fresh deletes the whole directory first: ledger and chain together.

The admin key is configured as for ` + "`node3 run`" + `: --admin-key, $ADMIN_API_KEY or a
.env file; without one the coordinator generates a key once and keeps it in
<data-dir>/coordinator/admin_api_key.

With --check, run the end-to-end test against it and exit: 0 when it passes.`,
		Example: `  node3 up
  node3 up --providers 4 --marketplace-port 9000 --agent-port 9080
  node3 up --check --marketplace-port 0 --agent-port 0
  ADMIN_API_KEY=… node3 up --fresh`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if providers < 0 || providers > 64 {
				return fmt.Errorf("--providers %d: want 0–64", providers)
			}
			for name, p := range map[string]int{"marketplace-port": marketPort, "agent-port": agentPort} {
				if err := checkPort(name, p); err != nil {
					return err
				}
			}
			if fresh {
				if err := os.RemoveAll(dataDir); err != nil {
					return err
				}
			}
			log, closeLog, err := newLogger(cmd.ErrOrStderr(), logLevel, dataDir, "up")
			if err != nil {
				return err
			}
			defer closeLog()
			ctx := cmd.Context()
			nodePort := func(i int) string {
				if agentPort == 0 {
					return "127.0.0.1:0"
				}
				return net.JoinHostPort("127.0.0.1", strconv.Itoa(agentPort+i))
			}
			nw, err := harness.Start(ctx, harness.Config{
				Dir:               dataDir,
				Providers:         providers,
				NoProviders:       providers == 0,
				MarketplaceListen: net.JoinHostPort("127.0.0.1", strconv.Itoa(marketPort)),
				NodeListen:        nodePort,
				AllowCommands:     cmds,
				AdminKey:          adminKey,
				Lease:             lease,
				LocalChain:        true,
				SlotInterval:      slot,
				P2P:               usep2p,
				Push:              push,
				Version:           buildVersion(),
				Logger:            log,
			})
			if err != nil {
				return err
			}
			defer nw.Close()
			out := cmd.OutOrStdout()
			key, _ := nw.Coordinator().AdminKey()
			fmt.Fprintf(out, "node3 %s: local network up (data in %s)\n", buildVersion(), dataDir)
			fmt.Fprintf(out, "  marketplace API:  %s\n", nw.MarketplaceURL())
			fmt.Fprintf(out, "  coordinator node: %s\n", nw.Coordinator().NodeURL())
			fmt.Fprintf(out, "  local Solana:     %s (payouts from %s; chain kept in %s, at slot %d)\n",
				nw.ChainURL(), nw.Coordinator().PayerAddress(), filepath.Join(dataDir, harness.ChainDirName), nw.Chain().Slot())
			if usep2p {
				how := "pushed over work streams"
				if !push {
					how = "by claiming gossiped postings"
				}
				fmt.Fprintf(out, "  libp2p network:   %q, coordinator %s (providers get jobs %s)\n", nw.P2PNetwork(), nw.CoordinatorPeer(), how)
				for _, a := range nw.CoordinatorAddrs() {
					fmt.Fprintf(out, "                    %s\n", a)
				}
			}
			for i := 0; i < providers; i++ {
				p := nw.Provider(i)
				g := p.GPUs()
				desc := "no GPU"
				if len(g) > 0 {
					desc = fmt.Sprintf("%d× %s (simulated)", len(g), g[0].Model)
				}
				fmt.Fprintf(out, "  %s:       %s  %s\n", harness.ProviderName(i), p.NodeURL(), desc)
			}
			fmt.Fprintf(out, "\nTry it:\n  export MARKETPLACE_URL=%s ADMIN_API_KEY=%s\n", nw.MarketplaceURL(), key)
			fmt.Fprintf(out, "  node3 admin create-job --job-type test --reward 0.001 --requires-gpu\n  node3 admin stats\n")
			if check {
				fmt.Fprintln(out, "\nRunning the end-to-end test:")
				err := harness.E2E(ctx, harness.E2EConfig{MarketplaceURL: nw.MarketplaceURL(), AdminKey: key, Timeout: timeout, RequiresGPU: providers > 0}, out)
				if err != nil {
					return err
				}
				return nil
			}
			fmt.Fprintln(out, "\nPress Ctrl-C to stop.")
			<-ctx.Done()
			fmt.Fprintln(out, "stopping…")
			stopCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- nw.Close() }()
			select {
			case err := <-done:
				return err
			case <-stopCtx.Done():
				return fmt.Errorf("nodes did not stop within 15 s")
			}
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&providers, "providers", 2, "number of provider nodes")
	fs.StringVar(&dataDir, "data-dir", filepath.Join(defaultDataDir(), "up"), "parent directory of every node's data")
	fs.IntVar(&marketPort, "marketplace-port", 8000, "marketplace API port (0: any free port)")
	fs.IntVar(&agentPort, "agent-port", 8080, "coordinator node API port; provider i gets this + i (0: any free ports)")
	fs.BoolVar(&check, "check", false, "run the end-to-end test against the network, then stop")
	fs.BoolVar(&fresh, "fresh", false, "delete the data directory first: the ledgers, wallets and the local chain (<data-dir>/localchain)")
	fs.StringVar(&adminKey, "admin-key", "", "coordinator admin key (prefer the environment variable; default: generated once and stored in <data-dir>/coordinator/admin_api_key)")
	fs.BoolVar(&cmds, "allow-commands", false, "let providers run `command` jobs natively")
	fs.BoolVar(&push, "push", true, "with --p2p: the coordinator assigns each job and pushes it over the provider's work stream (false: providers claim gossiped postings)")
	fs.BoolVar(&usep2p, "p2p", true, "run the nodes as a libp2p network over loopback (false: providers poll the REST API)")
	fs.DurationVar(&lease, "lease", 30*time.Second, "job lease")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "--check: time allowed for each step")
	fs.DurationVar(&slot, "slot-interval", 100*time.Millisecond, "the local chain's slot time (payouts finalize after 32 slots)")
	fs.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	bindEnv(fs, "marketplace-port", "MARKETPLACE_PORT")
	bindEnv(fs, "agent-port", "AGENT_PORT")
	bindEnv(fs, "log-level", "LOG_LEVEL")
	bindEnv(fs, "admin-key", "ADMIN_API_KEY")
	return cmd
}

func newE2ECmd() *cobra.Command {
	var (
		url, adminKey string
		timeout       time.Duration
		requiresGPU   bool
	)
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "Run the end-to-end test against a running marketplace",
		Long: `Check a running system end to end, as the seed's test_end_to_end.py did:
marketplace health, an agent online and registered, a job created, accepted,
executed, its payment recorded and the stats updated. Each step is printed;
the exit status is non-zero on the first failure. Needs the admin key.`,
		Example: `  ADMIN_API_KEY=… node3 e2e --marketplace http://localhost:8000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if adminKey == "" {
				return fmt.Errorf("the admin API key is required: set ADMIN_API_KEY")
			}
			err := harness.E2E(cmd.Context(), harness.E2EConfig{MarketplaceURL: url, AdminKey: adminKey, Timeout: timeout, RequiresGPU: requiresGPU}, cmd.OutOrStdout())
			if err != nil {
				return exitError{code: 1}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&url, "marketplace", "http://localhost:8000", "marketplace URL")
	fs.StringVar(&adminKey, "admin-key", "", "admin API key (prefer the environment variable)")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "time allowed for each step")
	fs.BoolVar(&requiresGPU, "requires-gpu", true, "the test job asks for a GPU, as in the seed")
	bindEnv(fs, "marketplace", "MARKETPLACE_URL")
	bindEnv(fs, "admin-key", "ADMIN_API_KEY")
	return cmd
}
