package main

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/node3/node3/p2p"
)

func newIDCmd() *cobra.Command {
	var (
		dataDir string
		port    int
	)
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print this node's libp2p peer ID and the addresses it listens on",
		Long: `Print the peer ID of the identity in the data directory (creating it if there
is none yet) and the multiaddrs a node started with the same --p2p-port
listens on, one per interface: hand one to other nodes as --bootstrap, and
the peer ID as --trust-coordinator.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkPort("p2p-port", port); err != nil {
				return err
			}
			id, err := p2p.PeerIDFromDataDir(dataDir, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "peer ID: %s\n", id)
			fmt.Fprintln(out, "listen addresses:")
			for _, ip := range interfaceIPs() {
				for _, proto := range []string{"tcp", "udp"} {
					suffix := ""
					if proto == "udp" {
						suffix = "/quic-v1"
					}
					family := "ip4"
					if ip.To4() == nil {
						family = "ip6"
					}
					fmt.Fprintf(out, "  /%s/%s/%s/%s%s/p2p/%s\n", family, ip, proto, strconv.Itoa(port), suffix, id)
				}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory holding identity.key")
	fs.IntVar(&port, "p2p-port", 4001, "libp2p port the node listens on")
	bindEnv(fs, "data-dir", "NODE3_DATA_DIR")
	bindEnv(fs, "p2p-port", "NODE3_P2P_PORT")
	return cmd
}

// interfaceIPs are this machine's IPv4 addresses, loopback first (a node
// listens on all of them).
func interfaceIPs() []net.IP {
	out := []net.IP{net.IPv4(127, 0, 0, 1)}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() == nil || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, n.IP.To4())
	}
	return out
}
