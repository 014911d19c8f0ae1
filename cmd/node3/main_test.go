package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"

	"github.com/node3/node3/harness"
	"github.com/node3/node3/ledger/localchain"
)

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"--env-file", ""}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

func TestUpCheck(t *testing.T) {
	out, errs, code := runCLI(t, "up", "--check", "--data-dir", t.TempDir(), "--marketplace-port", "0", "--agent-port", "0", "--providers", "1")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, want := range []string{"marketplace API:", "provider-1:", "ADMIN_API_KEY=", "end-to-end test passed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"run", "--marketplace-port", "70000"}, "not a port"},
		{[]string{"run", "--slots", "0"}, "--slots"},
		{[]string{"run", "--limit-register", "5/d"}, "N/s, N/m or N/h"},
		{[]string{"run", "--limit-agent", "10/s,0"}, "N/s, N/m or N/h"},
		{[]string{"run", "--max-connections", "0"}, "--max-connections"},
		{[]string{"run", "--max-connections-per-client", "-2"}, "--max-connections-per-client"},
		{[]string{"run", "--trusted-proxy", "proxy.example"}, "--trusted-proxy"},
		{[]string{"run", "--node-api-host", "http://x/"}, "--node-api-host"},
		{[]string{"up", "--providers", "-1"}, "--providers"},
		{[]string{"run", "--log-level", "loud", "--data-dir", "DIR"}, "log level"},
		{[]string{"admin", "stats", "--admin-key", ""}, "admin API key is required"},
		{[]string{"admin", "create-job", "--admin-key", "k"}, "--reward is required"},
		{[]string{"admin", "create-job", "--admin-key", "k", "--reward", "-1"}, "negative"},
		{[]string{"admin", "create-job", "--admin-key", "k", "--reward", "1e-10"}, "smaller than one lamport"},
		{[]string{"admin", "create-job", "--admin-key", "k", "--reward", "0.1", "--retry-for", "0s"}, "--retry-for"},
		{[]string{"admin", "create-job", "--admin-key", "k", "--reward", "0.1", "--env", "NOEQUALS"}, "KEY=VALUE"},
		{[]string{"e2e"}, "admin API key is required"},
		{[]string{"bogus"}, "unknown command"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Setenv("ADMIN_API_KEY", "")
			for i, a := range c.args {
				if a == "DIR" {
					c.args[i] = t.TempDir()
				}
			}
			out, errs, code := runCLI(t, c.args...)
			if code == 0 || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, stderr %q (stdout %q); want non-zero and %q", code, errs, out, c.want)
			}
		})
	}
}

func TestEnvBinding(t *testing.T) {
	t.Setenv("MARKETPLACE_PORT", "not-a-number")
	_, errs, code := runCLI(t, "run", "--data-dir", t.TempDir())
	if code == 0 || !strings.Contains(errs, "$MARKETPLACE_PORT") {
		t.Fatalf("exit %d, stderr %q; want the variable named", code, errs)
	}
}

// TestAdminCommands drives the admin CLI against a running network.
func TestAdminCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nw, err := harness.Start(ctx, harness.Config{Dir: t.TempDir(), Providers: 1, LocalChain: true, SlotInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	key, _ := nw.Coordinator().AdminKey()
	t.Setenv("MARKETPLACE_URL", nw.MarketplaceURL())
	t.Setenv("ADMIN_API_KEY", key)

	out, errs, code := runCLI(t, "admin", "create-job", "--job-type", "test", "--reward", "0.001", "--requires-gpu")
	if code != 0 || !strings.Contains(out, "Created job") || !strings.Contains(out, "0.001 SOL") {
		t.Fatalf("create-job: exit %d\n%s%s", code, out, errs)
	}
	if err := nw.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, _ = runCLI(t, "admin", "stats")
		if regexp.MustCompile(`(?m)^\s+completed\s+1$`).MatchString(out) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !regexp.MustCompile(`Rewards of completed jobs\s+0.001 SOL`).MatchString(out) {
		t.Fatalf("stats:\n%s", out)
	}
	// The payout is somewhere between pending and finalized by now.
	out, _, code = runCLI(t, "admin", "payment-history")
	if code != 0 || !regexp.MustCompile(`0\.001\s+(pending|sent|confirmed|finalized)`).MatchString(out) {
		t.Fatalf("payment-history: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "admin", "jobs", "--status", "completed")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Fatalf("jobs: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "admin", "wallet-info")
	if code != 0 || !strings.Contains(out, nw.Coordinator().PayerAddress()) {
		t.Fatalf("wallet-info: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "admin", "fund-wallet", "--amount", "2")
	if code != 0 || !strings.Contains(out, "Requested an airdrop of 2 SOL") {
		t.Fatalf("fund-wallet: exit %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "admin", "reconcile")
	if code != 0 || !strings.Contains(out, "ledger and chain agree") {
		t.Fatalf("reconcile: exit %d\n%s", code, out)
	}
	// A wrong key is a clear error, not a crash.
	t.Setenv("ADMIN_API_KEY", "wrong")
	_, errs, code = runCLI(t, "admin", "stats")
	if code == 0 || !strings.Contains(errs, "401") {
		t.Fatalf("wrong key: exit %d, %s", code, errs)
	}
}

// TestUpTwiceOnOneDataDir runs `up --check` twice on one data directory,
// the admin key once from $ADMIN_API_KEY and once from --admin-key: each
// run uses (and prints) the key it was given, the chain is kept in the
// data directory, and the second run pays from the wallet the first one
// funded instead of funding it again.
func TestUpTwiceOnOneDataDir(t *testing.T) {
	dir := t.TempDir()
	payerRe := regexp.MustCompile(`payouts from (\w+)`)
	payerBalance := func(addr string) uint64 {
		t.Helper()
		c, err := localchain.Open(localchain.Config{Dir: filepath.Join(dir, harness.ChainDirName), SlotInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Balance(solana.MustPublicKeyFromBase58(addr))
	}
	var payer string
	var balance uint64
	for i, key := range []string{"up-test-key-from-the-environment-0001", "up-test-key-from-the-flag-000000000002"} {
		args := []string{"up", "--check", "--data-dir", dir, "--marketplace-port", "0", "--agent-port", "0", "--providers", "1", "--slot-interval", "5ms"}
		if i == 0 {
			t.Setenv("ADMIN_API_KEY", key)
		} else {
			t.Setenv("ADMIN_API_KEY", "up-test-key-that-the-flag-overrides-003")
			args = append(args, "--admin-key", key)
		}
		out, errs, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", i+1, code, out, errs)
		}
		if !strings.Contains(out, "ADMIN_API_KEY="+key+"\n") || !strings.Contains(out, "end-to-end test passed") {
			t.Fatalf("run %d: output lacks the key %s or the e2e result:\n%s", i+1, key, out)
		}
		m := payerRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("run %d: no payer in the output:\n%s", i+1, out)
		}
		if i > 0 && m[1] != payer {
			t.Fatalf("run 2 pays from %s, run 1 from %s", m[1], payer)
		}
		payer = m[1]
		b := payerBalance(payer)
		if i > 0 && (b == 0 || b >= balance) {
			t.Fatalf("payer holds %d lamports after run 2, %d after run 1: want less, and not funded again", b, balance)
		}
		balance = b
	}
}

// TestLocalchainLedgerIsChecked: `localchain --ledger` refuses a ledger
// directory whose log is not a chain's, naming the file.
func TestLocalchainLedgerIsChecked(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "txlog")
	if err := os.WriteFile(log, []byte("this is not a localchain log at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errs, code := runCLI(t, "localchain", "--ledger", dir, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, log) || !strings.Contains(errs, "corrupt") {
		t.Fatalf("exit %d, stderr %q (stdout %q); want an error naming %s", code, errs, out, log)
	}
}
