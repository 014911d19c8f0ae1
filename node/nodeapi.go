package node

import (
	"context"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// The node's own API (httpapi.Node).

// Status reports what this node is and does.
func (n *Node) Status(ctx context.Context) (httpapi.NodeStatus, error) {
	now := n.cfg.Now()
	s := httpapi.NodeStatus{
		NodeID:        n.nodeID(),
		Version:       n.cfg.Version,
		Coordinator:   n.coord != nil,
		Provider:      n.prov != nil,
		DemoMode:      n.cfg.Simulate,
		GPUs:          n.gpus,
		ActiveJobs:    []string{},
		StartedAt:     n.started,
		UptimeSeconds: now.Sub(n.started).Seconds(),
		P2P:           n.p2pStatus(),
	}
	if s.GPUs == nil {
		s.GPUs = []node3.GPU{}
	}
	if n.client != nil {
		s.MarketplaceURL = n.client.BaseURL()
	}
	if n.prov != nil {
		s.AgentID = n.prov.AgentID()
		s.Registered = s.AgentID != ""
		s.Connected = n.prov.Connected()
		s.ActiveJobs = n.prov.ActiveJobs()
		s.Slots = n.prov.Slots()
		s.WalletAddress = n.wallet.Address().String()
		s.WalletBalance = n.walletBalance(ctx)
		if m, err := n.det.Metrics(ctx); err == nil {
			s.GPUMetrics = m
		}
		if p, err := n.led.PendingReports(ctx, 0); err == nil {
			s.PendingReports = len(p)
		}
	}
	return s, nil
}

func (n *Node) nodeID() string {
	if id := n.AgentID(); id != "" {
		return id
	}
	return "coordinator"
}

// LocalJobs is this provider's job history, newest first.
func (n *Node) LocalJobs(ctx context.Context, limit int) ([]node3.Job, error) {
	return n.led.LocalJobs(ctx, limit)
}

// Earnings is what this provider earned, what its coordinator has paid
// (finalized on chain) and its wallet's balance.
func (n *Node) Earnings(ctx context.Context) (node3.Earnings, error) {
	e, err := n.led.Earnings(ctx, n.cfg.Now())
	if err != nil || n.prov == nil {
		return e, err
	}
	e.WalletAddress = n.wallet.Address().String()
	e.WalletBalance = n.walletBalance(ctx)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if me, err := n.prov.Me(cctx); err == nil {
		e.Paid = me.Paid
	} else {
		n.log.Debug("asking the coordinator what it paid", "err", err)
	}
	return e, nil
}

// walletBalance is the provider wallet's balance, or nil when there is no
// chain or it does not answer quickly.
func (n *Node) walletBalance(ctx context.Context) *node3.Lamports {
	if n.rpc == nil || n.wallet == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b, err := balance(cctx, n.rpc, n.wallet.Address())
	if err != nil {
		n.log.Debug("reading the wallet balance", "err", err)
		return nil
	}
	return &b
}

// MarketplaceJobs lists the available jobs of this node's marketplace.
func (n *Node) MarketplaceJobs(ctx context.Context) ([]node3.Job, error) {
	if n.coord != nil {
		return n.coord.Jobs(ctx, node3.StatusAvailable, 100)
	}
	if n.p2p != nil && n.p2p.gossip != nil {
		return n.gossipJobs(ctx), nil // the board as gossip and sync told it
	}
	return n.client.MarketplaceJobs(ctx)
}

// MarketplaceAgents lists the agents of this node's marketplace.
func (n *Node) MarketplaceAgents(ctx context.Context) ([]httpapi.AgentView, error) {
	if n.coord != nil {
		agents, err := n.coord.Agents(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]httpapi.AgentView, len(agents))
		for i, a := range agents {
			out[i] = httpapi.ViewAgent(a, n.coord.Online(a))
		}
		return out, nil
	}
	if n.p2p != nil && n.client == nil {
		return n.gossipAgents(), nil // the providers' adverts
	}
	r, err := n.client.Agents(ctx)
	return r.Agents, err
}
