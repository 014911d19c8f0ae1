package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/node/coordinator"
)

// TestMain checks that no test leaves a goroutine behind (servers,
// long-polls, ledgers).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	adminKey = "test-admin-key-0123456789abcdef"
	walletA  = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
	walletB  = "4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T"
)

// market is a real coordinator over a fresh ledger behind the marketplace API.
type market struct {
	api   *httpapi.MarketplaceAPI
	coord *coordinator.Coordinator
	reg   *prometheus.Registry // the coordinator's metrics
	doc   *httpapi.APIDoc
	srv   *httptest.Server // nil until serve
	hc    *http.Client     // checks every exchange against the document
}

type marketOpts struct {
	maxWait  time.Duration        // longest long-poll (0: the API's default)
	offerTTL time.Duration        // how long a polled job is held from other polls (0: the default)
	limits   httpapi.Limits       // the API's abuse limits (zero: the defaults)
	now      func() time.Time     // the API's clock (nil: time.Now)
	apiReg   *prometheus.Registry // the API's metrics (nil: its own)
}

func newMarket(t testing.TB, o marketOpts) *market {
	t.Helper()
	led, err := ledger.Open(ledger.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatalf("ledger.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := led.Close(); err != nil {
			t.Errorf("ledger.Close: %v", err)
		}
	})
	reg := prometheus.NewRegistry()
	coord, err := coordinator.New(context.Background(), coordinator.Config{Ledger: led, Registerer: reg, OfferTTL: o.offerTTL})
	if err != nil {
		t.Fatalf("NewCoordinator: %v", err)
	}
	doc, err := httpapi.MarketplaceDoc()
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.NewMarketplace(httpapi.MarketplaceConfig{Market: coord, AdminKey: adminKey, MaxWait: o.maxWait, Version: "test", Limits: o.limits, Now: o.now, Registry: o.apiReg})
	return &market{api: api, coord: coord, reg: reg, doc: doc}
}

// serve starts an HTTP server for the API; it stops before the ledger closes.
func (m *market) serve(t testing.TB) {
	t.Helper()
	m.srv = httptest.NewServer(m.api)
	t.Cleanup(m.srv.Close)
	m.hc = &http.Client{Transport: &checker{t: t, base: m.srv.Client().Transport, doc: m.doc}}
}

func (m *market) client(t testing.TB, apiKey, admin string) *httpapi.Client {
	t.Helper()
	c, err := httpapi.NewClient(httpapi.ClientConfig{BaseURL: m.srv.URL, APIKey: apiKey, AdminKey: admin, HTTP: m.hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checker is a RoundTripper that holds every exchange to the OpenAPI
// document: no 5xx, a documented status with a body its schema accepts,
// and a request body the schema accepts whenever the server accepted it.
type checker struct {
	t    testing.TB
	base http.RoundTripper
	doc  *httpapi.APIDoc
}

func (c *checker) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err := checkExchange(c.doc, req.Method, req.URL.EscapedPath(), reqBody, resp.StatusCode, resp.Header, body); err != nil {
		c.t.Errorf("%v", err)
	}
	return resp, nil
}

func checkExchange(doc *httpapi.APIDoc, method, path string, reqBody []byte, status int, h http.Header, body []byte) error {
	// 503 is the one 5xx allowed: a documented state of the server (its
	// payments are off), never an answer to bad input.
	if status >= 500 && !(status == http.StatusServiceUnavailable && strings.Contains(string(body), `"code":"unavailable"`)) {
		return fmt.Errorf("%s %s: %d (a 5xx for a request): %s", method, path, status, body)
	}
	if err := doc.CheckResponse(method, path, status, h, body); err != nil {
		return fmt.Errorf("response not as documented: %w\nbody: %.300s", err, body)
	}
	if status < 300 && len(bytes.TrimSpace(reqBody)) > 0 {
		if err := doc.CheckRequest(method, path, reqBody); err != nil {
			return fmt.Errorf("%s %s: the server took a body the document rejects: %w\nbody: %.300s", method, path, err, reqBody)
		}
	}
	return nil
}

// gauge reads a gauge without labels.
func gauge(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func pollCount(t testing.TB, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "node3_coordinator_polls_total" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func wantCode(t *testing.T, what string, err error, code node3.Code) {
	t.Helper()
	if got := node3.ErrorCode(err); err == nil || got != code {
		t.Fatalf("%s: error %v (code %q), want code %q", what, err, got, code)
	}
}

// TestMarketplaceFlow runs the seed's flow through the HTTP API with the
// Client: register, create (admin), long-poll for it, accept, heartbeat,
// complete, payout listed, stats counted; repeated calls are idempotent
// and a second agent is turned away.
func TestMarketplaceFlow(t *testing.T) {
	m := newMarket(t, marketOpts{})
	m.serve(t)
	ctx := t.Context()
	pub := m.client(t, "", "")
	admin := m.client(t, "", adminKey)

	h, err := pub.Health(ctx)
	if err != nil || h.Status != "healthy" || h.Version != "test" {
		t.Fatalf("Health: %+v, %v", h, err)
	}
	ra, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletA, GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30, Version: "v1"})
	if err != nil {
		t.Fatalf("Register A: %v", err)
	}
	if !strings.HasPrefix(ra.APIKey, ledger.APIKeyPrefix) || ra.AgentID == "" || ra.Agent.ID != ra.AgentID || ra.Agent.Status != "online" || len(ra.Agent.GPUs) != 1 {
		t.Fatalf("Register A: %+v", ra)
	}
	rb, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletB, GPUs: []node3.GPU{{Vendor: "Demo", Model: "Demo GPU", MemoryBytes: 4 << 30, Simulated: true}}})
	if err != nil {
		t.Fatalf("Register B: %v", err)
	}
	if rb.Agent.GPUModel != "Demo GPU" {
		t.Errorf("Register B with gpus only: gpu_model %q", rb.Agent.GPUModel)
	}
	a, b := pub.WithAPIKey(ra.APIKey), pub.WithAPIKey(rb.APIKey)

	if jobs, err := a.Available(ctx, 10, nil, 0); err != nil || len(jobs) != 0 {
		t.Fatalf("Available on an empty board: %v, %v", jobs, err)
	}

	// Long-poll: a job created while the poll waits comes back at once.
	const wait = 20 * time.Second
	type polled struct {
		jobs []node3.Job
		err  error
		at   time.Time
	}
	got := make(chan polled, 1)
	go func() {
		jobs, err := a.Available(ctx, 10, nil, wait)
		got <- polled{jobs, err, time.Now()}
	}()
	// The job is created only once the poll waits for one, so its answer
	// proves the wake-up (the poll's first look would find it otherwise).
	for deadline := time.Now().Add(5 * time.Second); gauge(t, m.reg, "node3_coordinator_polls_waiting") != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the long-poll never waited at the coordinator")
		}
	}
	created := time.Now()
	job, err := admin.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "test", Reward: httpapi.SOL(1_000_000), RequiresGPU: true, MinGPUMemory: 16 << 30, Description: "flow"})
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if job.Status != node3.StatusAvailable || job.Reward != 1_000_000 || job.TimeoutSecs != node3.DefaultTimeout || job.MaxAttempts != node3.DefaultMaxAttempts {
		t.Fatalf("CreateJob: %+v", job)
	}
	var p polled
	select {
	case p = <-got:
	case <-time.After(wait):
		t.Fatal("the long-poll did not return within its wait")
	}
	if p.err != nil || len(p.jobs) != 1 || p.jobs[0].ID != job.ID {
		t.Fatalf("long-poll: %v, %v", p.jobs, p.err)
	}
	if d := p.at.Sub(created); d > wait/2 {
		t.Errorf("long-poll returned %v after the job was created; the wait was %v", d, wait)
	}
	// B's 4 GiB GPU does not meet the job's 16 GiB.
	if jobs, err := b.Available(ctx, 10, nil, 0); err != nil || len(jobs) != 0 {
		t.Errorf("B sees %v, %v", jobs, err)
	}
	_, err = b.Accept(ctx, job.ID)
	wantCode(t, "B accepts a job its GPUs do not meet", err, node3.CodeForbidden)

	acc, err := a.Accept(ctx, job.ID)
	if err != nil || acc.Status != node3.StatusAccepted || acc.AgentID != ra.AgentID || acc.Attempt != 1 || acc.LeaseExpiresAt.IsZero() {
		t.Fatalf("Accept: %+v, %v", acc, err)
	}
	again, err := a.Accept(ctx, job.ID)
	if err != nil || !jobsEqual(again, acc) {
		t.Fatalf("repeated Accept: %v\n got %+v\nwant %+v", err, again, acc)
	}
	rc, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletB, GPUModel: "A100", GPUVendor: "NVIDIA", GPUMemory: 80 << 30})
	if err != nil {
		t.Fatal(err)
	}
	c := pub.WithAPIKey(rc.APIKey)
	_, err = c.Accept(ctx, job.ID)
	wantCode(t, "a second agent accepts a taken job", err, node3.CodeConflict)

	hb, err := a.Heartbeat(ctx, job.ID, 0)
	if err != nil || hb.Status != node3.StatusRunning || hb.StartedAt.IsZero() {
		t.Fatalf("Heartbeat: %+v, %v", hb, err)
	}
	_, err = c.Heartbeat(ctx, job.ID, 0)
	wantCode(t, "heartbeat by another agent", err, node3.CodeConflict)

	res := node3.JobResult{ExecutionTime: 1.25, ExitCode: 0, Output: "ok", Metrics: map[string]float64{"tflops": 81.5}}
	done, err := a.Complete(ctx, job.ID, httpapi.CompleteRequest{JobResult: res})
	if err != nil || done.Status != node3.StatusCompleted || done.Result == nil || done.Result.ExecutionTime != 1.25 || done.FinishedAt.IsZero() {
		t.Fatalf("Complete: %+v, %v", done, err)
	}
	again, err = a.Complete(ctx, job.ID, httpapi.CompleteRequest{JobResult: res})
	if err != nil || !jobsEqual(again, done) {
		t.Fatalf("repeated Complete: %v\n got %+v\nwant %+v", err, again, done)
	}
	_, err = c.Complete(ctx, job.ID, httpapi.CompleteRequest{JobResult: res})
	wantCode(t, "complete by another agent", err, node3.CodeConflict)
	_, err = a.Accept(ctx, job.ID)
	wantCode(t, "accept a completed job", err, node3.CodeConflict)

	pays, err := admin.Payments(ctx, "", 0)
	if err != nil || pays.Count != 1 || len(pays.Payments) != 1 {
		t.Fatalf("Payments: %+v, %v", pays, err)
	}
	pay := pays.Payments[0]
	if pay.JobID != job.ID || pay.AgentID != ra.AgentID || pay.Wallet != walletA || pay.Amount != "0.001" || pay.Payout.Amount != 1_000_000 || pay.Status != node3.PayoutPending {
		t.Errorf("payout: %+v", pay)
	}
	if pend, err := admin.Payments(ctx, node3.PayoutPending, 10); err != nil || pend.Count != 1 {
		t.Errorf("pending payments: %+v, %v", pend, err)
	}
	if fin, err := admin.Payments(ctx, node3.PayoutFinalized, 10); err != nil || fin.Count != 0 {
		t.Errorf("finalized payments: %+v, %v", fin, err)
	}

	st, err := admin.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.JobsTotal != 1 || st.Jobs[node3.StatusCompleted] != 1 || st.Jobs[node3.StatusAvailable] != 0 || st.Agents != 3 || st.AgentsOnline != 3 ||
		st.RewardsCompleted != 1_000_000 || st.RewardsCompletedSOL != "0.001" || st.PayoutsPending != 1 || st.PayoutsPendingSOL != "0.001" || st.PayoutsPaidSOL != "0" {
		t.Errorf("Stats: %+v", st)
	}

	agents, err := pub.Agents(ctx)
	if err != nil || agents.Count != 3 || agents.Online != 3 {
		t.Fatalf("Agents: %+v, %v", agents, err)
	}
	for _, v := range agents.Agents {
		if v.ID == ra.AgentID && (v.JobsCompleted != 1 || v.Earned != "0.001" || v.Agent.Earned != 1_000_000) {
			t.Errorf("agent A after the job: %+v", v)
		}
	}

	if j, err := admin.Job(ctx, job.ID); err != nil || j.Status != node3.StatusCompleted {
		t.Errorf("admin Job: %+v, %v", j, err)
	}
	if j, err := a.Job(ctx, job.ID); err != nil || j.ID != job.ID {
		t.Errorf("holder's Job: %+v, %v", j, err)
	}
	_, err = b.Job(ctx, job.ID)
	wantCode(t, "another agent's Job", err, node3.CodeForbidden)
	if jobs, err := pub.MarketplaceJobs(ctx); err != nil || len(jobs) != 0 {
		t.Errorf("board after the job: %v, %v", jobs, err)
	}
	if jobs, err := admin.Jobs(ctx, node3.StatusCompleted, 10); err != nil || len(jobs) != 1 {
		t.Errorf("completed jobs: %v, %v", jobs, err)
	}
}

// jobsEqual compares jobs as the API returned them (times as instants).
func jobsEqual(a, b node3.Job) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestMarketplaceFailCancelAndPublicView: a retryable failure requeues,
// a final one fails; cancel is idempotent and refuses finished jobs; the
// public board hides env values the agent gets to see; a long-poll with
// nothing to find ends with an empty list.
func TestMarketplaceFailCancelAndPublicView(t *testing.T) {
	m := newMarket(t, marketOpts{offerTTL: time.Millisecond})
	m.serve(t)
	ctx := t.Context()
	pub := m.client(t, "", "")
	admin := m.client(t, "", adminKey)
	ra, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletA})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletB})
	if err != nil {
		t.Fatal(err)
	}
	a, b := pub.WithAPIKey(ra.APIKey), pub.WithAPIKey(rb.APIKey)

	start := time.Now()
	if jobs, err := a.Available(ctx, 1, nil, 150*time.Millisecond); err != nil || len(jobs) != 0 {
		t.Fatalf("empty long-poll: %v, %v", jobs, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("empty long-poll returned after %v, before its wait", d)
	}

	job, err := admin.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: []byte(`"0.5"`), MaxAttempts: 2, Env: map[string]string{"TOKEN": "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	board, err := pub.MarketplaceJobs(ctx)
	if err != nil || len(board) != 1 || board[0].Env != nil || board[0].Reward != 500_000_000 {
		t.Fatalf("public board: %+v, %v", board, err)
	}
	if jobs, err := a.Available(ctx, 10, &node3.Capacity{Slots: 0}, 0); err != nil || len(jobs) != 0 {
		t.Fatalf("no free slot, yet offered %+v, %v", jobs, err)
	}
	offered, err := a.Available(ctx, 10, &node3.Capacity{Slots: 1}, 0)
	if err != nil || len(offered) != 1 || offered[0].Env["TOKEN"] != "s3cret" {
		t.Fatalf("agent's view: %+v, %v", offered, err)
	}

	if _, err := a.Accept(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	fr := httpapi.FailRequest{Reason: "CUDA out of memory", Retryable: true, JobResult: node3.JobResult{ExecutionTime: 0.5, ExitCode: 137}}
	requeued, err := a.Fail(ctx, job.ID, fr)
	if err != nil || requeued.Status != node3.StatusAvailable || requeued.Error != fr.Reason || requeued.Attempt != 1 {
		t.Fatalf("retryable Fail: %+v, %v", requeued, err)
	}
	again, err := a.Fail(ctx, job.ID, fr)
	if err != nil || !jobsEqual(again, requeued) {
		t.Fatalf("repeated retryable Fail: %v\n got %+v\nwant %+v", err, again, requeued)
	}
	if _, err := b.Accept(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	_, err = a.Fail(ctx, job.ID, fr)
	wantCode(t, "fail by the former holder", err, node3.CodeConflict)
	failed, err := b.Fail(ctx, job.ID, httpapi.FailRequest{Reason: "bad input"})
	if err != nil || failed.Status != node3.StatusFailed || failed.Attempt != 2 {
		t.Fatalf("final Fail: %+v, %v", failed, err)
	}
	if again, err := b.Fail(ctx, job.ID, httpapi.FailRequest{Reason: "bad input"}); err != nil || !jobsEqual(again, failed) {
		t.Fatalf("repeated final Fail: %+v, %v", again, err)
	}
	_, err = admin.Cancel(ctx, job.ID, "too late")
	wantCode(t, "cancel a failed job", err, node3.CodeConflict)

	j2, err := admin.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(1)})
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := admin.Cancel(ctx, j2.ID, "")
	if err != nil || cancelled.Status != node3.StatusCancelled {
		t.Fatalf("Cancel: %+v, %v", cancelled, err)
	}
	if again, err := admin.Cancel(ctx, j2.ID, "again"); err != nil || !jobsEqual(again, cancelled) {
		t.Fatalf("repeated Cancel: %+v, %v", again, err)
	}
	_, err = a.Accept(ctx, j2.ID)
	wantCode(t, "accept a cancelled job", err, node3.CodeConflict)

	st, err := admin.Stats(ctx)
	if err != nil || st.Jobs[node3.StatusFailed] != 1 || st.Jobs[node3.StatusCancelled] != 1 || st.PayoutsPending != 0 || st.RewardsCompletedSOL != "0" {
		t.Errorf("Stats: %+v, %v", st, err)
	}
	agents, err := pub.Agents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range agents.Agents {
		if v.ID == rb.AgentID && v.JobsFailed != 1 {
			t.Errorf("agent B: %+v", v)
		}
	}
}
