package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/node3/node3/harness"
)

// TestCreateJobAnswerLost: the coordinator creates the job but its answer
// never reaches `admin create-job` (the connection drops, as when the
// coordinator is killed mid-request); the CLI retries with the same
// idempotency key and there is still exactly one job.
func TestCreateJobAnswerLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nw, err := harness.Start(ctx, harness.Config{Dir: t.TempDir(), NoProviders: true})
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	target, _ := url.Parse(nw.MarketplaceURL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var creates, dropped atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/admin/jobs/create" {
			proxy.ServeHTTP(w, r)
			return
		}
		creates.Add(1)
		if r.Header.Get("Idempotency-Key") == "" {
			t.Error("create-job sent no Idempotency-Key")
		}
		if dropped.Add(1) <= 2 {
			// Let the coordinator create the job, then lose its answer.
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r)
			if rec.Code != http.StatusCreated {
				t.Errorf("the hidden create answered %d: %s", rec.Code, rec.Body)
			}
			panic(http.ErrAbortHandler)
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	key, _ := nw.Coordinator().AdminKey()
	t.Setenv("MARKETPLACE_URL", srv.URL)
	t.Setenv("ADMIN_API_KEY", key)

	out, errs, code := runCLI(t, "admin", "create-job", "--job-type", "noop", "--reward", "1e-06")
	if code != 0 || !strings.Contains(out, "Created job") || !strings.Contains(out, "0.000001 SOL") {
		t.Fatalf("create-job: exit %d\n%s%s", code, out, errs)
	}
	if n := creates.Load(); n != 3 {
		t.Fatalf("%d create requests reached the proxy, want 3 (two answers lost, then the replay)", n)
	}
	st, err := nw.Admin().Stats(ctx)
	if err != nil || st.JobsTotal != 1 {
		t.Fatalf("jobs after a retried create: %d (%v), want 1", st.JobsTotal, err)
	}
}
