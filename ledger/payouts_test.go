package ledger

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
)

// completedJobs books n completed jobs under agent a with the given
// rewards (cycled) and returns their ids in creation order.
func completedJobs(t testing.TB, l *Ledger, a node3.Agent, rewards ...node3.Lamports) []string {
	t.Helper()
	ids := make([]string, len(rewards))
	for i, r := range rewards {
		j := mustCreate(t, l, noopSpec(r), t0)
		mustTransition(t, l, j.ID, Event{Kind: EvAccept, AgentID: a.ID, Now: t0, Lease: time.Minute})
		mustTransition(t, l, j.ID, Event{Kind: EvComplete, AgentID: a.ID, Now: t0.Add(time.Duration(i+1) * time.Second)})
		ids[i] = j.ID
	}
	return ids
}

// txFor builds a payout transaction record for the given payouts.
func txFor(t testing.TB, l *Ledger, sig string, jobIDs ...string) PayoutTx {
	t.Helper()
	tx := PayoutTx{
		Signature: sig, Raw: []byte("raw " + sig), Blockhash: "bh", LastValidBlockHeight: 150,
		Payer: "payer", Fee: 5000, CreatedAt: t0.Add(time.Hour),
	}
	for _, id := range jobIDs {
		p, err := l.PayoutRecord(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		tx.Payouts = append(tx.Payouts, TxPayout{JobID: id, Wallet: p.Wallet, Amount: p.Amount})
	}
	return tx
}

// checkPayoutBooks checks that the per-status counters and index entries
// agree with the payout records, and returns the records by job.
func checkPayoutBooks(t testing.TB, l *Ledger) map[string]PayoutRecord {
	t.Helper()
	all, err := l.PayoutRecords(ctx, "", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[node3.PayoutStatus]PayoutTotal)
	byJob := make(map[string]PayoutRecord)
	for _, p := range all {
		tot := want[p.Status]
		tot.Count++
		tot.Sum += p.Amount
		want[p.Status] = tot
		byJob[p.JobID] = p
	}
	got, err := l.PayoutTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range PayoutStatuses {
		if got[st] != want[st] {
			t.Errorf("counters for %s: %+v; the records say %+v", st, got[st], want[st])
		}
		idx := keysWithPrefix(t, l, pPayoutByStatus+string(st)+"/")
		if int64(len(idx)) != want[st].Count {
			t.Errorf("%d index entries for %s, %d payouts", len(idx), st, want[st].Count)
		}
		for _, k := range idx {
			if p := byJob[k[len(pPayoutByStatus)+len(st)+1:]]; p.Status != st {
				t.Errorf("index entry %s for a payout that is %s", k, p.Status)
			}
		}
	}
	s, err := l.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.PayoutsPending != want[node3.PayoutPending].Count || s.PayoutsPendingSum != want[node3.PayoutPending].Sum ||
		s.PayoutsPaid != want[node3.PayoutFinalized].Count || s.PayoutsPaidSum != want[node3.PayoutFinalized].Sum {
		t.Errorf("Stats payouts %d/%d pending, %d/%d paid; want %+v", s.PayoutsPending, s.PayoutsPendingSum, s.PayoutsPaid, s.PayoutsPaidSum, want)
	}
	return byJob
}

func statusesOf(t testing.TB, l *Ledger, ids ...string) []node3.PayoutStatus {
	t.Helper()
	out := make([]node3.PayoutStatus, len(ids))
	for i, id := range ids {
		p, err := l.PayoutRecord(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = p.Status
	}
	return out
}

func wantStatuses(t testing.TB, l *Ledger, want node3.PayoutStatus, ids ...string) {
	t.Helper()
	for i, st := range statusesOf(t, l, ids...) {
		if st != want {
			t.Fatalf("payout of %s is %s, want %s", ids[i], st, want)
		}
	}
}

func TestRecordPayoutTx(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir, true)
	a, _ := mustRegister(t, l, 1)
	ids := completedJobs(t, l, a, 1_000_000, 2_000_000, 3_000_000)

	pend, err := l.PendingPayouts(ctx, 0)
	if err != nil || len(pend) != 3 || pend[0].JobID != ids[0] || pend[2].JobID != ids[2] {
		t.Fatalf("PendingPayouts = %+v, %v; want the three jobs oldest first", pend, err)
	}
	if pend, _ := l.PendingPayouts(ctx, 2); len(pend) != 2 {
		t.Fatalf("PendingPayouts limit 2: %d", len(pend))
	}

	// Refused transactions write nothing.
	bad := map[string]struct {
		tx   PayoutTx
		code node3.Code
	}{
		"no signature":   {txFor(t, l, "", ids[0]), node3.CodeInvalid},
		"no payouts":     {txFor(t, l, "s0"), node3.CodeInvalid},
		"unknown job":    {PayoutTx{Signature: "s0", Raw: []byte{1}, CreatedAt: t0, Payouts: []TxPayout{{JobID: "nope", Wallet: "w", Amount: 1}}}, node3.CodeNotFound},
		"job twice":      {txFor(t, l, "s0", ids[0], ids[0]), node3.CodeInvalid},
		"wrong amount":   {func() PayoutTx { tx := txFor(t, l, "s0", ids[0], ids[1]); tx.Payouts[1].Amount++; return tx }(), node3.CodeInvalid},
		"wrong wallet":   {func() PayoutTx { tx := txFor(t, l, "s0", ids[0], ids[1]); tx.Payouts[1].Wallet = "x"; return tx }(), node3.CodeInvalid},
		"wrong total":    {func() PayoutTx { tx := txFor(t, l, "s0", ids[0]); tx.Total = 5; return tx }(), node3.CodeInvalid},
		"no raw bytes":   {func() PayoutTx { tx := txFor(t, l, "s0", ids[0]); tx.Raw = nil; return tx }(), node3.CodeInvalid},
		"no create time": {func() PayoutTx { tx := txFor(t, l, "s0", ids[0]); tx.CreatedAt = time.Time{}; return tx }(), node3.CodeInvalid},
	}
	for name, c := range bad {
		_, err := l.RecordPayoutTx(ctx, c.tx)
		wantCode(t, name, err, c.code)
	}
	books := checkPayoutBooks(t, l)
	for _, id := range ids {
		if books[id].Status != node3.PayoutPending || books[id].Attempts != 0 {
			t.Fatalf("a refused transaction changed payout %+v", books[id])
		}
	}

	txA := txFor(t, l, "sig-A", ids[0], ids[1])
	got, err := l.RecordPayoutTx(ctx, txA)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != TxSigned || got.Total != 3_000_000 || got.Attempt != 1 || !bytes.Equal(got.Raw, txA.Raw) {
		t.Fatalf("recorded %+v", got)
	}
	wantStatuses(t, l, node3.PayoutSent, ids[0], ids[1])
	wantStatuses(t, l, node3.PayoutPending, ids[2])
	p0, _ := l.PayoutRecord(ctx, ids[0])
	if p0.Signature != "sig-A" || p0.Attempts != 1 || len(p0.Txs) != 1 {
		t.Fatalf("signed payout %+v", p0)
	}
	if pub, _ := l.Payout(ctx, ids[0]); pub != p0.Payout {
		t.Fatalf("Payout %+v, PayoutRecord %+v", pub, p0.Payout)
	}
	// Again, even as the same bytes; a different transaction under the
	// same signature; one that reuses a signed payout: all refused.
	_, err = l.RecordPayoutTx(ctx, txA)
	wantCode(t, "recording again", err, node3.CodeConflict)
	other := txFor(t, l, "sig-A", ids[2])
	_, err = l.RecordPayoutTx(ctx, other)
	wantCode(t, "other payouts under the same signature", err, node3.CodeConflict)
	other = txFor(t, l, "sig-A", ids[0], ids[1])
	other.Raw = []byte("other bytes")
	_, err = l.RecordPayoutTx(ctx, other)
	wantCode(t, "other bytes under the same signature", err, node3.CodeConflict)
	_, err = l.RecordPayoutTx(ctx, txFor(t, l, "sig-B", ids[2], ids[1]))
	wantCode(t, "a payout already in a transaction", err, node3.CodeConflict)
	wantStatuses(t, l, node3.PayoutPending, ids[2])
	checkPayoutBooks(t, l)

	// The record survives a restart, bytes and all.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openAt(t, dir, true)
	live, err := l.InFlightPayoutTxs(ctx)
	if err != nil || len(live) != 1 || !reflect.DeepEqual(live[0], got) {
		t.Fatalf("InFlightPayoutTxs after reopen = %+v, %v", live, err)
	}
	if tx, err := l.PayoutTx(ctx, "sig-A"); err != nil || !reflect.DeepEqual(tx, got) {
		t.Fatalf("PayoutTx = %+v, %v", tx, err)
	}
	_, err = l.PayoutTx(ctx, "nope")
	wantCode(t, "PayoutTx of an unknown signature", err, node3.CodeNotFound)
	checkPayoutBooks(t, l)
}

func TestApplyPayoutTxLifecycle(t *testing.T) {
	l := openTest(t)
	a, _ := mustRegister(t, l, 1)
	ids := completedJobs(t, l, a, 1_000_000, 2_000_000, 3_000_000, 4_000_000)
	now := t0.Add(2 * time.Hour)

	if _, err := l.RecordPayoutTx(ctx, txFor(t, l, "sig-A", ids[0], ids[1])); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		ev     PayoutEvent
		tx     TxStatus
		payout node3.PayoutStatus
	}{
		{PayoutEvent{Kind: PaySent, Now: now}, TxSent, node3.PayoutSent},
		{PayoutEvent{Kind: PaySent, Now: now}, TxSent, node3.PayoutSent},
		{PayoutEvent{Kind: PayLanded, Level: Processed, Slot: 9, Now: now}, TxProcessed, node3.PayoutSent},
		{PayoutEvent{Kind: PayLanded, Level: Confirmed, Slot: 9, Now: now}, TxConfirmed, node3.PayoutConfirmed},
		{PayoutEvent{Kind: PayLanded, Level: Processed, Now: now}, TxConfirmed, node3.PayoutConfirmed},
		{PayoutEvent{Kind: PayLanded, Level: Finalized, Slot: 9, Now: now}, TxFinalized, node3.PayoutFinalized},
		{PayoutEvent{Kind: PayLanded, Level: Finalized, Slot: 9, Now: now}, TxFinalized, node3.PayoutFinalized},
	}
	for i, s := range steps {
		tx, err := l.ApplyPayoutTx(ctx, "sig-A", s.ev)
		if err != nil || tx.Status != s.tx {
			t.Fatalf("step %d %s: %s, %v; want %s", i, s.ev.Kind, tx.Status, err, s.tx)
		}
		wantStatuses(t, l, s.payout, ids[0], ids[1])
		checkPayoutBooks(t, l)
		live, _ := l.InFlightPayoutTxs(ctx)
		if (len(live) == 1) != s.tx.InFlight() {
			t.Fatalf("step %d: %d in flight with the transaction %s", i, len(live), s.tx)
		}
	}
	if tx, _ := l.PayoutTx(ctx, "sig-A"); tx.Slot != 9 || !tx.SentAt.Equal(now) {
		t.Fatalf("finalized tx %+v", tx)
	}
	_, err := l.ApplyPayoutTx(ctx, "sig-A", PayoutEvent{Kind: PayExpired, Now: now})
	wantCode(t, "expiring a finalized transaction", err, node3.CodeConflict)
	_, err = l.ApplyPayoutTx(ctx, "nope", PayoutEvent{Kind: PaySent, Now: now})
	wantCode(t, "an unknown transaction", err, node3.CodeNotFound)
	_, err = l.ApplyPayoutTx(ctx, "sig-A", PayoutEvent{Kind: PayRetry, Now: now})
	wantCode(t, "a payout event on a transaction", err, node3.CodeInvalid)

	// B expires unseen: its payouts go back to pending and are signed
	// again in C, which lands with an error, fails, and is retried.
	if _, err := l.RecordPayoutTx(ctx, txFor(t, l, "sig-B", ids[2], ids[3])); err != nil {
		t.Fatal(err)
	}
	if tx, err := l.ApplyPayoutTx(ctx, "sig-B", PayoutEvent{Kind: PayExpired, Reason: "expired unseen", Now: now}); err != nil || tx.Status != TxExpired {
		t.Fatalf("expire: %+v, %v", tx, err)
	}
	wantStatuses(t, l, node3.PayoutPending, ids[2], ids[3])
	books := checkPayoutBooks(t, l)
	if p := books[ids[2]]; p.Signature != "" || p.LastError != "expired unseen" || p.Attempts != 1 {
		t.Fatalf("expired payout %+v", p)
	}
	_, err = l.ApplyPayoutTx(ctx, "sig-B", PayoutEvent{Kind: PayLanded, Level: Processed, Now: now})
	wantCode(t, "an expired transaction landing", err, node3.CodeConflict)

	txC, err := l.RecordPayoutTx(ctx, txFor(t, l, "sig-C", ids[2], ids[3]))
	if err != nil || txC.Attempt != 2 {
		t.Fatalf("second attempt: %+v, %v", txC, err)
	}
	failAt := now.Add(time.Minute)
	if _, err := l.ApplyPayoutTx(ctx, "sig-C", PayoutEvent{Kind: PayLandedError, Reason: "InsufficientFundsForRent", Retry: time.Minute, Now: failAt}); err != nil {
		t.Fatal(err)
	}
	wantStatuses(t, l, node3.PayoutFailed, ids[2], ids[3])
	checkPayoutBooks(t, l)
	if n, next, err := l.RetryFailedPayouts(ctx, failAt, 0); err != nil || n != 0 || !next.Equal(failAt.Add(time.Minute)) {
		t.Fatalf("RetryFailedPayouts early: %d, %v, %v", n, next, err)
	}
	if n, next, err := l.RetryFailedPayouts(ctx, failAt.Add(time.Minute), 0); err != nil || n != 2 || !next.IsZero() {
		t.Fatalf("RetryFailedPayouts due: %d, %v, %v", n, next, err)
	}
	wantStatuses(t, l, node3.PayoutPending, ids[2], ids[3])
	books = checkPayoutBooks(t, l)
	if p := books[ids[3]]; p.Attempts != 2 || len(p.Txs) != 2 || p.Txs[0] != "sig-B" || p.Txs[1] != "sig-C" || p.LastError != "InsufficientFundsForRent" {
		t.Fatalf("retried payout %+v", p)
	}
	all, _ := l.PayoutTxs(ctx)
	if len(all) != 3 {
		t.Fatalf("PayoutTxs lists %d, want 3", len(all))
	}
}

func TestSkipAndParkPayouts(t *testing.T) {
	l := openTest(t)
	a, _ := mustRegister(t, l, 1)
	ids := completedJobs(t, l, a, 0, 5_000)
	now := t0.Add(time.Hour)
	p, err := l.ApplyPayoutEvent(ctx, ids[0], PayoutEvent{Kind: PaySkip, Now: now})
	if err != nil || p.Status != node3.PayoutFinalized || p.Signature != "" {
		t.Fatalf("skip: %+v, %v", p, err)
	}
	_, err = l.ApplyPayoutEvent(ctx, ids[1], PayoutEvent{Kind: PaySkip, Now: now})
	wantCode(t, "skipping a payout that is not zero", err, node3.CodeInvalid)
	p, err = l.ApplyPayoutEvent(ctx, ids[1], PayoutEvent{Kind: PayPark, Reason: "bad wallet", Now: now})
	if err != nil || p.Status != node3.PayoutFailed || !p.Parked || p.LastError != "bad wallet" {
		t.Fatalf("park: %+v, %v", p, err)
	}
	if n, next, err := l.RetryFailedPayouts(ctx, now.Add(time.Hour), 0); n != 0 || !next.IsZero() || err != nil {
		t.Fatalf("a parked payout was retried: %d %v %v", n, next, err)
	}
	_, err = l.ApplyPayoutEvent(ctx, ids[1], PayoutEvent{Kind: PayExpired, Sig: "x", Now: now})
	wantCode(t, "a transaction event through ApplyPayoutEvent", err, node3.CodeInvalid)
	_, err = l.ApplyPayoutEvent(ctx, "nope", PayoutEvent{Kind: PaySkip, Now: now})
	wantCode(t, "an unknown payout", err, node3.CodeNotFound)
	checkPayoutBooks(t, l)
}

// TestRecordPayoutTxRace signs every payout into two competing
// transactions from many goroutines: each payout ends up in exactly one.
func TestRecordPayoutTxRace(t *testing.T) {
	l := openTest(t)
	a, _ := mustRegister(t, l, 1)
	rewards := make([]node3.Lamports, 40)
	for i := range rewards {
		rewards[i] = node3.Lamports(1_000_000 + i)
	}
	ids := completedJobs(t, l, a, rewards...)
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := make(map[string][]string) // job → signatures that recorded it
	for g := range 8 {
		wg.Go(func() {
			for i := 0; i+1 < len(ids); i += 2 {
				// Goroutine g pairs job i with i+1 or i+1 with i+2: overlapping sets.
				pair := []string{ids[i], ids[i+1]}
				if g%2 == 1 && i+2 < len(ids) {
					pair = []string{ids[i+1], ids[i+2]}
				}
				sig := fmt.Sprintf("sig-%d-%d", g, i)
				if _, err := l.RecordPayoutTx(ctx, txFor(t, l, sig, pair...)); err == nil {
					mu.Lock()
					for _, id := range pair {
						won[id] = append(won[id], sig)
					}
					mu.Unlock()
				} else if code := node3.ErrorCode(err); code != node3.CodeConflict {
					t.Errorf("record %s: %v", sig, err)
				}
			}
		})
	}
	wg.Wait()
	books := checkPayoutBooks(t, l)
	for _, id := range ids {
		p := books[id]
		switch {
		case len(won[id]) > 1:
			t.Errorf("job %s was recorded in %v", id, won[id])
		case len(won[id]) == 1 && (p.Status != node3.PayoutSent || p.Signature != won[id][0]):
			t.Errorf("job %s won by %s but reads %+v", id, won[id][0], p)
		case len(won[id]) == 0 && p.Status != node3.PayoutPending:
			t.Errorf("job %s is in no transaction but reads %+v", id, p)
		}
	}
}
