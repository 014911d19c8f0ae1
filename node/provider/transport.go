package provider

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/httpapi"
	"github.com/node3/node3/ledger"
)

// Transport is how a provider learns of jobs and talks to its coordinator:
// the REST API (long-poll, HTTP calls with an API key) or libp2p (gossiped
// postings plus sync, and request/response streams). The provider keeps
// everything else — capacity, running jobs, heartbeats, the durable
// outbox — whichever transport it uses.
//
// Errors carry node3 codes: CodeConflict, CodeNotFound and CodeForbidden
// mean the coordinator refused (the job is not, or no longer, this
// provider's); anything else is a failure to reach it, worth retrying.
type Transport interface {
	// Register makes the provider known to its coordinator, or loads a
	// stored registration. It blocks until it succeeds or ctx ends.
	Register(ctx context.Context) error
	// AgentID is the provider's id at its coordinator ("" if unknown yet).
	AgentID() string
	// Offers waits for jobs that fit free (at most n). It may return early
	// with none, e.g. when wake is closed because capacity changed.
	Offers(ctx context.Context, free node3.Capacity, n int, wake <-chan struct{}) ([]node3.Job, error)
	// Withdraw says an offered job will not be accepted after all.
	Withdraw(jobID string)
	// Accept claims an offered job; the job comes back as granted, with
	// its lease.
	Accept(ctx context.Context, jobID string) (node3.Job, error)
	// Heartbeat marks the job running and extends its lease. attempt is
	// the job's Attempt as granted (0: unknown).
	Heartbeat(ctx context.Context, jobID string, attempt int) error
	// Complete and Fail deliver a final report for the attempt granted.
	Complete(ctx context.Context, jobID string, attempt int, res node3.JobResult) (Ack, error)
	Fail(ctx context.Context, jobID string, attempt int, reason string, retryable bool, res node3.JobResult) (Ack, error)
	// Run does the transport's own background work (keeping the board in
	// sync, say) until ctx ends; it may return at once if there is none.
	Run(ctx context.Context)
	// Connected reports whether the coordinator is reachable now.
	Connected() bool
	// Me asks the coordinator how it sees this provider (what it earned
	// and was paid); CodeUnavailable where the transport cannot ask.
	Me(ctx context.Context) (node3.Agent, error)
	// Assigned names the GPUs (by Index and UUID) the coordinator chose
	// for an offered job; nil when it leaves the choice to the provider.
	Assigned(jobID string) []node3.GPU
}

// Ack is the coordinator's answer to a final report: the job as it now
// stands when the transport carries it back (REST), or only its new status
// (libp2p), or nothing (a refused report).
type Ack struct {
	Job    *node3.Job
	Status node3.JobStatus
}

// httpTransport is the REST path of the seed's polling agents: register
// for an API key, long-poll /api/jobs/available with the free capacity,
// and call accept/heartbeat/complete/fail.
type httpTransport struct {
	cfg       Config
	led       *ledger.Ledger
	log       *slog.Logger
	connected *atomic.Bool

	mu      sync.Mutex
	client  *httpapi.Client // with the agent key once registered
	agentID string
}

func newHTTPTransport(cfg Config, connected *atomic.Bool) *httpTransport {
	return &httpTransport{cfg: cfg, led: cfg.Ledger, log: cfg.Logger, connected: connected, client: cfg.Client}
}

func (t *httpTransport) Register(ctx context.Context) error {
	key, err := t.led.Setting(ctx, settingAPIKey)
	if err != nil {
		return err
	}
	market, _ := t.led.Setting(ctx, settingMarket)
	if key != "" && market == t.cfg.Client.BaseURL() {
		id, _ := t.led.Setting(ctx, settingAgentID)
		t.setAgent(id, key)
		t.log.Info("using stored registration", "agent", id, "marketplace", market)
		return nil
	}
	return t.reregister(ctx)
}

func (t *httpTransport) reregister(ctx context.Context) error {
	req := httpapi.RegisterRequest{WalletAddress: t.cfg.Wallet, GPUs: t.cfg.GPUs, Slots: t.cfg.Slots, Version: t.cfg.Version}
	if len(t.cfg.GPUs) > 0 {
		g := t.cfg.GPUs[0]
		req.GPUModel, req.GPUVendor, req.GPUMemory = g.Model, g.Vendor, g.MemoryBytes
	}
	b := backoff{min: 200 * time.Millisecond, max: 10 * time.Second}
	for {
		resp, err := t.cfg.Client.Register(ctx, req)
		if err == nil {
			for _, kv := range [][2]string{{settingAPIKey, resp.APIKey}, {settingAgentID, resp.AgentID}, {settingMarket, t.cfg.Client.BaseURL()}} {
				if err := t.led.SetSetting(ctx, kv[0], kv[1]); err != nil {
					return fmt.Errorf("storing registration: %w", err)
				}
			}
			t.setAgent(resp.AgentID, resp.APIKey)
			t.connected.Store(true)
			t.log.Info("registered with the marketplace", "agent", resp.AgentID, "marketplace", t.cfg.Client.BaseURL(), "wallet", t.cfg.Wallet)
			return nil
		}
		if c := node3.ErrorCode(err); c != node3.CodeUnavailable && c != node3.CodeRateLimited && c != node3.CodeInternal {
			return fmt.Errorf("registering with %s: %w", t.cfg.Client.BaseURL(), err)
		}
		t.connected.Store(false)
		t.log.Warn("marketplace unreachable; will retry registration", "err", err, "in", b.peek())
		if !sleep(ctx, b.next()) {
			return ctx.Err()
		}
	}
}

func (t *httpTransport) setAgent(id, key string) {
	t.mu.Lock()
	t.agentID = id
	t.client = t.cfg.Client.WithAPIKey(key)
	t.mu.Unlock()
}

func (t *httpTransport) api() *httpapi.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.client
}

func (t *httpTransport) AgentID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.agentID
}

// Offers long-polls for what fits the capacity free now; if more frees up
// while the poll waits, it is abandoned so the caller can ask again.
func (t *httpTransport) Offers(ctx context.Context, free node3.Capacity, n int, wake <-chan struct{}) ([]node3.Job, error) {
	pollCtx, cancelPoll := context.WithCancel(ctx)
	defer cancelPoll()
	if n < t.cfg.Slots+len(t.cfg.GPUs) {
		go func() {
			// Only a poll that is waiting is worth abandoning: one that
			// answers at once would lose the jobs it was offered.
			timer := time.NewTimer(abandonAfter)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-pollCtx.Done():
				return
			}
			select {
			case <-wake:
				cancelPoll()
			case <-pollCtx.Done():
			}
		}()
	}
	jobs, err := t.api().Available(pollCtx, n, &free, t.cfg.PollWait)
	abandoned := pollCtx.Err() != nil
	cancelPoll()
	if err != nil {
		if ctx.Err() != nil || abandoned {
			return nil, nil // shutting down, or capacity changed
		}
		if node3.ErrorCode(err) == node3.CodeUnauthorized {
			t.connected.Store(false)
			t.log.Warn("the marketplace no longer knows this agent; registering again", "err", err)
			if err := t.reregister(ctx); err != nil && ctx.Err() == nil {
				t.log.Error("registering again failed", "err", err)
			}
			return nil, nil
		}
		return nil, fmt.Errorf("polling the marketplace: %w", err)
	}
	t.connected.Store(true)
	return jobs, nil
}

func (t *httpTransport) Withdraw(string) {}

// Assigned: a REST coordinator leaves the GPUs to the provider.
func (t *httpTransport) Assigned(string) []node3.GPU { return nil }

// Run: the REST path has no background work of its own.
func (t *httpTransport) Run(context.Context) {}

// Connected reports whether the last call to the marketplace went through.
func (t *httpTransport) Connected() bool { return t.connected.Load() }

// Me asks the marketplace for this agent's record (GET /api/agents/me).
func (t *httpTransport) Me(ctx context.Context) (node3.Agent, error) {
	if t.AgentID() == "" {
		return node3.Agent{}, node3.Errorf(node3.CodeUnavailable, "not registered yet")
	}
	v, err := t.api().Me(ctx)
	return v.Agent, err
}

func (t *httpTransport) Accept(ctx context.Context, jobID string) (node3.Job, error) {
	return t.api().Accept(ctx, jobID)
}

func (t *httpTransport) Heartbeat(ctx context.Context, jobID string, attempt int) error {
	_, err := t.api().Heartbeat(ctx, jobID, attempt)
	return err
}

func (t *httpTransport) Complete(ctx context.Context, jobID string, attempt int, res node3.JobResult) (Ack, error) {
	j, err := t.api().Complete(ctx, jobID, httpapi.CompleteRequest{JobResult: res, Attempt: attempt})
	if err != nil {
		return Ack{}, err
	}
	return Ack{Job: &j, Status: j.Status}, nil
}

func (t *httpTransport) Fail(ctx context.Context, jobID string, attempt int, reason string, retryable bool, res node3.JobResult) (Ack, error) {
	j, err := t.api().Fail(ctx, jobID, httpapi.FailRequest{Reason: reason, Retryable: retryable, JobResult: res, Attempt: attempt})
	if err != nil {
		return Ack{}, err
	}
	return Ack{Job: &j, Status: j.Status}, nil
}
