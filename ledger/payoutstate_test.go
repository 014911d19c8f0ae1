package ledger

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/node3/node3"
)

const (
	sigA = "sig-A" // the transaction the fixtures are (or were) in
	sigB = "sig-B" // any other transaction
)

var (
	tPaid    = t0.Add(time.Minute)      // when the fixtures reached their state
	tRetryAt = t0.Add(10 * time.Minute) // the failed fixture's RetryAt
	tEvent   = t0.Add(2 * time.Minute)  // events happen here (before tRetryAt)
	tDue     = tRetryAt.Add(time.Second)
)

// payoutFixture returns a payout in the named situation.
func payoutFixture(name string) PayoutRecord {
	p := PayoutRecord{Payout: node3.Payout{
		JobID: "job-1", AgentID: "agent-1", Wallet: "wallet-1", Amount: 1_000_000,
		Status: node3.PayoutPending, CreatedAt: t0, UpdatedAt: t0,
	}}
	inA := func(st node3.PayoutStatus) {
		p.Status, p.Signature, p.Attempts, p.Txs, p.UpdatedAt = st, sigA, 1, []string{sigA}, tPaid
	}
	switch name {
	case "pending": // never signed
	case "pending/expired": // its transaction A expired unseen
		p.Attempts, p.Txs, p.LastError, p.UpdatedAt = 1, []string{sigA}, "expired", tPaid
	case "pending/zero":
		p.Amount = 0
	case "sent":
		inA(node3.PayoutSent)
	case "confirmed":
		inA(node3.PayoutConfirmed)
	case "finalized":
		inA(node3.PayoutFinalized)
	case "finalized/skipped":
		p.Amount, p.Status, p.UpdatedAt = 0, node3.PayoutFinalized, tPaid
	case "failed": // A landed with an error
		inA(node3.PayoutFailed)
		p.LastError, p.RetryAt = "boom", tRetryAt
	case "failed/parked":
		p.Status, p.Parked, p.LastError, p.UpdatedAt = node3.PayoutFailed, true, "invalid wallet", tPaid
	default:
		panic("no payout fixture " + name)
	}
	return p
}

var payoutFixtures = []string{"pending", "pending/expired", "pending/zero", "sent", "confirmed", "finalized", "finalized/skipped", "failed", "failed/parked"}

var payoutEvents = map[string]PayoutEvent{
	"sign A":            {Kind: PaySign, Sig: sigA, Now: tEvent},
	"sign B":            {Kind: PaySign, Sig: sigB, Now: tEvent},
	"sign/no-sig":       {Kind: PaySign, Now: tEvent},
	"sent A":            {Kind: PaySent, Sig: sigA, Now: tEvent},
	"landed A/process":  {Kind: PayLanded, Sig: sigA, Level: Processed, Now: tEvent},
	"landed A/confirm":  {Kind: PayLanded, Sig: sigA, Level: Confirmed, Now: tEvent},
	"landed A/final":    {Kind: PayLanded, Sig: sigA, Level: Finalized, Now: tEvent},
	"landed B/final":    {Kind: PayLanded, Sig: sigB, Level: Finalized, Now: tEvent},
	"landed A/no-level": {Kind: PayLanded, Sig: sigA, Now: tEvent},
	"landed_error A":    {Kind: PayLandedError, Sig: sigA, Reason: "InsufficientFundsForRent", Retry: time.Minute, Now: tEvent},
	"landed_error B":    {Kind: PayLandedError, Sig: sigB, Reason: "x", Retry: time.Minute, Now: tEvent},
	"expired A":         {Kind: PayExpired, Sig: sigA, Now: tEvent},
	"expired B":         {Kind: PayExpired, Sig: sigB, Now: tEvent},
	"retry/early":       {Kind: PayRetry, Now: tEvent},
	"retry/due":         {Kind: PayRetry, Now: tDue},
	"skip":              {Kind: PaySkip, Now: tEvent},
	"park":              {Kind: PayPark, Reason: "wallet is not a Solana address", Now: tEvent},
	"unknown":           {Kind: "teleport", Now: tEvent},
}

type payOutcome struct {
	status  node3.PayoutStatus // "" for "as before"
	changed bool
	code    node3.Code
}

var (
	pNoop = payOutcome{}
	pConf = payOutcome{code: node3.CodeConflict}
	pInv  = payOutcome{code: node3.CodeInvalid}
	pTo   = func(s node3.PayoutStatus) payOutcome { return payOutcome{status: s, changed: true} }
)

// payoutTable is the whole payout state machine: every fixture × every
// event.
var payoutTable = []struct {
	state, event string
	want         payOutcome
}{
	// Never signed: it may be signed, skipped only if zero, parked.
	{"pending", "sign A", pTo(node3.PayoutSent)},
	{"pending", "sign B", pTo(node3.PayoutSent)},
	{"pending", "sign/no-sig", pInv},
	{"pending", "sent A", pInv},
	{"pending", "landed A/process", pConf},
	{"pending", "landed A/confirm", pConf},
	{"pending", "landed A/final", pConf},
	{"pending", "landed B/final", pConf},
	{"pending", "landed A/no-level", pInv},
	{"pending", "landed_error A", pConf},
	{"pending", "landed_error B", pConf},
	{"pending", "expired A", pConf},
	{"pending", "expired B", pConf},
	{"pending", "retry/early", pNoop},
	{"pending", "retry/due", pNoop},
	{"pending", "skip", pInv},
	{"pending", "park", pTo(node3.PayoutFailed)},
	{"pending", "unknown", pInv},

	// Back to pending after A expired: the expiry repeats as a no-op, and
	// A can never be reported as landed.
	{"pending/expired", "sign A", pTo(node3.PayoutSent)},
	{"pending/expired", "sign B", pTo(node3.PayoutSent)},
	{"pending/expired", "sign/no-sig", pInv},
	{"pending/expired", "sent A", pInv},
	{"pending/expired", "landed A/process", pConf},
	{"pending/expired", "landed A/confirm", pConf},
	{"pending/expired", "landed A/final", pConf},
	{"pending/expired", "landed B/final", pConf},
	{"pending/expired", "landed A/no-level", pInv},
	{"pending/expired", "landed_error A", pConf},
	{"pending/expired", "landed_error B", pConf},
	{"pending/expired", "expired A", pNoop},
	{"pending/expired", "expired B", pConf},
	{"pending/expired", "retry/early", pNoop},
	{"pending/expired", "retry/due", pNoop},
	{"pending/expired", "skip", pInv},
	{"pending/expired", "park", pTo(node3.PayoutFailed)},
	{"pending/expired", "unknown", pInv},

	// A zero payout is never signed: it is skipped.
	{"pending/zero", "sign A", pInv},
	{"pending/zero", "sign B", pInv},
	{"pending/zero", "sign/no-sig", pInv},
	{"pending/zero", "sent A", pInv},
	{"pending/zero", "landed A/process", pConf},
	{"pending/zero", "landed A/confirm", pConf},
	{"pending/zero", "landed A/final", pConf},
	{"pending/zero", "landed B/final", pConf},
	{"pending/zero", "landed A/no-level", pInv},
	{"pending/zero", "landed_error A", pConf},
	{"pending/zero", "landed_error B", pConf},
	{"pending/zero", "expired A", pConf},
	{"pending/zero", "expired B", pConf},
	{"pending/zero", "retry/early", pNoop},
	{"pending/zero", "retry/due", pNoop},
	{"pending/zero", "skip", pTo(node3.PayoutFinalized)},
	{"pending/zero", "park", pTo(node3.PayoutFailed)},
	{"pending/zero", "unknown", pInv},

	// In A: never in a second transaction; follows A only.
	{"sent", "sign A", pNoop},
	{"sent", "sign B", pConf},
	{"sent", "sign/no-sig", pInv},
	{"sent", "sent A", pInv},
	{"sent", "landed A/process", pNoop},
	{"sent", "landed A/confirm", pTo(node3.PayoutConfirmed)},
	{"sent", "landed A/final", pTo(node3.PayoutFinalized)},
	{"sent", "landed B/final", pConf},
	{"sent", "landed A/no-level", pInv},
	{"sent", "landed_error A", pTo(node3.PayoutFailed)},
	{"sent", "landed_error B", pConf},
	{"sent", "expired A", pTo(node3.PayoutPending)},
	{"sent", "expired B", pConf},
	{"sent", "retry/early", pConf},
	{"sent", "retry/due", pConf},
	{"sent", "skip", pConf},
	{"sent", "park", pConf},
	{"sent", "unknown", pInv},

	// Seen confirmed: it may still expire if that fork died.
	{"confirmed", "sign A", pConf},
	{"confirmed", "sign B", pConf},
	{"confirmed", "sign/no-sig", pInv},
	{"confirmed", "sent A", pInv},
	{"confirmed", "landed A/process", pNoop},
	{"confirmed", "landed A/confirm", pNoop},
	{"confirmed", "landed A/final", pTo(node3.PayoutFinalized)},
	{"confirmed", "landed B/final", pConf},
	{"confirmed", "landed A/no-level", pInv},
	{"confirmed", "landed_error A", pTo(node3.PayoutFailed)},
	{"confirmed", "landed_error B", pConf},
	{"confirmed", "expired A", pTo(node3.PayoutPending)}, // seen on a fork that died
	{"confirmed", "expired B", pConf},
	{"confirmed", "retry/early", pConf},
	{"confirmed", "retry/due", pConf},
	{"confirmed", "skip", pConf},
	{"confirmed", "park", pConf},
	{"confirmed", "unknown", pInv},

	// Paid: only repeats of A's landing are accepted.
	{"finalized", "sign A", pConf},
	{"finalized", "sign B", pConf},
	{"finalized", "sign/no-sig", pInv},
	{"finalized", "sent A", pInv},
	{"finalized", "landed A/process", pNoop},
	{"finalized", "landed A/confirm", pNoop},
	{"finalized", "landed A/final", pNoop},
	{"finalized", "landed B/final", pConf},
	{"finalized", "landed A/no-level", pInv},
	{"finalized", "landed_error A", pConf},
	{"finalized", "landed_error B", pConf},
	{"finalized", "expired A", pConf},
	{"finalized", "expired B", pConf},
	{"finalized", "retry/early", pConf},
	{"finalized", "retry/due", pConf},
	{"finalized", "skip", pConf},
	{"finalized", "park", pConf},
	{"finalized", "unknown", pInv},

	// Skipped (zero): done, with no transaction.
	{"finalized/skipped", "sign A", pConf},
	{"finalized/skipped", "sign B", pConf},
	{"finalized/skipped", "sign/no-sig", pInv},
	{"finalized/skipped", "sent A", pInv},
	{"finalized/skipped", "landed A/process", pConf},
	{"finalized/skipped", "landed A/confirm", pConf},
	{"finalized/skipped", "landed A/final", pConf},
	{"finalized/skipped", "landed B/final", pConf},
	{"finalized/skipped", "landed A/no-level", pInv},
	{"finalized/skipped", "landed_error A", pConf},
	{"finalized/skipped", "landed_error B", pConf},
	{"finalized/skipped", "expired A", pConf},
	{"finalized/skipped", "expired B", pConf},
	{"finalized/skipped", "retry/early", pConf},
	{"finalized/skipped", "retry/due", pConf},
	{"finalized/skipped", "skip", pNoop},
	{"finalized/skipped", "park", pConf},
	{"finalized/skipped", "unknown", pInv},

	// A landed with an error: retried once the backoff is over.
	{"failed", "sign A", pConf},
	{"failed", "sign B", pConf},
	{"failed", "sign/no-sig", pInv},
	{"failed", "sent A", pInv},
	{"failed", "landed A/process", pConf},
	{"failed", "landed A/confirm", pConf},
	{"failed", "landed A/final", pConf},
	{"failed", "landed B/final", pConf},
	{"failed", "landed A/no-level", pInv},
	{"failed", "landed_error A", pNoop},
	{"failed", "landed_error B", pConf},
	{"failed", "expired A", pConf},
	{"failed", "expired B", pConf},
	{"failed", "retry/early", pNoop},
	{"failed", "retry/due", pTo(node3.PayoutPending)},
	{"failed", "skip", pConf},
	{"failed", "park", pConf},
	{"failed", "unknown", pInv},

	// Parked: never retried by itself.
	{"failed/parked", "sign A", pConf},
	{"failed/parked", "sign B", pConf},
	{"failed/parked", "sign/no-sig", pInv},
	{"failed/parked", "sent A", pInv},
	{"failed/parked", "landed A/process", pConf},
	{"failed/parked", "landed A/confirm", pConf},
	{"failed/parked", "landed A/final", pConf},
	{"failed/parked", "landed B/final", pConf},
	{"failed/parked", "landed A/no-level", pInv},
	{"failed/parked", "landed_error A", pConf},
	{"failed/parked", "landed_error B", pConf},
	{"failed/parked", "expired A", pConf},
	{"failed/parked", "expired B", pConf},
	{"failed/parked", "retry/early", pNoop},
	{"failed/parked", "retry/due", pNoop},
	{"failed/parked", "skip", pConf},
	{"failed/parked", "park", pNoop},
	{"failed/parked", "unknown", pInv},
}

func TestApplyPayoutTable(t *testing.T) {
	covered := make(map[[2]string]bool)
	for _, tc := range payoutTable {
		key := [2]string{tc.state, tc.event}
		if covered[key] {
			t.Fatalf("row %v appears twice", key)
		}
		covered[key] = true
		ev, ok := payoutEvents[tc.event]
		if !ok {
			t.Fatalf("no event %q", tc.event)
		}
		before := payoutFixture(tc.state)
		in := payoutFixture(tc.state)
		p, changed, err := ApplyPayout(in, ev)
		name := tc.state + " + " + tc.event
		if !reflect.DeepEqual(in, before) {
			t.Errorf("%s: the input was modified", name)
		}
		if code := node3.ErrorCode(err); code != tc.want.code || changed != tc.want.changed {
			t.Errorf("%s: changed %v, error %q (%v); want changed %v, code %q", name, changed, code, err, tc.want.changed, tc.want.code)
			continue
		}
		wantStatus := tc.want.status
		if wantStatus == "" {
			wantStatus = before.Status
		}
		if p.Status != wantStatus {
			t.Errorf("%s: status %s, want %s", name, p.Status, wantStatus)
		}
		if !changed {
			if !reflect.DeepEqual(p, before) {
				t.Errorf("%s: unchanged but differs:\n %+v\n %+v", name, p, before)
			}
			continue
		}
		checkPayoutInvariants(t, name, before, p, ev)
		// A repeat of an event that took effect is a no-op.
		again, changed, err := ApplyPayout(p, ev)
		if err != nil || changed || !reflect.DeepEqual(again, p) {
			t.Errorf("%s: repeat changed %v, err %v", name, changed, err)
		}
	}
	for _, st := range payoutFixtures {
		for ev := range payoutEvents {
			if !covered[[2]string{st, ev}] {
				t.Errorf("no row for %s + %s", st, ev)
			}
		}
	}
}

func checkPayoutInvariants(t *testing.T, name string, before, p PayoutRecord, ev PayoutEvent) {
	t.Helper()
	if !p.UpdatedAt.Equal(ev.Now) || p.Amount != before.Amount || p.JobID != before.JobID || p.Wallet != before.Wallet {
		t.Errorf("%s: identity or time changed: %+v", name, p)
	}
	switch p.Status {
	case node3.PayoutSent:
		if p.Signature != ev.Sig || p.Attempts != before.Attempts+1 || !slices.Equal(p.Txs, append(slices.Clone(before.Txs), ev.Sig)) {
			t.Errorf("%s: signed payout %+v", name, p)
		}
	case node3.PayoutPending:
		if p.Signature != "" || !p.RetryAt.IsZero() || p.Attempts != before.Attempts {
			t.Errorf("%s: back to pending with %+v", name, p)
		}
	case node3.PayoutFailed:
		if p.LastError == "" || (!p.Parked && !p.RetryAt.Equal(ev.Now.Add(ev.Retry))) {
			t.Errorf("%s: failed without reason or retry time: %+v", name, p)
		}
	case node3.PayoutFinalized, node3.PayoutConfirmed:
		if p.Signature != before.Signature {
			t.Errorf("%s: landed payout changed transaction: %+v", name, p)
		}
	}
}

// txFixture returns transaction A in the named state.
func txFixture(st TxStatus) PayoutTx {
	return PayoutTx{
		Signature: sigA, Raw: []byte{1}, Payouts: []TxPayout{{JobID: "job-1", Wallet: "wallet-1", Amount: 1_000_000}},
		Total: 1_000_000, Fee: 5000, Attempt: 1, Status: st, CreatedAt: t0, UpdatedAt: tPaid,
	}
}

var txEvents = map[string]PayoutEvent{
	"sign":           {Kind: PaySign, Sig: sigA, Now: tEvent},
	"sent":           {Kind: PaySent, Sig: sigA, Now: tEvent},
	"landed/process": {Kind: PayLanded, Sig: sigA, Level: Processed, Slot: 7, Now: tEvent},
	"landed/confirm": {Kind: PayLanded, Sig: sigA, Level: Confirmed, Slot: 7, Now: tEvent},
	"landed/final":   {Kind: PayLanded, Sig: sigA, Level: Finalized, Slot: 7, Now: tEvent},
	"landed/bad":     {Kind: PayLanded, Sig: sigA, Level: "rooted", Now: tEvent},
	"landed_error":   {Kind: PayLandedError, Sig: sigA, Reason: "boom", Slot: 7, Now: tEvent},
	"expired":        {Kind: PayExpired, Sig: sigA, Now: tEvent},
	"retry":          {Kind: PayRetry, Now: tEvent},
	"other tx":       {Kind: PayLanded, Sig: sigB, Level: Finalized, Now: tEvent},
}

type txOutcome struct {
	status TxStatus // "" for "as before"
	code   node3.Code
}

func TestApplyTxTable(t *testing.T) {
	noop, conf, inv := txOutcome{}, txOutcome{code: node3.CodeConflict}, txOutcome{code: node3.CodeInvalid}
	to := func(s TxStatus) txOutcome { return txOutcome{status: s} }
	states := []TxStatus{TxSigned, TxSent, TxProcessed, TxConfirmed, TxFinalized, TxFailed, TxExpired}
	// table[event] lists the outcome for each of states, in order.
	table := map[string][7]txOutcome{
		"sign":           {noop, conf, conf, conf, conf, conf, conf},
		"sent":           {to(TxSent), noop, noop, noop, noop, conf, conf},
		"landed/process": {to(TxProcessed), to(TxProcessed), noop, noop, noop, conf, conf},
		"landed/confirm": {to(TxConfirmed), to(TxConfirmed), to(TxConfirmed), noop, noop, conf, conf},
		"landed/final":   {to(TxFinalized), to(TxFinalized), to(TxFinalized), to(TxFinalized), noop, conf, conf},
		"landed/bad":     {inv, inv, inv, inv, inv, inv, inv},
		"landed_error":   {to(TxFailed), to(TxFailed), to(TxFailed), to(TxFailed), conf, noop, conf},
		"expired":        {to(TxExpired), to(TxExpired), to(TxExpired), to(TxExpired), conf, conf, noop},
		"retry":          {inv, inv, inv, inv, inv, inv, inv},
		"other tx":       {inv, inv, inv, inv, inv, inv, inv},
	}
	if len(table) != len(txEvents) {
		t.Fatalf("table has %d events, txEvents %d", len(table), len(txEvents))
	}
	for evName, row := range table {
		ev := txEvents[evName]
		for i, st := range states {
			want := row[i]
			before := txFixture(st)
			tx, changed, err := ApplyTx(txFixture(st), ev)
			name := string(st) + " + " + evName
			if code := node3.ErrorCode(err); code != want.code || changed != (want.status != "") {
				t.Errorf("%s: changed %v, code %q (%v); want %+v", name, changed, code, err, want)
				continue
			}
			if !changed {
				if !reflect.DeepEqual(tx, before) {
					t.Errorf("%s: unchanged but differs", name)
				}
				continue
			}
			if tx.Status != want.status || !tx.UpdatedAt.Equal(ev.Now) {
				t.Errorf("%s: %s at %v, want %s", name, tx.Status, tx.UpdatedAt, want.status)
			}
			if tx.Status.InFlight() == (tx.Status == TxFinalized || tx.Status == TxFailed || tx.Status == TxExpired) {
				t.Errorf("%s: InFlight wrong for %s", name, tx.Status)
			}
			if (ev.Kind == PayLanded || ev.Kind == PayLandedError) && tx.Slot != ev.Slot {
				t.Errorf("%s: slot %d", name, tx.Slot)
			}
			if again, changed, err := ApplyTx(tx, ev); err != nil || changed || !reflect.DeepEqual(again, tx) {
				t.Errorf("%s: repeat changed %v, err %v", name, changed, err)
			}
		}
	}
}
