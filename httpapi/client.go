package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/node3/node3"
)

// Client calls a coordinator's marketplace API. Errors are *node3.Error
// values whose Code follows the HTTP status (CodeConflict for 409, …);
// a coordinator that cannot be reached is CodeUnavailable.
type Client struct {
	base     *url.URL
	apiKey   string
	adminKey string
	hc       *http.Client
}

// ClientConfig configures a Client.
type ClientConfig struct {
	BaseURL  string // e.g. http://localhost:8000
	APIKey   string // agent key, for agent endpoints
	AdminKey string // for admin endpoints
	HTTP     *http.Client
}

// NewClient returns a client for the marketplace at cfg.BaseURL.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("marketplace URL %q must be http(s)://host[:port]", cfg.BaseURL)
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return &Client{base: u, apiKey: cfg.APIKey, adminKey: cfg.AdminKey, hc: hc}, nil
}

// WithAPIKey returns a copy of c that authenticates as the given agent.
func (c *Client) WithAPIKey(key string) *Client {
	c2 := *c
	c2.apiKey = key
	return &c2
}

// BaseURL is the marketplace's address.
func (c *Client) BaseURL() string { return c.base.String() }

type auth int

const (
	noAuth auth = iota
	agentAuth
	adminAuth
)

func (c *Client) do(ctx context.Context, method, path string, a auth, in, out any) error {
	return c.doWith(ctx, method, path, a, nil, in, out)
}

// doWith is do with extra request headers.
func (c *Client) doWith(ctx context.Context, method, path string, a auth, hdr http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	switch a {
	case agentAuth:
		if c.apiKey == "" {
			return node3.Errorf(node3.CodeUnauthorized, "no agent API key configured")
		}
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	case adminAuth:
		if c.adminKey == "" {
			return node3.Errorf(node3.CodeUnauthorized, "no admin API key configured (set ADMIN_API_KEY)")
		}
		req.Header.Set("Authorization", "Bearer "+c.adminKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &node3.Error{Code: node3.CodeUnavailable, Message: fmt.Sprintf("%s %s: %v", method, path, redact(err))}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return &node3.Error{Code: node3.CodeUnavailable, Message: fmt.Sprintf("%s %s: reading response: %v", method, path, err)}
	}
	return decodeAnswer(method, path, resp.StatusCode, raw, out)
}

// maxAnswer bounds what the client reads of one answer.
const maxAnswer = 16 << 20

// maxAnswerMessage bounds the server's message quoted in an error.
const maxAnswerMessage = 300

// decodeAnswer reads a coordinator's answer: a status of 300 or more is a
// *node3.Error whose code follows the status and whose message is the
// server's ({"error": ...} or the body itself) on one line of valid UTF-8,
// at most maxAnswerMessage bytes of it; otherwise raw is decoded into out
// (when not nil).
func decodeAnswer(method, path string, status int, raw []byte, out any) error {
	if status >= 300 {
		var eb errorBody
		msg := string(raw)
		if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		return &node3.Error{Code: codeOf(status), Message: fmt.Sprintf("%s %s: %d %s", method, path, status, answerText(msg))}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode response: %w", method, path, err)
		}
	}
	return nil
}

// answerText makes a server's message safe to print on a terminal: valid
// UTF-8, control characters as spaces, trimmed, and cut at
// maxAnswerMessage bytes on a character boundary.
func answerText(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
	if len(s) <= maxAnswerMessage {
		return s
	}
	cut := maxAnswerMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// redact drops the query string of URLs in transport errors.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Health calls GET /health.
func (c *Client) Health(ctx context.Context) (HealthResponse, error) {
	var out HealthResponse
	return out, c.do(ctx, "GET", "/health", noAuth, nil, &out)
}

// Register registers an agent and returns its id and API key.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (RegisterResponse, error) {
	var out RegisterResponse
	return out, c.do(ctx, "POST", "/api/agents/register", noAuth, req, &out)
}

// Available fetches up to limit jobs that fit free (nil: anything the
// agent's GPUs can run), long-polling up to wait.
func (c *Client) Available(ctx context.Context, limit int, free *node3.Capacity, wait time.Duration) ([]node3.Job, error) {
	req := AvailableRequest{Limit: limit, WaitSeconds: wait.Seconds()}
	if free != nil {
		req.FreeSlots, req.FreeGPUs = &free.Slots, free.GPUs
		if req.FreeGPUs == nil {
			req.FreeGPUs = []int{}
		}
	}
	var out JobsResponse
	err := c.do(ctx, "POST", "/api/jobs/available", agentAuth, req, &out)
	return jobsOf(out), err
}

func jobsOf(r JobsResponse) []node3.Job {
	out := make([]node3.Job, len(r.Jobs))
	for i, v := range r.Jobs {
		out[i] = v.Job
	}
	return out
}

func (c *Client) jobCall(ctx context.Context, method, path string, a auth, in any) (node3.Job, error) {
	var out JobResponse
	err := c.do(ctx, method, path, a, in, &out)
	return out.Job.Job, err
}

func jobPath(id, verb string) string {
	p := "/api/jobs/" + url.PathEscape(id)
	if verb != "" {
		p += "/" + verb
	}
	return p
}

// Accept accepts a job.
func (c *Client) Accept(ctx context.Context, id string) (node3.Job, error) {
	return c.jobCall(ctx, "POST", jobPath(id, "accept"), agentAuth, AcceptRequest{})
}

// Heartbeat marks a job running and extends the lease of the attempt
// held (0: whichever is current).
func (c *Client) Heartbeat(ctx context.Context, id string, attempt int) (node3.Job, error) {
	return c.jobCall(ctx, "POST", jobPath(id, "heartbeat"), agentAuth, HeartbeatRequest{Attempt: attempt})
}

// Complete reports success.
func (c *Client) Complete(ctx context.Context, id string, req CompleteRequest) (node3.Job, error) {
	return c.jobCall(ctx, "POST", jobPath(id, "complete"), agentAuth, req)
}

// Fail reports failure.
func (c *Client) Fail(ctx context.Context, id string, req FailRequest) (node3.Job, error) {
	return c.jobCall(ctx, "POST", jobPath(id, "fail"), agentAuth, req)
}

// Job fetches one job (as its holder, or as admin when the client has an admin key).
func (c *Client) Job(ctx context.Context, id string) (node3.Job, error) {
	a := agentAuth
	if c.adminKey != "" {
		a = adminAuth
	}
	return c.jobCall(ctx, "GET", jobPath(id, ""), a, nil)
}

// Agents lists the registered agents.
func (c *Client) Agents(ctx context.Context) (AgentsResponse, error) {
	var out AgentsResponse
	return out, c.do(ctx, "GET", "/api/marketplace/agents", noAuth, nil, &out)
}

// MarketplaceJobs lists available jobs (public view).
func (c *Client) MarketplaceJobs(ctx context.Context) ([]node3.Job, error) {
	var out JobsResponse
	err := c.do(ctx, "GET", "/api/marketplace/jobs", noAuth, nil, &out)
	return jobsOf(out), err
}

// CreateJob submits a job (admin).
func (c *Client) CreateJob(ctx context.Context, req CreateJobRequest) (node3.Job, error) {
	return c.jobCall(ctx, "POST", "/api/admin/jobs/create", adminAuth, req)
}

// Retry says how CreateJobOnce retries.
type Retry struct {
	Attempts int                                 // retries after the first try
	OnRetry  func(err error, wait time.Duration) // told before each wait (may be nil)
}

// CreateJobOnce submits a job under an idempotency key (NewIdempotencyKey),
// retrying what may not have reached the coordinator — a connection that
// failed or dropped, a 5xx, a 429 — with the same key until ctx ends or
// the retries run out; so however the answers were lost, at most one job
// exists. A refusal (4xx) is returned at once.
func (c *Client) CreateJobOnce(ctx context.Context, key string, req CreateJobRequest, retry Retry) (node3.Job, error) {
	hdr := http.Header{"Idempotency-Key": {strconv.Quote(key)}}
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var out JobResponse
		err := c.doWith(ctx, "POST", "/api/admin/jobs/create", adminAuth, hdr, req, &out)
		code := node3.ErrorCode(err)
		if err == nil || attempt >= retry.Attempts || ctx.Err() != nil || (code != node3.CodeUnavailable && code != node3.CodeInternal && code != node3.CodeRateLimited) {
			return out.Job.Job, err
		}
		if retry.OnRetry != nil {
			retry.OnRetry(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return node3.Job{}, err
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// NewIdempotencyKey returns a fresh random key for CreateJobOnce.
func NewIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Jobs lists jobs (admin); status "" lists all.
func (c *Client) Jobs(ctx context.Context, status node3.JobStatus, limit int) ([]node3.Job, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", string(status))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out JobsResponse
	err := c.do(ctx, "GET", "/api/admin/jobs?"+q.Encode(), adminAuth, nil, &out)
	return jobsOf(out), err
}

// Cancel withdraws a job (admin).
func (c *Client) Cancel(ctx context.Context, id, reason string) (node3.Job, error) {
	return c.jobCall(ctx, "POST", "/api/admin/jobs/"+url.PathEscape(id)+"/cancel", adminAuth, CancelRequest{Reason: reason})
}

// Stats fetches the coordinator's statistics (admin).
func (c *Client) Stats(ctx context.Context) (StatsResponse, error) {
	var out StatsResponse
	return out, c.do(ctx, "GET", "/api/admin/stats", adminAuth, nil, &out)
}

// Payments lists payouts (admin).
func (c *Client) Payments(ctx context.Context, status node3.PayoutStatus, limit int) (PayoutsResponse, error) {
	q := url.Values{}
	if status != "" {
		q.Set("status", string(status))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out PayoutsResponse
	return out, c.do(ctx, "GET", "/api/admin/payments?"+q.Encode(), adminAuth, nil, &out)
}

// Me fetches the calling agent's record (earned and paid).
func (c *Client) Me(ctx context.Context) (AgentView, error) {
	var out AgentView
	return out, c.do(ctx, "GET", "/api/agents/me", agentAuth, nil, &out)
}

// Wallet fetches the marketplace wallet's state (admin).
func (c *Client) Wallet(ctx context.Context) (WalletInfo, error) {
	var out WalletInfo
	return out, c.do(ctx, "GET", "/api/admin/wallet", adminAuth, nil, &out)
}

// Fund airdrops SOL to the marketplace wallet (admin).
func (c *Client) Fund(ctx context.Context, amount node3.Lamports) (FundResponse, error) {
	var out FundResponse
	return out, c.do(ctx, "POST", "/api/admin/wallet/fund", adminAuth, FundRequest{Amount: SOL(amount)}, &out)
}

// Reconcile checks the ledger's payouts against the chain (admin).
func (c *Client) Reconcile(ctx context.Context) (ReconcileResponse, error) {
	var out ReconcileResponse
	return out, c.do(ctx, "GET", "/api/admin/reconcile", adminAuth, nil, &out)
}

// SOL renders lamports as a JSON number of SOL, for CreateJobRequest.Reward.
func SOL(l node3.Lamports) json.RawMessage { return json.RawMessage(l.SOL()) }
