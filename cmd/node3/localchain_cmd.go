package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/node3/node3/ledger/localchain"
)

func newLocalchainCmd() *cobra.Command {
	var (
		addr string
		slot time.Duration
	)
	cmd := &cobra.Command{
		Use:   "localchain",
		Short: "Serve a local Solana JSON-RPC endpoint for offline runs and tests",
		Long: `Serve an in-process Solana-compatible JSON-RPC endpoint: real ed25519
signature checks, System Program transfers, 5,000 lamports per signature, the
rent-exempt minimum, a 150-block blockhash window, a slot clock with
processed/confirmed/finalized, and airdrops. Any Solana client can use it:
point SOLANA_RPC_URL at it. It keeps its state in memory only.`,
		Example: `  node3 localchain &
  SOLANA_RPC_URL=http://127.0.0.1:8899 node3 run --coordinator`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if slot <= 0 {
				return fmt.Errorf("--slot-interval must be positive")
			}
			chain := localchain.New(localchain.Config{SlotInterval: slot})
			defer chain.Close()
			chain.Start(cmd.Context())
			fmt.Fprintf(cmd.OutOrStdout(), "local Solana endpoint on http://%s (slot every %s); Ctrl-C to stop\n", addr, slot)
			return chain.ListenAndServe(cmd.Context(), addr)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", localchain.DefaultAddr, "address to listen on")
	cmd.Flags().DurationVar(&slot, "slot-interval", 400*time.Millisecond, "slot time")
	return cmd
}
