package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/node3/node3"
)

func newWalletInfoCmd(a *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "wallet-info",
		Short: "Show the marketplace wallet, its balance and how payouts stand",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			w, err := c.Wallet(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), w)
			}
			t := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(t, "Address\t%s\n", w.Address)
			fmt.Fprintf(t, "Chain\t%s\n", node3.RedactURL(w.RPCURL)) // an older coordinator may send it whole
			fmt.Fprintf(t, "Balance\t%s\n", w.Balance)
			fmt.Fprintf(t, "Payouts pending\t%d (%s)\n", w.Pending, w.PendingLamports)
			fmt.Fprintf(t, "Payouts in flight\t%d\n", w.InFlight)
			fmt.Fprintf(t, "Payouts failed\t%d\n", w.Failed)
			fmt.Fprintf(t, "Payouts finalized\t%d\n", w.Finalized)
			fmt.Fprintf(t, "Transactions\t%d sent, %d finalized, fees %s\n", w.TxsSent, w.TxsFinalized, w.Fees)
			if w.Held > 0 {
				fmt.Fprintf(t, "Held\t%d: %s\n", w.Held, w.HeldReason)
			}
			if w.LastError != "" {
				fmt.Fprintf(t, "Waiting because\t%s\n", w.LastError)
			}
			return t.Flush()
		},
	}
}

func newFundWalletCmd(a *adminFlags) *cobra.Command {
	var amount string
	cmd := &cobra.Command{
		Use:   "fund-wallet",
		Short: "Airdrop SOL to the marketplace wallet (local chain or devnet)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lamports, err := node3.ParseSOL(amount)
			if err != nil {
				return fmt.Errorf("--amount: %w", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Fund(cmd.Context(), lamports)
			if err != nil {
				return err
			}
			if a.asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Requested an airdrop of %s to %s: %s\n", r.Amount, r.Address, r.Signature)
			return nil
		},
	}
	cmd.Flags().StringVar(&amount, "amount", "1", "SOL to request")
	return cmd
}

func newReconcileCmd(a *adminFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "reconcile",
		Short: "Check the ledger's payouts against the chain; non-zero exit on any difference",
		Long: `Check that every finalized payout is on chain with the right amount and
recipient, that nothing was paid twice and that the totals match. Prints
each difference and exits 1 if there is any.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			r, err := c.Reconcile(cmd.Context())
			if err != nil {
				return err
			}
			if a.asJSON {
				if err := printJSON(cmd.OutOrStdout(), r); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), r.Summary)
				for _, d := range r.Differences {
					fmt.Fprintln(cmd.OutOrStdout(), "  ✗", d)
				}
			}
			if !r.OK {
				return exitError{code: 1}
			}
			return nil
		},
	}
}
