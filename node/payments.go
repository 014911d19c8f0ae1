package node

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/ledger/payout"
	"github.com/node3/node3/ledger/wallet"
)

// payments is the coordinator's side of Solana: its wallet, the chain and
// the payout engine. It implements httpapi.Payments.
type payments struct {
	n      *Node
	url    string // redacted: it goes into answers and errors
	client *rpc.Client
	payer  *wallet.Wallet
	engine *payout.Engine
}

// setupPayments loads (or creates) the marketplace wallet and builds the
// payout engine on the chain at cfg.SolanaRPCURL.
func (n *Node) setupPayments() error {
	path := n.cfg.MarketplaceWalletPath
	if path == "" {
		path = filepath.Join(n.cfg.DataDir, "marketplace_wallet.json")
	}
	w, created, err := wallet.LoadOrCreate(path, n.log)
	if err != nil {
		return err
	}
	if created {
		n.log.Info("created the marketplace wallet; fund it before payouts can go out", "path", w.Path(), "address", w)
	}
	p := &payments{n: n, url: node3.RedactURL(n.cfg.SolanaRPCURL), client: n.rpc, payer: w}
	p.engine, err = payout.New(payout.Config{
		Ledger:     n.led,
		RPC:        p.client,
		Payer:      w,
		BatchSize:  n.cfg.PayoutBatchSize,
		BatchDelay: n.cfg.PayoutBatchDelay,
		Logger:     n.log.With("role", "payouts"),
		Now:        n.cfg.Now,
		Registerer: n.reg,
	})
	if err != nil {
		return fmt.Errorf("node: payout engine: %w", err)
	}
	// A completed job has a pending payout from the same write: wake the
	// engine rather than wait for its next poll.
	n.led.Watch(func(j node3.Job) {
		if j.Status == node3.StatusCompleted {
			p.engine.Notify()
		}
	})
	n.pay = p
	return nil
}

// Wallet reports the marketplace wallet and how payouts stand.
func (p *payments) Wallet(ctx context.Context) (httpapi.WalletInfo, error) {
	st := p.engine.Status()
	info := httpapi.WalletInfo{
		Address:         p.payer.Address().String(),
		RPCURL:          p.url,
		Pending:         st.Pending,
		PendingLamports: st.PendingLamports,
		InFlight:        st.InFlight,
		Failed:          st.Failed,
		Finalized:       st.Finalized,
		Held:            st.Held,
		HeldReason:      st.HeldReason,
		LastError:       st.LastError,
		TxsSent:         st.TxsSent,
		TxsFinalized:    st.TxsFinalized,
		Fees:            st.Fees,
	}
	bal, err := balance(ctx, p.client, p.payer.Address())
	if err != nil {
		return info, err
	}
	info.Balance = bal
	return info, nil
}

// Fund asks the chain for an airdrop to the marketplace wallet.
func (p *payments) Fund(ctx context.Context, amount node3.Lamports) (httpapi.FundResponse, error) {
	sig, err := p.client.RequestAirdrop(ctx, p.payer.Address(), uint64(amount), rpc.CommitmentConfirmed)
	if err != nil {
		return httpapi.FundResponse{}, node3.Errorf(node3.CodeUnavailable, "airdrop of %s to %s refused by %s: %v", amount, p.payer.Address(), p.url, err)
	}
	p.engine.Notify()
	return httpapi.FundResponse{Signature: sig.String(), Amount: amount, Address: p.payer.Address().String()}, nil
}

// Reconcile checks the ledger's payouts against the chain.
func (p *payments) Reconcile(ctx context.Context) (httpapi.ReconcileResponse, error) {
	rep, err := payout.Reconcile(ctx, p.n.led, p.client, p.payer.Address())
	if err != nil {
		return httpapi.ReconcileResponse{}, node3.Errorf(node3.CodeUnavailable, "reconciling against %s: %v", p.url, err)
	}
	return httpapi.ReconcileResponse{OK: rep.OK(), Summary: rep.String(), Differences: rep.Differences}, nil
}

// balance reads an account's balance at confirmed commitment.
func balance(ctx context.Context, c *rpc.Client, addr solana.PublicKey) (node3.Lamports, error) {
	r, err := c.GetBalance(ctx, addr, rpc.CommitmentConfirmed)
	if err != nil {
		return 0, node3.Errorf(node3.CodeUnavailable, "balance of %s: %v", addr, err)
	}
	return node3.Lamports(r.Value), nil
}
