package p2p

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/node3/node3"
)

func TestParseBootstrapFile(t *testing.T) {
	id1, id2 := newPeerID(t), newPeerID(t)
	a1 := "/ip4/10.0.0.1/tcp/4001/p2p/" + id1.String()
	a1q := "/ip4/10.0.0.1/udp/4001/quic-v1/p2p/" + id1.String()
	a2 := "/dns4/boot.example.org/tcp/4001/p2p/" + id2.String()
	cases := []struct {
		name    string
		in      string
		peers   int
		addrs   []int // addresses per peer
		errLine string
	}{
		{"empty", "", 0, nil, ""},
		{"comments and blanks", "# node3 bootstrap\n\n   \n# end\n", 0, nil, ""},
		{"one", a1 + "\n", 1, []int{1}, ""},
		{"no trailing newline, CRLF", "# x\r\n" + a1 + "\r\n" + a2, 2, []int{1, 1}, ""},
		{"merged per peer", a1 + "\n" + a2 + "\n" + a1q + "\n" + a1 + "\n", 2, []int{2, 1}, ""},
		{"inline comment and spaces", "  " + a1 + "   # primary\n", 1, []int{1}, ""},
		{"bad multiaddr", "# header\n" + a1 + "\n/ip4/300.0.0.1/tcp/1/p2p/" + id2.String() + "\n", 0, nil, "bootstrap line 3:"},
		{"garbage", "\n\nhello world\n", 0, nil, "bootstrap line 3:"},
		{"missing peer id", a1 + "\n/ip4/10.0.0.2/tcp/4001\n", 0, nil, "bootstrap line 2:"},
		{"peer id only", "/p2p/" + id1.String() + "\n", 0, nil, "bootstrap line 1:"},
		{"bad peer id", "/ip4/10.0.0.1/tcp/4001/p2p/QmNotAPeer\n", 0, nil, "bootstrap line 1:"},
		{"line too long", a1 + "\n" + strings.Repeat("x", maxBootstrapLine+10) + "\n", 0, nil, "bootstrap line 2:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseBootstrapFile(strings.NewReader(c.in))
			if c.errLine != "" {
				if err == nil {
					t.Fatalf("no error; got %v", got)
				}
				if !strings.HasPrefix(err.Error(), c.errLine) {
					t.Fatalf("error %q does not start with %q", err, c.errLine)
				}
				if node3.ErrorCode(err) != node3.CodeInvalid {
					t.Fatalf("code %s", node3.ErrorCode(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != c.peers {
				t.Fatalf("got %d peers: %v", len(got), got)
			}
			for i, n := range c.addrs {
				if len(got[i].Addrs) != n {
					t.Fatalf("peer %d has %d addrs, want %d", i, len(got[i].Addrs), n)
				}
			}
		})
	}
	if _, err := ParseBootstrapAddrs([]string{a1, "nope"}); err == nil || !strings.Contains(err.Error(), "bootstrap address 2") {
		t.Fatalf("ParseBootstrapAddrs error = %v", err)
	}
}

func TestRepoBootstrapFileParses(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "bootstrap.txt"))
	if err != nil {
		t.Skip("no bootstrap.txt in the repository yet")
	}
	defer f.Close()
	if _, err := ParseBootstrapFile(f); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsBadBootstrap(t *testing.T) {
	cfg := testConfig(t, testNetwork(t))
	cfg.Bootstrap = []string{"/ip4/127.0.0.1/tcp/1"}
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "/p2p/") {
		t.Fatalf("err = %v", err)
	}
}

func TestBootstrapReconnect(t *testing.T) {
	for _, side := range []string{"node", "bootstrap peer"} {
		t.Run("closed by "+side, func(t *testing.T) {
			net := testNetwork(t)
			boot := startNode(t, testConfig(t, net))
			cfg := testConfig(t, net)
			cfg.Bootstrap = addrStrings(boot)
			n := startNode(t, cfg)
			if n.Host().Network().Connectedness(boot.ID()) != network.Connected {
				t.Fatal("not connected to the bootstrap peer after New")
			}
			// Both ends must have registered the connection, or ClosePeer
			// on the slower end closes nothing.
			eventually(t, 5*time.Second, "connection on both ends", func() bool {
				return boot.Host().Network().Connectedness(n.ID()) == network.Connected
			})
			old := map[string]bool{}
			for _, c := range n.Host().Network().ConnsToPeer(boot.ID()) {
				old[c.ID()] = true
			}
			start := time.Now()
			if side == "node" {
				_ = n.Host().Network().ClosePeer(boot.ID())
			} else {
				_ = boot.Host().Network().ClosePeer(n.ID())
			}
			eventually(t, 5*time.Second, "a new connection", func() bool {
				for _, c := range n.Host().Network().ConnsToPeer(boot.ID()) {
					if !old[c.ID()] {
						return true
					}
				}
				return false
			})
			t.Logf("new connection after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

func TestBootstrapPeerDownAtStart(t *testing.T) {
	net := testNetwork(t)
	// Learn a peer ID and address, then stop that node.
	cfg := testConfig(t, net)
	cfg.DataDir = t.TempDir()
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	first, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := first.Addrs()[0].String()
	port := first.Host().Addrs()[0].String()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	ncfg := testConfig(t, net)
	ncfg.Bootstrap = []string{addr}
	start := time.Now()
	n := startNode(t, ncfg)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("New took %s with an unreachable bootstrap peer", d)
	}
	if n.PeerCount() != 0 {
		t.Fatal("connected to a stopped peer?")
	}
	// The bootstrap peer comes back on the same address and identity: the
	// node reconnects on its own.
	cfg.ListenAddrs = []string{port}
	back := startNode(t, cfg)
	eventually(t, 10*time.Second, "reconnect to returning bootstrap peer", func() bool {
		return n.Host().Network().Connectedness(back.ID()) == network.Connected
	})
}
