package p2p

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/node3/node3"
)

// maxBootstrapLine bounds one line of bootstrap.txt.
const maxBootstrapLine = 4 << 10

// ParseBootstrapFile reads bootstrap.txt: one multiaddr with a /p2p/<peer
// id> part per line; '#' starts a comment, blank lines are skipped. Lines
// naming the same peer are merged. A bad line is an error naming its line
// number; nothing is skipped silently.
func ParseBootstrapFile(r io.Reader) ([]peer.AddrInfo, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxBootstrapLine)
	var addrs []ma.Multiaddr
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i]
		}
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := parseBootstrapAddr(s)
		if err != nil {
			return nil, node3.Errorf(node3.CodeInvalid, "bootstrap line %d: %s", line, err.Error())
		}
		addrs = append(addrs, a)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, node3.Errorf(node3.CodeInvalid, "bootstrap line %d: longer than %d bytes", line+1, maxBootstrapLine)
		}
		return nil, node3.Errorf(node3.CodeInvalid, "bootstrap file after line %d: %s", line, err.Error())
	}
	return mergeAddrs(addrs), nil
}

// ParseBootstrapAddrs parses bootstrap multiaddrs given on the command line
// or in Config.Bootstrap; an error names the bad entry.
func ParseBootstrapAddrs(list []string) ([]peer.AddrInfo, error) {
	addrs := make([]ma.Multiaddr, 0, len(list))
	for i, s := range list {
		a, err := parseBootstrapAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, node3.Errorf(node3.CodeInvalid, "bootstrap address %d: %s", i+1, err.Error())
		}
		addrs = append(addrs, a)
	}
	return mergeAddrs(addrs), nil
}

func parseBootstrapAddr(s string) (ma.Multiaddr, error) {
	a, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, node3.Errorf(node3.CodeInvalid, "%q is not a multiaddr: %s", truncate(s, 200), trimErr(err))
	}
	transport, id := peer.SplitAddr(a)
	if id == "" {
		return nil, node3.Errorf(node3.CodeInvalid, "%q has no /p2p/<peer-id> part", truncate(s, 200))
	}
	if transport == nil {
		return nil, node3.Errorf(node3.CodeInvalid, "%q has no address before /p2p", truncate(s, 200))
	}
	return a, nil
}

// mergeAddrs groups addresses by peer, keeping the order of first mention.
func mergeAddrs(addrs []ma.Multiaddr) []peer.AddrInfo {
	var out []peer.AddrInfo
	index := map[peer.ID]int{}
	for _, a := range addrs {
		transport, id := peer.SplitAddr(a)
		i, ok := index[id]
		if !ok {
			i = len(out)
			index[id] = i
			out = append(out, peer.AddrInfo{ID: id})
		}
		dup := false
		for _, have := range out[i].Addrs {
			if have.Equal(transport) {
				dup = true
				break
			}
		}
		if !dup {
			out[i].Addrs = append(out[i].Addrs, transport)
		}
	}
	return out
}

// mergeInfos merges AddrInfo lists by peer, dropping self.
func mergeInfos(self peer.ID, lists ...[]peer.AddrInfo) []peer.AddrInfo {
	var addrs []ma.Multiaddr
	for _, l := range lists {
		for _, pi := range l {
			if pi.ID == self {
				continue
			}
			p2p, err := peer.AddrInfoToP2pAddrs(&pi)
			if err != nil {
				continue
			}
			addrs = append(addrs, p2p...)
		}
	}
	return mergeAddrs(addrs)
}

const bootstrapTag = "node3-bootstrap"

// connectBootstrap dials every bootstrap peer once, in parallel, and waits
// for all attempts (bounded by ctx). It returns how many succeeded.
func (n *Node) connectBootstrap(ctx context.Context) int {
	type res struct{ ok bool }
	ch := make(chan res, len(n.boot))
	for _, pi := range n.boot {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
			defer cancel()
			err := n.host.Connect(cctx, pi)
			if err != nil {
				n.log.Warn("bootstrap peer unreachable", "peer", pi.ID, "err", err)
			}
			ch <- res{ok: err == nil}
		}()
	}
	ok := 0
	for range n.boot {
		if (<-ch).ok {
			ok++
		}
	}
	return ok
}

// keepBootstrapped keeps one bootstrap peer connected: when the connection
// is lost (kick) or on a slow poll, it redials with exponential backoff and
// jitter between ReconnectMin and ReconnectMax.
func (n *Node) keepBootstrapped(pi peer.AddrInfo, kick <-chan struct{}) {
	n.host.Peerstore().AddAddrs(pi.ID, pi.Addrs, peerstore.PermanentAddrTTL)
	n.host.ConnManager().Protect(pi.ID, bootstrapTag)
	backoff := n.cfg.ReconnectMin
	poll := n.cfg.ReconnectMax
	timer := time.NewTimer(poll)
	defer timer.Stop()
	wait := func(d time.Duration) bool {
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d)
		select {
		case <-n.ctx.Done():
			return false
		case <-timer.C:
		case <-kick:
		}
		return true
	}
	for {
		if n.host.Network().Connectedness(pi.ID) == network.Connected {
			backoff = n.cfg.ReconnectMin
			if !wait(poll) {
				return
			}
			continue
		}
		// A lost connection: wait a jittered backoff, then redial.
		d := backoff/2 + rand.N(backoff/2+1)
		if !wait(d) {
			return
		}
		if n.host.Network().Connectedness(pi.ID) == network.Connected {
			continue
		}
		// Our own backoff paces the redials; the swarm's would add 5 s or
		// more after any failure.
		ctx, cancel := context.WithTimeout(network.WithForceDirectDial(n.ctx, "node3 bootstrap"), n.cfg.DialTimeout)
		err := n.host.Connect(ctx, pi)
		cancel()
		if err != nil {
			if n.ctx.Err() != nil {
				return
			}
			n.log.Debug("bootstrap reconnect failed", "peer", pi.ID, "err", err, "retry_in", backoff)
			backoff = min(backoff*2, n.cfg.ReconnectMax)
			continue
		}
		n.log.Info("reconnected to bootstrap peer", "peer", pi.ID)
		backoff = n.cfg.ReconnectMin
	}
}
