package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/node3/node3/harness"
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
		{[]string{"admin", "create-job", "--admin-key", "k", "--reward", "1e-3"}, "plain decimal"},
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
