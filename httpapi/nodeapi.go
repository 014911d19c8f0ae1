package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	_ "embed"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
)

// Node is what the node's own API needs from the node.
type Node interface {
	Status(ctx context.Context) (NodeStatus, error)
	LocalJobs(ctx context.Context, limit int) ([]node3.Job, error)
	Earnings(ctx context.Context) (node3.Earnings, error)
	MarketplaceJobs(ctx context.Context) ([]node3.Job, error)
	MarketplaceAgents(ctx context.Context) ([]AgentView, error)
}

// NodeStatus is GET /api/status.
type NodeStatus struct {
	NodeID         string             `json:"node_id"`
	Version        string             `json:"version"`
	Coordinator    bool               `json:"coordinator"`
	Provider       bool               `json:"provider"`
	DemoMode       bool               `json:"demo_mode"`
	MarketplaceURL string             `json:"marketplace_url,omitempty"`
	AgentID        string             `json:"agent_id,omitempty"`
	Registered     bool               `json:"registered"`
	Connected      bool               `json:"connected"` // the last call to the coordinator succeeded
	WalletAddress  string             `json:"wallet_address,omitempty"`
	WalletBalance  *node3.Lamports    `json:"wallet_balance_lamports,omitempty"` // nil when the chain could not be asked
	GPUs           []node3.GPU        `json:"gpus"`
	GPUMetrics     []node3.GPUMetrics `json:"gpu_metrics,omitempty"`
	ActiveJobs     []string           `json:"active_jobs"`
	Slots          int                `json:"slots"`
	PendingReports int                `json:"pending_reports"`
	StartedAt      time.Time          `json:"started_at"`
	UptimeSeconds  float64            `json:"uptime_seconds"`
	P2P            *P2PStatus         `json:"p2p,omitempty"` // nil for a node on HTTP alone
}

// EarningsResponse is GET /api/earnings.
type EarningsResponse struct {
	node3.Earnings
	TotalSOL         json.Number `json:"total"`
	TodaySOL         json.Number `json:"today"`
	PaidSOL          json.Number `json:"paid"`
	WalletBalanceSOL json.Number `json:"wallet_balance,omitempty"`
}

// NodeConfig configures the node's API server.
type NodeConfig struct {
	Node     Node
	Logger   *slog.Logger
	Registry *prometheus.Registry
	Now      func() time.Time
	// AllowedHosts are the names, besides localhost, *.localhost and
	// loopback addresses, that requests may carry in Host (any port);
	// others get 421, which keeps web pages out through DNS rebinding.
	// "*" allows any.
	AllowedHosts []string
}

// NodeAPI serves the node's own API (the dashboard's data).
type NodeAPI struct {
	cfg   NodeConfig
	rt    *router
	log   *slog.Logger
	hosts hostCheck
}

//go:embed openapi/node.json
var nodeOpenAPI []byte

// NewNodeAPI returns the node's API handler.
func NewNodeAPI(cfg NodeConfig) *NodeAPI {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	n := &NodeAPI{cfg: cfg, log: cfg.Logger, hosts: newHostCheck(cfg.AllowedHosts)}
	n.rt = newRouter(cfg.Logger, cfg.Registry, "node")
	n.rt.add(n.routes())
	return n
}

func (n *NodeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !n.hosts.allows(r.Host) {
		n.hosts.refuse(w, r)
		return
	}
	n.rt.ServeHTTP(w, r)
}

func (n *NodeAPI) routes() []route {
	return []route{
		{"GET", "/api/status", "Node status", n.status},
		{"GET", "/api/jobs", "Job history (newest first)", n.jobs},
		{"GET", "/api/earnings", "Earnings: total and today", n.earnings},
		{"GET", "/api/marketplace/jobs", "Available marketplace jobs", n.marketJobs},
		{"GET", "/api/marketplace/agents", "All registered agents", n.marketAgents},
		{"GET", "/openapi.json", "This API's OpenAPI document", serveBytes(nodeOpenAPI)},
		{"GET", "/metrics", "Prometheus metrics", metricsHandler(n.cfg.Registry)},
	}
}

func (n *NodeAPI) status(w http.ResponseWriter, r *http.Request) {
	s, err := n.cfg.Node.Status(r.Context())
	if err != nil {
		writeError(w, n.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (n *NodeAPI) jobs(w http.ResponseWriter, r *http.Request) {
	limit, err := queryInt(r, "limit", 50, 1, 1000)
	if err != nil {
		writeError(w, n.log, r, err)
		return
	}
	jobs, err := n.cfg.Node.LocalJobs(r.Context(), limit)
	if err != nil {
		writeError(w, n.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, jobsResponse(jobs, n.cfg.Now(), viewJob))
}

func (n *NodeAPI) earnings(w http.ResponseWriter, r *http.Request) {
	e, err := n.cfg.Node.Earnings(r.Context())
	if err != nil {
		writeError(w, n.log, r, err)
		return
	}
	out := EarningsResponse{Earnings: e, TotalSOL: json.Number(e.Total.SOL()), TodaySOL: json.Number(e.Today.SOL()), PaidSOL: json.Number(e.Paid.SOL())}
	if e.WalletBalance != nil {
		out.WalletBalanceSOL = json.Number(e.WalletBalance.SOL())
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *NodeAPI) marketJobs(w http.ResponseWriter, r *http.Request) {
	jobs, err := n.cfg.Node.MarketplaceJobs(r.Context())
	if err != nil {
		writeError(w, n.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, jobsResponse(jobs, n.cfg.Now(), publicJob))
}

func (n *NodeAPI) marketAgents(w http.ResponseWriter, r *http.Request) {
	agents, err := n.cfg.Node.MarketplaceAgents(r.Context())
	if err != nil {
		writeError(w, n.log, r, err)
		return
	}
	out := AgentsResponse{Agents: agents, Count: len(agents)}
	if out.Agents == nil {
		out.Agents = []AgentView{}
	}
	for _, a := range agents {
		if a.Status == "online" {
			out.Online++
		}
	}
	writeJSON(w, http.StatusOK, out)
}
