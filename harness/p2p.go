package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/node"
	"github.com/node3/node3/p2p"
)

// CoordinatorNode names the coordinator in Partition; providers are
// 0..N-1 as everywhere else in the harness.
const CoordinatorNode = -1

// p2pState is the libp2p side of a local network: one network name for
// all its nodes, the coordinator's fixed address (so providers find it
// again after it restarts), and a connection gater per node for
// partitions.
type p2pState struct {
	network    string
	mu         sync.Mutex
	coordPeer  peer.ID
	coordAddrs []string // transport addresses, fixed at first start
	gaters     map[int]*gater
	blocked    map[[2]int]bool
}

// initP2P picks the network name.
func (nw *Network) initP2P() {
	if !nw.cfg.P2P {
		return
	}
	name := nw.cfg.P2PNetwork
	if name == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		name = "local-" + hex.EncodeToString(b)
	}
	nw.p2p = &p2pState{network: name, gaters: map[int]*gater{}, blocked: map[[2]int]bool{}}
}

// P2PNetwork is the libp2p network name ("" without P2P).
func (nw *Network) P2PNetwork() string {
	if nw.p2p == nil {
		return ""
	}
	return nw.p2p.network
}

func (s *p2pState) gater(i int) *gater {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.gaters[i]
	if !ok {
		g = &gater{blocked: map[peer.ID]bool{}}
		s.gaters[i] = g
	}
	return g
}

// p2pConfig is node i's libp2p configuration (CoordinatorNode for the
// coordinator): loopback TCP on a free port, the coordinator as bootstrap
// peer and trusted coordinator of every provider, short timers.
func (nw *Network) p2pConfig(i int) *node.P2PConfig {
	if nw.p2p == nil {
		return nil
	}
	g := nw.p2p.gater(i)
	var sync time.Duration // push dispatch's default
	if !nw.cfg.Push {
		sync = 10 * time.Second // gossip claims: a lost posting is found sooner
	}
	c := &node.P2PConfig{
		SyncInterval:   sync,
		Network:        nw.p2p.network,
		ListenAddrs:    []string{"/ip4/127.0.0.1/tcp/0"},
		AdvertInterval: nw.cfg.AdvertInterval,
		Push:           nw.cfg.Push,
		Board:          nw.cfg.Board,
		Tune: func(pc *p2p.Config) {
			pc.Gater = g
			pc.ReconnectMin = 100 * time.Millisecond
			pc.ReconnectMax = time.Second
			pc.BootstrapTimeout = 5 * time.Second
			pc.DialTimeout = 5 * time.Second
			// A few peers beyond the coordinator, found through the DHT,
			// so gossip has a mesh; not a full mesh of every node.
			pc.ConnLow, pc.ConnHigh = 8, 64
		},
	}
	nw.p2p.mu.Lock()
	defer nw.p2p.mu.Unlock()
	if i == CoordinatorNode {
		// The coordinator holds a connection to every provider (their
		// work streams protect them from trimming): its water marks sit
		// above that, or the connection manager keeps cutting its other
		// connections, which are then dialled again.
		providers := nw.cfg.Providers
		c.Tune = func(pc *p2p.Config) {
			pc.Gater = g
			pc.ReconnectMin = 100 * time.Millisecond
			pc.ReconnectMax = time.Second
			pc.BootstrapTimeout = 5 * time.Second
			pc.DialTimeout = 5 * time.Second
			pc.ConnLow, pc.ConnHigh = 8+providers, 64+providers
		}
		if len(nw.p2p.coordAddrs) > 0 {
			c.ListenAddrs = nw.p2p.coordAddrs
		}
		return c
	}
	for _, a := range nw.p2p.coordAddrs {
		c.Bootstrap = append(c.Bootstrap, a+"/p2p/"+nw.p2p.coordPeer.String())
	}
	c.TrustedCoordinators = []peer.ID{nw.p2p.coordPeer}
	return c
}

// coordinatorStarted remembers the coordinator's identity and address.
func (nw *Network) coordinatorStarted(n *node.Node) {
	if nw.p2p == nil {
		return
	}
	nw.p2p.mu.Lock()
	defer nw.p2p.mu.Unlock()
	nw.p2p.coordPeer = n.PeerID()
	if len(nw.p2p.coordAddrs) == 0 {
		for _, a := range n.P2P().Host().Addrs() {
			nw.p2p.coordAddrs = append(nw.p2p.coordAddrs, a.String())
		}
	}
}

// CoordinatorAddrs are the coordinator's libp2p addresses with its peer
// ID, usable as bootstrap addresses.
func (nw *Network) CoordinatorAddrs() []string {
	if nw.p2p == nil {
		return nil
	}
	nw.p2p.mu.Lock()
	defer nw.p2p.mu.Unlock()
	var out []string
	for _, a := range nw.p2p.coordAddrs {
		out = append(out, a+"/p2p/"+nw.p2p.coordPeer.String())
	}
	return out
}

// CoordinatorPeer is the coordinator's peer ID ("" without P2P).
func (nw *Network) CoordinatorPeer() peer.ID {
	if nw.p2p == nil {
		return ""
	}
	nw.p2p.mu.Lock()
	defer nw.p2p.mu.Unlock()
	return nw.p2p.coordPeer
}

// nodeAt is node i (CoordinatorNode or a provider), nil while killed.
func (nw *Network) nodeAt(i int) *node.Node {
	if i == CoordinatorNode {
		return nw.Coordinator()
	}
	return nw.Provider(i)
}

// peerAt is node i's peer ID, which its data directory fixes, running or not.
func (nw *Network) peerAt(i int) (peer.ID, error) {
	if n := nw.nodeAt(i); n != nil {
		return n.PeerID(), nil
	}
	dir := filepath.Join(nw.cfg.Dir, "coordinator")
	if i != CoordinatorNode {
		dir = filepath.Join(nw.cfg.Dir, ProviderName(i))
	}
	return p2p.PeerIDFromDataDir(dir, nw.log)
}

// Partition cuts nodes a and b (provider indices or CoordinatorNode) off
// from each other: open connections are closed and new ones refused, in
// both directions, until Heal. It survives restarts of either node.
func (nw *Network) Partition(a, b int) error {
	if nw.p2p == nil {
		return errors.New("harness: Partition needs a P2P network")
	}
	pa, err := nw.peerAt(a)
	if err != nil {
		return err
	}
	pb, err := nw.peerAt(b)
	if err != nil {
		return err
	}
	nw.p2p.gater(a).block(pb, true)
	nw.p2p.gater(b).block(pa, true)
	nw.p2p.mu.Lock()
	nw.p2p.blocked[[2]int{a, b}] = true
	nw.p2p.mu.Unlock()
	for _, x := range []struct {
		n    *node.Node
		peer peer.ID
	}{{nw.nodeAt(a), pb}, {nw.nodeAt(b), pa}} {
		if x.n != nil {
			_ = x.n.P2P().Host().Network().ClosePeer(x.peer)
		}
	}
	return nil
}

// Heal lifts every partition and reconnects the pairs it cut (the nodes'
// own reconnection would get there within a second or so).
func (nw *Network) Heal(ctx context.Context) error {
	if nw.p2p == nil {
		return nil
	}
	nw.p2p.mu.Lock()
	pairs := nw.p2p.blocked
	nw.p2p.blocked = map[[2]int]bool{}
	gs := make([]*gater, 0, len(nw.p2p.gaters))
	for _, g := range nw.p2p.gaters {
		gs = append(gs, g)
	}
	nw.p2p.mu.Unlock()
	for _, g := range gs {
		g.clear()
	}
	var errs []error
	for pair := range pairs {
		a, b := nw.nodeAt(pair[0]), nw.nodeAt(pair[1])
		if a == nil || b == nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := a.P2P().Connect(cctx, b.P2P().AddrInfo()); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

// waitP2P waits until the coordinator is connected to every running
// provider, sees it on the jobs topic (so a posting reaches it at once) —
// or, under push dispatch, holds its work stream, and the provider is on
// the topic only if it follows the board — and has recorded its agent.
func (nw *Network) waitP2P(ctx context.Context) error {
	topic := p2p.JobsTopic(nw.p2p.network)
	followsBoard := !nw.cfg.Push || nw.cfg.Board
	return poll(ctx, 10*time.Millisecond, func() (bool, error) {
		c := nw.Coordinator()
		if c == nil {
			return false, nil
		}
		ready := map[peer.ID]bool{} // on the topic, or holding a work stream
		for _, p := range c.P2P().TopicPeers(topic) {
			ready[p] = true
		}
		if !followsBoard {
			accepted, _ := c.P2P().WorkConns()
			for _, w := range accepted {
				ready[w.Peer()] = true // reachable for work
			}
		}
		nw.mu.Lock()
		provs := append([]*node.Node(nil), nw.providers...)
		nw.mu.Unlock()
		for _, p := range provs {
			if p == nil {
				continue
			}
			id := p.PeerID()
			if !ready[id] {
				return false, nil
			}
			if followsBoard && len(p.P2P().TopicPeers(topic)) == 0 {
				return false, nil
			}
			if _, err := c.Ledger().Agent(ctx, id.String()); err != nil {
				if node3.ErrorCode(err) == node3.CodeNotFound || node3.ErrorCode(err) == node3.CodeUnavailable {
					return false, nil
				}
				return false, err
			}
		}
		return true, nil
	})
}

// SubmitN creates n jobs from req through the REST API, with a few
// submitters in parallel, and returns their ids in submission order.
func (nw *Network) SubmitN(ctx context.Context, n int, req httpapi.CreateJobRequest) ([]string, error) {
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	next := make(chan int)
	for w := 0; w < min(8, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j, err := nw.Submit(ctx, req)
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				ids[i] = j.ID
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("harness: submitting: %w", err)
	default:
	}
	return ids, nil
}

// WaitJobs waits until every job reaches one of the given states.
func (nw *Network) WaitJobs(ctx context.Context, ids []string, states ...node3.JobStatus) ([]node3.Job, error) {
	out := make([]node3.Job, len(ids))
	for i, id := range ids {
		j, err := nw.WaitJob(ctx, id, states...)
		if err != nil {
			return nil, err
		}
		out[i] = j
	}
	return out, nil
}

// gater refuses connections to and from blocked peers.
type gater struct {
	mu      sync.RWMutex
	blocked map[peer.ID]bool
}

func (g *gater) block(p peer.ID, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.blocked[p] = true
	} else {
		delete(g.blocked, p)
	}
}

func (g *gater) clear() {
	g.mu.Lock()
	g.blocked = map[peer.ID]bool{}
	g.mu.Unlock()
}

func (g *gater) allowed(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return !g.blocked[p]
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.allowed(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.allowed(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allowed(p)
}
