package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/node3/node3/ledger/localchain"
)

func newLocalchainCmd() *cobra.Command {
	var (
		addr, ledgerDir string
		slot            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "localchain",
		Short: "Serve a local Solana JSON-RPC endpoint for offline runs and tests",
		Long: `Serve an in-process Solana-compatible JSON-RPC endpoint: real ed25519
signature checks, System Program transfers, 5,000 lamports per signature, the
rent-exempt minimum, a 150-block blockhash window, a slot clock with
processed/confirmed/finalized, and airdrops. Any Solana client can use it:
point SOLANA_RPC_URL at it.

Without --ledger it keeps its state in memory only. With --ledger DIR it keeps
it in that directory, as solana-test-validator does: every landed transaction
(airdrops included) is written and fsynced before it is answered, and a restart
on the same directory brings back balances, signature statuses, transactions
and the slot, which goes on from where it stopped. Delete the directory to
start a fresh chain.`,
		Example: `  node3 localchain &
  SOLANA_RPC_URL=http://127.0.0.1:8899 node3 run --coordinator
  node3 localchain --ledger ~/.node3/localchain`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if slot <= 0 {
				return fmt.Errorf("--slot-interval must be positive")
			}
			chain, err := localchain.Open(localchain.Config{SlotInterval: slot, Dir: ledgerDir})
			if err != nil {
				return err
			}
			chain.Start(cmd.Context())
			where := "state in memory only"
			if ledgerDir != "" {
				where = fmt.Sprintf("ledger in %s, at slot %d", ledgerDir, chain.Slot())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "local Solana endpoint on http://%s (slot every %s; %s); Ctrl-C to stop\n", addr, slot, where)
			err = chain.ListenAndServe(cmd.Context(), addr)
			return errors.Join(err, chain.Close())
		},
	}
	cmd.Flags().StringVar(&addr, "addr", localchain.DefaultAddr, "address to listen on")
	cmd.Flags().DurationVar(&slot, "slot-interval", 400*time.Millisecond, "slot time")
	cmd.Flags().StringVar(&ledgerDir, "ledger", "", "directory to keep the chain in across restarts (empty: memory only)")
	return cmd
}
