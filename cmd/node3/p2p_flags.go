package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/pflag"

	"github.com/node3/node3/node"
	"github.com/node3/node3/p2p"
)

// p2pFlags are `node3 run`'s libp2p settings.
type p2pFlags struct {
	enabled       bool
	port          int
	network       string
	bootstrap     []string
	bootstrapFile string
	trust         []string
	push          bool
	board         bool
}

func addP2PFlags(fs *pflag.FlagSet, f *p2pFlags) {
	fs.BoolVar(&f.enabled, "p2p", true, "join the libp2p network: gossip, DHT, jobs pushed to providers (false: HTTP only)")
	fs.IntVar(&f.port, "p2p-port", 4001, "libp2p port, TCP and QUIC (UDP), all interfaces")
	fs.StringVar(&f.network, "network", p2p.DefaultNetwork, "libp2p network name; nodes of different networks never talk")
	fs.StringSliceVar(&f.bootstrap, "bootstrap", nil, "bootstrap peer multiaddr with /p2p/<peer id> (repeatable)")
	fs.StringVar(&f.bootstrapFile, "bootstrap-file", "", "file of bootstrap multiaddrs, one a line, # comments (default <data-dir>/bootstrap.txt, else ./bootstrap.txt, if present)")
	fs.StringSliceVar(&f.trust, "trust-coordinator", nil, "peer ID of a coordinator whose job postings this provider acts on (repeatable)")
	fs.BoolVar(&f.push, "push", true, "the coordinator assigns each job and pushes it over the provider's work stream (false: providers claim gossiped postings); coordinator and providers must agree")
	fs.BoolVar(&f.board, "board", false, "with --push, a provider also follows the public job board over gossip, so its node API's marketplace view is live (without, it fetches the open board from its coordinator when that view is asked for)")
	bindEnv(fs, "push", "NODE3_PUSH")
	bindEnv(fs, "board", "NODE3_BOARD")
	bindEnv(fs, "p2p-port", "NODE3_P2P_PORT")
	bindEnv(fs, "network", "NODE3_NETWORK")
	bindEnv(fs, "bootstrap", "NODE3_BOOTSTRAP")
	bindEnv(fs, "trust-coordinator", "NODE3_TRUST_COORDINATOR")
}

// listenAddrs are TCP and QUIC on port, all IPv4 interfaces.
func listenAddrs(port int) []string {
	p := strconv.Itoa(port)
	return []string{"/ip4/0.0.0.0/tcp/" + p, "/ip4/0.0.0.0/udp/" + p + "/quic-v1"}
}

// config builds the node's P2PConfig (nil with --p2p=false), reading the
// bootstrap file; a bad line is an error naming the file and the line.
func (f p2pFlags) config(dataDir string) (*node.P2PConfig, error) {
	if !f.enabled {
		return nil, nil
	}
	if err := checkPort("p2p-port", f.port); err != nil {
		return nil, err
	}
	c := &node.P2PConfig{Network: f.network, ListenAddrs: listenAddrs(f.port), Push: f.push, Board: f.board}
	if _, err := p2p.ParseBootstrapAddrs(f.bootstrap); err != nil {
		return nil, fmt.Errorf("--bootstrap: %w", err)
	}
	c.Bootstrap = f.bootstrap
	for _, s := range f.trust {
		id, err := peer.Decode(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("--trust-coordinator %q is not a peer ID: %w", s, err)
		}
		c.TrustedCoordinators = append(c.TrustedCoordinators, id)
	}
	path, explicit := f.bootstrapFile, f.bootstrapFile != ""
	candidates := []string{path}
	if !explicit {
		candidates = []string{filepath.Join(dataDir, "bootstrap.txt"), "bootstrap.txt"}
	}
	for _, p := range candidates {
		peers, err := readBootstrapFile(p)
		if errors.Is(err, fs.ErrNotExist) && !explicit {
			continue
		}
		if err != nil {
			return nil, err
		}
		c.BootstrapPeers = peers
		break
	}
	return c, nil
}

func readBootstrapFile(path string) ([]peer.AddrInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bootstrap file: %w", err)
	}
	defer f.Close()
	peers, err := p2p.ParseBootstrapFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return peers, nil
}

// printP2P tells how to reach this node and what it trusts.
func printP2P(out io.Writer, n *node.Node, provider, coordinator, rest bool, trusted int) {
	pn := n.P2P()
	if pn == nil {
		return
	}
	fmt.Fprintf(out, "  libp2p:          peer %s on network %q\n", pn.ID(), pn.Network())
	for _, a := range pn.Addrs() {
		fmt.Fprintf(out, "                   %s\n", a)
	}
	switch {
	case provider && !coordinator && trusted == 0 && !rest:
		fmt.Fprintln(out, "  no trusted coordinator (--trust-coordinator PEERID) and no --marketplace-url: this provider will take no jobs")
	case coordinator:
		fmt.Fprintf(out, "  providers join with: --bootstrap <address above> --trust-coordinator %s\n", pn.ID())
	}
}
