package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/node3/node3"
	"github.com/node3/node3/node"
)

type runFlags struct {
	coordinator, provider  bool
	dataDir, marketURL     string
	marketHost, agentHost  string
	marketPort, agentPort  int
	skipGPU, allowCommands bool
	slots                  int
	walletPath, logLevel   string
	lease, sweep, pollWait time.Duration
	adminKey               string
	rpcURL, marketWallet   string
	batchSize              int
	batchDelay             time.Duration
	p2p                    p2pFlags
	limits                 limitFlags
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a node: a provider, and with --coordinator also a marketplace",
		Long: `Run a node until interrupted.

The node joins the libp2p network (port 4001, TCP and QUIC; --p2p=false for
HTTP only): it finds peers through the bootstrap peers (--bootstrap,
bootstrap.txt) and the DHT, and relays job postings and provider adverts.
A provider that trusts a coordinator (--trust-coordinator PEERID) keeps a work
stream open to it; the coordinator assigns each job to one provider and pushes
it over that stream (--push=false: providers claim gossiped postings instead);
the provider runs it and reports the result through a durable outbox. Without one it
registers with its marketplace (MARKETPLACE_URL) and long-polls the REST API.
With --coordinator the node also serves the marketplace REST API (port 8000),
publishes its jobs to the network and, unless --provider=false, works for
itself.

The node's own API (status, job history, earnings) listens on 127.0.0.1:8080.`,
		Example: `  # a marketplace that also runs jobs, in demo mode (simulated GPU)
  SKIP_GPU_CHECK=true node3 run --coordinator

  # a provider joining it over libp2p (peer ID and address from the
  # coordinator's startup output or its "node3 id")
  node3 run --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW… --trust-coordinator 12D3KooW…

  # a provider polling its REST API instead
  node3 run --p2p=false --marketplace-url http://coordinator.example:8000 --data-dir ~/.node3-provider`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runNode(cmd, f)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&f.coordinator, "coordinator", false, "also run the marketplace (REST API, job board, leases, payouts)")
	fs.BoolVar(&f.provider, "provider", true, "run jobs on this machine")
	fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "directory for the ledger, wallet, keys and logs")
	fs.StringVar(&f.marketURL, "marketplace-url", "", "marketplace a provider works for (default: this node's own with --coordinator)")
	fs.StringVar(&f.marketHost, "marketplace-host", "", "address the marketplace API binds to (default all interfaces)")
	fs.IntVar(&f.marketPort, "marketplace-port", 8000, "marketplace API port")
	fs.StringVar(&f.agentHost, "agent-host", "127.0.0.1", "address the node API binds to")
	fs.IntVar(&f.agentPort, "agent-port", 8080, "node API port")
	fs.BoolVar(&f.skipGPU, "skip-gpu-check", false, "demo mode: offer a simulated GPU instead of detecting real ones")
	fs.BoolVar(&f.allowCommands, "allow-commands", false, "run `command` jobs (arbitrary programs) natively on this machine")
	fs.IntVar(&f.slots, "slots", 8, "jobs needing no GPU that may run at once")
	fs.StringVar(&f.walletPath, "wallet", "", "provider wallet key file, Solana CLI format (default <data-dir>/wallet.json)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&f.lease, "lease", 30*time.Second, "coordinator: how long an accept or heartbeat holds a job")
	fs.DurationVar(&f.sweep, "sweep-interval", time.Second, "coordinator: how often lapsed leases and expired jobs are swept")
	fs.DurationVar(&f.pollWait, "poll-wait", 25*time.Second, "provider: how long one long-poll for jobs waits")
	fs.StringVar(&f.rpcURL, "solana-rpc-url", "https://api.devnet.solana.com", "Solana JSON-RPC endpoint for payouts and balances (\"\" turns payments off; `node3 localchain` serves one offline)")
	fs.StringVar(&f.marketWallet, "marketplace-wallet", "", "coordinator: wallet rewards are paid from, Solana CLI format (default <data-dir>/marketplace_wallet.json)")
	fs.IntVar(&f.batchSize, "payout-batch-size", 16, "coordinator: payouts per Solana transaction")
	fs.DurationVar(&f.batchDelay, "payout-batch-delay", 500*time.Millisecond, "coordinator: how long a partial batch of payouts waits for more")
	fs.StringVar(&f.adminKey, "admin-key", "", "coordinator admin key, at least 32 characters, e.g. from \"openssl rand -base64 32\" (prefer the environment variable; default: generated once and stored in <data-dir>/admin_api_key)")
	addP2PFlags(fs, &f.p2p)
	addLimitFlags(fs, &f.limits)
	bindEnv(fs, "data-dir", "NODE3_DATA_DIR")
	bindEnv(fs, "marketplace-url", "MARKETPLACE_URL")
	bindEnv(fs, "marketplace-port", "MARKETPLACE_PORT")
	bindEnv(fs, "agent-port", "AGENT_PORT")
	bindEnv(fs, "skip-gpu-check", "SKIP_GPU_CHECK")
	bindEnv(fs, "wallet", "WALLET_PATH")
	bindEnv(fs, "log-level", "LOG_LEVEL")
	bindEnv(fs, "admin-key", "ADMIN_API_KEY")
	bindEnv(fs, "allow-commands", "NODE3_ALLOW_COMMANDS")
	bindEnv(fs, "solana-rpc-url", "SOLANA_RPC_URL")
	bindEnv(fs, "marketplace-wallet", "MARKETPLACE_WALLET_PATH")
	return cmd
}

func checkPort(name string, p int) error {
	if p < 0 || p > 65535 {
		return fmt.Errorf("--%s %d is not a port (0–65535)", name, p)
	}
	return nil
}

func runNode(cmd *cobra.Command, f runFlags) error {
	for name, p := range map[string]int{"marketplace-port": f.marketPort, "agent-port": f.agentPort} {
		if err := checkPort(name, p); err != nil {
			return err
		}
	}
	if f.batchSize < 1 || f.batchSize > 256 {
		return fmt.Errorf("--payout-batch-size %d: want 1–256", f.batchSize)
	}
	if f.slots < 1 || f.slots > 1024 {
		return fmt.Errorf("--slots %d: want 1–1024", f.slots)
	}
	limits, err := f.limits.config()
	if err != nil {
		return err
	}
	nodeAPIHosts, err := f.limits.hosts()
	if err != nil {
		return err
	}
	role := "agent"
	if f.coordinator {
		role = "coordinator"
	}
	log, closeLog, err := newLogger(cmd.ErrOrStderr(), f.logLevel, f.dataDir, role)
	if err != nil {
		return err
	}
	defer closeLog()
	p2pCfg, err := f.p2p.config(f.dataDir)
	if err != nil {
		return err
	}

	ctx := cmd.Context()
	n, err := node.New(ctx, node.Config{
		DataDir:               f.dataDir,
		Coordinator:           f.coordinator,
		Provider:              f.provider,
		MarketplaceListen:     net.JoinHostPort(f.marketHost, strconv.Itoa(f.marketPort)),
		NodeListen:            net.JoinHostPort(f.agentHost, strconv.Itoa(f.agentPort)),
		MarketplaceURL:        f.marketURL,
		AdminKey:              f.adminKey,
		Limits:                limits,
		NodeAPIHosts:          nodeAPIHosts,
		Simulate:              f.skipGPU,
		AllowCommands:         f.allowCommands,
		Slots:                 f.slots,
		WalletPath:            f.walletPath,
		SolanaRPCURL:          f.rpcURL,
		MarketplaceWalletPath: f.marketWallet,
		PayoutBatchSize:       f.batchSize,
		PayoutBatchDelay:      f.batchDelay,
		Lease:                 f.lease,
		SweepInterval:         f.sweep,
		PollWait:              f.pollWait,
		P2P:                   p2pCfg,
		Version:               buildVersion(),
		Logger:                log,
	})
	if err != nil {
		return err
	}
	if err := n.Start(ctx); err != nil {
		n.Close()
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "node3 %s running (data in %s)\n", buildVersion(), f.dataDir)
	if f.coordinator {
		fmt.Fprintf(out, "  marketplace API: %s\n", n.MarketplaceURL())
		if addr := n.PayerAddress(); addr != "" {
			fmt.Fprintf(out, "  payouts from:    %s on %s\n", addr, node3.RedactURL(f.rpcURL))
		} else {
			fmt.Fprintln(out, "  payments are off (no --solana-rpc-url): payouts stay pending")
		}
		if key, created := n.AdminKey(); created {
			fmt.Fprintf(out, "  admin API key (shown once; stored in %s):\n    ADMIN_API_KEY=%s\n", filepath.Join(f.dataDir, "admin_api_key"), key)
		}
	}
	fmt.Fprintf(out, "  node API:        %s\n", n.NodeURL())
	printP2P(out, n, f.provider, f.coordinator, f.marketURL != "", len(f.p2p.trust))
	if f.provider && len(n.GPUs()) == 0 {
		fmt.Fprintln(out, "  no GPU found and demo mode is off (SKIP_GPU_CHECK=true): taking only jobs that need no GPU")
	}
	fmt.Fprintln(out, "Press Ctrl-C to stop.")
	<-ctx.Done()
	fmt.Fprintln(out, "stopping…")
	return n.Close()
}
