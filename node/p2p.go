package node

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/node/coordinator"
	"github.com/node3/node3/node/provider"
	"github.com/node3/node3/p2p"
)

// P2PConfig puts a node on the libp2p network: it gossips job postings and
// provider adverts, finds peers through the DHT, and — as a provider that
// trusts a coordinator — gets jobs pushed to it instead of polling. A nil
// P2PConfig in Config keeps the node on HTTP alone.
type P2PConfig struct {
	// Network names the network ("mainnet"); nodes of different networks
	// never talk to each other.
	Network string
	// ListenAddrs are multiaddrs (default TCP and QUIC on port 4001, all
	// interfaces).
	ListenAddrs []string
	// Bootstrap are multiaddrs with /p2p/ parts (--bootstrap);
	// BootstrapPeers already parsed ones (bootstrap.txt).
	Bootstrap      []string
	BootstrapPeers []peer.AddrInfo
	// TrustedCoordinators are the coordinators whose postings a provider
	// acts on and whom it claims jobs from. A provider that trusts none
	// (and is not a coordinator itself) takes no jobs over libp2p.
	TrustedCoordinators []peer.ID
	// AdvertInterval is how often a provider re-sends its advert (default
	// 5 s, and with gossip claims it is also sent when its free capacity
	// changes; under push dispatch, where an advert is for discovery only,
	// 30 s). AdvertTTL is how long an advert stays valid (default 3
	// intervals, at least 15 s).
	AdvertInterval time.Duration
	AdvertTTL      time.Duration
	// SyncInterval is how often a provider re-fetches the open board from
	// its coordinators, in case gossip lost a posting (default 30 s; under
	// push dispatch, where the board is for show, 5 min; it also syncs
	// whenever it (re)connects to one).
	SyncInterval time.Duration
	// PriceFloor is the least reward this provider advertises it takes.
	PriceFloor node3.Lamports
	// Push switches job dispatch to the coordinator: providers hold a
	// work stream to each trusted coordinator and run what it grants
	// them, instead of claiming gossiped postings. Coordinator and
	// providers must agree.
	Push bool
	// Board makes a push-dispatch provider follow the public board over
	// gossip (receive, check and relay every posting), so its node API's
	// marketplace view is live. Without it, such a provider stays off the
	// jobs topic — its work comes over its work streams — and fetches the
	// open board from its coordinators when that view is asked for. Other
	// nodes (coordinators, gossip-claim providers, observers) always
	// follow the board.
	Board bool
	// PublishQueue bounds the coordinator's queue of job changes waiting
	// to be published (default 4096); past it the oldest are dropped.
	PublishQueue int
	// Tune, if set, adjusts the libp2p configuration before the host
	// starts (tests and the harness: timers, connection gater).
	Tune func(*p2p.Config)
}

func (c P2PConfig) withDefaults() P2PConfig {
	if c.Network == "" {
		c.Network = p2p.DefaultNetwork
	}
	if c.AdvertInterval <= 0 {
		c.AdvertInterval = 5 * time.Second
		if c.Push {
			c.AdvertInterval = 30 * time.Second
		}
	}
	if c.AdvertTTL <= 0 {
		c.AdvertTTL = max(3*c.AdvertInterval, 15*time.Second)
	}
	c.AdvertTTL = min(c.AdvertTTL, p2p.MaxAdvertTTL)
	if c.SyncInterval <= 0 {
		c.SyncInterval = 30 * time.Second
		if c.Push {
			c.SyncInterval = 5 * time.Minute
		}
	}
	if c.PublishQueue <= 0 {
		c.PublishQueue = 4096
	}
	return c
}

// p2pNode is a node's part of the libp2p network: the host and, by role,
// the coordinator's publisher and stream handlers or the provider's
// gossip transport and advertiser.
type p2pNode struct {
	cfg   P2PConfig
	pn    *p2p.Node
	log   *slog.Logger
	table *p2p.AdvertTable
	coord *coordinator.Gossip   // nil unless the node is a coordinator
	push  *coordinator.Dispatch // the coordinator's push dispatch (Push)
	// boardOnly: gossip keeps the public board; the provider's work
	// comes by push, so the node runs the board's sync itself.
	boardOnly bool
	// noBoard: off the jobs topic; the board is synced when asked for.
	noBoard bool
	gossip  *provider.Gossip // nil unless the provider takes jobs over libp2p
}

// setupP2P starts the libp2p host (it binds its ports and reaches its
// bootstrap peers) and wires the coordinator's side. It runs after the
// coordinator is set up and before the provider.
func (n *Node) setupP2P(ctx context.Context) error {
	c := n.cfg.P2P.withDefaults()
	pc := p2p.Config{
		DataDir:             n.cfg.DataDir,
		ListenAddrs:         c.ListenAddrs,
		Network:             c.Network,
		Bootstrap:           c.Bootstrap,
		BootstrapPeers:      c.BootstrapPeers,
		TrustedCoordinators: c.TrustedCoordinators,
		Logger:              n.log.With("component", "p2p"),
		Registerer:          n.reg,
		Clock:               n.cfg.Now,
		UserAgent:           "node3/" + n.cfg.Version,
		NoBoard:             n.boardOnDemand(c),
	}
	if c.Tune != nil {
		c.Tune(&pc)
	}
	pn, err := p2p.New(ctx, pc)
	if err != nil {
		return fmt.Errorf("node: p2p: %w", err)
	}
	n.p2p = &p2pNode{cfg: c, pn: pn, log: n.log.With("component", "p2p"), table: p2p.NewAdvertTable(), noBoard: pc.NoBoard}
	if n.coord != nil {
		n.p2p.coord = coordinator.NewGossip(coordinator.GossipConfig{
			Coordinator:  n.coord,
			Ledger:       n.led,
			Node:         pn,
			Advert:       n.p2p.table.Get,
			PublishQueue: c.PublishQueue,
			Logger:       n.log.With("role", "coordinator"),
			Now:          n.cfg.Now,
			Registerer:   n.reg,
		})
	}
	if n.p2p.coord != nil && c.Push {
		n.p2p.push = coordinator.NewDispatch(coordinator.DispatchConfig{
			Coordinator: n.coord,
			Gossip:      n.p2p.coord,
			Logger:      n.log.With("role", "coordinator"),
			Registerer:  n.reg,
		})
	}
	pn.OnAdvert(func(a p2p.ProviderAdvert, from peer.ID) {
		n.p2p.table.Put(a, n.cfg.Now())
		if n.p2p.coord != nil {
			n.p2p.coord.OnAdvert(a, from)
		}
	})
	return nil
}

// boardOnDemand reports whether this node stays off the jobs topic and
// fetches the open board from its coordinators when asked (see
// P2PConfig.Board).
func (n *Node) boardOnDemand(c P2PConfig) bool {
	return c.Push && !c.Board && !n.cfg.Coordinator && n.cfg.Provider
}

// useGossip reports whether this node's provider takes jobs over libp2p:
// it has p2p, is not its own coordinator (that one works over its local
// REST API) and either trusts a coordinator or has no marketplace URL to
// poll instead.
func (n *Node) useGossip() bool {
	if n.p2p == nil || n.cfg.Coordinator {
		return false
	}
	return len(n.p2p.cfg.TrustedCoordinators) > 0 || n.cfg.MarketplaceURL == ""
}

// newP2PTransport builds the provider's libp2p transport: push
// dispatch's work streams, or the gossip board and claims.
func (n *Node) newP2PTransport(walletAddr string) provider.Transport {
	if n.p2p.cfg.Push {
		// The gossip board still shows the open jobs (the node API's
		// marketplace view); the work comes over the work streams.
		n.newGossipTransport(walletAddr)
		n.p2p.boardOnly = true
		return provider.NewPush(provider.PushConfig{
			Node:       n.p2p.pn,
			Trusted:    n.p2p.cfg.TrustedCoordinators,
			GPUs:       n.gpus,
			Slots:      cmp.Or(n.cfg.Slots, provider.DefaultSlots),
			PriceFloor: n.p2p.cfg.PriceFloor,
			Wallet:     walletAddr,
			Version:    n.cfg.Version,
			Logger:     n.log.With("role", "provider"),
			Now:        n.cfg.Now,
		})
	}
	return n.newGossipTransport(walletAddr)
}

// newGossipTransport builds the provider's libp2p transport.
func (n *Node) newGossipTransport(walletAddr string) *provider.Gossip {
	if len(n.p2p.cfg.TrustedCoordinators) == 0 {
		n.log.Warn("p2p provider without a trusted coordinator (--trust-coordinator PEERID): it will act on no job posting and take no jobs")
	}
	t := provider.NewGossip(provider.GossipConfig{
		Node:        n.p2p.pn,
		Trusted:     n.p2p.cfg.TrustedCoordinators,
		GPUs:        n.gpus,
		Wallet:      walletAddr,
		SyncEvery:   n.p2p.cfg.SyncInterval,
		Rivals:      provider.RivalsOf(n.p2p.table),
		Logger:      n.log.With("role", "provider"),
		Now:         n.cfg.Now,
		MaxBoardLen: 100_000,
	})
	n.p2p.gossip = t
	return t
}

// startP2P registers the stream handlers and starts the publisher and the
// advertiser; the provider's transport runs with the provider.
func (n *Node) startP2P(ctx context.Context) {
	if n.p2p == nil {
		return
	}
	pn := n.p2p.pn
	if c := n.p2p.coord; c != nil {
		pn.HandleClaim(c.HandleClaim)
		pn.HandleReport(c.HandleReport)
		pn.HandleSync(c.HandleSync)
		if d := n.p2p.push; d != nil {
			pn.HandleWork(d.HandleWork)
			n.goRun(func() { d.Run(ctx) })
		}
		n.goRun(func() { c.RunPublisher(ctx) })
		n.goRun(func() { c.RunAgents(ctx) })
		pn.Advertise(ctx, pn.Namespace(p2p.RoleCoordinators))
	}
	if n.p2p.boardOnly {
		g := n.p2p.gossip
		n.goRun(func() { g.Run(ctx) })
	}
	if n.prov != nil {
		pn.Advertise(ctx, pn.Namespace(p2p.RoleProviders))
		cfg := provider.AdvertiserConfig{
			Node: pn, Table: n.p2p.table,
			Free: n.prov.FreeSlots, Changed: n.prov.CapacityChanged(),
			GPUs: n.gpus, PriceFloor: n.p2p.cfg.PriceFloor, Wallet: n.wallet.Address().String(), Version: n.cfg.Version,
			Interval: n.p2p.cfg.AdvertInterval, TTL: n.p2p.cfg.AdvertTTL, Push: n.p2p.cfg.Push,
			Now: n.cfg.Now, Logger: n.log.With("role", "provider"),
		}
		n.goRun(func() { provider.RunAdvertiser(ctx, cfg) })
	}
}

func (n *Node) closeP2P() error {
	if n.p2p == nil {
		return nil
	}
	return n.p2p.pn.Close()
}

// P2P is the node's libp2p node (nil without p2p), for tests, the harness
// and benchmarks.
func (n *Node) P2P() *p2p.Node {
	if n.p2p == nil {
		return nil
	}
	return n.p2p.pn
}

// PeerID is the node's libp2p peer ID ("" without p2p).
func (n *Node) PeerID() peer.ID {
	if n.p2p == nil {
		return ""
	}
	return n.p2p.pn.ID()
}

// p2pStatus is the p2p part of /api/status.
func (n *Node) p2pStatus() *httpapi.P2PStatus {
	if n.p2p == nil {
		return nil
	}
	pn := n.p2p.pn
	s := &httpapi.P2PStatus{
		PeerID:              pn.ID().String(),
		Network:             pn.Network(),
		ListenAddrs:         []string{},
		Peers:               pn.PeerCount(),
		Topics:              []httpapi.TopicStatus{},
		TrustedCoordinators: []string{},
		ProvidersKnown:      n.p2p.table.Len(),
		Transport:           "none",
	}
	for _, a := range pn.Addrs() {
		s.ListenAddrs = append(s.ListenAddrs, a.String())
	}
	for _, t := range pn.Topics() {
		s.Topics = append(s.Topics, httpapi.TopicStatus{Name: t, Peers: len(pn.TopicPeers(t))})
	}
	for _, id := range n.p2p.cfg.TrustedCoordinators {
		s.TrustedCoordinators = append(s.TrustedCoordinators, id.String())
	}
	switch {
	case n.p2p.gossip != nil:
		s.Transport = "libp2p"
		s.OpenJobs = n.p2p.gossip.BoardSize()
	case n.prov != nil:
		s.Transport = "rest"
	}
	if n.p2p.coord != nil {
		s.PostingsDropped = n.p2p.coord.DroppedCount()
	}
	return s
}

// gossipJobs lists the open jobs this provider heard of, oldest first.
func (n *Node) gossipJobs(ctx context.Context) []node3.Job {
	if n.p2p.noBoard {
		// Off the jobs topic: the board is only as fresh as its last
		// sync. A coordinator out of reach leaves it as it was.
		rctx, cancel := context.WithTimeout(ctx, boardRefreshTimeout)
		n.p2p.gossip.Refresh(rctx, boardMaxAge)
		cancel()
	}
	return n.p2p.gossip.OpenJobs(n.cfg.Now(), 100)
}

// boardMaxAge is how old the open board of a node off the jobs topic may
// be when its marketplace view is asked for.
const boardMaxAge = 2 * time.Second

// boardRefreshTimeout bounds how long the marketplace view waits for a
// sync.
const boardRefreshTimeout = 3 * time.Second

// gossipAgents lists the providers whose adverts this node holds.
func (n *Node) gossipAgents() []httpapi.AgentView {
	now := n.cfg.Now()
	entries := n.p2p.table.List(now)
	out := make([]httpapi.AgentView, 0, len(entries))
	for _, e := range entries {
		a := node3.Agent{
			ID:            e.Advert.Peer.String(),
			WalletAddress: e.Advert.Wallet,
			GPUs:          e.Advert.GPUs,
			Version:       e.Advert.SoftwareVersion,
			RegisteredAt:  e.First,
			LastSeen:      e.Advert.IssuedAt,
		}
		if len(a.GPUs) > 0 {
			a.GPUModel, a.GPUVendor, a.GPUMemory = a.GPUs[0].Model, a.GPUs[0].Vendor, a.GPUs[0].MemoryBytes
		}
		out = append(out, httpapi.ViewAgent(a, true))
	}
	return out
}
