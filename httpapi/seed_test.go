package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// seedCall sends body byte for byte, as the seed's Python tools do with
// requests (json.dumps: ", " and ": " separators, small floats with
// exponents), and decodes the answer into out.
func seedCall(t *testing.T, m *market, method, path, key, body string, want int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, m.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "python-requests/2.31.0")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := m.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s %s: status %d, want %d: %s", method, path, body, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// TestSeedClientBytes walks the seed's agent and admin tool through a job
// with the exact bytes they send: a reward of 1e-06 SOL, GPU capabilities
// with each poll, the wallet named at the accept (paid there, and shown in
// the payment history).
func TestSeedClientBytes(t *testing.T) {
	m := newMarket(t, marketOpts{})
	m.serve(t)

	var reg httpapi.RegisterResponse
	seedCall(t, m, "POST", "/api/agents/register", "",
		`{"wallet_address": "`+walletA+`", "gpu_model": "Demo GPU", "gpu_vendor": "Demo", "gpu_memory": 8000000000}`, 201, &reg)

	var created httpapi.JobResponse
	seedCall(t, m, "POST", "/api/admin/jobs/create", adminKey,
		`{"job_type": "test", "reward": 1e-06, "requires_gpu": true, "min_gpu_memory": 16000000000}`, 201, &created)
	if created.Job.Job.Reward != 1000 || created.Job.Reward.String() != "0.000001" {
		t.Fatalf("reward 1e-06 SOL became %d lamports (%s SOL)", created.Job.Job.Reward, created.Job.Reward)
	}
	var small httpapi.JobResponse
	seedCall(t, m, "POST", "/api/admin/jobs/create", adminKey, `{"job_type": "test", "reward": 5e-05}`, 201, &small)
	if small.Job.Job.Reward != 50_000 {
		t.Fatalf("reward 5e-05 SOL became %d lamports", small.Job.Job.Reward)
	}
	seedCall(t, m, "POST", "/api/admin/jobs/create", adminKey, `{"job_type": "test", "reward": 1e-10}`, 400, nil)

	// The registered 8 GB GPU does not fit the 16 GB job; the agent's poll
	// says it now has a bigger one, and gets it.
	var jobs httpapi.JobsResponse
	seedCall(t, m, "POST", "/api/jobs/available", reg.APIKey, `{"gpu_memory": 8000000000}`, 200, &jobs)
	for _, j := range jobs.Jobs {
		if j.ID == created.Job.ID {
			t.Fatalf("an 8 GB agent was offered a 16 GB job")
		}
	}
	seedCall(t, m, "POST", "/api/jobs/available", reg.APIKey,
		`{"gpu_model": "RTX 4090", "gpu_vendor": "NVIDIA", "gpu_memory": 25757220864}`, 200, &jobs)
	found := false
	for _, j := range jobs.Jobs {
		found = found || j.ID == created.Job.ID
	}
	if !found {
		t.Fatalf("after reporting a 24 GB GPU the agent was not offered the 16 GB job: %+v", jobs.Jobs)
	}
	a, err := m.coord.AgentByKey(context.Background(), reg.APIKey)
	if err != nil || a.GPUModel != "RTX 4090" || len(a.GPUs) != 1 || a.GPUs[0].MemoryBytes != 25757220864 {
		t.Fatalf("the agent's capabilities after the poll: %+v, %v", a, err)
	}

	// The accept names another wallet; the reward goes there.
	var acc httpapi.JobResponse
	seedCall(t, m, "POST", "/api/jobs/"+created.Job.ID+"/accept", reg.APIKey, `{"wallet_address": "`+walletB+`"}`, 200, &acc)
	if acc.Job.Status != node3.StatusAccepted || acc.Job.Wallet != walletB {
		t.Fatalf("accepted: %+v", acc.Job)
	}
	seedCall(t, m, "POST", "/api/jobs/"+small.Job.ID+"/accept", reg.APIKey, `{"wallet_address": "not-a-wallet"}`, 400, nil)
	seedCall(t, m, "POST", "/api/jobs/"+small.Job.ID+"/accept", reg.APIKey, `{"wallet_address": "`+walletB+`", "tip": 1}`, 400, nil)
	seedCall(t, m, "POST", "/api/jobs/"+created.Job.ID+"/complete", reg.APIKey,
		`{"execution_time": 1.5, "exit_code": 0, "output": "ok", "metrics": {"tflops": 1e-06}}`, 200, nil)

	var pays httpapi.PayoutsResponse
	seedCall(t, m, "GET", "/api/admin/payments", adminKey, "", 200, &pays)
	if len(pays.Payments) != 1 || pays.Payments[0].Wallet != walletB || pays.Payments[0].Amount.String() != "0.000001" {
		t.Fatalf("payment history: %+v", pays.Payments)
	}
}

// TestAgentCapacity: an agent is never offered or leased more jobs at once
// than it declared (slots + GPUs), however large its limit; others get the
// rest.
func TestAgentCapacity(t *testing.T) {
	m := newMarket(t, marketOpts{})
	m.serve(t)
	ctx := context.Background()
	pub := m.client(t, "", "")
	admin := m.client(t, "", adminKey)
	ra, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletA, Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletB})
	if err != nil {
		t.Fatal(err)
	}
	a, b := pub.WithAPIKey(ra.APIKey), pub.WithAPIKey(rb.APIKey)
	var ids []string
	for range 6 {
		j, err := admin.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(1)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	got, err := a.Available(ctx, 100, nil, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("a declared 2 slots and was offered %d jobs (%v)", len(got), err)
	}
	// b (no slots declared: one) sees the others, not a's.
	other, err := b.Available(ctx, 100, nil, 0)
	if err != nil || len(other) != 1 || other[0].ID == got[0].ID || other[0].ID == got[1].ID {
		t.Fatalf("b was offered %+v (%v); a holds %s and %s", other, err, got[0].ID, got[1].ID)
	}
	for _, j := range got {
		if _, err := a.Accept(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Holding two leases, a is offered nothing and may accept nothing more.
	if more, err := a.Available(ctx, 100, nil, 0); err != nil || len(more) != 0 {
		t.Fatalf("a holds its capacity and was offered %d more (%v)", len(more), err)
	}
	if _, err := a.Accept(ctx, ids[5]); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("accept past capacity: %v, want a conflict", err)
	}
	// A repeated accept of a held job is still the same answer.
	if _, err := a.Accept(ctx, got[0].ID); err != nil {
		t.Fatalf("repeated accept: %v", err)
	}
	if _, err := a.Complete(ctx, got[0].ID, httpapi.CompleteRequest{}); err != nil {
		t.Fatal(err)
	}
	if more, err := a.Available(ctx, 100, nil, 0); err != nil || len(more) != 1 {
		t.Fatalf("after finishing one, a was offered %d (%v), want 1", len(more), err)
	}
}

// TestReportsScopedToAttempt: after a retryable failure the job goes back
// clean, its provider is barred from it for a while (others see it at
// once), and a report for the old attempt is a 409 that books no payout.
func TestReportsScopedToAttempt(t *testing.T) {
	m := newMarket(t, marketOpts{})
	m.serve(t)
	ctx := context.Background()
	pub := m.client(t, "", "")
	admin := m.client(t, "", adminKey)
	ra, _ := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletA})
	rb, _ := pub.Register(ctx, httpapi.RegisterRequest{WalletAddress: walletB})
	a, b := pub.WithAPIKey(ra.APIKey), pub.WithAPIKey(rb.APIKey)
	job, err := admin.CreateJob(ctx, httpapi.CreateJobRequest{JobType: "noop", Reward: httpapi.SOL(5), MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.Accept(ctx, job.ID)
	if err != nil || first.Attempt != 1 {
		t.Fatalf("accept: %+v, %v", first, err)
	}
	back, err := a.Fail(ctx, job.ID, httpapi.FailRequest{Reason: "flaky", Retryable: true, Attempt: 1, JobResult: node3.JobResult{Output: "half done"}})
	if err != nil || back.Status != node3.StatusAvailable || back.Result != nil {
		t.Fatalf("retryable failure: %+v, %v", back, err)
	}
	if offered, _ := a.Available(ctx, 10, nil, 0); len(offered) != 0 {
		t.Fatalf("the provider that just failed the job was offered it again: %+v", offered)
	}
	if _, err := a.Accept(ctx, job.ID); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("barred accept: %v, want a conflict", err)
	}
	offered, err := b.Available(ctx, 10, nil, 0)
	if err != nil || len(offered) != 1 || offered[0].Result != nil {
		t.Fatalf("another provider's offer: %+v, %v", offered, err)
	}
	second, err := b.Accept(ctx, job.ID)
	if err != nil || second.Attempt != 2 || second.Result != nil {
		t.Fatalf("second attempt: %+v, %v", second, err)
	}
	// b's report for attempt 1 (which it never held) and a's late report
	// are refused.
	if _, err := b.Complete(ctx, job.ID, httpapi.CompleteRequest{Attempt: 1}); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("report for an earlier attempt: %v, want a conflict", err)
	}
	if _, err := a.Complete(ctx, job.ID, httpapi.CompleteRequest{Attempt: 1}); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("the old holder's report: %v, want a conflict", err)
	}
	if _, err := b.Heartbeat(ctx, job.ID, 3); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("heartbeat for a later attempt: %v, want a conflict", err)
	}
	if pays, _ := admin.Payments(ctx, "", 10); len(pays.Payments) != 0 {
		t.Fatalf("refused reports booked payouts: %+v", pays.Payments)
	}
	done, err := b.Complete(ctx, job.ID, httpapi.CompleteRequest{Attempt: 2, JobResult: node3.JobResult{ExecutionTime: 1}})
	if err != nil || done.Status != node3.StatusCompleted {
		t.Fatalf("complete: %+v, %v", done, err)
	}
	if pays, _ := admin.Payments(ctx, "", 10); len(pays.Payments) != 1 || pays.Payments[0].Wallet != walletB {
		t.Fatalf("payments: %+v", pays.Payments)
	}
}
