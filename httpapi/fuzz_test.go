package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// Fuzz targets for every request decoder of the marketplace API: arbitrary
// bytes are POSTed through the real handler stack (router, auth, decoder,
// coordinator, ledger). Whatever comes in, the answer is a JSON object
// with a status below 500 that the OpenAPI document accepts, and never a
// panic.

// fuzzMarket is a coordinator and API for one fuzz process. Long-polls are
// capped at 50 ms and polled jobs are not held back, so no input can make
// an iteration wait long.
type fuzzMarket struct {
	*market
	keyA  string
	agent node3.Agent
}

func newFuzzMarket(f *testing.F) *fuzzMarket {
	// Limits off: a fuzzer is one client sending thousands of requests.
	m := newMarket(f, marketOpts{maxWait: 50 * time.Millisecond, offerTTL: time.Nanosecond, limits: httpapi.Limits{Off: true}})
	a, key, err := m.coord.RegisterAgent(f.Context(), node3.Agent{WalletAddress: walletA, GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30})
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzMarket{market: m, keyA: key, agent: a}
}

// post sends body to path and checks the answer.
func (m *fuzzMarket) post(t *testing.T, path, auth string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("POST", path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	rec := httptest.NewRecorder()
	m.api.ServeHTTP(rec, req)
	var v any
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("POST %s %q: %d with a body that is not JSON: %q", path, body, rec.Code, rec.Body)
	}
	if _, ok := v.(map[string]any); !ok {
		t.Fatalf("POST %s %q: %d with a body that is not a JSON object: %q", path, body, rec.Code, rec.Body)
	}
	if err := checkExchange(m.doc, "POST", req.URL.EscapedPath(), body, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Fatalf("POST %s %q: %v", path, body, err)
	}
	return rec
}

// heldJob creates a job and has agent A accept it.
func (m *fuzzMarket) heldJob(t testing.TB) string {
	t.Helper()
	ctx := t.Context()
	j, _, err := m.coord.CreateJob(ctx, node3.JobSpec{Kind: node3.KindNoop, Reward: 1000}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.coord.Accept(ctx, m.agent, j.ID, ""); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func addSeeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

func FuzzRegister(f *testing.F) {
	addSeeds(f,
		okReg,
		`{"wallet_address":"`+walletB+`","gpus":[{"index":0,"vendor":"Demo","model":"Demo GPU","memory_bytes":8000000000,"simulated":true}],"version":"v1"}`,
		`{"wallet_address":"abc"}`,
		`{"wallet_address":"`+walletA+`","gpu_memory":"8GB"}`,
		`[]`, `null`, ``, `{"wallet_address":"`+walletA+`"}{}`,
	)
	m := newFuzzMarket(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := m.post(t, "/api/agents/register", "", body)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("register %q: %d", body, rec.Code)
		}
	})
}

func FuzzCreateJob(f *testing.F) {
	addSeeds(f,
		okJob,
		`{"job_type":"container","reward":"0.25","requires_gpu":true,"min_gpu_memory":17179869184,"gpu_vendor":"nvidia","gpu_model":"a100","gpu_count":2,"framework":"pytorch","image":"train:1","command":["python","train.py"],"env":{"EPOCHS":"3"},"network":true,"timeout_seconds":3600,"max_attempts":5,"input_url":"https://example.com/in","input_sha256":"`+strings.Repeat("a", 64)+`","output_url":"https://example.com/out","expires_in_seconds":600,"description":"train"}`,
		`{"job_type":"command","reward_lamports":1000,"command":["echo","hi"]}`,
		`{"job_type":"test","reward":1e-3}`,
		`{"job_type":"test","reward":-1}`,
		`{"job_type":"test","reward":0.0000000001}`,
		`{"job_type":"test","reward":{"a":1}}`,
		`{"job_type":"test","reward":null}`,
		`{"job_type":"test","reward":"  +.5  "}`,
	)
	m := newFuzzMarket(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := m.post(t, "/api/admin/jobs/create", adminKey, body)
		if rec.Code != http.StatusCreated && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("create %q: %d", body, rec.Code)
		}
		if rec.Code == http.StatusCreated {
			var out struct {
				Job struct {
					Reward         json.Number `json:"reward"`
					RewardLamports uint64      `json:"reward_lamports"`
				} `json:"job"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
			// The two renderings of the reward agree exactly.
			if l, err := node3.ParseSOL(out.Job.Reward.String()); err != nil || uint64(l) != out.Job.RewardLamports || l > node3.MaxReward {
				t.Fatalf("create %q: reward %s SOL vs %d lamports (%v)", body, out.Job.Reward, out.Job.RewardLamports, err)
			}
		}
	})
}

func FuzzAvailable(f *testing.F) {
	addSeeds(f, ``, `{}`, `{"limit":1}`, `{"limit":100,"wait_seconds":0.01}`, `{"wait_seconds":1e300}`, `{"limit":-1}`, `{"limit":"5"}`)
	m := newFuzzMarket(f)
	for range 3 { // something to find, so that polls return at once
		if _, _, err := m.coord.CreateJob(f.Context(), node3.JobSpec{Kind: node3.KindNoop, Reward: 1}, ""); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := m.post(t, "/api/jobs/available", m.keyA, body)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("available %q: %d", body, rec.Code)
		}
	})
}

// reportFuzz drives complete or fail: each input goes to a job agent A
// holds; once an input has ended that job, the next gets a fresh one.
func reportFuzz(f *testing.F, verb string) {
	m := newFuzzMarket(f)
	job := m.heldJob(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := m.post(t, "/api/jobs/"+job+"/"+verb, m.keyA, body)
		switch rec.Code {
		case http.StatusOK:
			job = m.heldJob(t)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("%s %q: %d", verb, body, rec.Code)
		}
	})
}

func FuzzComplete(f *testing.F) {
	addSeeds(f,
		``, `{}`,
		`{"execution_time":12.5,"setup_time":1.5,"exit_code":0,"output":"done","metrics":{"tflops":81.2},"output_sha256":"`+strings.Repeat("b", 64)+`"}`,
		`{"execution_time":-1}`, `{"exit_code":1.5}`, `{"metrics":{"a":"b"}}`, `[]`,
	)
	reportFuzz(f, "complete")
}

func FuzzFail(f *testing.F) {
	addSeeds(f,
		``, `{}`,
		`{"reason":"CUDA out of memory","retryable":true,"execution_time":3,"exit_code":137,"output":"killed"}`,
		`{"reason":"bad input","retryable":false}`,
		`{"reason":42}`, `{"retryable":"yes"}`, `"x"`,
	)
	reportFuzz(f, "fail")
}

// FuzzFund: the fund-wallet body is decoded and range-checked before the
// (absent) payments are asked, so bad bodies are 400/413 and good ones 503.
func FuzzFund(f *testing.F) {
	addSeeds(f, `{"amount":1}`, `{"amount":"0.5"}`, `{"amount":0}`, `{"amount":-1}`, `{"amount":1e3}`, `{"amount":1000.000000001}`, `{}`, `null`)
	m := newFuzzMarket(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := m.post(t, "/api/admin/wallet/fund", adminKey, body)
		if rec.Code != http.StatusServiceUnavailable && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("fund %q: %d", body, rec.Code)
		}
	})
}
