package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// TestCreateIdempotent: a repeat under the same Idempotency-Key answers 201
// with the first job and Idempotent-Replayed; another body under it is a
// 422; a bare key and its structured-field form are the same key.
func TestCreateIdempotent(t *testing.T) {
	m := newMarket(t, marketOpts{})
	m.serve(t)
	post := func(key, body string, want int) (httpapi.JobResponse, http.Header) {
		t.Helper()
		var out httpapi.JobResponse
		req, _ := http.NewRequest("POST", m.srv.URL+"/api/admin/jobs/create", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := m.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d", key, body, resp.StatusCode, want)
		}
		if want == 201 {
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
		}
		return out, resp.Header
	}
	first, h := post(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"job_type": "noop", "reward": 0.001}`, 201)
	if h.Get("Idempotent-Replayed") != "" {
		t.Fatal("a first create says it was replayed")
	}
	// Another form of the same request, the key bare: the same job.
	again, h := post(`8e03978e-40d5-43e8-bc93-6894a57f9324`, `{"reward":"1e-3","job_type":"noop","timeout_seconds":600}`, 201)
	if again.Job.ID != first.Job.ID || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: job %s (replayed %q), want %s", again.Job.ID, h.Get("Idempotent-Replayed"), first.Job.ID)
	}
	post(`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `{"job_type": "noop", "reward": 0.002}`, 422)
	other, _ := post(`"another"`, `{"job_type": "noop", "reward": 0.001}`, 201)
	if other.Job.ID == first.Job.ID {
		t.Fatal("two keys made one job")
	}
	admin := m.client(t, "", adminKey)
	if st, err := admin.Stats(context.Background()); err != nil || st.JobsTotal != 2 {
		t.Fatalf("jobs: %d, %v; want 2", st.JobsTotal, err)
	}
}

// FuzzIdempotencyKey: the header parser never accepts an empty key, takes
// a bare key as is, and reads back what strconv.Quote-style quoting (the
// structured-field escapes) wrote.
func FuzzIdempotencyKey(f *testing.F) {
	for _, s := range []string{`"abc"`, `abc`, `"a\"b"`, `"a\\b"`, `"unterminated`, `"a"b`, `""`, `"\n"`, ` "x" `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Idempotency-Key": {v}}
		key, err := httpapi.IdempotencyKey(h)
		if err != nil {
			if node3.ErrorCode(err) != node3.CodeInvalid {
				t.Fatalf("%q: error code %s", v, node3.ErrorCode(err))
			}
			return
		}
		if key == "" {
			t.Fatalf("%q: accepted an empty key", v)
		}
		if tv := strings.TrimSpace(v); !strings.HasPrefix(tv, `"`) && key != tv {
			t.Fatalf("bare %q read as %q", v, key)
		}
		// Quoting the key again reads back the same key.
		if strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) < 0 {
			q := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
			if back, err := httpapi.IdempotencyKey(http.Header{"Idempotency-Key": {q}}); err != nil || back != key {
				t.Fatalf("%q → %q → %q → %q, %v", v, key, q, back, err)
			}
			if sq := strconv.Quote(key); !strings.Contains(key, `\`) {
				if back, err := httpapi.IdempotencyKey(http.Header{"Idempotency-Key": {sq}}); err != nil || back != key {
					t.Fatalf("strconv.Quote(%q) = %s read as %q, %v", key, sq, back, err)
				}
			}
		}
	})
}
