package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/harness"
)

// TestAdminLoad: `admin load` submits its jobs, waits for each to end and
// reports them all completed.
func TestAdminLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nw, err := harness.Start(ctx, harness.Config{Dir: t.TempDir(), Providers: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	if err := nw.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	key, _ := nw.Coordinator().AdminKey()
	t.Setenv("MARKETPLACE_URL", nw.MarketplaceURL())
	t.Setenv("ADMIN_API_KEY", key)

	out, errs, code := runCLI(t, "admin", "load", "--jobs", "40", "--concurrency", "4", "--json")
	if code != 0 {
		t.Fatalf("load: exit %d\n%s%s", code, out, errs)
	}
	var r loadReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("load printed %q: %v", out, err)
	}
	if r.Jobs != 40 || r.NotCompleted != 0 || r.JobsPerSec <= 0 || r.CompleteP50ms <= 0 {
		t.Fatalf("report %+v", r)
	}
	s, err := nw.Coordinator().Ledger().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Jobs[node3.StatusCompleted] != 40 {
		t.Fatalf("the coordinator completed %d jobs, want 40", s.Jobs[node3.StatusCompleted])
	}

	if _, errs, code := runCLI(t, "admin", "load", "--jobs", "0"); code == 0 {
		t.Fatalf("--jobs 0 was accepted: %s", errs)
	}
}
