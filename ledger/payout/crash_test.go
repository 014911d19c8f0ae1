package payout

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go/rpc"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/localchain"
	"github.com/node3/node3/ledger/wallet"
)

// Environment of TestCrashChild, set only in the child process that
// TestCrashRecovery starts.
const (
	crashDirEnv  = "NODE3_PAYOUT_CRASH_DIR"  // the env directory: ledger/ and marketplace.json
	crashURLEnv  = "NODE3_PAYOUT_CRASH_URL"  // the parent's chain
	crashKillEnv = "NODE3_PAYOUT_CRASH_KILL" // the step to stop at
)

// crashConfig is the engine's timing in the crash test, child and parent.
func crashConfig(led *ledger.Ledger, client RPC, payer *wallet.Wallet) Config {
	return Config{
		Ledger: led, RPC: client, Payer: payer,
		BatchSize:      4,
		BatchDelay:     -1,
		PollInterval:   5 * time.Millisecond,
		ResendInterval: 50 * time.Millisecond,
		MinBackoff:     10 * time.Millisecond,
		MaxBackoff:     100 * time.Millisecond,
	}
}

// TestCrashChild is the coordinator TestCrashRecovery kills: it runs the
// payout engine on the parent's ledger directory and chain, prints
// "step <step> <signature>" at each step of each transaction, and at the
// step named by crashKillEnv blocks, so that the SIGKILL lands there.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	led, err := ledger.Open(ledger.Config{Dir: filepath.Join(dir, "ledger")})
	if err != nil {
		fmt.Printf("error open ledger: %v\n", err)
		os.Exit(3)
	}
	payer, err := wallet.Load(filepath.Join(dir, "marketplace.json"))
	if err != nil {
		fmt.Printf("error load wallet: %v\n", err)
		os.Exit(3)
	}
	kill := os.Getenv(crashKillEnv)
	var mu sync.Mutex
	cfg := crashConfig(led, rpc.New(os.Getenv(crashURLEnv)), payer)
	cfg.hook = func(step string, tx ledger.PayoutTx) {
		mu.Lock()
		os.Stdout.WriteString("step " + step + " " + tx.Signature + "\n")
		mu.Unlock()
		if step == kill {
			time.Sleep(time.Minute) // the parent kills us here
		}
	}
	eng, err := New(cfg)
	if err != nil {
		fmt.Printf("error new engine: %v\n", err)
		os.Exit(3)
	}
	_ = eng.Run(context.Background())
}

// runCrashChild starts TestCrashChild, waits for it to reach step, kills
// it with SIGKILL there, and returns the signature of the transaction at
// that step.
func runCrashChild(t *testing.T, e *env, step string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+e.dir, crashURLEnv+"="+e.url, crashKillEnv+"="+step)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that never gets there is killed all the same; the check below fails.
	watchdog := time.AfterFunc(30*time.Second, func() { _ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) })
	defer watchdog.Stop()
	sc := bufio.NewScanner(stdout)
	var sig string
	var seen []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "step" {
			seen = append(seen, f[1])
			if f[1] == step {
				sig = f[2]
				break
			}
		} else if len(f) > 0 && f[0] == "error" {
			seen = append(seen, sc.Text())
		}
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_ = cmd.Wait()
	if sig == "" {
		t.Fatalf("the child never reached %q (saw %v); stderr:\n%s", step, seen, stderr.String())
	}
	t.Logf("killed at %s of %s after %v", step, sig, seen)
	return sig
}

// TestCrashRecovery kills the coordinator (a child process running the
// engine) with SIGKILL at each step between signing and finalization —
// right after the transaction is persisted, after a send before it is
// recorded, after processed, after confirmed — with new completed jobs
// before each restart. A last restart finishes the work; then Reconcile
// and the balances show that every job was paid exactly once.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	e := newEnv(t, localchain.Config{SlotInterval: 10 * time.Millisecond, ConfirmDepth: 4, FinalizeDepth: 12, BlockhashWindow: 1000})
	e.fund(100 * sol)
	ps := e.providers(4)
	e.waitFor("the airdrop to confirm", 5*time.Second, false, func() bool { return e.chain.Slot() > 5 })
	ctx := context.Background()
	var jobs []node3.Job
	killed := make(map[string]string)
	for round, step := range []string{"persisted", "sent", "processed", "confirmed"} {
		for i := range 6 {
			jobs = append(jobs, complete(t, e.led, ps[(round+i)%len(ps)].agent, node3.Lamports(2_000_000+1000*len(jobs))))
		}
		if err := e.led.Close(); err != nil {
			t.Fatal(err)
		}
		killed[step] = runCrashChild(t, e, step)
		e.led = e.openLedger()
		tx, err := e.led.PayoutTx(ctx, killed[step])
		if err != nil {
			t.Fatalf("round %d: the transaction killed at %s is not in the ledger: %v", round, step, err)
		}
		want := map[string]ledger.TxStatus{"persisted": ledger.TxSigned, "sent": ledger.TxSigned, "processed": ledger.TxProcessed, "confirmed": ledger.TxConfirmed}[step]
		if tx.Status != want {
			t.Fatalf("round %d: killed at %s, the ledger has the transaction %s", round, step, tx.Status)
		}
	}

	// The last restart, in process, finishes everything.
	cfg := crashConfig(e.led, e.client, e.payer)
	_, stop := e.start(cfg)
	e.waitFor("every payout finalized", 30*time.Second, false, e.finalized(len(jobs)))
	stop()

	r := e.reconcile()
	txs := mustTxs(t, e.led)
	if r.Finalized != len(jobs) || r.Landed != len(txs) || txsIn(txs, ledger.TxFinalized) != len(txs) {
		t.Fatalf("%d transactions, %d finalized; report %s", len(txs), txsIn(txs, ledger.TxFinalized), r)
	}
	want := rewardsByWallet(jobs, ps)
	for _, p := range ps {
		if got := e.chain.Balance(p.addr()); got != uint64(want[p.addr()]) {
			t.Errorf("provider %s: %d lamports, rewards %d", p.addr(), got, want[p.addr()])
		}
	}
	// The transaction killed before its first send was resent after the
	// restart as the same bytes: its blockhash outlived the restart, so it
	// was never re-signed.
	for _, sig := range []string{killed["persisted"], killed["sent"]} {
		if tx, _ := e.led.PayoutTx(ctx, sig); tx.Status != ledger.TxFinalized {
			t.Errorf("transaction %s ended %s", sig, tx.Status)
		}
	}
	t.Logf("%s", r)
}
