package payout

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/localchain"
)

var rpcSkipPreflight = rpc.TransactionOpts{SkipPreflight: true}

func TestMaxTransfersPerTx(t *testing.T) {
	// 166 bytes of signature, header, keys of payer and System Program,
	// blockhash and counts; 49 per transfer (a key and the instruction).
	if n := MaxTransfersPerTx(); n != (PacketDataSize-166)/49 {
		t.Fatalf("MaxTransfersPerTx = %d, want 21", n)
	}
}

func TestNewConfig(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: -1})
	for name, cfg := range map[string]Config{
		"no ledger":      {RPC: e.client, Payer: e.payer},
		"no rpc":         {Ledger: e.led, Payer: e.payer},
		"no payer":       {Ledger: e.led, RPC: e.client},
		"batch too big":  {Ledger: e.led, RPC: e.client, Payer: e.payer, BatchSize: MaxBatchSize + 1},
		"bad commitment": {Ledger: e.led, RPC: e.client, Payer: e.payer, Commitment: "rooted"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	reg := prometheus.NewRegistry()
	eng, err := New(Config{Ledger: e.led, RPC: e.client, Payer: e.payer, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if c := eng.cfg; c.BatchSize != 16 || c.Commitment != "confirmed" || c.PollInterval != time.Second || c.BatchDelay != 500*time.Millisecond {
		t.Fatalf("defaults: %+v", c)
	}
	if _, err := New(Config{Ledger: e.led, RPC: e.client, Payer: e.payer, Registerer: reg}); err == nil {
		t.Fatal("a second engine registered the same metrics")
	}
	if s := eng.Status(); s.Running || s.Payer != e.payer.Address().String() {
		t.Fatalf("status before Run: %+v", s)
	}
}

// TestRunStops checks that Run returns promptly when its context ends,
// leaves no goroutine behind (TestMain), and refuses a second Run.
func TestRunStops(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: -1})
	before := goleak.IgnoreCurrent()
	eng, stop := e.start(e.engineConfig())
	e.waitFor("Running", 5*time.Second, false, func() bool { return eng.Status().Running })
	if err := eng.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Run: %v", err)
	}
	eng.Notify()
	eng.Notify() // never blocks
	stop()
	if eng.Status().Running {
		t.Fatal("still running after Run returned")
	}
	goleak.VerifyNone(t, before) // nothing Run started outlives it
}

// TestBatching: N payouts become ceil(N/BatchSize) transactions with one
// fee each; payouts to one wallet share a transfer; distinct recipients are
// capped at what fits in a transaction.
func TestBatching(t *testing.T) {
	for _, tc := range []struct {
		name              string
		providers, jobs   int
		batchSize, wanTxs int
	}{
		{"one per tx", 4, 7, 1, 7},
		{"batched", 4, 40, 16, 3},
		{"transfers cap", 30, 30, 30, 2}, // 21 wallets + 9
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, localchain.Config{SlotInterval: 2 * time.Millisecond, FinalizeDepth: 4})
			e.fund(100 * sol)
			ps := e.providers(tc.providers)
			var jobs []node3.Job
			var sum node3.Lamports
			for i := range tc.jobs {
				j := complete(t, e.led, ps[i%len(ps)].agent, sol/100+node3.Lamports(i))
				jobs = append(jobs, j)
				sum += j.Reward
			}
			e.waitFor("the airdrop to confirm", 5*time.Second, false, func() bool { return e.chain.Slot() > 2 })
			before := e.chain.Balance(e.payer.Address())
			cfg := e.engineConfig()
			cfg.BatchSize = tc.batchSize
			eng, stop := e.start(cfg)
			e.waitFor("every payout finalized", 20*time.Second, false, e.finalized(tc.jobs))
			stop()

			txs := mustTxs(t, e.led)
			if len(txs) != tc.wanTxs || txsIn(txs, ledger.TxFinalized) != tc.wanTxs {
				t.Fatalf("%d transactions (%d finalized), want %d", len(txs), txsIn(txs, ledger.TxFinalized), tc.wanTxs)
			}
			for _, tx := range txs {
				decoded, err := solana.TransactionFromBytes(tx.Raw)
				if err != nil {
					t.Fatal(err)
				}
				wallets := make(map[string]bool)
				for _, p := range tx.Payouts {
					wallets[p.Wallet] = true
				}
				if len(tx.Payouts) > tc.batchSize || len(decoded.Message.Instructions) != len(wallets) ||
					len(wallets) > MaxTransfersPerTx() || len(tx.Raw) > PacketDataSize || tx.Fee != LamportsPerSignature {
					t.Errorf("tx %s: %d payouts, %d instructions for %d wallets, %d bytes, fee %d",
						tx.Signature, len(tx.Payouts), len(decoded.Message.Instructions), len(wallets), len(tx.Raw), tx.Fee)
				}
			}
			fees := uint64(tc.wanTxs) * LamportsPerSignature
			if got := before - e.chain.Balance(e.payer.Address()); got != uint64(sum)+fees {
				t.Errorf("the payer spent %d, want %d rewards + %d fees", got, sum, fees)
			}
			e.checkBalances(ps, nil)
			r := e.reconcile()
			if r.Landed != tc.wanTxs || r.Fees != node3.Lamports(fees) || r.FinalizedLamports != sum {
				t.Errorf("report %s", r)
			}
			if s := eng.Status(); s.TxsFinalized != uint64(tc.wanTxs) || s.Fees != node3.Lamports(fees) || s.Pending != 0 || s.LastError != "" {
				t.Errorf("status %s", fmtStatus(s))
			}
		})
	}
}

// TestBatchDelay: a partial batch waits BatchDelay for more payouts. The
// engine's clock is held still, so "not yet" is a fact, not a race.
func TestBatchDelay(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: 2 * time.Millisecond, FinalizeDepth: 4})
	e.fund(100 * sol)
	ps := e.providers(2)
	e.waitFor("the airdrop to confirm", 5*time.Second, false, func() bool { return e.chain.Slot() > 2 })
	// The engine's clock stands still; the test moves it.
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	cfg := e.engineConfig()
	cfg.BatchSize = 8
	cfg.BatchDelay = 5 * time.Minute
	cfg.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	eng, _ := e.start(cfg)
	var last time.Time // when the newest payout was booked
	for i := range 3 {
		last = complete(t, e.led, ps[i%2].agent, sol/10+node3.Lamports(i)).FinishedAt
		eng.Notify()
	}
	// The engine has seen all three (its last step counted them) and, its
	// clock short of the delay, signed nothing.
	e.waitFor("the engine to see the partial batch", 10*time.Second, false, func() bool { return eng.Status().Pending == 3 })
	eng.Notify()
	e.waitFor("the engine to see the partial batch again", 10*time.Second, false, func() bool { return eng.Status().Pending == 3 })
	if n := len(mustTxs(t, e.led)); n != 0 {
		t.Fatalf("%d transactions signed before the batch delay", n)
	}
	// BatchDelay after the newest of them: the partial batch goes. Later
	// payouts are younger than that on this clock, so they wait.
	clock.Store(last.Add(cfg.BatchDelay).UnixNano())
	eng.Notify()
	e.waitFor("the delayed batch to finalize", 10*time.Second, false, e.finalized(3))
	if n := len(mustTxs(t, e.led)); n != 1 {
		t.Fatalf("%d transactions for one delayed batch", n)
	}
	// A full batch goes at once.
	start := time.Now()
	for i := range 8 {
		complete(t, e.led, ps[i%2].agent, sol/10+node3.Lamports(10+i))
	}
	eng.Notify()
	e.waitFor("the full batch to be signed", 10*time.Second, false, func() bool { return len(mustTxs(t, e.led)) == 2 })
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Logf("full batch signed after %v (machine slow?)", d)
	}
	e.waitFor("the full batch to finalize", 10*time.Second, false, e.finalized(11))
	e.reconcile()
}

// TestRentExemptMinimum: transfers to accounts that do not exist are held
// until their sum reaches the rent-exempt minimum, then paid in one
// transfer; existing accounts are paid any amount; zero payouts are
// finalized with no transaction; invalid wallets are parked with a clear
// error, without stopping the others.
func TestRentExemptMinimum(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: 2 * time.Millisecond, FinalizeDepth: 4})
	e.fund(10 * sol)
	ps := e.providers(4)
	fresh, existing, zero := ps[0], ps[1], ps[2]
	if _, err := e.chain.Airdrop(existing.addr(), uint64(sol)); err != nil {
		t.Fatal(err)
	}
	// Registration refuses such a wallet; only a record from before that
	// rule could carry one, so it is named at the accept here, which the
	// ledger does not check.
	bad := ps[3].agent
	const badWallet = "1111111111111111111111111111111111111111111" // base58, but 43 bytes
	e.waitFor("the airdrops to confirm", 5*time.Second, false, func() bool { return e.chain.Slot() > 2 })

	small := node3.Lamports(300_000)
	complete(t, e.led, fresh.agent, small)
	complete(t, e.led, fresh.agent, small)
	tip := complete(t, e.led, existing.agent, 1_000)
	nothing := complete(t, e.led, zero.agent, 0)
	parked := completeTo(t, e.led, bad, 5_000, badWallet)
	eng, _ := e.start(e.engineConfig())

	e.waitFor("the existing account's tip, the zero payout and the park", 10*time.Second, false, func() bool {
		s := eng.Status()
		return e.finalized(2)() && s.Held == 2 && totals(t, e.led)[node3.PayoutFailed].Count == 1
	})
	s := eng.Status()
	if !strings.Contains(s.HeldReason, fresh.addr().String()) || !strings.Contains(s.HeldReason, "rent-exempt minimum") {
		t.Fatalf("held reason %q", s.HeldReason)
	}
	for _, id := range []string{tip.ID, nothing.ID} {
		if p, _ := e.led.PayoutRecord(context.Background(), id); p.Status != node3.PayoutFinalized {
			t.Fatalf("payout %+v", p)
		}
	}
	if p, _ := e.led.PayoutRecord(context.Background(), nothing.ID); p.Signature != "" || p.Attempts != 0 {
		t.Fatalf("zero payout was signed: %+v", p)
	}
	p, _ := e.led.PayoutRecord(context.Background(), parked.ID)
	if p.Status != node3.PayoutFailed || !p.Parked || !strings.Contains(p.LastError, "not a Solana public key") {
		t.Fatalf("invalid wallet payout %+v", p)
	}
	if got := e.chain.Balance(fresh.addr()); got != 0 {
		t.Fatalf("the new account has %d lamports before reaching the minimum", got)
	}

	// A third payout brings the sum to 900,000 ≥ 890,880: all three go in
	// one transfer.
	complete(t, e.led, fresh.agent, small)
	eng.Notify()
	e.waitFor("the held payouts", 10*time.Second, false, e.finalized(5))
	if got := e.chain.Balance(fresh.addr()); got != uint64(3*small) {
		t.Fatalf("the new account has %d lamports, want %d", got, 3*small)
	}
	var merged *ledger.PayoutTx
	for _, tx := range mustTxs(t, e.led) {
		if len(tx.Payouts) == 3 {
			merged = &tx
		}
	}
	if merged == nil {
		t.Fatal("no transaction carries the three held payouts")
	}
	if decoded, _ := solana.TransactionFromBytes(merged.Raw); len(decoded.Message.Instructions) != 1 {
		t.Fatalf("the held payouts went in %d transfers", len(decoded.Message.Instructions))
	}
	// Now the account exists: any amount goes.
	complete(t, e.led, fresh.agent, 1)
	eng.Notify()
	e.waitFor("a one-lamport payout to the now existing account", 10*time.Second, false, e.finalized(6))
	if s := eng.Status(); s.Held != 0 {
		t.Fatalf("still holding: %+v", s)
	}
	e.checkBalances([]provider{fresh}, nil)
	e.checkBalances([]provider{existing}, map[solana.PublicKey]uint64{existing.addr(): uint64(sol)})
	r := e.reconcile()
	if r.Parked != 1 || r.Skipped != 1 || r.Unpaid != 1 {
		t.Fatalf("report %s", r)
	}
}

// TestInsufficientFunds: short of funds, the engine signs nothing, says
// why and backs off; after an airdrop it pays.
func TestInsufficientFunds(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: 2 * time.Millisecond, FinalizeDepth: 4})
	e.fund(sol / 2)
	ps := e.providers(1)
	j := complete(t, e.led, ps[0].agent, 2*sol)
	eng, _ := e.start(e.engineConfig())
	e.waitFor("the funds problem", 10*time.Second, false, func() bool {
		return strings.Contains(eng.Status().LastError, "insufficient funds")
	})
	s := eng.Status()
	if !strings.HasPrefix(s.LastError, "insufficient funds in marketplace wallet "+e.payer.Address().String()+": has 500000000 lamports, needs ") ||
		s.Pending != 1 || s.BackoffUntil.IsZero() {
		t.Fatalf("status %s", fmtStatus(s))
	}
	if n := len(mustTxs(t, e.led)); n != 0 {
		t.Fatalf("%d transactions signed without the funds", n)
	}
	e.fund(5 * sol)
	e.waitFor("payment after the airdrop", 10*time.Second, false, e.finalized(1))
	e.checkBalances(ps, nil)
	if e.chain.Balance(ps[0].addr()) != uint64(j.Reward) {
		t.Fatal("wrong amount")
	}
	e.waitFor("the error to clear", 5*time.Second, false, func() bool { return eng.Status().LastError == "" })
	e.reconcile()
}

// TestPartialFunds: the payer pays the oldest payouts it can afford and
// waits with the rest.
func TestPartialFunds(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: 2 * time.Millisecond, FinalizeDepth: 4})
	e.fund(sol)
	ps := e.providers(2)
	for i := range 4 {
		complete(t, e.led, ps[i%2].agent, 3*sol/10)
	}
	eng, _ := e.start(e.engineConfig())
	// 1 SOL pays three of 0.3 SOL (0.9 + fee + rent minimum), not four.
	e.waitFor("three payouts", 10*time.Second, false, e.finalized(3))
	e.waitFor("the funds problem", 10*time.Second, false, func() bool {
		return strings.Contains(eng.Status().LastError, "insufficient funds")
	})
	if tot := totals(t, e.led); tot[node3.PayoutPending].Count != 1 {
		t.Fatalf("totals %+v", tot)
	}
	e.fund(sol)
	e.waitFor("the fourth", 10*time.Second, false, e.finalized(4))
	e.reconcile()
}

// TestLandedErrorRetried: a transaction that passes preflight but fails on
// landing (its recipient emptied its account meanwhile, so a small
// transfer breaks the rent rule) is charged its fee, its payout fails and
// is retried after a backoff, then held for the rent minimum, then paid.
func TestLandedErrorRetried(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: -1, FinalizeDepth: 4})
	e.fund(10 * sol)
	ps := e.providers(1)
	p := ps[0]
	if _, err := e.chain.Airdrop(p.addr(), uint64(sol)); err != nil {
		t.Fatal(err)
	}
	e.chain.AdvanceSlots(5)
	// The provider empties its account; the confirmed view still shows 1 SOL.
	bh, _ := e.chain.LatestBlockhash()
	drain, err := solana.NewTransaction([]solana.Instruction{
		system.NewTransferInstruction(uint64(sol)-LamportsPerSignature, p.addr(), e.chain.Faucet()).Build(),
	}, bh, solana.TransactionPayer(p.addr()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drain.Sign(func(solana.PublicKey) *solana.PrivateKey { return &p.key }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.SendTransactionWithOpts(context.Background(), drain, rpcSkipPreflight); err != nil {
		t.Fatal(err)
	}
	if e.chain.Balance(p.addr()) != 0 {
		t.Fatal("drain did not land")
	}
	j := complete(t, e.led, p.agent, 1_000)
	cfg := e.engineConfig()
	cfg.MinBackoff = 50 * time.Millisecond
	eng, _ := e.start(cfg)
	// Preflight (at confirmed) must run before the clock moves on.
	e.waitFor("the transaction to be sent", 5*time.Second, false, func() bool {
		txs := mustTxs(t, e.led)
		return len(txs) == 1 && txs[0].Status != ledger.TxSigned
	})
	e.waitFor("the failure", 10*time.Second, true, func() bool { return eng.Status().TxsFailed == 1 })
	txs := mustTxs(t, e.led)
	if txs[0].Status != ledger.TxFailed || !strings.Contains(txs[0].LastError, "InsufficientFundsForRent") {
		t.Fatalf("failed tx %+v", txs[0])
	}
	if s := eng.Status(); !strings.Contains(s.LastError, "InsufficientFundsForRent") {
		t.Fatalf("status %s", fmtStatus(s))
	}
	e.waitFor("the retry, held for the rent minimum", 10*time.Second, true, func() bool { return eng.Status().Held == 1 })
	rec, _ := e.led.PayoutRecord(context.Background(), j.ID)
	if rec.Status != node3.PayoutPending || rec.Attempts != 1 || len(rec.Txs) != 1 {
		t.Fatalf("retried payout %+v", rec)
	}
	complete(t, e.led, p.agent, sol)
	eng.Notify()
	e.waitFor("both paid", 10*time.Second, true, e.finalized(2))
	if got := e.chain.Balance(p.addr()); got != uint64(sol)+1_000 {
		t.Fatalf("provider has %d", got)
	}
	if r := e.reconcile(); r.LandedFailed != 1 || r.Fees != 2*LamportsPerSignature {
		t.Fatalf("report %s", r)
	}
}

// Test1000Jobs: 1,000 jobs across 4 providers complete while the engine
// runs; every provider ends with exactly its rewards.
func Test1000Jobs(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 jobs")
	}
	e := newEnv(t, localchain.Config{SlotInterval: 5 * time.Millisecond, FinalizeDepth: 8})
	e.fund(1000 * sol)
	ps := e.providers(4)
	cfg := e.engineConfig()
	cfg.BatchSize = 64
	cfg.BatchDelay = 20 * time.Millisecond
	cfg.PollInterval = 10 * time.Millisecond
	eng, _ := e.start(cfg)
	var (
		mu   sync.Mutex
		jobs []node3.Job
		wg   sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 250 {
				p := ps[rng.IntN(len(ps))]
				j := complete(t, e.led, p.agent, node3.Lamports(1_000_000+rng.IntN(9_000_000)))
				eng.Notify()
				mu.Lock()
				jobs = append(jobs, j)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	e.waitFor("1,000 payouts", 60*time.Second, false, e.finalized(1000))
	want := rewardsByWallet(jobs, ps)
	for _, p := range ps {
		if got := e.chain.Balance(p.addr()); got != uint64(want[p.addr()]) {
			t.Errorf("provider %s: %d lamports, rewards %d", p.addr(), got, want[p.addr()])
		}
	}
	r := e.reconcile()
	t.Logf("%s", r)
	if r.Finalized != 1000 {
		t.Fatalf("report %s", r)
	}
}

// fullHistory is an RPC node that keeps every transaction since genesis
// and says so (localchain does not implement getFirstAvailableBlock).
type fullHistory struct{ *rpc.Client }

func (fullHistory) GetFirstAvailableBlock(context.Context) (uint64, error) { return 0, nil }

// TestLongOutage: a transaction left in flight by a coordinator that stays
// down until long after its blockhash expired is re-signed only if the RPC
// node can prove it never landed (its history reaches back to it).
func TestLongOutage(t *testing.T) {
	e := newEnv(t, localchain.Config{SlotInterval: -1, FinalizeDepth: 8})
	e.fund(10 * sol)
	ps := e.providers(1)
	e.chain.AdvanceSlots(10)
	j := complete(t, e.led, ps[0].agent, sol)
	never, err := e.chain.Faults().Add(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultNeverLand})
	if err != nil {
		t.Fatal(err)
	}
	eng, stop := e.start(e.engineConfig())
	e.waitFor("the transaction to be sent", 5*time.Second, false, func() bool { return eng.Status().TxsSent == 1 })
	stop()
	e.chain.Faults().Remove(never)
	tx := mustTxs(t, e.led)[0]
	e.chain.AdvanceSlots(int(tx.LastValidBlockHeight) + 8 + trustBlocks + 10 - int(e.chain.Slot()))

	eng, stop = e.start(e.engineConfig())
	e.waitFor("the engine to refuse to re-sign", 10*time.Second, false, func() bool {
		return strings.Contains(eng.Status().LastError, "never landed")
	})
	stop()
	if txs := mustTxs(t, e.led); len(txs) != 1 || txs[0].Status != ledger.TxSent {
		t.Fatalf("transactions after the refusal: %+v", txs)
	}

	cfg := e.engineConfig()
	cfg.RPC = fullHistory{e.client}
	eng, _ = e.start(cfg)
	e.waitFor("the payout, re-signed", 10*time.Second, true, e.finalized(1))
	txs := mustTxs(t, e.led)
	if len(txs) != 2 || txsIn(txs, ledger.TxExpired) != 1 || eng.Status().TxsExpired != 1 {
		t.Fatalf("transactions %+v", txs)
	}
	if got := e.chain.Balance(ps[0].addr()); got != uint64(j.Reward) {
		t.Fatalf("provider has %d", got)
	}
	e.reconcile()
}
