package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
)

// fakeClock is the API's clock in the limit tests: time moves only when
// the test says so, so no test sleeps for a bucket to refill.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// limitMarket is a coordinator behind an API with the given limits, a
// fake clock and a registry to read the refusal counter from.
type limitMarket struct {
	*market
	clock  *fakeClock
	apiReg *prometheus.Registry
}

func newLimitMarket(t *testing.T, l httpapi.Limits) *limitMarket {
	clock, reg := newFakeClock(), prometheus.NewRegistry()
	m := newMarket(t, marketOpts{limits: l, now: clock.Now, apiReg: reg})
	return &limitMarket{market: m, clock: clock, apiReg: reg}
}

// do sends a request from the client address ip and checks the answer
// against the document; hdr holds header name/value pairs.
func (m *limitMarket) do(t *testing.T, ip, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var req *http.Request
	if body != "" {
		req = httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	req.RemoteAddr = net.JoinHostPort(ip, "40000")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	m.api.ServeHTTP(rec, req)
	if err := checkExchange(m.doc, method, req.URL.EscapedPath(), []byte(body), rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
		t.Fatal(err)
	}
	return rec
}

// want checks the status of rec, and for a 429 the Retry-After and body.
func want(t *testing.T, what string, rec *httptest.ResponseRecorder, status int, retryAfter string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("%s: %d, want %d: %s", what, rec.Code, status, rec.Body)
	}
	if status != http.StatusTooManyRequests {
		if ra := rec.Header().Get("Retry-After"); ra != "" {
			t.Fatalf("%s: %d with Retry-After %q", what, status, ra)
		}
		return
	}
	if ra := rec.Header().Get("Retry-After"); ra != retryAfter {
		t.Fatalf("%s: Retry-After %q, want %q", what, ra, retryAfter)
	}
	var eb struct{ Error, Code string }
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Code != string(node3.CodeRateLimited) || eb.Error == "" {
		t.Fatalf("%s: 429 body %s (%v)", what, rec.Body, err)
	}
}

// refused reads node3_http_rate_limited_total for a class.
func (m *limitMarket) refused(t *testing.T, class string) float64 {
	t.Helper()
	mfs, err := m.apiReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "node3_http_rate_limited_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "class" && l.GetValue() == class {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no node3_http_rate_limited_total{class=%q}", class)
	return 0
}

func (m *limitMarket) agentCount(t *testing.T) int {
	t.Helper()
	as, err := m.coord.Agents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return len(as)
}

// TestLimitsRegister: with the default limits, an address registers five
// agents at once, then gets 429 with Retry-After (the next token is 10 s
// away) and nothing is written to the ledger; the wait named is the wait
// needed; another address is not affected.
func TestLimitsRegister(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{})
	const ip = "203.0.113.7"
	for range 5 {
		want(t, "register", m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusCreated, "")
	}
	for range 3 {
		want(t, "register over the burst", m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusTooManyRequests, "10")
	}
	// Refusals do not reach the coordinator: no agent, no ledger write.
	if n := m.agentCount(t); n != 5 {
		t.Fatalf("%d agents after 5 registrations and 3 refusals", n)
	}
	if got := m.refused(t, "register"); got != 3 {
		t.Errorf("register refusals counted %v, want 3", got)
	}
	want(t, "register from another address", m.do(t, "198.51.100.1", "POST", "/api/agents/register", okReg), http.StatusCreated, "")
	m.clock.Advance(9*time.Second + 500*time.Millisecond)
	want(t, "register 0.5 s early", m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusTooManyRequests, "1")
	m.clock.Advance(500 * time.Millisecond)
	want(t, "register after Retry-After", m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusCreated, "")
	want(t, "register again", m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusTooManyRequests, "10")
	if n := m.agentCount(t); n != 7 {
		t.Fatalf("%d agents, want 7", n)
	}
	// An IPv6 client's whole /64 is one client.
	for i := range 5 {
		ip := "2001:db8::" + string(rune('1'+i))
		want(t, "register from "+ip, m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusCreated, "")
	}
	want(t, "register from the same /64", m.do(t, "2001:db8::ff", "POST", "/api/agents/register", okReg), http.StatusTooManyRequests, "10")
}

// TestLimitsPublic: the public endpoints share one bucket per address.
func TestLimitsPublic(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{Public: httpapi.Rate{Limit: 2, Burst: 3}})
	const ip = "203.0.113.8"
	paths := []string{"/health", "/openapi.json", "/api/marketplace/jobs"}
	for _, p := range paths {
		want(t, p, m.do(t, ip, "GET", p, ""), http.StatusOK, "")
	}
	for _, p := range append(paths, "/metrics", "/api/marketplace/agents") {
		want(t, p+" over the limit", m.do(t, ip, "GET", p, ""), http.StatusTooManyRequests, "1")
	}
	want(t, "another address", m.do(t, "203.0.113.9", "GET", "/metrics", ""), http.StatusOK, "")
	m.clock.Advance(500 * time.Millisecond) // one token at 2/s
	want(t, "a token later", m.do(t, ip, "GET", "/api/marketplace/agents", ""), http.StatusOK, "")
	want(t, "and no more", m.do(t, ip, "GET", "/health", ""), http.StatusTooManyRequests, "1")
	if got := m.refused(t, "public"); got != 6 {
		t.Errorf("public refusals %v, want 6", got)
	}
}

// TestLimitsAgentPerKey: each agent has its own bucket, whatever address
// it calls from; one agent over its limit does not slow another.
func TestLimitsAgentPerKey(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{Agent: httpapi.Rate{Limit: 1, Burst: 2}})
	ctx := t.Context()
	_, keyA, err := m.coord.RegisterAgent(ctx, node3.Agent{WalletAddress: walletA, GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30})
	if err != nil {
		t.Fatal(err)
	}
	_, keyB, err := m.coord.RegisterAgent(ctx, node3.Agent{WalletAddress: walletB, GPUModel: "Demo", GPUVendor: "Demo", GPUMemory: 4 << 30})
	if err != nil {
		t.Fatal(err)
	}
	const ip = "203.0.113.10"
	want(t, "A", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+keyA), http.StatusOK, "")
	want(t, "A from elsewhere", m.do(t, "198.51.100.2", "GET", "/api/agents/me", "", "X-API-Key", keyA), http.StatusOK, "")
	want(t, "A over its limit", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+keyA), http.StatusTooManyRequests, "1")
	want(t, "A polls", m.do(t, ip, "POST", "/api/jobs/available", "", "Authorization", "Bearer "+keyA), http.StatusTooManyRequests, "1")
	want(t, "A reads a job", m.do(t, ip, "GET", "/api/jobs/nope", "", "Authorization", "Bearer "+keyA), http.StatusTooManyRequests, "1")
	for range 2 {
		want(t, "B from A's address", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+keyB), http.StatusOK, "")
	}
	want(t, "B over its limit", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+keyB), http.StatusTooManyRequests, "1")
	m.clock.Advance(time.Second)
	want(t, "A a second later", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+keyA), http.StatusOK, "")
	if got := m.refused(t, "agent"); got != 4 {
		t.Errorf("agent refusals %v, want 4", got)
	}
	if got := m.refused(t, "auth_failure"); got != 0 {
		t.Errorf("auth refusals %v, want 0", got)
	}
}

// TestLimitsAdmin: the admin key has its own bucket, whichever header
// carries it and whichever route it calls.
func TestLimitsAdmin(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{Admin: httpapi.Rate{Limit: 0.5, Burst: 3}})
	const ip = "203.0.113.11"
	want(t, "stats", m.do(t, ip, "GET", "/api/admin/stats", "", "Authorization", "Bearer "+adminKey), http.StatusOK, "")
	want(t, "jobs", m.do(t, "198.51.100.3", "GET", "/api/admin/jobs", "", "X-Admin-Key", adminKey), http.StatusOK, "")
	want(t, "a job", m.do(t, ip, "GET", "/api/jobs/nope", "", "X-API-Key", adminKey), http.StatusNotFound, "")
	want(t, "cancel over the limit", m.do(t, ip, "POST", "/api/admin/jobs/nope/cancel", "", "X-Admin-Key", adminKey), http.StatusTooManyRequests, "2")
	want(t, "create over the limit", m.do(t, ip, "POST", "/api/admin/jobs/create", okJob, "Authorization", "Bearer "+adminKey), http.StatusTooManyRequests, "2")
	if st, err := m.coord.Stats(t.Context()); err != nil || st.JobsTotal != 0 {
		t.Fatalf("a refused create made a job: %d (%v)", st.JobsTotal, err)
	}
	m.clock.Advance(2 * time.Second)
	want(t, "create after the wait", m.do(t, ip, "POST", "/api/admin/jobs/create", okJob, "Authorization", "Bearer "+adminKey), http.StatusCreated, "")
	if got := m.refused(t, "admin"); got != 2 {
		t.Errorf("admin refusals %v, want 2", got)
	}
}

// TestLimitsAuthFailures: wrong and unknown keys count against the
// address; past the limit the address gets 429 for any key, a right one
// too, until a token is back; other addresses are not affected.
func TestLimitsAuthFailures(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{AuthFailure: httpapi.Rate{Limit: 1, Burst: 4}})
	_, key, err := m.coord.RegisterAgent(t.Context(), node3.Agent{WalletAddress: walletA, GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30})
	if err != nil {
		t.Fatal(err)
	}
	const ip = "203.0.113.12"
	want(t, "no key", m.do(t, ip, "GET", "/api/agents/me", ""), http.StatusUnauthorized, "")
	want(t, "unknown key", m.do(t, ip, "POST", "/api/jobs/available", "", "Authorization", "Bearer n3_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), http.StatusUnauthorized, "")
	want(t, "wrong admin key", m.do(t, ip, "GET", "/api/admin/stats", "", "X-Admin-Key", "wrong"), http.StatusUnauthorized, "")
	want(t, "no key for a job", m.do(t, ip, "GET", "/api/jobs/x", ""), http.StatusUnauthorized, "")
	want(t, "right key after the limit", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+key), http.StatusTooManyRequests, "1")
	want(t, "admin key after the limit", m.do(t, ip, "GET", "/api/admin/stats", "", "Authorization", "Bearer "+adminKey), http.StatusTooManyRequests, "1")
	want(t, "public routes are another bucket", m.do(t, ip, "GET", "/health", ""), http.StatusOK, "")
	want(t, "right key elsewhere", m.do(t, "198.51.100.4", "GET", "/api/agents/me", "", "Authorization", "Bearer "+key), http.StatusOK, "")
	m.clock.Advance(time.Second)
	want(t, "right key a second later", m.do(t, ip, "GET", "/api/agents/me", "", "Authorization", "Bearer "+key), http.StatusOK, "")
	want(t, "one more failure", m.do(t, ip, "GET", "/api/admin/stats", "", "Authorization", "Bearer wrong"), http.StatusUnauthorized, "")
	want(t, "and the address is out again", m.do(t, ip, "GET", "/api/admin/stats", "", "Authorization", "Bearer "+adminKey), http.StatusTooManyRequests, "1")
	if got := m.refused(t, "auth_failure"); got != 3 {
		t.Errorf("auth refusals %v, want 3", got)
	}
}

// TestLimitsOff: with the limits off nothing is refused, however many
// requests one address sends at one instant.
func TestLimitsOff(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{Off: true})
	const ip = "203.0.113.13"
	for range 20 {
		want(t, "register", m.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusCreated, "")
	}
	for range 100 {
		want(t, "health", m.do(t, ip, "GET", "/health", ""), http.StatusOK, "")
		want(t, "wrong key", m.do(t, ip, "GET", "/api/admin/stats", "", "X-Admin-Key", "wrong"), http.StatusUnauthorized, "")
		want(t, "admin", m.do(t, ip, "GET", "/api/admin/stats", "", "X-Admin-Key", adminKey), http.StatusOK, "")
	}
	// One class off, the others on.
	m2 := newLimitMarket(t, httpapi.Limits{Register: httpapi.Rate{Off: true}})
	for range 20 {
		want(t, "register, class off", m2.do(t, ip, "POST", "/api/agents/register", okReg), http.StatusCreated, "")
	}
	for range 40 {
		want(t, "health", m2.do(t, ip, "GET", "/health", ""), http.StatusOK, "")
	}
	want(t, "health over the default", m2.do(t, ip, "GET", "/health", ""), http.StatusTooManyRequests, "1")
}

// TestLimitsClient: the client reports a 429 as CodeRateLimited.
func TestLimitsClient(t *testing.T) {
	m := newLimitMarket(t, httpapi.Limits{Register: httpapi.Rate{Limit: 1.0 / 60, Burst: 1}})
	m.serve(t)
	c := m.client(t, "", "")
	req := httpapi.RegisterRequest{WalletAddress: walletA, GPUModel: "RTX 4090", GPUVendor: "NVIDIA", GPUMemory: 24 << 30}
	if _, err := c.Register(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	_, err := c.Register(t.Context(), req)
	wantCode(t, "second registration", err, node3.CodeRateLimited)
}

// gatedServer serves, behind LimitListener with l, a handler that holds
// GET /hold until release is called; entered gets a value per held one.
func gatedServer(t *testing.T, l httpapi.Limits, holds int) (url string, entered <-chan struct{}, release func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in := make(chan struct{}, holds)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			in <- struct{}{}
			<-gate
		}
		w.WriteHeader(http.StatusNoContent)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(httpapi.LimitListener(ln, l)) }()
	t.Cleanup(func() {
		release()
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), in, release
}

// getFrom sends GET url on a connection of its own from the local
// address from (any 127.x.y.z works on Linux loopback).
func getFrom(ctx context.Context, from, url string) error {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// TestConnectionCap: with a cap of N open connections, N requests held in
// a handler keep the N+1th from being served until one of them ends.
func TestConnectionCap(t *testing.T) {
	const capN = 3
	url, entered, release := gatedServer(t, httpapi.Limits{MaxConnections: capN}, capN)
	held := make(chan error, capN)
	for i := range capN {
		// From different addresses: the cap is over all clients.
		go func() { held <- getFrom(context.Background(), "127.0.0."+strconv.Itoa(i+1), url+"/hold") }()
	}
	for range capN {
		<-entered // all N connections are open and in the handler
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	err := getFrom(ctx, "127.0.0.9", url+"/quick")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request N+1 while N are held: %v, want it to wait past its deadline", err)
	}
	release()
	for range capN {
		if err := <-held; err != nil {
			t.Fatalf("held request: %v", err)
		}
	}
	if err := getFrom(t.Context(), "127.0.0.9", url+"/quick"); err != nil {
		t.Fatalf("request once the held ones ended: %v", err)
	}
}

// TestConnectionCapPerClient: a client holding its share of connections
// has its next one closed at once, while other clients still get in.
func TestConnectionCapPerClient(t *testing.T) {
	const perClient = 2
	url, entered, release := gatedServer(t, httpapi.Limits{MaxConnectionsPerClient: perClient}, perClient)
	held := make(chan error, perClient)
	for range perClient {
		go func() { held <- getFrom(context.Background(), "127.0.0.1", url+"/hold") }()
	}
	for range perClient {
		<-entered
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := getFrom(ctx, "127.0.0.1", url+"/quick"); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third connection of one client: %v, want it closed at once", err)
	}
	if err := getFrom(ctx, "127.0.0.2", url+"/quick"); err != nil {
		t.Fatalf("another client: %v", err)
	}
	release()
	for range perClient {
		if err := <-held; err != nil {
			t.Fatalf("held request: %v", err)
		}
	}
	// Its connections closed, the client gets in again — once the server
	// has closed its ends too, which may come just after the client read
	// its answers: a refusal until then is the cap still counting them.
	for {
		err := getFrom(ctx, "127.0.0.1", url+"/quick")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the client once its connections closed: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestLimitListenerOff: with the limits off the listener is not wrapped.
func TestLimitListenerOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := httpapi.LimitListener(ln, httpapi.Limits{Off: true}); got != ln {
		t.Errorf("LimitListener with limits off wrapped the listener")
	}
}
