package harness

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"go.uber.org/goleak"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Badger's and the HTTP client's idle goroutines wind down on their own schedule.
		goleak.IgnoreTopFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("NODE3_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startNetwork(t *testing.T, cfg Config) *Network {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nw, err := Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nw.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		cancel()
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := nw.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	return nw
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func reward(sol string) []byte { return []byte(sol) }

// TestFlow runs jobs of every built-in kind through two providers with
// different GPUs and checks each lands on a provider that can run it, once,
// with its payout booked.
func TestFlow(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2})
	ctx := timeout(t, 60*time.Second)

	type want struct {
		req      httpapi.CreateJobRequest
		provider int // -1: any
	}
	var jobs []want
	for i := 0; i < 10; i++ {
		jobs = append(jobs, want{httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.000001")}, -1})
	}
	// Only provider-2's simulated A100 has 80 GiB.
	jobs = append(jobs,
		want{httpapi.CreateJobRequest{JobType: "test", Reward: reward("0.001"), RequiresGPU: true, MinGPUMemory: 40 << 30}, 1},
		want{httpapi.CreateJobRequest{JobType: "benchmark", Reward: reward("0.002"), RequiresGPU: true, GPUModel: "4090"}, 0},
		want{httpapi.CreateJobRequest{JobType: "test", Reward: reward("0.001"), RequiresGPU: true}, -1},
	)
	ids := make([]string, len(jobs))
	var total node3.Lamports
	for i, w := range jobs {
		j, err := nw.Submit(ctx, w.req)
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids[i] = j.ID
		total += j.Reward
	}
	for i, id := range ids {
		j, err := nw.WaitJob(ctx, id, node3.StatusCompleted, node3.StatusFailed)
		if err != nil {
			t.Fatal(err)
		}
		if j.Status != node3.StatusCompleted {
			t.Fatalf("job %d (%s) ended %s: %s", i, j.Kind, j.Status, j.Error)
		}
		if j.Attempt != 1 {
			t.Errorf("job %d took %d attempts", i, j.Attempt)
		}
		p, ok := nw.ProviderByAgent(j.AgentID)
		if !ok {
			t.Fatalf("job %d run by unknown agent %s", i, j.AgentID)
		}
		if want := jobs[i].provider; want >= 0 && p != want {
			t.Errorf("job %d (%+v) ran on %s, want %s", i, jobs[i].req, ProviderName(p), ProviderName(want))
		}
		if j.Kind == node3.KindBenchmark && (j.Result == nil || j.Result.Metrics["gflops"] <= 0) {
			t.Errorf("benchmark reported no gflops: %+v", j.Result)
		}
		pay, err := nw.Coordinator().Ledger().Payout(ctx, id)
		if err != nil || pay.Amount != j.Reward || pay.Status != node3.PayoutPending {
			t.Errorf("job %d payout = %+v, %v; want pending %s", i, pay, err, j.Reward)
		}
	}
	s, err := nw.Admin().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Jobs[node3.StatusCompleted] != int64(len(jobs)) || s.RewardsCompleted != total || s.PayoutsPendingSum != total {
		t.Errorf("stats = %+v; want %d completed worth %s", s.Stats, len(jobs), total)
	}
	// Each provider's own books agree with the coordinator's: what it
	// earned is the rewards of the jobs booked under it.
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		var sum node3.Lamports
		for i := 0; i < 2; i++ {
			e, err := nw.Provider(i).Earnings(ctx)
			if err != nil {
				return false, err
			}
			sum += e.Total
		}
		return sum == total, nil
	}); err != nil {
		t.Fatalf("provider earnings never added up to %s: %v", total, err)
	}
}

// TestProviderDiesMidJob kills the provider running a job; its lease
// lapses and the other provider completes the job.
func TestProviderDiesMidJob(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, AllowCommands: true, Lease: time.Second, SweepInterval: 50 * time.Millisecond})
	ctx := timeout(t, 60*time.Second)
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "command", Reward: reward("0.01"), Command: []string{"sleep", "2"}, TimeoutSeconds: 30})
	if err != nil {
		t.Fatal(err)
	}
	j, err = nw.WaitJob(ctx, j.ID, node3.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	first, ok := nw.ProviderByAgent(j.AgentID)
	if !ok {
		t.Fatalf("unknown agent %s", j.AgentID)
	}
	if err := nw.Kill(first); err != nil {
		t.Fatal(err)
	}
	done, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted, node3.StatusFailed)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != node3.StatusCompleted || done.AgentID == j.AgentID || done.Attempt != 2 {
		t.Fatalf("job ended %s by %s after %d attempts; want completed by the other provider on attempt 2", done.Status, done.AgentID, done.Attempt)
	}
	if _, err := nw.Coordinator().Ledger().Payout(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	// The dead provider comes back with its identity and registration.
	if err := nw.Restart(first); err != nil {
		t.Fatal(err)
	}
	if err := nw.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	if got := nw.Provider(first).AgentID(); got != j.AgentID {
		t.Errorf("restarted provider registered again as %s; want its stored id %s", got, j.AgentID)
	}
}

// TestCoordinatorRestart takes the coordinator down while a provider runs a
// job: the report waits in the provider's outbox and lands after the
// restart, and the network goes on taking jobs.
func TestCoordinatorRestart(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, AllowCommands: true, Lease: 20 * time.Second, SweepInterval: 50 * time.Millisecond})
	ctx := timeout(t, 60*time.Second)
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "command", Reward: reward("0.003"), Command: []string{"sleep", "0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	j, err = nw.WaitJob(ctx, j.ID, node3.StatusRunning)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := nw.ProviderByAgent(j.AgentID)
	if err := nw.KillCoordinator(); err != nil {
		t.Fatal(err)
	}
	// The job finishes while the coordinator is down: its report must wait.
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		r, err := nw.Provider(p).Ledger().PendingReports(ctx, 0)
		return len(r) == 1 && r[0].JobID == j.ID, err
	}); err != nil {
		t.Fatalf("report never reached the outbox: %v", err)
	}
	// Restart only once a delivery has failed against the dead coordinator.
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		return counter(nw.Provider(p).Registry(), "node3_provider_reports_total", "result", "retry") >= 1, nil
	}); err != nil {
		t.Fatalf("no delivery was tried while the coordinator was down: %v", err)
	}
	if err := nw.RestartCoordinator(); err != nil {
		t.Fatal(err)
	}
	done, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted, node3.StatusFailed)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != node3.StatusCompleted || done.AgentID != j.AgentID {
		t.Fatalf("after restart the job is %s by %s", done.Status, done.AgentID)
	}
	if err := poll(ctx, 10*time.Millisecond, func() (bool, error) {
		r, err := nw.Provider(p).Ledger().PendingReports(ctx, 0)
		return len(r) == 0, err
	}); err != nil {
		t.Fatalf("outbox never drained: %v", err)
	}
	// New work flows after the restart.
	j2, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "test", Reward: reward("0.001"), RequiresGPU: true})
	if err != nil {
		t.Fatal(err)
	}
	if j2, err = nw.WaitJob(ctx, j2.ID, node3.StatusCompleted, node3.StatusFailed); err != nil || j2.Status != node3.StatusCompleted {
		t.Fatalf("job after restart: %v %v", j2.Status, err)
	}
}

// TestGracefulStopRequeues stops a provider cleanly mid-job: it reports the
// job as a retryable failure so it is requeued at once, without waiting for
// the lease.
func TestGracefulStopRequeues(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, AllowCommands: true, Lease: time.Minute})
	ctx := timeout(t, 30*time.Second)
	j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "command", Reward: reward("0.001"), Command: []string{"sleep", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if j, err = nw.WaitJob(ctx, j.ID, node3.StatusRunning); err != nil {
		t.Fatal(err)
	}
	p, _ := nw.ProviderByAgent(j.AgentID)
	nw.mu.Lock()
	n := nw.providers[p]
	nw.providers[p] = nil
	nw.mu.Unlock()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	done, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted)
	if err != nil {
		t.Fatal(err)
	}
	if done.AgentID == j.AgentID || done.Attempt != 2 {
		t.Fatalf("job completed by %s on attempt %d; want the other provider on attempt 2", done.AgentID, done.Attempt)
	}
}

func TestE2E(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 1, LocalChain: true, SlotInterval: 10 * time.Millisecond})
	var out strings.Builder
	key, _ := nw.Coordinator().AdminKey()
	if err := E2E(timeout(t, 30*time.Second), E2EConfig{MarketplaceURL: nw.MarketplaceURL(), AdminKey: key, RequiresGPU: true}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "7. Stats updated") {
		t.Fatalf("output:\n%s", out.String())
	}
	// A wrong key fails at the first admin call, with a non-nil error.
	out.Reset()
	if err := E2E(timeout(t, 10*time.Second), E2EConfig{MarketplaceURL: nw.MarketplaceURL(), AdminKey: "wrong", Timeout: 2 * time.Second}, &out); err == nil {
		t.Fatalf("e2e with a wrong key passed:\n%s", out.String())
	}
}

// TestPayments runs jobs on a network with a local chain: every payout is
// finalized on chain, each provider's balance is exactly its rewards, the
// ledger reconciles with the chain, and the providers' earnings say so.
func TestPayments(t *testing.T) {
	nw := startNetwork(t, Config{Providers: 2, LocalChain: true, SlotInterval: 5 * time.Millisecond})
	ctx := timeout(t, 60*time.Second)
	const jobs = 20
	ids := make([]string, jobs)
	for i := range ids {
		j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.001")})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = j.ID
	}
	want := map[string]node3.Lamports{} // wallet → rewards
	led := nw.Coordinator().Ledger()
	for _, id := range ids {
		if _, err := nw.WaitJob(ctx, id, node3.StatusCompleted); err != nil {
			t.Fatal(err)
		}
		var p node3.Payout
		if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
			var err error
			p, err = led.Payout(ctx, id)
			return p.Status == node3.PayoutFinalized, err
		}); err != nil {
			t.Fatalf("payout of %s never finalized (last %s): %v", id, p.Status, err)
		}
		if p.Signature == "" {
			t.Errorf("finalized payout of %s has no signature", id)
		}
		want[p.Wallet] += p.Amount
	}
	for w, sum := range want {
		pk := solana.MustPublicKeyFromBase58(w)
		if got := nw.Chain().Balance(pk); got != uint64(sum) {
			t.Errorf("wallet %s holds %d lamports, want %d", w, got, sum)
		}
	}
	rep, err := nw.Admin().Reconcile(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	wi, err := nw.Admin().Wallet(ctx)
	if err != nil || wi.Finalized != jobs || wi.TxsFinalized == 0 || wi.TxsFinalized >= jobs {
		t.Errorf("wallet info %+v, %v: want %d finalized payouts in fewer transactions", wi, err, jobs)
	}
	var paid node3.Lamports
	for i := 0; i < 2; i++ {
		e, err := nw.Provider(i).Earnings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e.WalletBalance == nil || *e.WalletBalance != e.Paid {
			t.Errorf("provider %d: balance %v, paid %s", i, e.WalletBalance, e.Paid)
		}
		paid += e.Paid
	}
	if paid != jobs*node3.LamportsPerSOL/1000 {
		t.Errorf("providers were paid %s in all, want %s", paid, node3.Lamports(jobs*node3.LamportsPerSOL/1000))
	}
}

// TestRestartKeepsTheBooks is "up, pay, stop, up": a network with a local
// chain pays a job to finality and stops; started again on the same
// directory, its ledger and the chain it kept agree (reconcile is clean),
// every balance is what it was, and payouts go on.
func TestRestartKeepsTheBooks(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{
		Dir: dir, Providers: 1, LocalChain: true, SlotInterval: 5 * time.Millisecond,
		AdminKey: "restart-test-admin-key-0123456789abcdef", Logger: testLogger(t),
	}
	ctx := timeout(t, 90*time.Second)
	start := func() *Network {
		t.Helper()
		nw, err := Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := nw.WaitRegistered(ctx); err != nil {
			nw.Close()
			t.Fatal(err)
		}
		return nw
	}
	pay := func(nw *Network) node3.Payout {
		t.Helper()
		j, err := nw.Submit(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: reward("0.002")})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nw.WaitJob(ctx, j.ID, node3.StatusCompleted); err != nil {
			t.Fatal(err)
		}
		var p node3.Payout
		if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
			var err error
			p, err = nw.Coordinator().Ledger().Payout(ctx, j.ID)
			return p.Status == node3.PayoutFinalized, err
		}); err != nil {
			t.Fatalf("payout of %s never finalized (last %s): %v", j.ID, p.Status, err)
		}
		return p
	}
	// balances reads the wallets over JSON-RPC at finalized, as a client would.
	balances := func(nw *Network, wallets ...string) []uint64 {
		t.Helper()
		client := rpc.New(nw.ChainURL())
		defer client.Close()
		var out []uint64
		for _, w := range wallets {
			res, err := client.GetBalance(ctx, solana.MustPublicKeyFromBase58(w), rpc.CommitmentFinalized)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, res.Value)
		}
		return out
	}

	nw := start()
	p := pay(nw)
	payer := nw.Coordinator().PayerAddress()
	// Let the finalized view catch up with every landed transaction.
	if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		b := balances(nw, payer, p.Wallet)
		return b[0] == nw.Chain().Balance(solana.MustPublicKeyFromBase58(payer)) && b[1] == uint64(p.Amount), nil
	}); err != nil {
		t.Fatal(err)
	}
	before := balances(nw, payer, p.Wallet)
	slot := nw.Chain().Slot()
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}

	nw = start()
	defer nw.Close()
	if got := nw.Coordinator().PayerAddress(); got != payer {
		t.Fatalf("payer %s after restart, was %s", got, payer)
	}
	if got := nw.Chain().Slot(); got < slot {
		t.Fatalf("chain at slot %d after restart, was at %d", got, slot)
	}
	rep, err := nw.Admin().Reconcile(ctx)
	if err != nil || !rep.OK {
		t.Fatalf("reconcile after restart: %+v %v", rep, err)
	}
	if after := balances(nw, payer, p.Wallet); after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("balances (payer, provider) %v after restart, were %v", after, before)
	}
	client := rpc.New(nw.ChainURL())
	defer client.Close()
	st, err := client.GetSignatureStatuses(ctx, true, solana.MustSignatureFromBase58(p.Signature))
	if err != nil || st.Value[0] == nil || st.Value[0].ConfirmationStatus != rpc.ConfirmationStatusFinalized {
		t.Fatalf("payout %s on chain after restart: %+v %v", p.Signature, st, err)
	}

	// Payouts go on from where the chain stopped.
	p2 := pay(nw)
	if p2.Wallet != p.Wallet {
		t.Fatalf("second payout to %s, first to %s", p2.Wallet, p.Wallet)
	}
	if err := poll(ctx, 5*time.Millisecond, func() (bool, error) {
		return balances(nw, p.Wallet)[0] == uint64(p.Amount+p2.Amount), nil
	}); err != nil {
		t.Fatalf("provider balance %v, want %d", balances(nw, p.Wallet), p.Amount+p2.Amount)
	}
	if rep, err := nw.Admin().Reconcile(ctx); err != nil || !rep.OK {
		t.Fatalf("reconcile after the second payout: %+v %v", rep, err)
	}
}
