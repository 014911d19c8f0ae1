package payout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
	"github.com/node3/node3/ledger/wallet"
)

// Config configures an Engine. Ledger, RPC and Payer are required; every
// other field has a default.
type Config struct {
	Ledger *ledger.Ledger
	// RPC is the cluster: an *rpc.Client for SOLANA_RPC_URL (devnet,
	// mainnet, localchain alike).
	RPC RPC
	// Payer is the marketplace wallet the rewards are paid from; it signs
	// and pays the fees.
	Payer *wallet.Wallet
	// BatchSize is the most payouts (jobs) one transaction carries: 16 by
	// default, at most MaxBatchSize. Payouts to one wallet share a
	// transfer; a transaction holds at most MaxTransfersPerTx() transfers.
	BatchSize int
	// BatchDelay is how long a partial batch waits for more payouts before
	// it is sent anyway, counted from when its oldest payout became
	// pending: 500ms by default; negative means do not wait.
	BatchDelay time.Duration
	// PollInterval is how often transactions in flight are looked up and
	// the ledger is checked for new payouts (Notify wakes the engine
	// sooner): 1s by default.
	PollInterval time.Duration
	// ResendInterval is how often a transaction not yet seen on chain is
	// sent again, as the same bytes: 2s by default.
	ResendInterval time.Duration
	// Commitment is the commitment for blockhashes, preflight, balances and
	// accounts: confirmed by default. Payouts count as paid only once
	// finalized, whatever this says.
	Commitment rpc.CommitmentType
	// MaxInFlight bounds the transactions in flight at once (64 by default).
	MaxInFlight int
	// MinBackoff and MaxBackoff bound the exponential backoff after an
	// error (short funds, an unreachable or refusing RPC node, a
	// transaction that failed on chain): 1s and 2min by default.
	MinBackoff, MaxBackoff time.Duration
	// RPCTimeout bounds one RPC call (15s by default).
	RPCTimeout time.Duration
	// Logger receives what the engine does and why payouts wait; nil
	// discards.
	Logger *slog.Logger
	// Now is the clock for ledger timestamps and batch delays (time.Now).
	Now func() time.Time
	// Registerer, if set, gets the engine's Prometheus metrics.
	Registerer prometheus.Registerer

	// hook, in tests, is called at each step of a transaction's life:
	// "persisted" (recorded, not yet sent), "sent" (acknowledged, not yet
	// recorded as sent), then "processed", "confirmed", "finalized",
	// "failed", "expired" (each after it is recorded).
	hook func(step string, tx ledger.PayoutTx)
}

func (c *Config) defaults() error {
	switch {
	case c.Ledger == nil:
		return errors.New("payout: no ledger")
	case c.RPC == nil:
		return errors.New("payout: no RPC client")
	case c.Payer == nil:
		return errors.New("payout: no payer wallet")
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 16
	}
	if c.BatchSize > MaxBatchSize {
		return fmt.Errorf("payout: batch size %d is above the maximum of %d", c.BatchSize, MaxBatchSize)
	}
	if c.BatchDelay == 0 {
		c.BatchDelay = 500 * time.Millisecond
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.ResendInterval <= 0 {
		c.ResendInterval = 2 * time.Second
	}
	switch c.Commitment {
	case "":
		c.Commitment = rpc.CommitmentConfirmed
	case rpc.CommitmentProcessed, rpc.CommitmentConfirmed, rpc.CommitmentFinalized:
	default:
		return fmt.Errorf("payout: unknown commitment %q", c.Commitment)
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 64
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 2 * time.Minute
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.RPCTimeout <= 0 {
		c.RPCTimeout = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Status is what the engine is doing and why payouts wait, for stats and
// logs.
type Status struct {
	Running bool   `json:"running"`
	Payer   string `json:"payer"`
	// Balance is the payer's balance when last looked at (Commitment).
	Balance node3.Lamports `json:"balance_lamports"`
	// The ledger's payouts by state, as of the engine's last step.
	Pending         int64          `json:"pending"`
	PendingLamports node3.Lamports `json:"pending_lamports"`
	InFlight        int64          `json:"in_flight"` // payouts sent or confirmed
	Failed          int64          `json:"failed"`    // waiting for a retry, or parked
	Finalized       int64          `json:"finalized"`
	// InFlightTxs is the transactions in flight.
	InFlightTxs int `json:"in_flight_txs"`
	// Held is the pending payouts kept back until their new account's
	// total reaches the rent-exempt minimum; HeldReason says for whom.
	Held       int    `json:"held"`
	HeldReason string `json:"held_reason,omitempty"`
	// LastError is why payouts are not moving, if something stands in the
	// way (short funds, an RPC error, a rejected or failed transaction);
	// empty once a batch goes through again.
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	// Since the engine started:
	TxsSent      uint64         `json:"txs_sent"`
	TxsFinalized uint64         `json:"txs_finalized"`
	TxsFailed    uint64         `json:"txs_failed"`  // landed with an error
	TxsExpired   uint64         `json:"txs_expired"` // never landed: re-signed
	Fees         node3.Lamports `json:"fees_lamports"`
}

// Engine pays completed jobs' rewards. Create it with New and run it with
// Run; Notify and Status are safe to call from any goroutine.
type Engine struct {
	cfg   Config
	led   *ledger.Ledger
	rpc   RPC
	payer solana.PublicKey
	key   solana.PrivateKey
	log   *slog.Logger
	m     *metrics
	wake  chan struct{}

	running atomic.Bool

	mu sync.Mutex // guards st
	st Status

	// Owned by the Run goroutine.
	flights      map[string]*flight // transactions in flight, by signature
	recovered    bool
	rentMin      map[uint64]uint64 // rent-exempt minimum by data size
	exempt       map[solana.PublicKey]time.Time
	backoff      time.Duration
	backoffUntil time.Time
	retryAt      time.Time            // the earliest failed payout's RetryAt
	retryScan    bool                 // look for failed payouts due for a retry
	troubled     bool                 // a problem was reported this round
	logged       map[string]time.Time // problems logged lately, and when
}

// flight is a transaction in flight.
type flight struct {
	tx       ledger.PayoutTx
	lastSend time.Time // zero: not sent by this process yet
	// unsent is true while every send of this transaction was refused by
	// the RPC node before it forwarded it: the transaction cannot land,
	// and may be abandoned at once. Only for transactions this process
	// signed; recovered ones may have been sent by the last one.
	unsent  bool
	errSeen string // landed with an error, not yet finalized
}

// New checks cfg and returns an engine; it does no I/O.
func New(cfg Config) (*Engine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:    cfg,
		led:    cfg.Ledger,
		rpc:    cfg.RPC,
		payer:  cfg.Payer.Address(),
		key:    cfg.Payer.PrivateKey(),
		log:    cfg.Logger.With("component", "payout", "payer", cfg.Payer.Address().String()),
		m:      m,
		wake:   make(chan struct{}, 1),
		logged: make(map[string]time.Time),
	}
	e.st.Payer = e.payer.String()
	return e, nil
}

// Notify tells the engine that a payout became pending, so it need not
// wait for its next poll. It never blocks.
func (e *Engine) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Status returns a snapshot of what the engine is doing.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st
}

func (e *Engine) status(f func(*Status)) {
	e.mu.Lock()
	f(&e.st)
	e.mu.Unlock()
}

// Run pays payouts until ctx ends, then returns nil. It first looks up the
// transactions a previous run left in flight and resends them as the same
// bytes. Errors on the way (RPC, funds, ledger) are logged, reported in
// Status and retried with backoff; they do not end Run. Only one Run may
// be active at a time.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("payout: engine is already running")
	}
	defer e.running.Store(false)
	e.flights = make(map[string]*flight)
	e.recovered = false
	e.retryScan = true
	e.backoff, e.backoffUntil = 0, time.Time{}
	e.exempt = make(map[solana.PublicKey]time.Time)
	e.status(func(s *Status) { s.Running = true })
	defer e.status(func(s *Status) { s.Running = false })
	e.log.Info("payout engine started", "batch_size", e.cfg.BatchSize, "batch_delay", e.cfg.BatchDelay, "commitment", e.cfg.Commitment)

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			e.refreshStatus(context.WithoutCancel(ctx))
			e.log.Info("payout engine stopped", "in_flight_txs", len(e.flights))
			return nil
		case <-timer.C:
		case <-e.wake:
		}
		timer.Reset(e.step(ctx))
	}
}

// step does one round: recover, track what is in flight, retry failed
// payouts, sign and send new batches. It returns how long to wait before
// the next round.
func (e *Engine) step(ctx context.Context) time.Duration {
	wait := e.cfg.PollInterval
	if ctx.Err() != nil {
		return wait
	}
	e.troubled = false
	if !e.recovered {
		if err := e.recover(ctx); err != nil {
			e.problem("recover in-flight payout transactions", err)
			return wait
		}
	}
	if len(e.flights) > 0 {
		e.track(ctx)
	}
	if ctx.Err() != nil {
		return wait
	}
	if now := e.cfg.Now(); e.retryScan || (!e.retryAt.IsZero() && !now.Before(e.retryAt)) {
		n, next, err := e.led.RetryFailedPayouts(ctx, now, 0)
		if err != nil {
			e.problem("retry failed payouts", err)
		} else {
			if n > 0 {
				e.log.Info("failed payouts are pending again", "payouts", n)
			}
			e.retryAt, e.retryScan = next, false
		}
	}
	if d := e.dispatch(ctx); d > 0 && d < wait {
		wait = d
	}
	if !e.troubled && ctx.Err() == nil && !e.cfg.Now().Before(e.backoffUntil) {
		// A clean round outside any backoff: whatever held payouts up is gone.
		e.status(func(s *Status) { s.LastError, s.LastErrorAt = "", time.Time{} })
	}
	e.refreshStatus(ctx)
	return wait
}

// recover loads the transactions a previous run left in flight.
func (e *Engine) recover(ctx context.Context) error {
	txs, err := e.led.InFlightPayoutTxs(ctx)
	if err != nil {
		return err
	}
	for _, tx := range txs {
		e.flights[tx.Signature] = &flight{tx: tx}
	}
	e.recovered = true
	if len(txs) > 0 {
		e.log.Info("recovered payout transactions in flight; looking them up", "txs", len(txs))
	}
	return nil
}

// problem records why payouts are not moving.
func (e *Engine) problem(what string, err error) {
	if errors.Is(err, context.Canceled) {
		return // stopping
	}
	e.troubled = true
	msg := rpcErrorText(err)
	if what != "" {
		msg = what + ": " + msg
	}
	now := e.cfg.Now()
	if at, ok := e.logged[msg]; !ok || now.Sub(at) >= repeatLog {
		e.log.Warn("payouts held up", "reason", msg)
		if len(e.logged) >= 256 {
			clear(e.logged)
		}
		e.logged[msg] = now
	}
	e.status(func(s *Status) { s.LastError, s.LastErrorAt = msg, now })
}

// repeatLog is how often the same problem is logged again while it lasts.
const repeatLog = 30 * time.Second

// backOff delays new batches after a problem, exponentially.
func (e *Engine) backOff() {
	if e.backoff == 0 {
		e.backoff = e.cfg.MinBackoff
	} else {
		e.backoff = min(2*e.backoff, e.cfg.MaxBackoff)
	}
	e.backoffUntil = e.cfg.Now().Add(e.backoff)
	until := e.backoffUntil
	e.status(func(s *Status) { s.BackoffUntil = until })
}

func (e *Engine) clearBackoff() {
	e.backoff = 0
	e.backoffUntil = time.Time{}
	e.status(func(s *Status) { s.BackoffUntil, s.LastError, s.LastErrorAt = time.Time{}, "", time.Time{} })
}

// retryDelay is the backoff before a failed payout is retried, by attempt.
func (e *Engine) retryDelay(attempt int) time.Duration {
	d := e.cfg.MinBackoff
	for i := 1; i < attempt && d < e.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, e.cfg.MaxBackoff)
}

func (e *Engine) refreshStatus(ctx context.Context) {
	tot, err := e.led.PayoutTotals(ctx)
	if err != nil {
		return
	}
	inflight := len(e.flights)
	e.status(func(s *Status) {
		s.Pending = tot[node3.PayoutPending].Count
		s.PendingLamports = tot[node3.PayoutPending].Sum
		s.InFlight = tot[node3.PayoutSent].Count + tot[node3.PayoutConfirmed].Count
		s.Failed = tot[node3.PayoutFailed].Count
		s.Finalized = tot[node3.PayoutFinalized].Count
		s.InFlightTxs = inflight
	})
	e.m.backlog.Set(float64(tot[node3.PayoutPending].Count))
	e.m.inflight.Set(float64(inflight))
}

// rpcCtx bounds one RPC call.
func (e *Engine) rpcCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.cfg.RPCTimeout)
}

func (e *Engine) hook(step string, tx ledger.PayoutTx) {
	if e.cfg.hook != nil {
		e.cfg.hook(step, tx)
	}
}
