package p2p

import (
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"time"

	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
)

// Defaults for Config fields left zero.
const (
	DefaultNetwork           = "mainnet"
	DefaultConnLow           = 64
	DefaultConnHigh          = 128
	DefaultConnGrace         = time.Minute
	DefaultMaxFrameSize      = 1 << 20
	DefaultStreamTimeout     = 30 * time.Second
	DefaultDialTimeout       = 10 * time.Second
	DefaultBootstrapTimeout  = 15 * time.Second
	DefaultReconnectMin      = time.Second
	DefaultReconnectMax      = time.Minute
	DefaultDiscoveryInterval = time.Minute
	DefaultScoreInspect      = 10 * time.Second
	DefaultMaxClockSkew      = 30 * time.Second
	DefaultReplayCacheSize   = 32 << 10
	DefaultSeenMessagesTTL   = 10 * time.Minute
	DefaultWorkKeepAlive     = 15 * time.Second
	DefaultWorkWriteTimeout  = 10 * time.Second
	DefaultWorkSendQueue     = 256
)

// DefaultListenAddrs are used when Config.ListenAddrs is empty.
var defaultListenAddrs = []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"}

// DefaultListenAddrs returns the listen addresses used when none are given.
func DefaultListenAddrs() []string { return append([]string(nil), defaultListenAddrs...) }

// Config configures a Node. Zero values take the defaults above.
type Config struct {
	// DataDir holds identity.key. Empty means an ephemeral identity (tests).
	DataDir string
	// ListenAddrs are multiaddrs to listen on (TCP and QUIC).
	ListenAddrs []string
	// Network names the network ("mainnet", "local-xyz"): it is part of
	// every protocol ID, topic and rendezvous string, so networks never mix.
	Network string
	// Bootstrap are multiaddrs with /p2p/ parts (e.g. --bootstrap flags);
	// BootstrapPeers are already parsed ones (e.g. from ParseBootstrapFile).
	Bootstrap      []string
	BootstrapPeers []peer.AddrInfo
	// ConnLow and ConnHigh are the connection manager's water marks;
	// ConnGrace protects new connections from trimming.
	ConnLow, ConnHigh int
	ConnGrace         time.Duration

	// TrustedCoordinators are the peers whose job postings are accepted;
	// TrustFunc, if set, may trust more. The set can be replaced at run time
	// with SetTrustedCoordinators. A node always trusts itself.
	TrustedCoordinators []peer.ID
	TrustFunc           func(peer.ID) bool

	// NoBoard leaves this node off the jobs topic: it neither receives nor
	// relays the public board (a push-dispatch provider that shows none;
	// it can still fetch the open board over a sync stream). It can still
	// publish postings.
	NoBoard bool
	// OnJobPosting and OnAdvert, if set, receive every accepted message
	// from other peers, from the moment the node subscribes (before
	// bootstrapping). More handlers can be added with the On… methods.
	OnJobPosting func(JobPosting, peer.ID)
	OnAdvert     func(ProviderAdvert, peer.ID)

	// Logger, Registerer and Clock are injected; nil means discard, a
	// private registry, and time.Now. Clock times messages (issued-at,
	// expiry); network timeouts use real time.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Clock      func() time.Time
	// UserAgent is announced through identify, e.g. "node3/1.2.3".
	UserAgent string

	// MaxFrameSize bounds one request or response on a stream.
	MaxFrameSize int
	// StreamTimeout bounds a whole request/response exchange (a Request
	// without a context deadline, and a handler's context).
	StreamTimeout time.Duration
	// DialTimeout bounds one connection attempt; BootstrapTimeout bounds the
	// initial bootstrap in New.
	DialTimeout      time.Duration
	BootstrapTimeout time.Duration
	// ReconnectMin/Max bound the backoff when redialling bootstrap peers.
	ReconnectMin, ReconnectMax time.Duration
	// DiscoveryInterval is how often the node looks for more peers in the
	// DHT while it has fewer than ConnLow; negative disables the loop.
	DiscoveryInterval time.Duration
	// ScoreInspectInterval is how often PeerScore's snapshot is refreshed.
	ScoreInspectInterval time.Duration
	// MaxClockSkew is the tolerance for issued-at in the future and for
	// expiry before a message is rejected rather than ignored.
	MaxClockSkew time.Duration
	// ReplayCacheSize bounds the (author, job) and author keys remembered
	// per topic for replay detection.
	ReplayCacheSize int
	// ColocationWhitelist are CIDRs exempt from GossipSub's IP-colocation
	// penalty in addition to loopback (e.g. a LAN of test machines).
	ColocationWhitelist []string
	// WorkKeepAlive is how often each side of a work stream sends a ping
	// when it sent nothing else; WorkIdleTimeout (default 3×WorkKeepAlive)
	// closes a stream on which nothing arrived for that long;
	// WorkWriteTimeout bounds writing one frame. WorkSendQueue bounds the
	// frames waiting to be written on one stream: a peer that falls that
	// far behind is dropped rather than allowed to hold the sender up.
	WorkKeepAlive, WorkIdleTimeout, WorkWriteTimeout time.Duration
	WorkSendQueue                                    int
	// Gater, if set, may refuse connections (the harness uses it to
	// partition a local network).
	Gater connmgr.ConnectionGater
}

var networkRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// withDefaults returns cfg with defaults filled in and checks it.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Network == "" {
		cfg.Network = DefaultNetwork
	}
	if !networkRE.MatchString(cfg.Network) {
		return cfg, node3.Errorf(node3.CodeInvalid, "network name %q must be 1-64 letters, digits, '.', '_' or '-'", truncate(cfg.Network, 80))
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = DefaultListenAddrs()
	}
	if cfg.ConnLow == 0 {
		cfg.ConnLow = DefaultConnLow
	}
	if cfg.ConnHigh == 0 {
		cfg.ConnHigh = max(DefaultConnHigh, cfg.ConnLow*2)
	}
	if cfg.ConnLow < 1 || cfg.ConnHigh < cfg.ConnLow {
		return cfg, node3.Errorf(node3.CodeInvalid, "connection limits need 1 <= low (%d) <= high (%d)", cfg.ConnLow, cfg.ConnHigh)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.ConnGrace, DefaultConnGrace)
	def(&cfg.StreamTimeout, DefaultStreamTimeout)
	def(&cfg.DialTimeout, DefaultDialTimeout)
	def(&cfg.BootstrapTimeout, DefaultBootstrapTimeout)
	def(&cfg.ReconnectMin, DefaultReconnectMin)
	def(&cfg.ReconnectMax, DefaultReconnectMax)
	def(&cfg.DiscoveryInterval, DefaultDiscoveryInterval)
	def(&cfg.ScoreInspectInterval, DefaultScoreInspect)
	def(&cfg.MaxClockSkew, DefaultMaxClockSkew)
	def(&cfg.WorkKeepAlive, DefaultWorkKeepAlive)
	def(&cfg.WorkIdleTimeout, 3*cfg.WorkKeepAlive)
	def(&cfg.WorkWriteTimeout, DefaultWorkWriteTimeout)
	if cfg.WorkSendQueue == 0 {
		cfg.WorkSendQueue = DefaultWorkSendQueue
	}
	if cfg.WorkKeepAlive < 0 || cfg.WorkIdleTimeout <= cfg.WorkKeepAlive || cfg.WorkWriteTimeout < 0 || cfg.WorkSendQueue < 1 {
		return cfg, node3.Errorf(node3.CodeInvalid, "work stream settings need 0 < keepalive (%s) < idle timeout (%s), a positive write timeout and send queue", cfg.WorkKeepAlive, cfg.WorkIdleTimeout)
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = cfg.ReconnectMin
	}
	if cfg.MaxFrameSize == 0 {
		cfg.MaxFrameSize = DefaultMaxFrameSize
	}
	if cfg.MaxFrameSize < 64 || cfg.MaxFrameSize > 64<<20 {
		return cfg, node3.Errorf(node3.CodeInvalid, "max frame size %d must be between 64 bytes and 64 MiB", cfg.MaxFrameSize)
	}
	if cfg.ReplayCacheSize == 0 {
		cfg.ReplayCacheSize = DefaultReplayCacheSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "node3"
	}
	return cfg, nil
}

// colocationWhitelist parses the configured CIDRs plus loopback.
func (cfg Config) colocationWhitelist() ([]*net.IPNet, error) {
	list := append([]string{"127.0.0.0/8", "::1/128"}, cfg.ColocationWhitelist...)
	out := make([]*net.IPNet, 0, len(list))
	for _, s := range list {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return nil, node3.Errorf(node3.CodeInvalid, "colocation whitelist entry %q: %v", truncate(s, 64), err)
		}
		out = append(out, n)
	}
	return out, nil
}

// Names of the network's topics, protocols and rendezvous strings.

// JobsTopic is the topic of job postings and status updates.
func JobsTopic(network string) string { return fmt.Sprintf("/node3/%s/jobs/1", network) }

// ProvidersTopic is the topic of provider adverts.
func ProvidersTopic(network string) string { return fmt.Sprintf("/node3/%s/providers/1", network) }

// Rendezvous roles for Advertise and FindPeers (see Namespace).
const (
	RoleCoordinators = "coordinators"
	RoleProviders    = "providers"
	RoleNodes        = "nodes" // every node; used by the discovery loop
)

// Namespace is the rendezvous string of a role: "node3/<network>/<role>".
func Namespace(network, role string) string { return "node3/" + network + "/" + role }

// DHTPrefix is the DHT protocol prefix of a network.
func DHTPrefix(network string) string { return "/node3/" + network }
