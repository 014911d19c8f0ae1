package p2p

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// Node is one libp2p participant of a node3 network: host, DHT, gossip
// topics and stream protocols. It is safe for concurrent use. Close stops
// everything it started.
type Node struct {
	cfg     Config
	log     *slog.Logger
	self    peer.ID
	host    host.Host
	dht     *dht.IpfsDHT
	disc    *drouting.RoutingDiscovery
	ps      *pubsub.PubSub
	metrics *metrics
	val     *validator
	trust   *trustSet
	boot    []peer.AddrInfo
	kicks   map[peer.ID]chan struct{} // read-only after New

	jobsTopic, provTopic *pubsub.Topic
	jobsSub, provSub     *pubsub.Subscription

	handlersMu     sync.RWMutex
	jobHandlers    []func(JobPosting, peer.ID)
	advertHandlers []func(ProviderAdvert, peer.ID)

	scoresMu sync.RWMutex
	scores   map[peer.ID]float64

	seqMu   sync.Mutex
	lastSeq uint64

	work workState // work streams (workconn.go)

	// lifeMu guards closing, protocols and wg.Add against Close.
	lifeMu    sync.Mutex
	closing   bool
	protocols map[protocol.ID]struct{}
	wg        sync.WaitGroup

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	psCancel  context.CancelFunc
	evSub     event.Subscription
	closeOnce sync.Once
	closeErr  error
}

// New starts a node: identity, host (TCP and QUIC), DHT in server mode,
// GossipSub with validators and scoring, then connects to the bootstrap
// peers (waiting at most BootstrapTimeout, or until ctx is done; a peer
// that cannot be reached is retried in the background). ctx bounds the
// start only; the node runs until Close.
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	boot, err := ParseBootstrapAddrs(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	var key crypto.PrivKey
	if cfg.DataDir != "" {
		key, err = LoadIdentity(cfg.DataDir, cfg.Logger)
	} else {
		key, _, err = crypto.GenerateEd25519Key(rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("derive peer id: %w", err)
	}
	whitelist, err := cfg.colocationWhitelist()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}

	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger.With("peer", self.ShortString()),
		self:      self,
		metrics:   m,
		trust:     &trustSet{fn: cfg.TrustFunc},
		boot:      mergeInfos(self, boot, cfg.BootstrapPeers),
		kicks:     map[peer.ID]chan struct{}{},
		scores:    map[peer.ID]float64{},
		protocols: map[protocol.ID]struct{}{},
	}
	n.trust.replace(cfg.TrustedCoordinators)
	n.val = &validator{
		self:    self,
		clock:   cfg.Clock,
		skew:    cfg.MaxClockSkew,
		trust:   n.trust,
		jobs:    newReplayCache(cfg.ReplayCacheSize),
		adverts: newReplayCache(cfg.ReplayCacheSize),
	}
	if cfg.OnJobPosting != nil {
		n.jobHandlers = append(n.jobHandlers, cfg.OnJobPosting)
	}
	if cfg.OnAdvert != nil {
		n.advertHandlers = append(n.advertHandlers, cfg.OnAdvert)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()

	if err := n.startHost(key); err != nil {
		return nil, err
	}
	n.evSub, err = n.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return nil, fmt.Errorf("subscribe to peer events: %w", err)
	}
	n.goSafe(n.watchPeers)

	// DHT and pubsub come before any connection, so that peers learn our
	// protocols at identify time.
	n.dht, err = dht.New(n.host,
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(protocol.ID(DHTPrefix(cfg.Network))),
	)
	if err != nil {
		return nil, fmt.Errorf("start DHT: %w", err)
	}
	n.disc = drouting.NewRoutingDiscovery(n.dht)
	if err := n.startGossip(whitelist); err != nil {
		return nil, err
	}

	for _, pi := range n.boot {
		n.kicks[pi.ID] = make(chan struct{}, 1)
	}
	if len(n.boot) > 0 {
		bctx, cancel := context.WithTimeout(ctx, cfg.BootstrapTimeout)
		ok := n.connectBootstrap(bctx)
		cancel()
		n.log.Info("bootstrapped", "reached", ok, "of", len(n.boot))
		for _, pi := range n.boot {
			kick := n.kicks[pi.ID]
			n.goSafe(func() { n.keepBootstrapped(pi, kick) })
		}
		_ = n.dht.Bootstrap(n.ctx) // triggers a routing table refresh
	}
	if cfg.DiscoveryInterval > 0 {
		n.Advertise(n.ctx, n.Namespace(RoleNodes))
		n.goSafe(n.discoveryLoop)
	}
	n.log.Info("p2p node started", "network", cfg.Network, "addrs", n.Addrs())
	return n, nil
}

func (n *Node) startHost(key crypto.PrivKey) error {
	cm, err := connmgr.NewConnManager(n.cfg.ConnLow, n.cfg.ConnHigh, connmgr.WithGracePeriod(n.cfg.ConnGrace))
	if err != nil {
		return fmt.Errorf("connection manager: %w", err)
	}
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	// Our request protocols: a few concurrent streams per peer, a bounded
	// number overall; each stream holds at most two frames in memory.
	for _, name := range []string{protoClaim, protoReport, protoSync} {
		limits.AddProtocolLimit(protocolID(n.cfg.Network, name),
			rcmgr.BaseLimit{StreamsInbound: 256, StreamsOutbound: 256, Streams: 512, Memory: 64 << 20},
			rcmgr.BaseLimitIncrease{StreamsInbound: 64, StreamsOutbound: 64, Streams: 128, Memory: 16 << 20})
		limits.AddProtocolPeerLimit(protocolID(n.cfg.Network, name),
			rcmgr.BaseLimit{StreamsInbound: 16, StreamsOutbound: 16, Streams: 32, Memory: 8 << 20},
			rcmgr.BaseLimitIncrease{})
	}
	// Work streams: one per peer and direction, plus one replacing it.
	limits.AddProtocolLimit(protocolID(n.cfg.Network, protoWork),
		rcmgr.BaseLimit{StreamsInbound: 4096, StreamsOutbound: 1024, Streams: 5120, Memory: 256 << 20},
		rcmgr.BaseLimitIncrease{StreamsInbound: 1024, StreamsOutbound: 256, Streams: 1280, Memory: 64 << 20})
	limits.AddProtocolPeerLimit(protocolID(n.cfg.Network, protoWork),
		rcmgr.BaseLimit{StreamsInbound: 4, StreamsOutbound: 4, Streams: 8, Memory: 8 << 20},
		rcmgr.BaseLimitIncrease{})
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		cm.Close()
		return fmt.Errorf("resource manager: %w", err)
	}
	listen := make([]ma.Multiaddr, 0, len(n.cfg.ListenAddrs))
	for _, s := range n.cfg.ListenAddrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			cm.Close()
			rm.Close()
			return fmt.Errorf("listen address %q: %w", s, err)
		}
		listen = append(listen, a)
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.ConnectionManager(cm),
		libp2p.ResourceManager(rm),
		libp2p.PrometheusRegisterer(n.cfg.Registerer),
		libp2p.UserAgent(n.cfg.UserAgent),
		libp2p.WithDialTimeout(n.cfg.DialTimeout),
	}
	if n.cfg.Gater != nil {
		opts = append(opts, libp2p.ConnectionGater(n.cfg.Gater))
	}
	n.host, err = libp2p.New(opts...)
	if err != nil {
		return fmt.Errorf("start libp2p host: %w", err)
	}
	return nil
}

// goSafe runs f in a goroutine that Close waits for; after Close it does
// nothing and returns false.
func (n *Node) goSafe(f func()) bool {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// enter registers a goroutine not started by us (a stream handler) with
// Close; the caller must call n.wg.Done if it returns true.
func (n *Node) enter() bool {
	n.lifeMu.Lock()
	defer n.lifeMu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	return true
}

// Close stops the node: stream handlers, gossip, discovery, bootstrap
// keepers, DHT and host, and waits for every goroutine it started. It is
// safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.lifeMu.Lock()
		n.closing = true
		protos := make([]protocol.ID, 0, len(n.protocols))
		for p := range n.protocols {
			protos = append(protos, p)
		}
		n.lifeMu.Unlock()
		n.cancel()
		n.work.closeAll()
		if n.host != nil {
			for _, p := range protos {
				n.host.RemoveStreamHandler(p)
			}
		}
		n.wg.Wait()
		var errs []error
		if n.evSub != nil {
			errs = append(errs, n.evSub.Close())
		}
		if n.psCancel != nil {
			n.psCancel()
		}
		if n.dht != nil {
			errs = append(errs, n.dht.Close())
		}
		if n.host != nil {
			errs = append(errs, n.host.Close())
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("p2p node stopped")
	})
	return n.closeErr
}

// watchPeers keeps the peers gauge and wakes bootstrap keepers when their
// peer disconnects.
func (n *Node) watchPeers() {
	connected := map[peer.ID]bool{}
	defer func() { n.metrics.peers.Sub(float64(len(connected))) }()
	for {
		select {
		case <-n.ctx.Done():
			return
		case e, ok := <-n.evSub.Out():
			if !ok {
				return
			}
			ev, ok := e.(event.EvtPeerConnectednessChanged)
			if !ok {
				continue
			}
			up := ev.Connectedness == network.Connected || ev.Connectedness == network.Limited
			switch {
			case up && !connected[ev.Peer]:
				connected[ev.Peer] = true
				n.metrics.peers.Inc()
			case !up && connected[ev.Peer]:
				delete(connected, ev.Peer)
				n.metrics.peers.Dec()
				if kick, ok := n.kicks[ev.Peer]; ok {
					select {
					case kick <- struct{}{}:
					default:
					}
				}
			}
		}
	}
}

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.self }

// Network is the network name the node runs in.
func (n *Node) Network() string { return n.cfg.Network }

// Addrs are the node's listen addresses with its /p2p/ part, ready to hand
// to another node as a bootstrap address.
func (n *Node) Addrs() []ma.Multiaddr {
	out, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.self, Addrs: n.host.Addrs()})
	if err != nil {
		return nil
	}
	return out
}

// AddrInfo is the node's ID with its addresses.
func (n *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: n.self, Addrs: n.host.Addrs()}
}

// PeerCount is the number of connected peers.
func (n *Node) PeerCount() int { return len(n.host.Network().Peers()) }

// Peers are the connected peers.
func (n *Node) Peers() []peer.ID { return n.host.Network().Peers() }

// Topics are the gossip topics the node is subscribed to.
func (n *Node) Topics() []string {
	return []string{JobsTopic(n.cfg.Network), ProvidersTopic(n.cfg.Network)}
}

// TopicPeers are the peers known to be subscribed to a topic.
func (n *Node) TopicPeers(topic string) []peer.ID { return n.ps.ListPeers(topic) }

// Host is the underlying libp2p host, for diagnostics and tests. Do not
// close it; close the Node.
func (n *Node) Host() host.Host { return n.host }

// Connect dials a peer (no-op if connected).
func (n *Node) Connect(ctx context.Context, pi peer.AddrInfo) error {
	if err := n.host.Connect(ctx, pi); err != nil {
		return fmt.Errorf("connect to %s: %w", pi.ID, err)
	}
	return nil
}

// SetTrustedCoordinators replaces the set of coordinators whose job
// postings this node accepts; work streams to coordinators no longer
// trusted are closed.
func (n *Node) SetTrustedCoordinators(ids []peer.ID) {
	n.trust.replace(ids)
	n.work.closeUntrusted(n.trust)
}

// TrustedCoordinators returns the current trusted set (without TrustFunc).
func (n *Node) TrustedCoordinators() []peer.ID { return n.trust.list() }

// PeerScore is p's GossipSub score as of the last inspection (every
// ScoreInspectInterval); ok is false for a peer not scored yet.
func (n *Node) PeerScore(p peer.ID) (score float64, ok bool) {
	n.scoresMu.RLock()
	defer n.scoresMu.RUnlock()
	score, ok = n.scores[p]
	return score, ok
}

func (n *Node) storeScores(s map[peer.ID]float64) {
	n.scoresMu.Lock()
	n.scores = s
	n.scoresMu.Unlock()
}
