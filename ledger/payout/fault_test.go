package payout

import (
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/localchain"
)

// TestFaultInjection pays through a chain that drops, delays and refuses
// requests. First every transaction is accepted but never lands, so
// blockhashes expire and payouts are signed again; then a mix of faults
// on every method. Every job is paid exactly once.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	faults := localchain.NewFaults(7)
	e := newEnv(t, localchain.Config{SlotInterval: 2 * time.Millisecond, ConfirmDepth: 2, FinalizeDepth: 8, BlockhashWindow: 40, Faults: faults})
	e.fund(100 * sol)
	ps := e.providers(4)
	var jobs []node3.Job
	addJobs := func(n int) {
		for range n {
			jobs = append(jobs, complete(t, e.led, ps[len(jobs)%len(ps)].agent, node3.Lamports(1_000_000+1000*len(jobs))))
		}
	}
	addJobs(24)
	e.waitFor("the airdrop to confirm", 5*time.Second, false, func() bool { return e.chain.Slot() > 3 })

	must := func(r localchain.FaultRule) localchain.RuleID {
		id, err := faults.Add(r)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	never := must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultNeverLand})
	cfg := e.engineConfig()
	cfg.BatchSize = 4
	cfg.ResendInterval = 20 * time.Millisecond
	cfg.RPCTimeout = 2 * time.Second
	eng, stop := e.start(cfg)
	e.waitFor("blockhashes to expire and payouts to be signed again", 20*time.Second, false, func() bool {
		return eng.Status().TxsExpired >= 3
	})
	if n := totals(t, e.led)[node3.PayoutFinalized].Count; n != 0 {
		t.Fatalf("%d payouts finalized while nothing could land", n)
	}
	faults.Remove(never)

	// Each fault the test must see once comes first as a one-shot rule, so
	// it fires on the next request of its method whatever the random rolls
	// do; the random rules behind it keep firing through the waves.
	once := map[string]localchain.RuleID{
		"send drop":            must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultDrop, Count: 1}),
		"send drop-response":   must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultDropResponse, Count: 1}),
		"statuses drop":        must(localchain.FaultRule{Method: "getSignatureStatuses", Kind: localchain.FaultDrop, Count: 1}),
		"blockhash rpc-error":  must(localchain.FaultRule{Method: "getLatestBlockhash", Kind: localchain.FaultRPCError, Count: 1}),
		"every method delayed": must(localchain.FaultRule{Kind: localchain.FaultDelay, Delay: 5 * time.Millisecond, Count: 1}),
	}
	rules := map[string]localchain.RuleID{
		"send drop":            must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultDrop, Probability: 0.15}),
		"send drop-response":   must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultDropResponse, Probability: 0.15}),
		"send rpc-error":       must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultRPCError, Probability: 0.1}),
		"send never-land":      must(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultNeverLand, Probability: 0.2}),
		"statuses drop":        must(localchain.FaultRule{Method: "getSignatureStatuses", Kind: localchain.FaultDrop, Probability: 0.2}),
		"statuses empty":       must(localchain.FaultRule{Method: "getSignatureStatuses", Kind: localchain.FaultEmpty, Probability: 0.1}),
		"blockhash rpc-error":  must(localchain.FaultRule{Method: "getLatestBlockhash", Kind: localchain.FaultRPCError, Probability: 0.2}),
		"balance http-error":   must(localchain.FaultRule{Method: "getBalance", Kind: localchain.FaultHTTPError, Probability: 0.1}),
		"accounts rpc-error":   must(localchain.FaultRule{Method: "getMultipleAccounts", Kind: localchain.FaultRPCError, Probability: 0.1}),
		"block height drop":    must(localchain.FaultRule{Method: "getBlockHeight", Kind: localchain.FaultDrop, Probability: 0.2}),
		"every method delayed": must(localchain.FaultRule{Kind: localchain.FaultDelay, Delay: 5 * time.Millisecond, Probability: 0.2}),
	}
	for range 6 { // waves of jobs while the faults fire
		addJobs(10)
		eng.Notify()
		time.Sleep(40 * time.Millisecond)
	}
	e.waitFor("every payout through the faults", 40*time.Second, false, e.finalized(len(jobs)))
	faults.Clear()
	stop()

	fired := make(map[string]int)
	for name, id := range rules {
		fired[name] = faults.Fired(id)
	}
	t.Logf("faults fired at random: %v", fired)
	for name, id := range once {
		if faults.Fired(id) != 1 {
			t.Errorf("fault %q fired %d times, want its one-shot rule once", name, faults.Fired(id))
		}
	}
	r := e.reconcile()
	txs := mustTxs(t, e.led)
	s := eng.Status()
	t.Logf("%d transactions: %d finalized, %d expired, %d failed; status %s; %s",
		len(txs), txsIn(txs, ledger.TxFinalized), txsIn(txs, ledger.TxExpired), txsIn(txs, ledger.TxFailed), fmtStatus(s), r)
	if txsIn(txs, ledger.TxExpired) < 3 || r.Finalized != len(jobs) {
		t.Fatalf("expired %d; report %s", txsIn(txs, ledger.TxExpired), r)
	}
	want := rewardsByWallet(jobs, ps)
	for _, p := range ps {
		if got := e.chain.Balance(p.addr()); got != uint64(want[p.addr()]) {
			t.Errorf("provider %s: %d lamports, rewards %d", p.addr(), got, want[p.addr()])
		}
	}
}
