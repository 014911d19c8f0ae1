package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/discovery"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	findLimit        = 100
	findTimeout      = 30 * time.Second
	advertiseMaxWait = time.Minute
	discoverDials    = 8
)

// Namespace is the rendezvous string of a role in this node's network,
// e.g. n.Namespace(RoleCoordinators) = "node3/<network>/coordinators".
func (n *Node) Namespace(role string) string { return Namespace(n.cfg.Network, role) }

// AdvertiseOnce announces in the DHT, once, that this node serves ns. It
// fails when the node knows no DHT peers yet.
func (n *Node) AdvertiseOnce(ctx context.Context, ns string) error {
	if _, err := n.disc.Advertise(ctx, ns); err != nil {
		return fmt.Errorf("advertise %s: %w", ns, err)
	}
	return nil
}

// Advertise keeps ns advertised in the DHT until ctx is done or the node
// closes: it retries failures with backoff (1 s doubling to a minute) and
// re-advertises before the record's TTL runs out. It does not block.
func (n *Node) Advertise(ctx context.Context, ns string) {
	n.goSafe(func() {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(n.ctx, cancel)
		defer stop()
		backoff := time.Second
		timer := time.NewTimer(0)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			ttl, err := n.disc.Advertise(ctx, ns)
			var wait time.Duration
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				n.log.Debug("advertise failed", "ns", ns, "err", err, "retry_in", backoff)
				wait = backoff/2 + rand.N(backoff/2+1)
				backoff = min(backoff*2, advertiseMaxWait)
			} else {
				backoff = time.Second
				wait = ttl * 7 / 8
			}
			timer.Reset(wait)
		}
	})
}

// FindPeers returns peers that advertised ns (not this node), as far as the
// DHT finds them before ctx is done; at most 100.
func (n *Node) FindPeers(ctx context.Context, ns string) ([]peer.AddrInfo, error) {
	ch, err := n.disc.FindPeers(ctx, ns, discovery.Limit(findLimit))
	if err != nil {
		return nil, fmt.Errorf("find peers for %s: %w", ns, err)
	}
	var out []peer.AddrInfo
	seen := map[peer.ID]bool{}
	for pi := range ch {
		if pi.ID == n.self || seen[pi.ID] {
			continue
		}
		seen[pi.ID] = true
		out = append(out, pi)
	}
	if len(out) == 0 && ctx.Err() != nil {
		return nil, fmt.Errorf("find peers for %s: %w", ns, ctx.Err())
	}
	return out, nil
}

// discoveryLoop looks for more nodes of the network in the DHT while the
// node has fewer than ConnLow connections, so that gossip has a mesh
// beyond the bootstrap peers.
func (n *Node) discoveryLoop() {
	ns := n.Namespace(RoleNodes)
	timer := time.NewTimer(min(time.Second, n.cfg.DiscoveryInterval))
	defer timer.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-timer.C:
		}
		if n.PeerCount() < n.cfg.ConnLow {
			n.discoverOnce(ns)
		}
		timer.Reset(n.cfg.DiscoveryInterval)
	}
}

func (n *Node) discoverOnce(ns string) {
	ctx, cancel := context.WithTimeout(n.ctx, findTimeout)
	defer cancel()
	found, err := n.FindPeers(ctx, ns)
	if err != nil {
		n.log.Debug("discovery failed", "err", err)
		return
	}
	need := n.cfg.ConnLow - n.PeerCount()
	sem := make(chan struct{}, discoverDials)
	var wg sync.WaitGroup
	for _, pi := range found {
		if need <= 0 {
			break
		}
		if n.host.Network().Connectedness(pi.ID) == network.Connected {
			continue
		}
		need--
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
			defer cancel()
			if err := n.host.Connect(dctx, pi); err != nil {
				n.log.Debug("discovered peer unreachable", "peer", pi.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}
