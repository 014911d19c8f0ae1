package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/node3/node3"
)

// Fuzz targets for the decoders that take no JSON body: the cancel body,
// the query parameters of the listings, and the credential headers.

// get sends a GET with the given headers through the API and checks the
// answer against the document (no 5xx, a documented status and body).
func (m *fuzzMarket) get(t *testing.T, path, rawQuery string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.URL.RawQuery = rawQuery
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	m.api.ServeHTTP(rec, req)
	if err := checkExchange(m.doc, "GET", req.URL.EscapedPath(), nil, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Fatalf("GET %s?%q: %v", path, rawQuery, err)
	}
	return rec
}

// wantErrorBody checks a refusal carries the error body with the code.
func wantErrorBody(t *testing.T, what string, rec *httptest.ResponseRecorder, code node3.Code) {
	t.Helper()
	var eb struct{ Error, Code string }
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" || eb.Code != string(code) {
		t.Fatalf("%s: %d with body %q, want an error with code %q", what, rec.Code, rec.Body, code)
	}
}

// FuzzCancel: a cancel body is one JSON object with an optional reason
// of at most 4096 bytes. A refused body (400, 413) leaves the job as it
// was; an accepted one cancels it with the reason given, or the default.
func FuzzCancel(f *testing.F) {
	addSeeds(f, ``, `{}`, `{"reason":"no longer needed"}`, `{"reason":""}`, `{"reason":42}`, `{"Reason":"x"}`,
		`{"reason":"a","reason":"b"}`, `{"reason":"`+strings.Repeat("r", 4097)+`"}`, `{"reason":"x","extra":1}`, `null`, `[]`, `{"reason":"\u00e9\ud800"}`)
	m := newFuzzMarket(f)
	newJob := func(t testing.TB) node3.Job {
		j, _, err := m.coord.CreateJob(t.Context(), node3.JobSpec{Kind: node3.KindNoop, Reward: 1000}, "")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	job := newJob(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		before, err := m.coord.Job(t.Context(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		rec := m.post(t, "/api/admin/jobs/"+job.ID+"/cancel", adminKey, body)
		after, err := m.coord.Job(t.Context(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Code {
		case http.StatusOK:
			var req struct {
				Reason string `json:"reason"`
			}
			if len(bytes.TrimSpace(body)) > 0 { // blank is no body
				if err := json.Unmarshal(body, &req); err != nil {
					t.Fatalf("cancel %q: accepted a body encoding/json refuses: %v", body, err)
				}
			}
			wantReason := req.Reason
			if wantReason == "" {
				wantReason = "cancelled by the admin"
			}
			if after.Status != node3.StatusCancelled || after.Error != wantReason || len(req.Reason) > 4096 {
				t.Fatalf("cancel %q: job %s with error %q, want cancelled with %q", body, after.Status, after.Error, wantReason)
			}
			job = newJob(t)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			code := node3.CodeInvalid
			if rec.Code == http.StatusRequestEntityTooLarge {
				code = node3.CodeTooLarge
			}
			wantErrorBody(t, "cancel "+strconv.Quote(string(body)), rec, code)
			if after.Status != before.Status || after.Error != before.Error || !after.UpdatedAt.Equal(before.UpdatedAt) {
				t.Fatalf("cancel %q refused with %d but the job changed: %+v -> %+v", body, rec.Code, before, after)
			}
		default:
			t.Fatalf("cancel %q: %d", body, rec.Code)
		}
	})
}

// FuzzListQuery: the status and limit query parameters of the three
// listings. The answer is 200 exactly when limit is absent or an integer
// in range and status is absent or a state of the listing's kind; then no
// more than limit items come back, all in that state. Anything else is a
// 400 invalid error.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{"", "limit=1", "limit=1000", "limit=1001", "limit=0", "limit=-1", "limit=+5", "limit=05", "limit= 5",
		"limit=1e3", "limit=99999999999999999999", "status=available", "status=completed&limit=2", "status=AVAILABLE", "status=pending",
		"status=finalized", "status=%00", "limit=1&limit=abc", "limit=%zz", "status=available;limit=1", "&&=&"} {
		for route := range uint8(3) {
			f.Add(route, s)
		}
	}
	m := newFuzzMarket(f)
	for range 3 {
		if _, _, err := m.coord.CreateJob(f.Context(), node3.JobSpec{Kind: node3.KindNoop, Reward: 1}, ""); err != nil {
			f.Fatal(err)
		}
	}
	m.heldJob(f)
	jobStates := make(map[string]bool)
	for _, s := range node3.AllStatuses {
		jobStates[string(s)] = true
	}
	payStates := map[string]bool{}
	for _, s := range []node3.PayoutStatus{node3.PayoutPending, node3.PayoutSent, node3.PayoutConfirmed, node3.PayoutFinalized, node3.PayoutFailed} {
		payStates[string(s)] = true
	}
	routes := []struct {
		path     string
		def, max int
		states   map[string]bool // nil: status is not read
		items    string
	}{
		{"/api/admin/jobs", 50, 1000, jobStates, "jobs"},
		{"/api/admin/payments", 50, 1000, payStates, "payments"},
		{"/api/marketplace/jobs", 100, 1000, nil, "jobs"},
	}
	auth := http.Header{"Authorization": {"Bearer " + adminKey}}
	f.Fuzz(func(t *testing.T, route uint8, rawQuery string) {
		rt := routes[int(route)%len(routes)]
		rec := m.get(t, rt.path, rawQuery, auth)
		q, _ := url.ParseQuery(rawQuery) // the server reads what parses
		limit, ok := rt.def, true
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			limit, ok = n, err == nil && n >= 1 && n <= rt.max
		}
		status := q.Get("status")
		if rt.states != nil && status != "" && !rt.states[status] {
			ok = false
		}
		what := rt.path + "?" + rawQuery
		if !ok {
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("%s: %d, want 400: %s", what, rec.Code, rec.Body)
			}
			wantErrorBody(t, what, rec, node3.CodeInvalid)
			return
		}
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d, want 200: %s", what, rec.Code, rec.Body)
		}
		var out map[string]json.RawMessage
		var items []struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || json.Unmarshal(out[rt.items], &items) != nil {
			t.Fatalf("%s: body %s", what, rec.Body)
		}
		if len(items) > limit {
			t.Fatalf("%s: %d %s, limit %d", what, len(items), rt.items, limit)
		}
		for _, it := range items {
			if rt.states != nil && status != "" && it.Status != status {
				t.Fatalf("%s: an item in state %q", what, it.Status)
			}
			if rt.states == nil && it.Status != string(node3.StatusAvailable) {
				t.Fatalf("%s: the public listing shows a job in state %q", what, it.Status)
			}
		}
	})
}

// presented is the credential rule the API documents: the token of an
// Authorization header with the Bearer scheme (any case), else X-API-Key,
// trimmed; X-Admin-Key only counts for the admin when neither gave one.
func presented(auth, apiKey string) string {
	if scheme, tok, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "bearer") {
		return strings.TrimSpace(tok)
	}
	return strings.TrimSpace(apiKey)
}

// FuzzAuthHeaders: whatever the Authorization, X-API-Key and X-Admin-Key
// headers hold, the agent, admin and shared routes answer 200 exactly
// when the documented rule yields the right key, and otherwise a 401
// unauthorized error (or 403/404 on a job that is not the caller's or
// does not exist), never anything else.
func FuzzAuthHeaders(f *testing.F) {
	m := newFuzzMarket(f)
	for _, s := range [][3]string{
		{"Bearer " + m.keyA, "", ""}, {"bearer  " + m.keyA + " ", "", ""}, {"", m.keyA, ""}, {"Basic " + m.keyA, m.keyA, ""},
		{"Bearer", m.keyA, ""}, {"Bearer ", m.keyA, ""}, {"Bearer " + adminKey, "", ""}, {"", "", adminKey}, {"", adminKey, ""},
		{"Bearer x", "", adminKey}, {"Bearer " + m.keyA, "", adminKey}, {"", " " + adminKey + "\t", ""}, {"Bearer\t" + m.keyA, "", ""},
		{"Bearer " + m.keyA + "x", "", ""}, {"BEARER " + strings.ToUpper(m.keyA), "", ""}, {"", "", ""}, {"\x00", "\xff", "\n"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	mine := m.heldJob(f)
	f.Fuzz(func(t *testing.T, auth, apiKey, adminH string) {
		hdr := http.Header{}
		for k, v := range map[string]string{"Authorization": auth, "X-API-Key": apiKey, "X-Admin-Key": adminH} {
			if v != "" {
				hdr.Set(k, v)
			}
		}
		key := presented(auth, apiKey)
		isAgent := key == m.keyA
		isAdmin := key == adminKey || (key == "" && adminH == adminKey)
		for _, c := range []struct {
			path string
			ok   bool
		}{
			{"/api/agents/me", isAgent},
			{"/api/admin/stats", isAdmin},
			{"/api/jobs/" + mine, isAgent || isAdmin || adminH == adminKey},
		} {
			rec := m.get(t, c.path, "", hdr)
			what := strings.Join([]string{c.path, strconv.Quote(auth), strconv.Quote(apiKey), strconv.Quote(adminH)}, " ")
			switch {
			case c.ok && rec.Code != http.StatusOK:
				t.Fatalf("%s: %d, want 200: %s", what, rec.Code, rec.Body)
			case !c.ok && rec.Code != http.StatusUnauthorized:
				t.Fatalf("%s: %d, want 401: %s", what, rec.Code, rec.Body)
			case !c.ok:
				wantErrorBody(t, what, rec, node3.CodeUnauthorized)
			}
		}
	})
}
