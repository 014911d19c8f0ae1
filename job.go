package node3

import (
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// JobKind says how a job runs.
type JobKind string

// Job kinds.
const (
	KindNoop      JobKind = "noop"      // does nothing; for tests and benchmarks
	KindTest      JobKind = "test"      // GPU query plus a small computation
	KindBenchmark JobKind = "benchmark" // short compute benchmark reporting a figure
	KindCommand   JobKind = "command"   // an argv run natively; providers must opt in
	KindContainer JobKind = "container" // an image run in Docker
)

// Known reports whether k is one of the job kinds above.
func (k JobKind) Known() bool {
	switch k {
	case KindNoop, KindTest, KindBenchmark, KindCommand, KindContainer:
		return true
	}
	return false
}

// JobStatus is where a job stands. The words are the seed's.
type JobStatus string

// Job states. available → accepted → running → completed | failed;
// cancelled and expired end a job that nobody finished.
const (
	StatusAvailable JobStatus = "available"
	StatusAccepted  JobStatus = "accepted"
	StatusRunning   JobStatus = "running"
	StatusCompleted JobStatus = "completed"
	StatusFailed    JobStatus = "failed"
	StatusCancelled JobStatus = "cancelled"
	StatusExpired   JobStatus = "expired"
)

// AllStatuses lists every job state, in flow order.
var AllStatuses = []JobStatus{StatusAvailable, StatusAccepted, StatusRunning, StatusCompleted, StatusFailed, StatusCancelled, StatusExpired}

// Terminal reports whether no transition leaves s.
func (s JobStatus) Terminal() bool {
	switch s {
	case StatusCompleted, StatusFailed, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// Leased reports whether a job in state s is held by a provider under a lease.
func (s JobStatus) Leased() bool { return s == StatusAccepted || s == StatusRunning }

// Requirements are what a provider must have to take a job.
type Requirements struct {
	GPU          bool   `json:"requires_gpu"`
	MinGPUMemory uint64 `json:"min_gpu_memory,omitempty"` // bytes, per GPU
	GPUVendor    string `json:"gpu_vendor,omitempty"`     // case-insensitive match, e.g. "nvidia"
	GPUModel     string `json:"gpu_model,omitempty"`      // case-insensitive substring, e.g. "a100"
	GPUCount     int    `json:"gpu_count,omitempty"`      // 0 means 1 when GPU is required
}

// Count is the number of GPUs the job needs (0 for CPU-only jobs).
func (r Requirements) Count() int {
	if !r.GPU {
		return 0
	}
	if r.GPUCount < 1 {
		return 1
	}
	return r.GPUCount
}

// Fits reports whether one GPU satisfies the per-GPU requirements.
func (r Requirements) Fits(g GPU) bool {
	if r.MinGPUMemory > 0 && g.MemoryBytes < r.MinGPUMemory {
		return false
	}
	if r.GPUVendor != "" && !strings.EqualFold(r.GPUVendor, g.Vendor) {
		return false
	}
	if r.GPUModel != "" && !strings.Contains(strings.ToLower(g.Model), strings.ToLower(r.GPUModel)) {
		return false
	}
	return true
}

// MatchedBy reports whether a provider with these GPUs could ever run the
// job (ignoring how busy it is).
func (r Requirements) MatchedBy(gpus []GPU) bool {
	n := 0
	for _, g := range gpus {
		if r.Fits(g) {
			n++
		}
	}
	return n >= r.Count()
}

// JobSpec is what a submitter asks for. The coordinator adds identity,
// state and timestamps to make a Job.
type JobSpec struct {
	Kind         JobKind           `json:"job_type"`
	Description  string            `json:"description,omitempty"`
	Reward       Lamports          `json:"reward_lamports"`
	Requirements                   // embedded: requires_gpu, min_gpu_memory, …
	Framework    string            `json:"framework,omitempty"` // pytorch, tensorflow, jax, …
	Image        string            `json:"image,omitempty"`     // container jobs
	Command      []string          `json:"command,omitempty"`   // argv for command and container jobs
	Env          map[string]string `json:"env,omitempty"`
	Network      bool              `json:"network,omitempty"` // container jobs: ask for network access
	TimeoutSecs  int               `json:"timeout_seconds"`
	MaxAttempts  int               `json:"max_attempts"`
	InputURL     string            `json:"input_url,omitempty"`
	InputSHA256  string            `json:"input_sha256,omitempty"`
	OutputURL    string            `json:"output_url,omitempty"`
	TTLSecs      int               `json:"expires_in_seconds"` // how long it may wait to be taken
}

// Limits and defaults for job specs.
const (
	DefaultTimeout     = 600
	MaxTimeout         = 7 * 24 * 3600
	DefaultMaxAttempts = 3
	MaxMaxAttempts     = 20
	DefaultTTL         = 24 * 3600
	MaxTTL             = 30 * 24 * 3600
	MaxGPUCount        = 64
	maxArgs            = 256
	maxArgBytes        = 16 << 10
	maxEnv             = 128
	maxEnvBytes        = 16 << 10
	maxTextBytes       = 4 << 10
	maxURLBytes        = 2048
)

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// Normalize fills defaults and checks every field, returning a CodeInvalid
// error that names the first bad one.
func (s *JobSpec) Normalize() error { return s.normalize(false) }

// NormalizePublic is Normalize for a job's public view (Job.Public), which
// has no command: a command job's argv is not required there.
func (s *JobSpec) NormalizePublic() error { return s.normalize(true) }

func (s *JobSpec) normalize(public bool) error {
	if s.Kind == "" {
		return Errorf(CodeInvalid, "job_type is required")
	}
	if !s.Kind.Known() {
		return Errorf(CodeInvalid, "job_type %q is not one of noop, test, benchmark, command, container", truncate(string(s.Kind), 64))
	}
	if s.Reward > MaxReward {
		return Errorf(CodeInvalid, "reward %s is above the maximum of %s", s.Reward, MaxReward)
	}
	if s.GPUCount < 0 || s.GPUCount > MaxGPUCount {
		return Errorf(CodeInvalid, "gpu_count must be between 0 and %d", MaxGPUCount)
	}
	if !s.GPU && (s.GPUCount > 0 || s.MinGPUMemory > 0 || s.GPUVendor != "" || s.GPUModel != "") {
		return Errorf(CodeInvalid, "GPU requirements given but requires_gpu is false")
	}
	for name, v := range map[string]string{"description": s.Description, "gpu_vendor": s.GPUVendor, "gpu_model": s.GPUModel, "framework": s.Framework, "image": s.Image} {
		if len(v) > maxTextBytes {
			return Errorf(CodeInvalid, "%s is longer than %d bytes", name, maxTextBytes)
		}
	}
	switch s.Kind {
	case KindCommand:
		if public && len(s.Command) == 0 {
			break
		}
		if len(s.Command) == 0 || s.Command[0] == "" {
			return Errorf(CodeInvalid, "command jobs need a command (an argv list)")
		}
	case KindContainer:
		if s.Image == "" {
			return Errorf(CodeInvalid, "container jobs need an image")
		}
	default:
		if len(s.Command) > 0 || s.Image != "" {
			return Errorf(CodeInvalid, "%s jobs take no command or image", s.Kind)
		}
	}
	if len(s.Command) > maxArgs {
		return Errorf(CodeInvalid, "command has more than %d arguments", maxArgs)
	}
	n := 0
	for _, a := range s.Command {
		n += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			return Errorf(CodeInvalid, "command arguments may not contain NUL bytes")
		}
	}
	if n > maxArgBytes {
		return Errorf(CodeInvalid, "command is longer than %d bytes", maxArgBytes)
	}
	if len(s.Env) > maxEnv {
		return Errorf(CodeInvalid, "env has more than %d variables", maxEnv)
	}
	n = 0
	for k, v := range s.Env {
		if !envNameRE.MatchString(k) {
			return Errorf(CodeInvalid, "env name %q is not a valid variable name", truncate(k, 64))
		}
		if strings.IndexByte(v, 0) >= 0 {
			return Errorf(CodeInvalid, "env value of %s contains a NUL byte", k)
		}
		n += len(k) + len(v)
	}
	if n > maxEnvBytes {
		return Errorf(CodeInvalid, "env is larger than %d bytes", maxEnvBytes)
	}
	if s.Network && s.Kind != KindContainer {
		return Errorf(CodeInvalid, "network applies to container jobs only")
	}
	if err := defaultRange(&s.TimeoutSecs, DefaultTimeout, MaxTimeout, "timeout_seconds"); err != nil {
		return err
	}
	if err := defaultRange(&s.MaxAttempts, DefaultMaxAttempts, MaxMaxAttempts, "max_attempts"); err != nil {
		return err
	}
	if err := defaultRange(&s.TTLSecs, DefaultTTL, MaxTTL, "expires_in_seconds"); err != nil {
		return err
	}
	for name, u := range map[string]string{"input_url": s.InputURL, "output_url": s.OutputURL} {
		if err := checkURL(name, u); err != nil {
			return err
		}
	}
	if s.InputSHA256 != "" {
		if s.InputURL == "" {
			return Errorf(CodeInvalid, "input_sha256 given without input_url")
		}
		if !sha256RE.MatchString(s.InputSHA256) {
			return Errorf(CodeInvalid, "input_sha256 must be 64 hex digits")
		}
		s.InputSHA256 = strings.ToLower(s.InputSHA256)
	}
	return nil
}

func defaultRange(v *int, def, max int, name string) error {
	if *v == 0 {
		*v = def
	}
	if *v < 1 || *v > max {
		return Errorf(CodeInvalid, "%s must be between 1 and %d", name, max)
	}
	return nil
}

func checkURL(name, u string) error {
	if u == "" {
		return nil
	}
	if len(u) > maxURLBytes {
		return Errorf(CodeInvalid, "%s is longer than %d bytes", name, maxURLBytes)
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return Errorf(CodeInvalid, "%s must be an http or https URL", name)
	}
	return nil
}

// Truncate is the one rule for cutting text to a limit: s itself when it
// has at most n bytes, else its longest prefix that ends on a character
// boundary and, with "…" appended, has at most n bytes.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut, tail := n-len(ellipsis), ellipsis
	if cut <= 0 { // no room for the ellipsis
		cut, tail = max(n, 0), ""
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + tail
}

func truncate(s string, n int) string { return Truncate(s, n) }

// Job is a JobSpec placed on the board: identity, state, lease and result.
type Job struct {
	ID string `json:"id"`
	JobSpec
	Status    JobStatus `json:"status"`
	Attempt   int       `json:"attempt"`            // accepts so far
	AgentID   string    `json:"agent_id,omitempty"` // the current or last holder
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	ExpiresAt time.Time `json:"expires_at"` // when an untaken job expires

	AcceptedAt     time.Time `json:"accepted_at,omitzero"`
	StartedAt      time.Time `json:"started_at,omitzero"`
	FinishedAt     time.Time `json:"finished_at,omitzero"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`

	// Wallet is where this attempt's reward goes when the provider named
	// one as it accepted (the seed's agents do); empty: its registered wallet.
	Wallet string `json:"wallet_address,omitempty"`
	// Barred lists providers whose retryable failure put the job back,
	// each kept from retaking it for a while so that one provider cannot
	// spend every attempt of a job.
	Barred []Bar `json:"barred,omitempty"`

	Result *JobResult `json:"result,omitempty"`
	Error  string     `json:"error,omitempty"` // why it failed, was requeued or expired
}

// Bar keeps one provider from taking a job until a time.
type Bar struct {
	AgentID string    `json:"agent_id"`
	Until   time.Time `json:"until"`
}

// BarredUntil returns when agent may take the job again; the zero time
// when it is not barred at now.
func (j Job) BarredUntil(agent string, now time.Time) time.Time {
	for _, b := range j.Barred {
		if b.AgentID == agent && now.Before(b.Until) {
			return b.Until
		}
	}
	return time.Time{}
}

// Public is the job as anyone may see it — the marketplace's public
// listing, every node's API, gossip postings — and the one rule for that.
// Only the provider a job is granted to (and the admin) get the rest: the
// command's argv and the environment (either may carry the submitter's
// tokens), the input and output URLs (often presigned), the result's
// output, error texts (which may quote any of these) and bars.
func (j Job) Public() Job {
	j.Command = nil
	j.Env = nil
	j.InputURL, j.InputSHA256, j.OutputURL = "", "", ""
	j.Result = nil
	j.Error = ""
	j.Barred = nil
	return j
}

// JobResult is what a provider reports when a job ends.
type JobResult struct {
	ExecutionTime float64            `json:"execution_time"` // seconds the job ran
	SetupTime     float64            `json:"setup_time,omitempty"`
	ExitCode      int                `json:"exit_code"`
	Output        string             `json:"output,omitempty"` // capped stdout+stderr tail
	Metrics       map[string]float64 `json:"metrics,omitempty"`
	OutputSHA256  string             `json:"output_sha256,omitempty"`
}

// Limits on what a result may carry.
const (
	MaxResultOutput  = 64 << 10
	MaxResultMetrics = 64
)

// Check validates a reported result.
func (r *JobResult) Check() error {
	if r.ExecutionTime < 0 || r.ExecutionTime > MaxTimeout*2 || r.ExecutionTime != r.ExecutionTime {
		return Errorf(CodeInvalid, "execution_time must be between 0 and %d seconds", MaxTimeout*2)
	}
	if r.SetupTime < 0 || r.SetupTime > MaxTimeout*2 || r.SetupTime != r.SetupTime {
		return Errorf(CodeInvalid, "setup_time must be between 0 and %d seconds", MaxTimeout*2)
	}
	if len(r.Output) > MaxResultOutput {
		return Errorf(CodeInvalid, "output is longer than %d bytes", MaxResultOutput)
	}
	if len(r.Metrics) > MaxResultMetrics {
		return Errorf(CodeInvalid, "metrics has more than %d entries", MaxResultMetrics)
	}
	for k := range r.Metrics {
		if len(k) > 128 {
			return Errorf(CodeInvalid, "metric name longer than 128 bytes")
		}
	}
	if r.OutputSHA256 != "" && !sha256RE.MatchString(r.OutputSHA256) {
		return Errorf(CodeInvalid, "output_sha256 must be 64 hex digits")
	}
	return nil
}

// ReportKind says how a job ended on a provider.
type ReportKind string

// Report kinds.
const (
	ReportCompleted ReportKind = "completed"
	ReportFailed    ReportKind = "failed"
)

// Report is what a provider owes its coordinator when a job ends. It waits
// in the provider's durable outbox until the coordinator acknowledges it.
type Report struct {
	JobID     string     `json:"job_id"`
	Attempt   int        `json:"attempt,omitempty"` // the attempt it was granted for (0: from before attempts were reported)
	Kind      ReportKind `json:"kind"`
	Result    JobResult  `json:"result"`
	Reason    string     `json:"reason,omitempty"`
	Retryable bool       `json:"retryable,omitempty"`
	At        time.Time  `json:"at"`
	Attempts  int        `json:"attempts"` // delivery attempts so far
}

// Stats are a coordinator's counters.
type Stats struct {
	Jobs              map[JobStatus]int64 `json:"jobs"`
	JobsTotal         int64               `json:"jobs_total"`
	Agents            int64               `json:"agents"`
	AgentsOnline      int64               `json:"agents_online"`
	RewardsCompleted  Lamports            `json:"rewards_completed_lamports"`
	PayoutsPending    int64               `json:"payouts_pending"`
	PayoutsPendingSum Lamports            `json:"payouts_pending_lamports"`
	PayoutsInFlight   int64               `json:"payouts_in_flight"` // sent or confirmed, not yet finalized
	PayoutsFailed     int64               `json:"payouts_failed"`    // waiting for a retry, or parked
	PayoutsPaid       int64               `json:"payouts_finalized"`
	PayoutsPaidSum    Lamports            `json:"payouts_finalized_lamports"`
}
