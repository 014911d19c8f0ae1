package node3

import "time"

// Agent is a provider known to a coordinator: an HTTP agent registered
// with an API key (and, later, a libp2p peer).
type Agent struct {
	ID            string    `json:"id"`
	WalletAddress string    `json:"wallet_address"`
	GPUModel      string    `json:"gpu_model"`
	GPUVendor     string    `json:"gpu_vendor"`
	GPUMemory     uint64    `json:"gpu_memory"` // bytes
	GPUs          []GPU     `json:"gpus,omitempty"`
	Slots         int       `json:"slots,omitempty"` // jobs needing no GPU it runs at once (0: one)
	Version       string    `json:"version,omitempty"`
	RegisteredAt  time.Time `json:"registered_at"`
	LastSeen      time.Time `json:"last_seen"`
	JobsCompleted int64     `json:"jobs_completed"`
	JobsFailed    int64     `json:"jobs_failed"`
	Earned        Lamports  `json:"earned_lamports"` // rewards of completed jobs, paid or not
	Paid          Lamports  `json:"paid_lamports"`   // of which finalized on chain
}

// MaxSlots bounds the slots an agent may declare.
const MaxSlots = 1024

// Capacity is how many jobs the agent may hold at once, offered or
// leased: its slots (one when it declared none) plus its GPUs.
func (a Agent) Capacity() int { return max(a.Slots, 1) + len(a.GPUs) }

// PayoutStatus is where a payment stands.
type PayoutStatus string

// Payout states: pending → sent → confirmed → finalized; failed is retried.
const (
	PayoutPending   PayoutStatus = "pending"
	PayoutSent      PayoutStatus = "sent"
	PayoutConfirmed PayoutStatus = "confirmed"
	PayoutFinalized PayoutStatus = "finalized"
	PayoutFailed    PayoutStatus = "failed"
)

// Payout is the payment of one completed job's reward to the provider that
// ran it. There is at most one per job.
type Payout struct {
	JobID     string       `json:"job_id"`
	AgentID   string       `json:"agent_id"`
	Wallet    string       `json:"wallet_address"`
	Amount    Lamports     `json:"amount_lamports"`
	Status    PayoutStatus `json:"status"`
	Signature string       `json:"signature,omitempty"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// Earnings are what a provider has earned: rewards of the jobs its
// coordinator booked as completed under it.
type Earnings struct {
	Total     Lamports `json:"total_lamports"`
	Today     Lamports `json:"today_lamports"`
	Completed int64    `json:"jobs_completed"`
	Failed    int64    `json:"jobs_failed"`
	// Paid is what the coordinator has paid out and seen finalized on
	// chain, as it last said.
	Paid          Lamports  `json:"paid_lamports"`
	WalletAddress string    `json:"wallet_address,omitempty"`
	WalletBalance *Lamports `json:"wallet_balance_lamports,omitempty"` // nil when the chain could not be asked
}
