package payout

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"go.uber.org/goleak"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/localchain"
	"github.com/node3/node3/ledger/wallet"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashDirEnv) != "" {
		// The crash child is killed mid-run; it never gets to a leak check.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

const sol = node3.Lamports(1_000_000_000)

// env is a localchain served over HTTP, the unmodified solana-go client
// pointed at it, a Badger ledger and a marketplace wallet.
type env struct {
	t      testing.TB
	chain  *localchain.Chain
	url    string
	client *rpc.Client
	led    *ledger.Ledger
	dir    string
	payer  *wallet.Wallet
}

// newEnv starts a chain (its clock runs if cfg.SlotInterval > 0) and opens
// a ledger in a fresh directory.
func newEnv(t testing.TB, cfg localchain.Config) *env {
	t.Helper()
	chain := localchain.New(cfg)
	chain.Start(context.Background())
	srv := httptest.NewServer(chain.Handler())
	client := rpc.New(srv.URL)
	t.Cleanup(func() {
		_ = chain.Close() // first: releases stalled requests
		srv.Close()
		_ = client.Close()
	})
	dir := t.TempDir()
	e := &env{t: t, chain: chain, url: srv.URL, client: client, dir: dir}
	e.led = e.openLedger()
	t.Cleanup(func() { _ = e.led.Close() })
	var err error
	if e.payer, _, err = wallet.LoadOrCreate(filepath.Join(dir, "marketplace.json"), nil); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) openLedger() *ledger.Ledger {
	e.t.Helper()
	l, err := ledger.Open(ledger.Config{Dir: filepath.Join(e.dir, "ledger")})
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// fund airdrops lamports to the marketplace wallet.
func (e *env) fund(lamports node3.Lamports) {
	e.t.Helper()
	if _, err := e.chain.Airdrop(e.payer.Address(), uint64(lamports)); err != nil {
		e.t.Fatalf("airdrop: %v", err)
	}
}

// provider is a registered agent with its own key.
type provider struct {
	agent node3.Agent
	key   solana.PrivateKey
}

func (p provider) addr() solana.PublicKey { return p.key.PublicKey() }

func (e *env) providers(n int) []provider {
	e.t.Helper()
	out := make([]provider, n)
	for i := range out {
		k, err := solana.NewRandomPrivateKey()
		if err != nil {
			e.t.Fatal(err)
		}
		out[i] = provider{agent: e.register(k.PublicKey().String()), key: k}
	}
	return out
}

func (e *env) register(wallet string) node3.Agent {
	e.t.Helper()
	a, _, err := e.led.RegisterAgent(context.Background(), node3.Agent{WalletAddress: wallet, GPUModel: "H100", GPUVendor: "NVIDIA"}, time.Now())
	if err != nil {
		e.t.Fatalf("RegisterAgent: %v", err)
	}
	return a
}

// complete books a completed job of the given reward under agent, through
// the ledger's public API, as the coordinator does; its payout is pending.
func complete(t testing.TB, led *ledger.Ledger, agent node3.Agent, reward node3.Lamports) node3.Job {
	t.Helper()
	return completeTo(t, led, agent, reward, "")
}

// completeTo is complete with the reward sent to wallet, as named at the
// accept (unchecked: the ledger trusts its caller to validate it).
func completeTo(t testing.TB, led *ledger.Ledger, agent node3.Agent, reward node3.Lamports, wallet string) node3.Job {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	j, err := led.CreateJob(ctx, node3.JobSpec{Kind: node3.KindNoop, Reward: reward}, now)
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if _, err := led.Transition(ctx, j.ID, ledger.Event{Kind: ledger.EvAccept, AgentID: agent.ID, Now: now, Lease: time.Minute, Wallet: wallet}); err != nil {
		t.Fatalf("accept: %v", err)
	}
	j, err = led.Transition(ctx, j.ID, ledger.Event{Kind: ledger.EvComplete, AgentID: agent.ID, Now: time.Now()})
	if err != nil {
		t.Fatalf("complete: %v", err)
	}
	return j
}

// debugLogger shows the engines' logs when NODE3_PAYOUT_DEBUG is set.
var debugLogger = func() *slog.Logger {
	if os.Getenv("NODE3_PAYOUT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}()

// engineConfig is a fast engine for tests.
func (e *env) engineConfig() Config {
	return Config{
		Logger:         debugLogger,
		Ledger:         e.led,
		RPC:            e.client,
		Payer:          e.payer,
		BatchDelay:     -1,
		PollInterval:   5 * time.Millisecond,
		ResendInterval: 50 * time.Millisecond,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
		RPCTimeout:     5 * time.Second,
	}
}

// start runs an engine until the test ends (or stop is called) and checks
// that Run returns nil.
func (e *env) start(cfg Config) (*Engine, func()) {
	e.t.Helper()
	eng, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				e.t.Errorf("Run did not return within 10s of its context ending")
			}
		})
	}
	e.t.Cleanup(stop)
	return eng, stop
}

// waitFor polls cond until it holds or the timeout passes. While it waits
// it advances a manual chain clock by a slot every 2ms if advance is set.
func (e *env) waitFor(what string, timeout time.Duration, advance bool, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		if advance {
			e.chain.AdvanceSlots(1)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func totals(t testing.TB, led *ledger.Ledger) map[node3.PayoutStatus]ledger.PayoutTotal {
	t.Helper()
	tot, err := led.PayoutTotals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return tot
}

// finalized reports whether n payouts are finalized.
func (e *env) finalized(n int) func() bool {
	return func() bool { return totals(e.t, e.led)[node3.PayoutFinalized].Count >= int64(n) }
}

// reconcile runs Reconcile and fails the test on any difference.
func (e *env) reconcile() Report {
	e.t.Helper()
	r, err := Reconcile(context.Background(), e.led, e.client, e.payer.Address())
	if err != nil {
		e.t.Fatalf("Reconcile: %v", err)
	}
	if !r.OK() {
		e.t.Fatalf("Reconcile: %s", r)
	}
	return r
}

// checkBalances checks that each provider's balance on chain equals the
// rewards of its finalized payouts plus what it had before (start).
func (e *env) checkBalances(ps []provider, start map[solana.PublicKey]uint64) {
	e.t.Helper()
	want := make(map[string]node3.Lamports)
	all, err := e.led.PayoutRecords(context.Background(), node3.PayoutFinalized, 0, false)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range all {
		want[p.Wallet] += p.Amount
	}
	for _, p := range ps {
		got := e.chain.Balance(p.addr())
		if w := uint64(want[p.addr().String()]) + start[p.addr()]; got != w {
			e.t.Errorf("provider %s has %d lamports, want %d", p.addr(), got, w)
		}
	}
}

// rewardsByWallet sums the rewards of the given jobs by wallet.
func rewardsByWallet(jobs []node3.Job, ps []provider) map[solana.PublicKey]node3.Lamports {
	byAgent := make(map[string]solana.PublicKey)
	for _, p := range ps {
		byAgent[p.agent.ID] = p.addr()
	}
	out := make(map[solana.PublicKey]node3.Lamports)
	for _, j := range jobs {
		out[byAgent[j.AgentID]] += j.Reward
	}
	return out
}

func mustTxs(t testing.TB, led *ledger.Ledger) []ledger.PayoutTx {
	t.Helper()
	txs, err := led.PayoutTxs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return txs
}

func txsIn(txs []ledger.PayoutTx, st ledger.TxStatus) int {
	n := 0
	for _, tx := range txs {
		if tx.Status == st {
			n++
		}
	}
	return n
}

func fmtStatus(s Status) string { return fmt.Sprintf("%+v", s) }
