// Package harness starts a whole node3 network in one process: a
// coordinator and N providers, each a full node with its own data
// directory, ports, ledger and (simulated) GPUs. It can kill and restart
// nodes for fault tests, submit jobs and wait for their states. `node3 up`,
// `node3 e2e`, the integration tests and the system benchmarks use it.
package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gagliardetto/solana-go"

	"github.com/node3/node3"
	"github.com/node3/node3/gpu"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/ledger/localchain"
	"github.com/node3/node3/node"
)

// Config describes a local network.
type Config struct {
	Dir       string // parent of every node's data directory (required)
	Providers int    // number of provider nodes (default 2; 0 is allowed with NoProviders)
	// NoProviders starts a coordinator alone.
	NoProviders bool
	// MarketplaceListen is the coordinator API's address (default 127.0.0.1:0).
	MarketplaceListen string
	// NodeListen returns node i's API address; i = 0 is the coordinator,
	// 1..N the providers (default 127.0.0.1:0 for all).
	NodeListen func(i int) string
	// GPUs returns provider i's (1-based) simulated GPUs (default gpu.SimulatedPreset(i-1)).
	GPUs func(i int) []node3.GPU

	// LocalChain starts an in-process Solana endpoint (ledger/localchain)
	// for payouts, kept in Dir/localchain so that a network started again
	// on the same Dir finds the chain its ledger paid on. It funds the
	// coordinator's wallet with Fund (default 1,000 SOL) only while that
	// wallet holds nothing (a fresh chain, or a new wallet): a restart
	// changes no balance. SolanaRPCURL names an outside chain instead.
	LocalChain   bool
	SlotInterval time.Duration // local chain's slot clock (default 50 ms)
	Fund         node3.Lamports
	SolanaRPCURL string

	// P2P runs the nodes as a libp2p network over loopback (a random
	// network name unless P2PNetwork, free ports): providers trust the
	// coordinator, get jobs pushed by gossip and claim them over streams.
	// Without it providers poll the REST API.
	P2P        bool
	P2PNetwork string
	// Push (with P2P) dispatches at the coordinator over work streams
	// instead of gossiped postings and claims.
	Push bool
	// Board makes push-dispatch providers follow the public board over
	// gossip (node.P2PConfig.Board); without, they fetch it when asked.
	Board          bool
	AdvertInterval time.Duration // providers' advert period (default 5 s, as for any node)

	AllowCommands bool
	Slots         int
	Lease         time.Duration
	SweepInterval time.Duration
	PollWait      time.Duration
	AdminKey      string
	Version       string
	Logger        *slog.Logger

	// Limits are the coordinator API's abuse limits. Nil turns them off:
	// every node and client of a harness is one address, 127.0.0.1, and
	// tests and benchmarks send it more than any one real client would.
	Limits *httpapi.Limits
}

func (nw *Network) limits() httpapi.Limits {
	if nw.cfg.Limits == nil {
		return httpapi.Limits{Off: true}
	}
	return *nw.cfg.Limits
}

// ChainDirName is the local chain's ledger directory inside Config.Dir.
const ChainDirName = "localchain"

// Network is a running local network.
type Network struct {
	cfg       Config
	ctx       context.Context
	log       *slog.Logger
	mu        sync.Mutex
	coord     *node.Node
	providers []*node.Node // nil while killed
	marketURL string       // fixed across coordinator restarts
	market    string       // listen address fixed at first start
	admin     *httpapi.Client
	chain     *localchain.Chain
	chainURL  string
	chainDone chan struct{}
	p2p       *p2pState // nil without P2P
}

// Start starts the coordinator and the providers.
func Start(ctx context.Context, cfg Config) (*Network, error) {
	if cfg.Dir == "" {
		return nil, errors.New("harness: Dir is required")
	}
	if cfg.Providers == 0 && !cfg.NoProviders {
		cfg.Providers = 2
	}
	if cfg.MarketplaceListen == "" {
		cfg.MarketplaceListen = "127.0.0.1:0"
	}
	if cfg.NodeListen == nil {
		cfg.NodeListen = func(int) string { return "127.0.0.1:0" }
	}
	if cfg.GPUs == nil {
		cfg.GPUs = func(i int) []node3.GPU { return gpu.SimulatedPreset(i - 1) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	nw := &Network{cfg: cfg, ctx: ctx, log: cfg.Logger, market: cfg.MarketplaceListen, chainURL: cfg.SolanaRPCURL}
	nw.initP2P()
	if cfg.LocalChain {
		if err := nw.startChain(); err != nil {
			return nil, err
		}
	}
	if err := nw.startCoordinator(); err != nil {
		return nil, errors.Join(err, nw.stopChain())
	}
	if nw.chain != nil {
		if err := nw.fundPayer(); err != nil {
			nw.Close()
			return nil, fmt.Errorf("harness: funding the marketplace wallet: %w", err)
		}
	}
	nw.providers = make([]*node.Node, cfg.Providers)
	for i := range nw.providers {
		if err := nw.Restart(i); err != nil {
			nw.Close()
			return nil, err
		}
	}
	return nw, nil
}

// fundPayer airdrops Fund to the coordinator's wallet if it holds no
// lamports. A wallet that was funded before, on a chain kept from an
// earlier run, is left as its payouts left it.
func (nw *Network) fundPayer() error {
	fund := nw.cfg.Fund
	if fund == 0 {
		fund = 1000 * node3.LamportsPerSOL
	}
	payer, err := solana.PublicKeyFromBase58(nw.coord.PayerAddress())
	if err != nil {
		return err
	}
	if nw.chain.Balance(payer) > 0 {
		return nil
	}
	_, err = nw.chain.Airdrop(payer, uint64(fund))
	return err
}

func (nw *Network) startCoordinator() error {
	n, err := node.New(nw.ctx, node.Config{
		DataDir:           filepath.Join(nw.cfg.Dir, "coordinator"),
		Coordinator:       true,
		MarketplaceListen: nw.market,
		NodeListen:        nw.cfg.NodeListen(0),
		AdminKey:          nw.cfg.AdminKey,
		Limits:            nw.limits(),
		SolanaRPCURL:      nw.chainURL,
		PayoutBatchDelay:  50 * time.Millisecond,
		Lease:             nw.cfg.Lease,
		SweepInterval:     nw.cfg.SweepInterval,
		P2P:               nw.p2pConfig(CoordinatorNode),
		Version:           nw.cfg.Version,
		Logger:            nw.log.With("node", "coordinator"),
	})
	if err != nil {
		return fmt.Errorf("harness: coordinator: %w", err)
	}
	if err := n.Start(nw.ctx); err != nil {
		n.Close()
		return err
	}
	nw.coordinatorStarted(n)
	key, _ := n.AdminKey()
	admin, err := httpapi.NewClient(httpapi.ClientConfig{BaseURL: n.MarketplaceURL(), AdminKey: key})
	if err != nil {
		n.Close()
		return err
	}
	nw.mu.Lock()
	nw.coord, nw.admin, nw.marketURL = n, admin, n.MarketplaceURL()
	// Restarts reuse the port the first start got, so providers find it.
	nw.market = n.MarketplaceURL()[len("http://"):]
	nw.mu.Unlock()
	return nil
}

// ProviderName is provider i's name in logs and directories.
func ProviderName(i int) string { return "provider-" + strconv.Itoa(i+1) }

// Restart starts provider i (0-based) again on its data directory (or for
// the first time).
func (nw *Network) Restart(i int) error {
	nw.mu.Lock()
	if nw.providers[i] != nil {
		nw.mu.Unlock()
		return fmt.Errorf("harness: %s is running", ProviderName(i))
	}
	url := nw.marketURL
	nw.mu.Unlock()
	n, err := node.New(nw.ctx, node.Config{
		DataDir:        filepath.Join(nw.cfg.Dir, ProviderName(i)),
		Provider:       true,
		NodeListen:     nw.cfg.NodeListen(i + 1),
		MarketplaceURL: url,
		SolanaRPCURL:   nw.chainURL,
		Simulate:       true,
		SimulatedGPUs:  nw.cfg.GPUs(i + 1),
		AllowCommands:  nw.cfg.AllowCommands,
		Slots:          nw.cfg.Slots,
		PollWait:       nw.cfg.PollWait,
		P2P:            nw.p2pConfig(i),
		Version:        nw.cfg.Version,
		Logger:         nw.log.With("node", ProviderName(i)),
	})
	if err != nil {
		return fmt.Errorf("harness: %s: %w", ProviderName(i), err)
	}
	if err := n.Start(nw.ctx); err != nil {
		n.Close()
		return err
	}
	nw.mu.Lock()
	nw.providers[i] = n
	nw.mu.Unlock()
	return nil
}

// Kill stops provider i as a crash would: it reports nothing more.
func (nw *Network) Kill(i int) error {
	nw.mu.Lock()
	n := nw.providers[i]
	nw.providers[i] = nil
	nw.mu.Unlock()
	if n == nil {
		return fmt.Errorf("harness: %s is not running", ProviderName(i))
	}
	return n.Kill()
}

// KillCoordinator stops the coordinator abruptly.
func (nw *Network) KillCoordinator() error {
	nw.mu.Lock()
	n := nw.coord
	nw.coord = nil
	nw.mu.Unlock()
	if n == nil {
		return errors.New("harness: the coordinator is not running")
	}
	return n.Kill()
}

// RestartCoordinator starts the coordinator again on the same data
// directory and address.
func (nw *Network) RestartCoordinator() error {
	nw.mu.Lock()
	running := nw.coord != nil
	nw.mu.Unlock()
	if running {
		return errors.New("harness: the coordinator is running")
	}
	return nw.startCoordinator()
}

// Close stops every node gracefully.
func (nw *Network) Close() error {
	nw.mu.Lock()
	nodes := append([]*node.Node{}, nw.providers...)
	coord := nw.coord
	nw.providers = make([]*node.Node, len(nw.providers))
	nw.coord = nil
	nw.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range nodes {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.Close()
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if coord != nil {
		errs = append(errs, coord.Close())
	}
	errs = append(errs, nw.stopChain())
	return errors.Join(errs...)
}

// startChain serves a local Solana endpoint on a loopback port.
func (nw *Network) startChain() error {
	slot := nw.cfg.SlotInterval
	if slot == 0 {
		slot = 50 * time.Millisecond
	}
	chain, err := localchain.Open(localchain.Config{
		SlotInterval: slot,
		Dir:          filepath.Join(nw.cfg.Dir, ChainDirName),
		Logger:       nw.log.With("node", "localchain"),
	})
	if err != nil {
		return fmt.Errorf("harness: local chain: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = chain.Close()
		return fmt.Errorf("harness: local chain: %w", err)
	}
	nw.chain = chain
	nw.chain.Start(nw.ctx)
	nw.chainURL = "http://" + ln.Addr().String()
	nw.chainDone = make(chan struct{})
	go func() {
		defer close(nw.chainDone)
		if err := nw.chain.Serve(nw.ctx, ln); err != nil {
			nw.log.Error("local chain stopped", "err", err)
		}
	}()
	return nil
}

// stopChain closes the local chain, which records its head in its ledger
// directory, and waits for its server.
func (nw *Network) stopChain() error {
	if nw.chain == nil {
		return nil
	}
	err := nw.chain.Close()
	<-nw.chainDone
	if err != nil {
		return fmt.Errorf("harness: local chain: %w", err)
	}
	return nil
}

// Chain is the local chain (nil unless Config.LocalChain).
func (nw *Network) Chain() *localchain.Chain { return nw.chain }

// ChainURL is the Solana endpoint the nodes use ("" when payments are off).
func (nw *Network) ChainURL() string { return nw.chainURL }

// Coordinator is the coordinator node (nil while killed).
func (nw *Network) Coordinator() *node.Node {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.coord
}

// Provider is provider i (nil while killed).
func (nw *Network) Provider(i int) *node.Node {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.providers[i]
}

// ProviderByAgent returns the index of the provider registered as agentID.
func (nw *Network) ProviderByAgent(agentID string) (int, bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for i, p := range nw.providers {
		if p != nil && p.AgentID() == agentID {
			return i, true
		}
	}
	return 0, false
}

// MarketplaceURL is the coordinator's API URL.
func (nw *Network) MarketplaceURL() string { return nw.marketURL }

// Admin is a client with the admin key.
func (nw *Network) Admin() *httpapi.Client {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.admin
}

// Submit creates a job through the REST API.
func (nw *Network) Submit(ctx context.Context, req httpapi.CreateJobRequest) (node3.Job, error) {
	return nw.Admin().CreateJob(ctx, req)
}

// WaitRegistered waits until every running provider has registered.
func (nw *Network) WaitRegistered(ctx context.Context) error {
	if nw.p2p != nil {
		return nw.waitP2P(ctx)
	}
	return poll(ctx, 5*time.Millisecond, func() (bool, error) {
		nw.mu.Lock()
		defer nw.mu.Unlock()
		for _, p := range nw.providers {
			if p != nil && p.AgentID() == "" {
				return false, nil
			}
		}
		return true, nil
	})
}

// WaitJob waits until the job reaches one of the given states, reading
// the coordinator's ledger directly.
func (nw *Network) WaitJob(ctx context.Context, id string, states ...node3.JobStatus) (node3.Job, error) {
	var j node3.Job
	err := poll(ctx, 2*time.Millisecond, func() (bool, error) {
		c := nw.Coordinator()
		if c == nil {
			return false, nil
		}
		var err error
		j, err = c.Ledger().Job(ctx, id)
		if err != nil {
			if node3.ErrorCode(err) == node3.CodeUnavailable {
				return false, nil // restarting
			}
			return false, err
		}
		for _, s := range states {
			if j.Status == s {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return j, fmt.Errorf("job %s: waiting for %v, last seen %s: %w", id, states, j.Status, err)
	}
	return j, nil
}

func poll(ctx context.Context, every time.Duration, f func() (bool, error)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
