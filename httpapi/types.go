package httpapi

import (
	"encoding/json"
	"time"

	"github.com/node3/node3"
)

// JobView is a job as the API shows it: the job plus its reward in SOL.
type JobView struct {
	node3.Job
	Reward       json.Number `json:"reward"` // SOL, exact decimal
	LeaseSeconds float64     `json:"lease_seconds,omitempty"`
}

func viewJob(j node3.Job, now time.Time) JobView {
	v := JobView{Job: j, Reward: json.Number(j.Reward.SOL())}
	if j.Status.Leased() && !j.LeaseExpiresAt.IsZero() {
		v.LeaseSeconds = j.LeaseExpiresAt.Sub(now).Seconds()
	}
	return v
}

// publicJob presents a job to anyone: node3.Job.Public is the rule.
func publicJob(j node3.Job, now time.Time) JobView { return viewJob(j.Public(), now) }

// jobsResponse presents a list of jobs through view (viewJob or publicJob).
func jobsResponse(jobs []node3.Job, now time.Time, view func(node3.Job, time.Time) JobView) JobsResponse {
	out := JobsResponse{Jobs: make([]JobView, 0, len(jobs)), Count: len(jobs)}
	for _, j := range jobs {
		out.Jobs = append(out.Jobs, view(j, now))
	}
	return out
}

// JobResponse wraps one job.
type JobResponse struct {
	Job JobView `json:"job"`
}

// JobsResponse wraps a list of jobs.
type JobsResponse struct {
	Jobs  []JobView `json:"jobs"`
	Count int       `json:"count"`
}

// RegisterRequest is the seed's registration body.
type RegisterRequest struct {
	WalletAddress string      `json:"wallet_address"`
	GPUModel      string      `json:"gpu_model"`
	GPUVendor     string      `json:"gpu_vendor"`
	GPUMemory     uint64      `json:"gpu_memory"` // bytes
	GPUs          []node3.GPU `json:"gpus,omitempty"`
	Slots         int         `json:"slots,omitempty"` // jobs needing no GPU it runs at once (default 1)
	Version       string      `json:"version,omitempty"`
}

// RegisterResponse carries the new agent's API key, shown once.
type RegisterResponse struct {
	AgentID string    `json:"agent_id"`
	APIKey  string    `json:"api_key"`
	Agent   AgentView `json:"agent"`
}

// AvailableRequest asks for jobs; WaitSeconds > 0 long-polls until a job
// is there or the wait is over.
type AvailableRequest struct {
	Limit       int     `json:"limit,omitempty"`
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
	// FreeSlots and FreeGPUs say what the agent can start now; without
	// them the marketplace assumes all its GPUs and limit slots are free.
	FreeSlots *int  `json:"free_slots,omitempty"`
	FreeGPUs  []int `json:"free_gpus,omitempty"`
	// The seed's agents send their GPU capabilities with each poll, in
	// the registration's fields; given, they replace the registered ones.
	GPUModel  string      `json:"gpu_model,omitempty"`
	GPUVendor string      `json:"gpu_vendor,omitempty"`
	GPUMemory uint64      `json:"gpu_memory,omitempty"` // bytes
	GPUs      []node3.GPU `json:"gpus,omitempty"`
}

// capabilities reports whether the poll carries GPU capabilities, and
// them as an agent's fields.
func (r AvailableRequest) capabilities() (node3.Agent, bool) {
	a := node3.Agent{GPUModel: r.GPUModel, GPUVendor: r.GPUVendor, GPUMemory: r.GPUMemory, GPUs: r.GPUs}
	return a, r.GPUModel != "" || r.GPUVendor != "" || r.GPUMemory != 0 || r.GPUs != nil
}

// AcceptRequest is the optional body of an accept: the seed's agents name
// the wallet this job's reward goes to.
type AcceptRequest struct {
	WalletAddress string `json:"wallet_address,omitempty"`
}

// HeartbeatRequest is the optional body of a heartbeat.
type HeartbeatRequest struct {
	Attempt int `json:"attempt,omitempty"` // the attempt the agent holds (0: the current one)
}

// CompleteRequest reports a completed job: its result, and the attempt
// it ran under (the job's attempt in the accept's answer; 0: current).
type CompleteRequest struct {
	node3.JobResult
	Attempt int `json:"attempt,omitempty"`
}

// FailRequest reports a failed job.
type FailRequest struct {
	Reason    string `json:"reason"`
	Retryable bool   `json:"retryable,omitempty"`
	Attempt   int    `json:"attempt,omitempty"` // as in CompleteRequest
	node3.JobResult
}

// checkAttempt bounds a reported attempt number.
func checkAttempt(n int) error {
	if n < 0 || n > node3.MaxMaxAttempts {
		return node3.Errorf(node3.CodeInvalid, "attempt must be between 0 and %d", node3.MaxMaxAttempts)
	}
	return nil
}

// CancelRequest withdraws a job.
type CancelRequest struct {
	Reason string `json:"reason,omitempty"`
}

// CreateJobRequest is the admin's job submission. Reward is SOL as a
// decimal (number or string); RewardLamports is the exact alternative.
type CreateJobRequest struct {
	JobType        string            `json:"job_type"`
	Description    string            `json:"description,omitempty"`
	Reward         json.RawMessage   `json:"reward,omitempty"`
	RewardLamports *json.Number      `json:"reward_lamports,omitempty"`
	RequiresGPU    bool              `json:"requires_gpu,omitempty"`
	MinGPUMemory   uint64            `json:"min_gpu_memory,omitempty"`
	GPUVendor      string            `json:"gpu_vendor,omitempty"`
	GPUModel       string            `json:"gpu_model,omitempty"`
	GPUCount       int               `json:"gpu_count,omitempty"`
	Framework      string            `json:"framework,omitempty"`
	Image          string            `json:"image,omitempty"`
	Command        []string          `json:"command,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	Network        bool              `json:"network,omitempty"`
	TimeoutSeconds int               `json:"timeout_seconds,omitempty"`
	MaxAttempts    int               `json:"max_attempts,omitempty"`
	InputURL       string            `json:"input_url,omitempty"`
	InputSHA256    string            `json:"input_sha256,omitempty"`
	OutputURL      string            `json:"output_url,omitempty"`
	ExpiresIn      int               `json:"expires_in_seconds,omitempty"`
}

// Spec turns the request into a JobSpec, converting the reward exactly.
// It does not apply defaults or range checks: JobSpec.Normalize does.
func (c CreateJobRequest) Spec() (node3.JobSpec, error) {
	var reward node3.Lamports
	switch {
	case len(c.Reward) > 0 && c.RewardLamports != nil:
		return node3.JobSpec{}, node3.Errorf(node3.CodeInvalid, "give reward (SOL) or reward_lamports, not both")
	case c.RewardLamports != nil:
		var err error
		if reward, err = node3.ParseLamports(c.RewardLamports.String()); err != nil {
			return node3.JobSpec{}, node3.Errorf(node3.CodeInvalid, "reward_lamports: %s", node3.ErrorMessage(err))
		}
	case len(c.Reward) > 0:
		var err error
		if reward, err = parseSOLField("reward", c.Reward); err != nil {
			return node3.JobSpec{}, err
		}
	default:
		return node3.JobSpec{}, node3.Errorf(node3.CodeInvalid, "reward is required (SOL, e.g. 0.001)")
	}
	return node3.JobSpec{
		Kind:        node3.JobKind(c.JobType),
		Description: c.Description,
		Reward:      reward,
		Requirements: node3.Requirements{
			GPU:          c.RequiresGPU,
			MinGPUMemory: c.MinGPUMemory,
			GPUVendor:    c.GPUVendor,
			GPUModel:     c.GPUModel,
			GPUCount:     c.GPUCount,
		},
		Framework:   c.Framework,
		Image:       c.Image,
		Command:     c.Command,
		Env:         c.Env,
		Network:     c.Network,
		TimeoutSecs: c.TimeoutSeconds,
		MaxAttempts: c.MaxAttempts,
		InputURL:    c.InputURL,
		InputSHA256: c.InputSHA256,
		OutputURL:   c.OutputURL,
		TTLSecs:     c.ExpiresIn,
	}, nil
}

// AgentView is an agent as the API shows it.
type AgentView struct {
	node3.Agent
	Status string      `json:"status"` // online | offline
	Earned json.Number `json:"earned"` // SOL
	Paid   json.Number `json:"paid"`   // SOL, finalized on chain
}

// ViewAgent presents an agent.
func ViewAgent(a node3.Agent, online bool) AgentView {
	status := "offline"
	if online {
		status = "online"
	}
	return AgentView{Agent: a, Status: status, Earned: json.Number(a.Earned.SOL()), Paid: json.Number(a.Paid.SOL())}
}

// AgentsResponse lists agents.
type AgentsResponse struct {
	Agents []AgentView `json:"agents"`
	Count  int         `json:"count"`
	Online int         `json:"online"`
}

// StatsResponse is the admin's view of the counters.
type StatsResponse struct {
	node3.Stats
	RewardsCompletedSOL json.Number `json:"rewards_completed"`
	PayoutsPendingSOL   json.Number `json:"payouts_pending_amount"`
	PayoutsPaidSOL      json.Number `json:"payouts_finalized_amount"`
}

// PayoutView is a payout with its amount in SOL.
type PayoutView struct {
	node3.Payout
	Amount json.Number `json:"amount"`
}

// PayoutsResponse lists payouts.
type PayoutsResponse struct {
	Payments []PayoutView `json:"payments"`
	Count    int          `json:"count"`
}

// HealthResponse answers GET /health.
type HealthResponse struct {
	Status  string    `json:"status"`
	Service string    `json:"service"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
}
