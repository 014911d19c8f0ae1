package httpapi

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
)

// Marketplace is what the coordinator's API needs from the coordinator.
type Marketplace interface {
	RegisterAgent(ctx context.Context, a node3.Agent) (node3.Agent, string, error)
	AgentByKey(ctx context.Context, key string) (node3.Agent, error)
	// AvailableJobs returns up to limit jobs the agent can start with its
	// free capacity (nil: everything free), waiting up to wait for one to
	// appear when there are none.
	AvailableJobs(ctx context.Context, agent node3.Agent, limit int, free *node3.Capacity, wait time.Duration) ([]node3.Job, error)
	// SetAgentGPUs takes the GPUs an agent sent with a poll (in the
	// registration's fields) as its current ones.
	SetAgentGPUs(ctx context.Context, agent node3.Agent, caps node3.Agent) (node3.Agent, error)
	// Accept grants a job; wallet, if not empty, is where its reward goes.
	Accept(ctx context.Context, agent node3.Agent, jobID, wallet string) (node3.Job, error)
	// Heartbeat, Complete and Fail act for the attempt named (0: the current one).
	Heartbeat(ctx context.Context, agentID, jobID string, attempt int) (node3.Job, error)
	Complete(ctx context.Context, agentID, jobID string, attempt int, res node3.JobResult) (node3.Job, error)
	Fail(ctx context.Context, agentID, jobID string, attempt int, reason string, retryable bool, res node3.JobResult) (node3.Job, error)
	Agents(ctx context.Context) ([]node3.Agent, error)
	Online(a node3.Agent) bool
	// CreateJob creates a job; with an idempotency key (the
	// Idempotency-Key header), a repeat returns the first one's job with
	// replayed true.
	CreateJob(ctx context.Context, spec node3.JobSpec, idemKey string) (j node3.Job, replayed bool, err error)
	Job(ctx context.Context, id string) (node3.Job, error)
	Jobs(ctx context.Context, status node3.JobStatus, limit int) ([]node3.Job, error)
	Cancel(ctx context.Context, id, reason string) (node3.Job, error)
	Stats(ctx context.Context) (node3.Stats, error)
	Payouts(ctx context.Context, status node3.PayoutStatus, limit int) ([]node3.Payout, error)
}

// MarketplaceConfig configures the coordinator's API server.
type MarketplaceConfig struct {
	Market   Marketplace
	Payments Payments // nil: the wallet endpoints answer 503
	AdminKey string   // required for /api/admin/*
	Logger   *slog.Logger
	Registry *prometheus.Registry // served at /metrics; the server registers its own metrics here
	Now      func() time.Time
	Version  string
	MaxWait  time.Duration // longest long-poll (default 30 s)
	Limits   Limits        // abuse limits (zero value: the defaults; see limits.go)
}

// MarketplaceAPI serves the coordinator's REST API.
type MarketplaceAPI struct {
	cfg MarketplaceConfig
	rt  *router
	log *slog.Logger
	lim *limiter
}

//go:embed openapi/marketplace.json
var marketplaceOpenAPI []byte

// MaxLongPoll is the longest wait_seconds the API accepts.
const MaxLongPoll = 30 * time.Second

// NewMarketplace returns the coordinator's API handler.
func NewMarketplace(cfg MarketplaceConfig) *MarketplaceAPI {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxWait <= 0 || cfg.MaxWait > MaxLongPoll {
		cfg.MaxWait = MaxLongPoll
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	m := &MarketplaceAPI{cfg: cfg, log: cfg.Logger}
	m.rt = newRouter(cfg.Logger, cfg.Registry, "marketplace")
	m.lim = newLimiter(cfg.Limits, cfg.Now, cfg.Registry, "marketplace")
	m.rt.add(m.routes())
	return m
}

func (m *MarketplaceAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.rt.ServeHTTP(w, r) }

func (m *MarketplaceAPI) routes() []route {
	public := func(h http.HandlerFunc) http.HandlerFunc { return m.lim.perIP(classPublic, h) }
	return []route{
		{"GET", "/health", "Health check", public(m.health)},
		{"GET", "/openapi.json", "This API's OpenAPI document", public(serveBytes(marketplaceOpenAPI))},
		{"GET", "/metrics", "Prometheus metrics", public(metricsHandler(m.cfg.Registry))},
		{"POST", "/api/agents/register", "Register a new agent", m.lim.perIP(classRegister, m.register)},
		{"POST", "/api/jobs/available", "Get available jobs (long-poll with wait_seconds)", m.agent(m.available)},
		{"GET", "/api/jobs/{id}", "A job (its holder or the admin)", m.job},
		{"POST", "/api/jobs/{id}/accept", "Accept a job", m.agent(m.accept)},
		{"POST", "/api/jobs/{id}/heartbeat", "Mark a job running and extend its lease", m.agent(m.heartbeat)},
		{"POST", "/api/jobs/{id}/complete", "Report completion", m.agent(m.complete)},
		{"POST", "/api/jobs/{id}/fail", "Report failure", m.agent(m.fail)},
		{"GET", "/api/marketplace/agents", "List all agents", public(m.agents)},
		{"GET", "/api/marketplace/jobs", "List available jobs", public(m.marketJobs)},
		{"POST", "/api/admin/jobs/create", "Create a new job (admin)", m.admin(m.createJob)},
		{"GET", "/api/admin/jobs", "List jobs (admin)", m.admin(m.listJobs)},
		{"POST", "/api/admin/jobs/{id}/cancel", "Cancel a job (admin)", m.admin(m.cancel)},
		{"GET", "/api/admin/stats", "Get statistics (admin)", m.admin(m.stats)},
		{"GET", "/api/admin/payments", "Payment history (admin)", m.admin(m.payments)},
		{"GET", "/api/admin/wallet", "Marketplace wallet and payout status (admin)", m.admin(m.wallet)},
		{"POST", "/api/admin/wallet/fund", "Airdrop SOL to the marketplace wallet (admin; local chains and devnet)", m.admin(m.fund)},
		{"GET", "/api/admin/reconcile", "Check the ledger's payouts against the chain (admin)", m.admin(m.reconcile)},
		{"GET", "/api/agents/me", "The calling agent, with what it has earned and been paid", m.agent(m.me)},
	}
}

func serveBytes(b []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}
}

type agentHandler func(w http.ResponseWriter, r *http.Request, a node3.Agent)

// agent authenticates an agent by its API key.
func (m *MarketplaceAPI) agent(h agentHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !m.lim.authAllowed(w, r) {
			return
		}
		key := bearer(r)
		if key == "" {
			m.fail401(w, r, "an agent API key is required (Authorization: Bearer <key>)")
			return
		}
		a, err := m.cfg.Market.AgentByKey(r.Context(), key)
		if err != nil {
			m.authError(w, r, err)
			return
		}
		if m.lim.take(w, classAgent, a.ID) {
			h(w, r, a)
		}
	}
}

func (m *MarketplaceAPI) admin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !m.lim.authAllowed(w, r) {
			return
		}
		key := bearer(r)
		if key == "" {
			key = r.Header.Get("X-Admin-Key")
		}
		if !keyMatches(key, m.cfg.AdminKey) {
			m.fail401(w, r, "the admin API key is missing or wrong")
			return
		}
		if m.lim.take(w, classAdmin, "admin") {
			h(w, r)
		}
	}
}

// authError answers a failed key lookup; an unknown key counts against
// the caller's address.
func (m *MarketplaceAPI) authError(w http.ResponseWriter, r *http.Request, err error) {
	if node3.ErrorCode(err) == node3.CodeUnauthorized {
		m.lim.authFailed(r)
	}
	writeError(w, m.log, r, err)
}

func (m *MarketplaceAPI) fail401(w http.ResponseWriter, r *http.Request, msg string) {
	m.lim.authFailed(r)
	w.Header().Set("WWW-Authenticate", `Bearer realm="node3"`)
	writeError(w, m.log, r, node3.Errorf(node3.CodeUnauthorized, "%s", msg))
}

func (m *MarketplaceAPI) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, HealthResponse{Status: "healthy", Service: "node3-marketplace", Version: m.cfg.Version, Time: m.cfg.Now().UTC()})
}

func (m *MarketplaceAPI) register(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	if err := decode(w, r, maxBody, false, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	a, key, err := m.cfg.Market.RegisterAgent(r.Context(), node3.Agent{
		WalletAddress: req.WalletAddress,
		GPUModel:      req.GPUModel,
		GPUVendor:     req.GPUVendor,
		GPUMemory:     req.GPUMemory,
		GPUs:          req.GPUs,
		Slots:         req.Slots,
		Version:       req.Version,
	})
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, RegisterResponse{AgentID: a.ID, APIKey: key, Agent: m.viewAgent(a)})
}

func (m *MarketplaceAPI) available(w http.ResponseWriter, r *http.Request, a node3.Agent) {
	var req AvailableRequest
	if err := decode(w, r, maxBody, true, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if req.Limit == 0 {
		req.Limit = 10
	}
	if req.Limit < 1 || req.Limit > 100 {
		writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "limit must be between 1 and 100"))
		return
	}
	// Compare in seconds before converting: a huge wait_seconds would
	// overflow the Duration and slip past the bound as a negative wait.
	if req.WaitSeconds < 0 || req.WaitSeconds > m.cfg.MaxWait.Seconds() {
		writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "wait_seconds must be between 0 and %g", m.cfg.MaxWait.Seconds()))
		return
	}
	wait := time.Duration(req.WaitSeconds * float64(time.Second))
	var free *node3.Capacity
	if req.FreeSlots != nil || req.FreeGPUs != nil {
		free = &node3.Capacity{GPUs: req.FreeGPUs}
		if req.FreeSlots != nil {
			free.Slots = *req.FreeSlots
		}
		if free.Slots < 0 || free.Slots > 10000 || len(free.GPUs) > node3.MaxGPUCount {
			writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "free_slots must be between 0 and 10000 and free_gpus list at most %d GPUs", node3.MaxGPUCount))
			return
		}
	}
	if caps, ok := req.capabilities(); ok {
		var err error
		if a, err = m.cfg.Market.SetAgentGPUs(r.Context(), a, caps); err != nil {
			writeError(w, m.log, r, err)
			return
		}
	}
	jobs, err := m.cfg.Market.AvailableJobs(r.Context(), a, req.Limit, free, wait)
	if err != nil {
		if r.Context().Err() != nil {
			return // the agent hung up
		}
		writeError(w, m.log, r, err)
		return
	}
	m.writeJobs(w, jobs, viewJob)
}

func (m *MarketplaceAPI) writeJobs(w http.ResponseWriter, jobs []node3.Job, view func(node3.Job, time.Time) JobView) {
	writeJSON(w, http.StatusOK, jobsResponse(jobs, m.cfg.Now(), view))
}

func (m *MarketplaceAPI) writeJob(w http.ResponseWriter, r *http.Request, j node3.Job, err error) {
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, JobResponse{Job: viewJob(j, m.cfg.Now())})
}

func (m *MarketplaceAPI) accept(w http.ResponseWriter, r *http.Request, a node3.Agent) {
	var req AcceptRequest
	if err := decode(w, r, maxBody, true, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	j, err := m.cfg.Market.Accept(r.Context(), a, r.PathValue("id"), req.WalletAddress)
	m.writeJob(w, r, j, err)
}

func (m *MarketplaceAPI) heartbeat(w http.ResponseWriter, r *http.Request, a node3.Agent) {
	var req HeartbeatRequest
	if err := decode(w, r, maxBody, true, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if err := checkAttempt(req.Attempt); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	j, err := m.cfg.Market.Heartbeat(r.Context(), a.ID, r.PathValue("id"), req.Attempt)
	m.writeJob(w, r, j, err)
}

func (m *MarketplaceAPI) complete(w http.ResponseWriter, r *http.Request, a node3.Agent) {
	var req CompleteRequest
	if err := decode(w, r, maxBodyLarge, true, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if err := errors.Join(req.JobResult.Check(), checkAttempt(req.Attempt)); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	j, err := m.cfg.Market.Complete(r.Context(), a.ID, r.PathValue("id"), req.Attempt, req.JobResult)
	m.writeJob(w, r, j, err)
}

func (m *MarketplaceAPI) fail(w http.ResponseWriter, r *http.Request, a node3.Agent) {
	var req FailRequest
	if err := decode(w, r, maxBodyLarge, true, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if len(req.Reason) > 4096 {
		writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "reason is longer than 4096 bytes"))
		return
	}
	if err := errors.Join(req.JobResult.Check(), checkAttempt(req.Attempt)); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	j, err := m.cfg.Market.Fail(r.Context(), a.ID, r.PathValue("id"), req.Attempt, req.Reason, req.Retryable, req.JobResult)
	m.writeJob(w, r, j, err)
}

// job shows one job to the admin, or to the agent that holds or held it.
func (m *MarketplaceAPI) job(w http.ResponseWriter, r *http.Request) {
	if !m.lim.authAllowed(w, r) {
		return
	}
	key := bearer(r)
	isAdmin := keyMatches(key, m.cfg.AdminKey) || keyMatches(r.Header.Get("X-Admin-Key"), m.cfg.AdminKey)
	var agentID string
	if !isAdmin {
		if key == "" {
			m.fail401(w, r, "an agent or admin API key is required")
			return
		}
		a, err := m.cfg.Market.AgentByKey(r.Context(), key)
		if err != nil {
			m.authError(w, r, err)
			return
		}
		agentID = a.ID
	}
	class, who := classAdmin, "admin"
	if !isAdmin {
		class, who = classAgent, agentID
	}
	if !m.lim.take(w, class, who) {
		return
	}
	j, err := m.cfg.Market.Job(r.Context(), r.PathValue("id"))
	if err == nil && !isAdmin && j.AgentID != agentID {
		err = node3.Errorf(node3.CodeForbidden, "job %s is not yours", j.ID)
	}
	m.writeJob(w, r, j, err)
}

func (m *MarketplaceAPI) viewAgent(a node3.Agent) AgentView {
	return ViewAgent(a, m.cfg.Market.Online(a))
}

func (m *MarketplaceAPI) me(w http.ResponseWriter, r *http.Request, a node3.Agent) {
	writeJSON(w, http.StatusOK, m.viewAgent(a))
}

func (m *MarketplaceAPI) agents(w http.ResponseWriter, r *http.Request) {
	agents, err := m.cfg.Market.Agents(r.Context())
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	out := AgentsResponse{Agents: make([]AgentView, 0, len(agents)), Count: len(agents)}
	for _, a := range agents {
		v := m.viewAgent(a)
		if v.Status == "online" {
			out.Online++
		}
		out.Agents = append(out.Agents, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (m *MarketplaceAPI) marketJobs(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 100, 1, 1000)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	jobs, err := m.cfg.Market.Jobs(r.Context(), node3.StatusAvailable, limit)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	m.writeJobs(w, jobs, publicJob)
}

func (m *MarketplaceAPI) createJob(w http.ResponseWriter, r *http.Request) {
	var req CreateJobRequest
	if err := decode(w, r, maxBody, false, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	spec, err := req.Spec()
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	key, err := idempotencyKey(r.Header)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	j, replayed, err := m.cfg.Market.CreateJob(r.Context(), spec, key)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusCreated, JobResponse{Job: viewJob(j, m.cfg.Now())})
}

func (m *MarketplaceAPI) listJobs(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 50, 1, 1000)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	status := node3.JobStatus(r.URL.Query().Get("status"))
	if status != "" && !knownStatus(status) {
		writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "status %q is not a job state", trunc(string(status), 32)))
		return
	}
	jobs, err := m.cfg.Market.Jobs(r.Context(), status, limit)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	m.writeJobs(w, jobs, viewJob)
}

func knownStatus(s node3.JobStatus) bool {
	for _, st := range node3.AllStatuses {
		if s == st {
			return true
		}
	}
	return false
}

func (m *MarketplaceAPI) cancel(w http.ResponseWriter, r *http.Request) {
	var req CancelRequest
	if err := decode(w, r, maxBody, true, &req); err != nil {
		writeError(w, m.log, r, err)
		return
	}
	if len(req.Reason) > 4096 {
		writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "reason is longer than 4096 bytes"))
		return
	}
	j, err := m.cfg.Market.Cancel(r.Context(), r.PathValue("id"), req.Reason)
	m.writeJob(w, r, j, err)
}

func (m *MarketplaceAPI) stats(w http.ResponseWriter, r *http.Request) {
	s, err := m.cfg.Market.Stats(r.Context())
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, StatsResponse{
		Stats:               s,
		RewardsCompletedSOL: json.Number(s.RewardsCompleted.SOL()),
		PayoutsPendingSOL:   json.Number(s.PayoutsPendingSum.SOL()),
		PayoutsPaidSOL:      json.Number(s.PayoutsPaidSum.SOL()),
	})
}

func (m *MarketplaceAPI) payments(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 50, 1, 1000)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	status := node3.PayoutStatus(r.URL.Query().Get("status"))
	switch status {
	case "", node3.PayoutPending, node3.PayoutSent, node3.PayoutConfirmed, node3.PayoutFinalized, node3.PayoutFailed:
	default:
		writeError(w, m.log, r, node3.Errorf(node3.CodeInvalid, "status %q is not a payment state", trunc(string(status), 32)))
		return
	}
	ps, err := m.cfg.Market.Payouts(r.Context(), status, limit)
	if err != nil {
		writeError(w, m.log, r, err)
		return
	}
	out := PayoutsResponse{Payments: make([]PayoutView, 0, len(ps)), Count: len(ps)}
	for _, p := range ps {
		out.Payments = append(out.Payments, PayoutView{Payout: p, Amount: json.Number(p.Amount.SOL())})
	}
	writeJSON(w, http.StatusOK, out)
}
