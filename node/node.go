package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gagliardetto/solana-go/rpc"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/node3/node3"
	"github.com/node3/node3/exec"
	"github.com/node3/node3/gpu"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/internal/fileperm"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/payout"
	"github.com/node3/node3/ledger/wallet"
	"github.com/node3/node3/node/coordinator"
	"github.com/node3/node3/node/provider"
)

// Config is everything a node needs. Zero values get the defaults noted.
type Config struct {
	DataDir     string // required: ledger, wallet, keys, scratch space
	Coordinator bool   // also run the marketplace
	Provider    bool   // run jobs (the CLI's default is true)

	MarketplaceListen string // coordinator API address (default ":8000")
	NodeListen        string // node API address (default "127.0.0.1:8080")
	MarketplaceURL    string // the coordinator a provider works for (default: this node's own when it is one)
	AdminKey          string // coordinator admin key, at least MinAdminKeyLen characters; empty: loaded from or created in DataDir/admin_api_key
	// Limits are the marketplace API's abuse limits: request rates per
	// client address and per key, and the caps on open connections (zero
	// value: httpapi.DefaultLimits; Off: none).
	Limits httpapi.Limits
	// NodeAPIHosts are the Host names, besides localhost and loopback
	// addresses, the node API answers to ("*": any).
	NodeAPIHosts []string

	Simulate      bool        // SKIP_GPU_CHECK: report simulated GPUs
	SimulatedGPUs []node3.GPU // which ones (default gpu.SimulatedPreset(0))
	AllowCommands bool        // run native `command` jobs
	Slots         int         // concurrent jobs needing no GPU (default 8)
	WalletPath    string      // provider wallet (default DataDir/wallet.json)

	// SolanaRPCURL is the chain payouts go to and balances come from
	// (SOLANA_RPC_URL). Empty: no payments; completed jobs' payouts wait
	// as pending.
	SolanaRPCURL          string
	MarketplaceWalletPath string        // coordinator wallet (default DataDir/marketplace_wallet.json)
	PayoutBatchSize       int           // payouts per transaction (default 16)
	PayoutBatchDelay      time.Duration // how long a partial batch waits (default 500 ms)

	Lease         time.Duration // job lease (default 30 s)
	RetryBackoff  time.Duration // how long a provider whose retryable failure requeued a job waits to retake it (default 30 s; negative: not at all)
	SweepInterval time.Duration // coordinator sweeper period (default 1 s)
	PollWait      time.Duration // provider long-poll (default 25 s)

	// P2P puts the node on the libp2p network (gossip, DHT, push
	// dispatch); nil keeps it on HTTP alone. See P2PConfig.
	P2P *P2PConfig

	Version string
	Logger  *slog.Logger
	Now     func() time.Time
}

// Node is one running node3 node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	led    *ledger.Ledger
	reg    *prometheus.Registry
	wallet *wallet.Wallet
	gpus   []node3.GPU
	det    *gpu.Detector

	coord        *coordinator.Coordinator
	prov         *provider.Provider
	client       *httpapi.Client // the coordinator this node uses (nil for a coordinator-only node)
	rpc          *rpc.Client     // the Solana chain (nil without SolanaRPCURL)
	pay          *payments       // the coordinator's payouts (nil without a chain)
	p2p          *p2pNode        // the libp2p side (nil without P2P)
	adminKey     string
	adminCreated bool

	marketLn, nodeLn net.Listener
	servers          []*http.Server
	started          time.Time

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New builds a node: it opens its stores and binds its ports, but starts
// nothing until Start.
func New(ctx context.Context, cfg Config) (_ *Node, err error) {
	if cfg.DataDir == "" {
		return nil, errors.New("node: a data directory is required")
	}
	if !cfg.Coordinator && !cfg.Provider {
		return nil, errors.New("node: nothing to run: enable the coordinator, the provider or both")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MarketplaceListen == "" {
		cfg.MarketplaceListen = ":8000"
	}
	if cfg.NodeListen == "" {
		cfg.NodeListen = "127.0.0.1:8080"
	}
	if cfg.WalletPath == "" {
		cfg.WalletPath = filepath.Join(cfg.DataDir, "wallet.json")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data directory: %w", err)
	}
	if err := fileperm.Check(cfg.DataDir, fileperm.Dir, cfg.Logger); err != nil {
		return nil, fmt.Errorf("node: data directory: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), started: cfg.Now()}
	defer func() {
		if err != nil {
			n.closeResources()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if n.led, err = ledger.Open(ledger.Config{Dir: filepath.Join(cfg.DataDir, "ledger"), Logger: cfg.Logger}); err != nil {
		return nil, err
	}
	if cfg.SolanaRPCURL != "" {
		n.rpc = payout.NewClient(cfg.SolanaRPCURL) // its errors never show the URL's secrets
	}
	if cfg.Coordinator {
		if err := n.setupCoordinator(ctx); err != nil {
			return nil, err
		}
		if n.rpc != nil {
			if err := n.setupPayments(); err != nil {
				return nil, err
			}
		} else {
			n.log.Warn("no SOLANA_RPC_URL: payments are off, completed jobs' payouts stay pending")
		}
	}
	if cfg.P2P != nil {
		if err := n.setupP2P(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.Provider {
		if err := n.setupProvider(ctx); err != nil {
			return nil, err
		}
	}
	if n.nodeLn, err = net.Listen("tcp", cfg.NodeListen); err != nil {
		return nil, fmt.Errorf("node: node API on %s: %w", cfg.NodeListen, err)
	}
	return n, nil
}

func (n *Node) setupCoordinator(ctx context.Context) error {
	key, created, err := loadOrCreateAdminKey(n.cfg.AdminKey, filepath.Join(n.cfg.DataDir, "admin_api_key"), n.log)
	if err != nil {
		return err
	}
	n.adminKey, n.adminCreated = key, created
	n.coord, err = coordinator.New(ctx, coordinator.Config{
		Ledger:        n.led,
		Logger:        n.log.With("role", "coordinator"),
		Now:           n.cfg.Now,
		Registerer:    n.reg,
		Lease:         n.cfg.Lease,
		SweepInterval: n.cfg.SweepInterval,
		RetryBackoff:  n.cfg.RetryBackoff,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.MarketplaceListen)
	if err != nil {
		return fmt.Errorf("node: marketplace API on %s: %w", n.cfg.MarketplaceListen, err)
	}
	n.marketLn = httpapi.LimitListener(ln, n.cfg.Limits)
	return nil
}

func (n *Node) setupProvider(ctx context.Context) error {
	w, created, err := wallet.LoadOrCreate(n.cfg.WalletPath, n.log)
	if err != nil {
		return err
	}
	n.wallet = w
	if created {
		n.log.Info("created a new wallet", "path", w.Path(), "address", w)
	}
	n.det = gpu.New(gpu.Config{Simulate: n.cfg.Simulate, Simulated: n.cfg.SimulatedGPUs, Logger: n.log})
	if n.gpus, err = n.det.Detect(ctx); err != nil {
		n.log.Warn("GPU detection failed", "err", err)
	}
	if len(n.gpus) == 0 {
		n.log.Warn("no GPU found and demo mode is off (SKIP_GPU_CHECK=true): this provider will take only jobs that need no GPU")
	}
	for _, g := range n.gpus {
		n.log.Info("GPU", "index", g.Index, "vendor", g.Vendor, "model", g.Model, "memory_gib", g.MemoryBytes>>30, "simulated", g.Simulated)
	}
	ex, err := exec.NewNative(exec.Config{
		WorkDir:       filepath.Join(n.cfg.DataDir, "work"),
		AllowCommands: n.cfg.AllowCommands,
		GPUs:          n.det.Detect,
		Logger:        n.log,
		Now:           n.cfg.Now,
	})
	if err != nil {
		return err
	}
	if n.useGossip() {
		n.prov = provider.New(provider.Config{
			Ledger:     n.led,
			Transport:  n.newP2PTransport(w.Address().String()),
			Executor:   ex,
			GPUs:       n.gpus,
			Wallet:     w.Address().String(),
			Version:    n.cfg.Version,
			Slots:      n.cfg.Slots,
			Logger:     n.log.With("role", "provider"),
			Now:        n.cfg.Now,
			Registerer: n.reg,
		})
		return nil
	}
	url := n.cfg.MarketplaceURL
	if url == "" {
		if !n.cfg.Coordinator {
			return errors.New("node: a provider needs a marketplace URL (MARKETPLACE_URL) unless it is the coordinator")
		}
		url = "http://" + loopbackAddr(n.marketLn.Addr())
	}
	if n.client, err = httpapi.NewClient(httpapi.ClientConfig{BaseURL: url}); err != nil {
		return err
	}
	n.prov = provider.New(provider.Config{
		Ledger:     n.led,
		Client:     n.client,
		Executor:   ex,
		GPUs:       n.gpus,
		Wallet:     w.Address().String(),
		Version:    n.cfg.Version,
		Slots:      n.cfg.Slots,
		PollWait:   n.cfg.PollWait,
		Logger:     n.log.With("role", "provider"),
		Now:        n.cfg.Now,
		Registerer: n.reg,
	})
	return nil
}

// loopbackAddr turns a wildcard listen address into one a local client can dial.
func loopbackAddr(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// MinAdminKeyLen is the shortest admin key a coordinator accepts.
const MinAdminKeyLen = 32

// loadOrCreateAdminKey returns the admin key: the configured one, else the
// one stored in path, else a new one stored there (mode 0600). A key
// shorter than MinAdminKeyLen is refused; an existing file goes through
// fileperm's rule.
func loadOrCreateAdminKey(configured, path string, log *slog.Logger) (string, bool, error) {
	if configured != "" {
		if err := checkAdminKey(configured, "ADMIN_API_KEY (--admin-key)"); err != nil {
			return "", false, err
		}
		return configured, false, nil
	}
	if err := fileperm.Check(path, fileperm.File, log); err != nil {
		return "", false, fmt.Errorf("node: admin key: %w", err)
	}
	k, err := readAdminKeyFile(path)
	if err != nil {
		return "", false, err
	}
	if k != "" {
		if err := checkAdminKey(k, "the admin key in "+path); err != nil {
			return "", false, err
		}
		return k, false, nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", false, err
	}
	key := "n3admin_" + base64.RawURLEncoding.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("node: storing admin key: %w", err)
	}
	return key, true, nil
}

// maxAdminKeyFile bounds the admin key file: it holds one key.
const maxAdminKeyFile = 4096

// readAdminKeyFile reads the key stored at path: "" when there is none
// (no file, or only white space).
func readAdminKeyFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("node: admin key: %w", err)
	}
	return parseAdminKeyFile(path, b)
}

// parseAdminKeyFile is the admin key file's format: one key, surrounded
// by white space at most. Its errors never quote the contents.
func parseAdminKeyFile(path string, b []byte) (string, error) {
	if len(b) > maxAdminKeyFile {
		return "", fmt.Errorf("node: admin key file %s is larger than 4 KiB; it holds one key", path)
	}
	k := strings.TrimSpace(string(b))
	if strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == 0x7f || r == utf8.RuneError }) {
		return "", fmt.Errorf("node: admin key file %s holds more than one word or control characters; it holds one key", path)
	}
	return k, nil
}

// checkAdminKey refuses a key too short to resist guessing; the message
// says how to make one and never shows the key.
func checkAdminKey(key, from string) error {
	if n := utf8.RuneCountInString(key); n < MinAdminKeyLen {
		return fmt.Errorf("node: %s is %d characters; an admin key needs at least %d: make one with `openssl rand -base64 32`, or leave ADMIN_API_KEY unset (and remove a short <data-dir>/admin_api_key) to have node3 generate one", from, n, MinAdminKeyLen)
	}
	return nil
}

// Start runs the node's roles and servers in the background.
func (n *Node) Start(ctx context.Context) error {
	ctx, n.cancel = context.WithCancel(ctx)
	n.startP2P(ctx)
	if n.coord != nil {
		mc := httpapi.MarketplaceConfig{
			Market: n.coord, AdminKey: n.adminKey, Logger: n.log, Registry: n.reg, Now: n.cfg.Now, Version: n.cfg.Version,
			Limits: n.cfg.Limits,
		}
		if n.pay != nil {
			mc.Payments = n.pay
			n.goRun(func() {
				if err := n.pay.engine.Run(ctx); err != nil {
					n.log.Error("payout engine stopped", "err", err)
				}
			})
		}
		api := httpapi.NewMarketplace(mc)
		n.serve(n.marketLn, api)
		n.goRun(func() { n.coord.Run(ctx) })
		n.log.Info("marketplace API listening", "url", n.MarketplaceURL())
	}
	n.serve(n.nodeLn, httpapi.NewNodeAPI(httpapi.NodeConfig{Node: n, Logger: n.log, Registry: n.reg, Now: n.cfg.Now, AllowedHosts: n.cfg.NodeAPIHosts}))
	n.log.Info("node API listening", "url", n.NodeURL())
	if n.prov != nil {
		n.goRun(func() {
			if err := n.prov.Run(ctx); err != nil && ctx.Err() == nil {
				n.log.Error("provider stopped", "err", err)
			}
		})
	}
	return nil
}

func (n *Node) goRun(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

func (n *Node) serve(ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      httpapi.MaxLongPoll + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	n.servers = append(n.servers, srv)
	n.goRun(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("HTTP server stopped", "addr", ln.Addr(), "err", err)
		}
	})
}

// Close stops the node gracefully: running jobs are stopped and reported
// as retryable failures, servers drain, the ledger is closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.stop(5 * time.Second) })
	return n.closeErr
}

// Kill stops the node as a crash would, as far as one process allows:
// nothing more is reported or written by its provider, connections are
// cut, and the ledger is closed with whatever it has acknowledged.
func (n *Node) Kill() error {
	n.closeOnce.Do(func() {
		if n.prov != nil {
			n.prov.Abort()
		}
		n.closeErr = n.stop(0)
	})
	return n.closeErr
}

func (n *Node) stop(grace time.Duration) error {
	if n.cancel != nil {
		n.cancel()
	}
	var errs []error
	for _, s := range n.servers {
		if grace > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			if err := s.Shutdown(ctx); err != nil {
				errs = append(errs, s.Close())
			}
			cancel()
		} else {
			errs = append(errs, s.Close())
		}
	}
	n.wg.Wait()
	errs = append(errs, n.closeResources())
	return errors.Join(errs...)
}

func (n *Node) closeResources() error {
	var errs []error
	for _, ln := range []net.Listener{n.marketLn, n.nodeLn} {
		if ln != nil {
			if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, n.closeP2P()) // its stream handlers use the ledger
	if n.led != nil {
		errs = append(errs, n.led.Close())
	}
	return errors.Join(errs...)
}

// MarketplaceURL is the coordinator API's URL ("" when not a coordinator).
func (n *Node) MarketplaceURL() string {
	if n.marketLn == nil {
		return ""
	}
	return "http://" + loopbackAddr(n.marketLn.Addr())
}

// NodeURL is the node API's URL.
func (n *Node) NodeURL() string { return "http://" + loopbackAddr(n.nodeLn.Addr()) }

// AdminKey returns the coordinator's admin key and whether it was created
// just now (so the CLI can show it once).
func (n *Node) AdminKey() (string, bool) { return n.adminKey, n.adminCreated }

// PayerAddress is the marketplace wallet's address ("" without payments).
func (n *Node) PayerAddress() string {
	if n.pay == nil {
		return ""
	}
	return n.pay.payer.Address().String()
}

// Ledger is the node's ledger (for tests and the harness).
func (n *Node) Ledger() *ledger.Ledger { return n.led }

// AgentID is the provider's id at its coordinator.
func (n *Node) AgentID() string {
	if n.prov == nil {
		return ""
	}
	return n.prov.AgentID()
}

// GPUs are the GPUs this node offers.
func (n *Node) GPUs() []node3.GPU { return n.gpus }

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }
