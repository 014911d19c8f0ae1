package ledger

import (
	"slices"
	"time"

	"github.com/node3/node3"
)

// PayoutRecord is a payout as the ledger keeps it: the node3.Payout every
// API shows, plus the payout engine's bookkeeping. It is stored under the
// same key as the Payout (its fields are promoted in the JSON), so readers
// that only know node3.Payout keep working.
type PayoutRecord struct {
	node3.Payout
	// Attempts is how many transactions have been signed for this payout.
	Attempts int `json:"attempts,omitempty"`
	// LastError says why the last attempt did not pay (failed, expired,
	// parked), for stats and logs.
	LastError string `json:"last_error,omitempty"`
	// RetryAt is when a failed payout may go back to pending.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Parked marks a failed payout that is never retried by itself: it
	// cannot be paid as it stands (an invalid wallet address).
	Parked bool `json:"parked,omitempty"`
	// Txs lists the signature of every transaction signed for the payout,
	// oldest first. At most one of them can ever land.
	Txs []string `json:"txs,omitempty"`
}

// TxStatus is where a payout transaction stands.
type TxStatus string

// Payout transaction states.
const (
	// TxSigned: persisted, signed, possibly sent (the record is written
	// before the first send).
	TxSigned TxStatus = "signed"
	// TxSent: an RPC node acknowledged a send.
	TxSent TxStatus = "sent"
	// TxProcessed, TxConfirmed: seen on chain without error at that
	// commitment.
	TxProcessed TxStatus = "processed"
	TxConfirmed TxStatus = "confirmed"
	// TxFinalized: landed without error, finalized. Its payouts are paid.
	TxFinalized TxStatus = "finalized"
	// TxFailed: landed with an error, finalized. Only the fee was charged;
	// its payouts are failed and retried.
	TxFailed TxStatus = "failed"
	// TxExpired: never landed and never can (its blockhash expired while its
	// signature was unknown, or every send was rejected before reaching a
	// leader). Its payouts went back to pending.
	TxExpired TxStatus = "expired"
)

// InFlight reports whether the transaction may still change: it is not
// finalized, failed or expired.
func (s TxStatus) InFlight() bool {
	switch s {
	case TxSigned, TxSent, TxProcessed, TxConfirmed:
		return true
	}
	return false
}

// rank orders the in-flight and landed states (0 for the dead ones).
func (s TxStatus) rank() int {
	switch s {
	case TxSigned:
		return 1
	case TxSent:
		return 2
	case TxProcessed:
		return 3
	case TxConfirmed:
		return 4
	case TxFinalized:
		return 5
	}
	return 0
}

// TxPayout is one job's payout inside a transaction. Payouts to the same
// wallet in one transaction share one transfer instruction of their sum.
type TxPayout struct {
	JobID  string         `json:"job_id"`
	Wallet string         `json:"wallet_address"`
	Amount node3.Lamports `json:"amount_lamports"`
}

// PayoutTx is a payout transaction as the ledger keeps it: persisted, signed,
// before it is first sent.
type PayoutTx struct {
	Signature            string         `json:"signature"`
	Raw                  []byte         `json:"raw"` // the signed transaction as sent, wire format
	Blockhash            string         `json:"blockhash"`
	LastValidBlockHeight uint64         `json:"last_valid_block_height"`
	Payer                string         `json:"payer"`
	Payouts              []TxPayout     `json:"payouts"`
	Total                node3.Lamports `json:"total_lamports"` // sum of the payouts
	Fee                  node3.Lamports `json:"fee_lamports"`   // the fee it costs when it lands
	// Attempt is the highest attempt number among its payouts: 1 for a
	// first try, more after expiries and failures.
	Attempt   int       `json:"attempt"`
	Status    TxStatus  `json:"status"`
	Slot      uint64    `json:"slot,omitempty"` // where it landed
	LastError string    `json:"last_error,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	SentAt    time.Time `json:"sent_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// JobIDs lists the jobs the transaction pays.
func (tx PayoutTx) JobIDs() []string {
	ids := make([]string, len(tx.Payouts))
	for i, p := range tx.Payouts {
		ids[i] = p.JobID
	}
	return ids
}

// Landing is the commitment level at which a transaction was seen.
type Landing string

// Commitment levels.
const (
	Processed Landing = "processed"
	Confirmed Landing = "confirmed"
	Finalized Landing = "finalized"
)

func (l Landing) txStatus() (TxStatus, bool) {
	switch l {
	case Processed:
		return TxProcessed, true
	case Confirmed:
		return TxConfirmed, true
	case Finalized:
		return TxFinalized, true
	}
	return "", false
}

// PayoutEventKind names what happens to a payout or its transaction.
type PayoutEventKind string

// Events of the payout state machine.
const (
	// PaySign: the payout was put in the signed, persisted transaction Sig.
	// pending → sent.
	PaySign PayoutEventKind = "sign"
	// PaySent: an RPC node acknowledged a send of Sig (transactions only).
	PaySent PayoutEventKind = "sent"
	// PayLanded: Sig was seen on chain without error at Level. The payout
	// follows: confirmed at Confirmed, finalized at Finalized.
	PayLanded PayoutEventKind = "landed"
	// PayLandedError: Sig landed with an error (Reason) and that is
	// finalized: nothing was transferred. sent|confirmed → failed, retried
	// after Retry.
	PayLandedError PayoutEventKind = "landed_error"
	// PayExpired: Sig can never land (its blockhash expired in the
	// finalized chain and its signature is unknown, or every send of it was
	// rejected before it reached a leader). sent|confirmed → pending, to be
	// signed again. (Confirmed, because a transaction seen on a fork that
	// was then abandoned is as good as never seen.)
	PayExpired PayoutEventKind = "expired"
	// PayRetry: a failed payout's backoff is over (Now ≥ RetryAt).
	// failed → pending.
	PayRetry PayoutEventKind = "retry"
	// PaySkip: there is nothing to pay (a zero reward). pending → finalized,
	// with no transaction.
	PaySkip PayoutEventKind = "skip"
	// PayPark: the payout cannot be paid as it stands (Reason); it fails and
	// is not retried by itself. pending → failed (parked).
	PayPark PayoutEventKind = "park"
)

// PayoutEvent is one input to the payout state machine.
type PayoutEvent struct {
	Kind   PayoutEventKind
	Sig    string        // sign, sent, landed, landed_error, expired: the transaction
	Level  Landing       // landed
	Slot   uint64        // landed, landed_error: where (optional)
	Reason string        // landed_error, expired, park: why
	Retry  time.Duration // landed_error: backoff before the payout is retried
	Now    time.Time     // the caller's clock
}

func payoutConflict(p PayoutRecord, ev PayoutEvent) error {
	return node3.Errorf(node3.CodeConflict, "payout of job %s is %s: cannot %s", p.JobID, p.Status, ev.Kind)
}

func otherTx(p PayoutRecord, ev PayoutEvent) error {
	return node3.Errorf(node3.CodeConflict, "payout of job %s is %s in transaction %q, not %s: cannot %s",
		p.JobID, p.Status, p.Signature, ev.Sig, ev.Kind)
}

func lastTx(p PayoutRecord) string {
	if len(p.Txs) == 0 {
		return ""
	}
	return p.Txs[len(p.Txs)-1]
}

// ApplyPayout is the payout state machine: pending → sent → confirmed →
// finalized, with failed (retried: back to pending after a backoff) and
// expired transactions sending their payouts back to pending. It returns
// the payout after ev and whether anything changed; it does no I/O and
// reads no clock.
//
// Repeating an event that already took effect returns the payout
// unchanged and no error. An event the state does not allow — above all
// one that would put a payout in a second transaction while the first may
// still land — is a CodeConflict error; a malformed event is CodeInvalid.
func ApplyPayout(p PayoutRecord, ev PayoutEvent) (PayoutRecord, bool, error) {
	switch ev.Kind {
	case PaySign, PayLanded, PayLandedError, PayExpired:
		if ev.Sig == "" {
			return p, false, node3.Errorf(node3.CodeInvalid, "%s needs a transaction signature", ev.Kind)
		}
	case PayRetry, PaySkip, PayPark:
	case PaySent:
		return p, false, node3.Errorf(node3.CodeInvalid, "sent applies to transactions, not payouts")
	default:
		return p, false, node3.Errorf(node3.CodeInvalid, "unknown payout event %q", ev.Kind)
	}
	inTx := p.Signature != "" && p.Signature == ev.Sig
	switch ev.Kind {
	case PaySign:
		switch {
		case p.Status == node3.PayoutSent && inTx:
			return p, false, nil
		case p.Status != node3.PayoutPending:
			return p, false, payoutConflict(p, ev)
		case p.Amount == 0:
			return p, false, node3.Errorf(node3.CodeInvalid, "payout of job %s is zero: skip it instead of signing", p.JobID)
		}
		p.Status = node3.PayoutSent
		p.Signature = ev.Sig
		p.Attempts++
		p.Txs = append(slices.Clip(p.Txs), ev.Sig)
		p.RetryAt = time.Time{}

	case PayLanded:
		if _, ok := ev.Level.txStatus(); !ok {
			return p, false, node3.Errorf(node3.CodeInvalid, "landed needs a level (processed, confirmed, finalized), not %q", ev.Level)
		}
		switch p.Status {
		case node3.PayoutSent, node3.PayoutConfirmed, node3.PayoutFinalized:
			if !inTx {
				return p, false, otherTx(p, ev)
			}
		default:
			return p, false, payoutConflict(p, ev)
		}
		next := p.Status
		switch {
		case ev.Level == Finalized:
			next = node3.PayoutFinalized
		case ev.Level == Confirmed && p.Status == node3.PayoutSent:
			next = node3.PayoutConfirmed
		}
		if next == p.Status {
			return p, false, nil // a lower or equal level: nothing new
		}
		p.Status = next
		p.LastError = ""

	case PayLandedError:
		switch {
		case p.Status == node3.PayoutFailed && lastTx(p) == ev.Sig && !p.Parked:
			return p, false, nil
		case p.Status == node3.PayoutSent || p.Status == node3.PayoutConfirmed:
			if !inTx {
				return p, false, otherTx(p, ev)
			}
		default:
			return p, false, payoutConflict(p, ev)
		}
		p.Status = node3.PayoutFailed
		p.LastError = reasonOr(ev.Reason, "transaction "+ev.Sig+" failed")
		p.RetryAt = ev.Now.Add(ev.Retry)

	case PayExpired:
		switch {
		case p.Status == node3.PayoutPending && lastTx(p) == ev.Sig:
			return p, false, nil
		case p.Status != node3.PayoutSent && p.Status != node3.PayoutConfirmed:
			return p, false, payoutConflict(p, ev)
		case !inTx:
			return p, false, otherTx(p, ev)
		}
		p.Status = node3.PayoutPending
		p.Signature = ""
		p.LastError = reasonOr(ev.Reason, "transaction "+ev.Sig+" expired without landing")

	case PayRetry:
		switch {
		case p.Status == node3.PayoutPending:
			return p, false, nil
		case p.Status != node3.PayoutFailed:
			return p, false, payoutConflict(p, ev)
		case p.Parked || ev.Now.Before(p.RetryAt):
			return p, false, nil // not by itself / not yet
		}
		p.Status = node3.PayoutPending
		p.Signature = ""
		p.RetryAt = time.Time{}

	case PaySkip:
		switch {
		case p.Status == node3.PayoutFinalized && p.Amount == 0 && p.Signature == "":
			return p, false, nil
		case p.Status != node3.PayoutPending:
			return p, false, payoutConflict(p, ev)
		case p.Amount != 0:
			return p, false, node3.Errorf(node3.CodeInvalid, "payout of job %s is %s: only a zero payout can be skipped", p.JobID, p.Amount)
		}
		p.Status = node3.PayoutFinalized
		p.LastError = ""

	case PayPark:
		switch {
		case p.Status == node3.PayoutFailed && p.Parked:
			return p, false, nil
		case p.Status != node3.PayoutPending:
			return p, false, payoutConflict(p, ev)
		}
		p.Status = node3.PayoutFailed
		p.Parked = true
		p.LastError = reasonOr(ev.Reason, "cannot be paid")
	}
	p.UpdatedAt = ev.Now
	return p, true, nil
}

// ApplyTx is the transaction side of the state machine: signed → sent →
// processed → confirmed → finalized, or failed (landed with an error) or
// expired (never landed, or only on an abandoned fork). Like ApplyPayout it
// is pure and idempotent: a repeated or lower-level event changes nothing;
// one the state does not allow (a finalized or failed transaction reported
// as expired, an expired one reported as landed) is a CodeConflict error.
func ApplyTx(tx PayoutTx, ev PayoutEvent) (PayoutTx, bool, error) {
	switch ev.Kind {
	case PaySign, PaySent, PayLanded, PayLandedError, PayExpired:
	case PayRetry, PaySkip, PayPark:
		return tx, false, node3.Errorf(node3.CodeInvalid, "%s applies to payouts, not transactions", ev.Kind)
	default:
		return tx, false, node3.Errorf(node3.CodeInvalid, "unknown payout event %q", ev.Kind)
	}
	if ev.Sig != tx.Signature {
		return tx, false, node3.Errorf(node3.CodeInvalid, "event for transaction %q applied to %s", ev.Sig, tx.Signature)
	}
	conflict := func() error {
		return node3.Errorf(node3.CodeConflict, "transaction %s is %s: cannot %s", tx.Signature, tx.Status, ev.Kind)
	}
	switch ev.Kind {
	case PaySign:
		if tx.Status == TxSigned {
			return tx, false, nil
		}
		return tx, false, conflict()

	case PaySent:
		switch tx.Status {
		case TxSigned:
			tx.Status = TxSent
			tx.SentAt = ev.Now
		case TxSent, TxProcessed, TxConfirmed, TxFinalized:
			return tx, false, nil // a resend, or the acknowledgment came late
		default:
			return tx, false, conflict()
		}

	case PayLanded:
		next, ok := ev.Level.txStatus()
		if !ok {
			return tx, false, node3.Errorf(node3.CodeInvalid, "landed needs a level (processed, confirmed, finalized), not %q", ev.Level)
		}
		if !tx.Status.InFlight() && tx.Status != TxFinalized {
			return tx, false, conflict()
		}
		if next.rank() <= tx.Status.rank() {
			return tx, false, nil
		}
		tx.Status = next
		if ev.Slot != 0 {
			tx.Slot = ev.Slot
		}
		tx.LastError = ""

	case PayLandedError:
		switch {
		case tx.Status == TxFailed:
			return tx, false, nil
		case !tx.Status.InFlight():
			return tx, false, conflict()
		}
		tx.Status = TxFailed
		if ev.Slot != 0 {
			tx.Slot = ev.Slot
		}
		tx.LastError = reasonOr(ev.Reason, "failed on chain")

	case PayExpired:
		switch tx.Status {
		case TxExpired:
			return tx, false, nil
		case TxSigned, TxSent, TxProcessed, TxConfirmed:
			// Seen on a fork that did not survive is as good as never seen:
			// the caller proves the signature is unknown once its blockhash
			// expired in the finalized chain.
		default:
			return tx, false, conflict()
		}
		tx.Status = TxExpired
		tx.LastError = reasonOr(ev.Reason, "blockhash expired without the transaction landing")
	}
	tx.UpdatedAt = ev.Now
	return tx, true, nil
}

func reasonOr(reason, def string) string {
	if reason == "" {
		return def
	}
	return reason
}
