package payout

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
	"github.com/gagliardetto/solana-go/rpc"

	"github.com/node3/node3"
	"github.com/node3/node3/ledger"
)

const (
	// pendingScan is how many pending payouts one round looks at, oldest
	// first.
	pendingScan = 4096
	// exemptTTL is how long a wallet seen rent-exempt is trusted to stay
	// so without looking again. A failed or refused transaction forgets
	// them all.
	exemptTTL = time.Minute
)

// payable is a pending payout with its recipient's key.
type payable struct {
	ledger.PayoutRecord
	to solana.PublicKey
}

// account is what the engine needs to know about a recipient.
type account struct {
	lamports   uint64
	min        uint64 // rent-exempt minimum for its size
	executable bool
}

func (a account) exempt() bool { return a.lamports >= a.min }

// unit is payouts that go into one batch together: one payout to a
// rent-exempt wallet, or every payout held for a new wallet, whose sum
// brings it to the rent-exempt minimum in a single transfer.
type unit struct {
	to      solana.PublicKey
	payouts []payable
	sum     uint64
	// follow marks a later payout to a wallet below the minimum: it may
	// only join a batch that already pays that wallet.
	follow bool
}

// batch is the payouts of one transaction.
type batch struct {
	units   []unit
	payouts int
	wallets map[solana.PublicKey]bool
	total   uint64
}

func (b *batch) fits(u unit, size, transfers int) bool {
	if len(b.units) == 0 {
		return true // a unit always fits an empty batch
	}
	if b.payouts+len(u.payouts) > size {
		return false
	}
	return b.wallets[u.to] || len(b.wallets) < transfers
}

func (b *batch) add(u unit) {
	if b.wallets == nil {
		b.wallets = make(map[solana.PublicKey]bool)
	}
	b.units = append(b.units, u)
	b.payouts += len(u.payouts)
	b.wallets[u.to] = true
	b.total += u.sum
}

var errDuplicate = errors.New("identical transaction already recorded")

// maxWalletsPerRound bounds the recipients one round looks up.
const maxWalletsPerRound = 1000

// limitWallets keeps the oldest payables up to the first n distinct wallets.
func limitWallets(ps []payable, n int) []payable {
	seen := make(map[solana.PublicKey]bool)
	for i, p := range ps {
		if !seen[p.to] {
			if len(seen) == n {
				return ps[:i]
			}
			seen[p.to] = true
		}
	}
	return ps
}

// dispatch signs, records and sends new batches of pending payouts. It
// returns how long to wait before the next round if that is sooner than
// the poll interval (a partial batch's delay, a backoff).
func (e *Engine) dispatch(ctx context.Context) time.Duration {
	now := e.cfg.Now()
	if now.Before(e.backoffUntil) {
		return e.backoffUntil.Sub(now)
	}
	room := e.cfg.MaxInFlight - len(e.flights)
	if room <= 0 {
		return 0
	}
	pending, err := e.led.PendingPayouts(ctx, pendingScan)
	if err != nil {
		e.problem("list pending payouts", err)
		return 0
	}
	payables := limitWallets(e.screen(ctx, pending), maxWalletsPerRound)
	if len(payables) == 0 {
		e.setHeld(0, "")
		if len(e.flights) == 0 && e.backoff != 0 {
			e.clearBackoff() // nothing left to pay
		}
		return 0
	}
	if len(payables) < e.cfg.BatchSize && e.cfg.BatchDelay > 0 {
		oldest := payables[0].UpdatedAt
		for _, p := range payables {
			if p.UpdatedAt.Before(oldest) {
				oldest = p.UpdatedAt
			}
		}
		if wait := oldest.Add(e.cfg.BatchDelay).Sub(now); wait > 0 {
			return min(wait, e.cfg.BatchDelay)
		}
	}

	accts, err := e.accounts(ctx, payables)
	if err != nil {
		e.problem("look up recipient accounts", err)
		e.backOff()
		return 0
	}
	units := e.plan(ctx, payables, accts)
	if len(units) == 0 {
		return 0
	}
	batches := e.batches(units, room)

	rctx, cancel := e.rpcCtx(ctx)
	bal, err := e.rpc.GetBalance(rctx, e.payer, e.cfg.Commitment)
	cancel()
	if err != nil {
		e.problem("get the balance of marketplace wallet "+e.payer.String(), err)
		e.backOff()
		return 0
	}
	keep, err := e.minBalance(ctx, 0)
	if err != nil {
		e.problem("get the rent-exempt minimum", err)
		e.backOff()
		return 0
	}
	e.status(func(s *Status) { s.Balance = node3.Lamports(bal.Value) })
	reserved := e.reserved()
	avail := sub(bal.Value, reserved+keep)

	rctx, cancel = e.rpcCtx(ctx)
	bh, err := e.rpc.GetLatestBlockhash(rctx, e.cfg.Commitment)
	cancel()
	if err == nil && (bh == nil || bh.Value == nil) {
		err = errors.New("empty answer")
	}
	if err != nil {
		e.problem("get a recent blockhash", err)
		e.backOff()
		return 0
	}

	sent, spent := 0, uint64(0)
	for _, whole := range batches {
		b := fit(whole, avail)
		if len(b.units) > 0 {
			err := e.signAndSend(ctx, b, bh.Value)
			if errors.Is(err, errDuplicate) {
				continue // the same transfers as one already recorded: next blockhash
			}
			if err != nil {
				e.problem("sign and record a payout transaction", err)
				e.backOff()
				return 0
			}
			sent++
			spent += b.total + LamportsPerSignature
			avail -= b.total + LamportsPerSignature
			if now := e.cfg.Now(); now.Before(e.backoffUntil) {
				return e.backoffUntil.Sub(now) // the node refused it: wait before the next
			}
		}
		if len(b.units) < len(whole.units) {
			e.shortOfFunds(bal.Value, spent, reserved, keep, whole)
			return 0
		}
	}
	if sent > 0 && e.backoff != 0 {
		e.clearBackoff()
	}
	return 0
}

// shortOfFunds reports that the payer cannot pay batch b in full, and backs
// off until more funds may have arrived.
func (e *Engine) shortOfFunds(bal, spent, reserved, keep uint64, b batch) {
	need := spent + b.total + LamportsPerSignature + reserved + keep
	err := fmt.Errorf("insufficient funds in marketplace wallet %s: has %d lamports, needs %d "+
		"(%d payouts of %d lamports + %d fee, %d signed this round, %d in flight, %d rent-exempt minimum kept)",
		e.payer, bal, need, b.payouts, b.total, LamportsPerSignature, spent, reserved, keep)
	e.problem("", err)
	e.backOff()
}

// screen skips zero payouts (finalized with no transaction) and parks
// those whose wallet is not a usable address; it returns the rest.
func (e *Engine) screen(ctx context.Context, pending []ledger.PayoutRecord) []payable {
	out := make([]payable, 0, len(pending))
	for _, p := range pending {
		if p.Amount == 0 {
			if _, err := e.led.ApplyPayoutEvent(ctx, p.JobID, ledger.PayoutEvent{Kind: ledger.PaySkip, Now: e.cfg.Now()}); err != nil {
				e.problem("skip zero payout of job "+p.JobID, err)
			}
			continue
		}
		to, err := solana.PublicKeyFromBase58(p.Wallet)
		reason := ""
		switch {
		case err != nil:
			reason = fmt.Sprintf("wallet address %q is not a Solana public key (%v)", p.Wallet, err)
		case to.IsZero():
			reason = fmt.Sprintf("wallet address %q is the System Program", p.Wallet)
		}
		if reason != "" {
			e.park(ctx, p, reason)
			continue
		}
		out = append(out, payable{PayoutRecord: p, to: to})
	}
	return out
}

func (e *Engine) park(ctx context.Context, p ledger.PayoutRecord, reason string) {
	reason = "cannot pay job " + p.JobID + " to agent " + p.AgentID + ": " + reason
	if _, err := e.led.ApplyPayoutEvent(ctx, p.JobID, ledger.PayoutEvent{Kind: ledger.PayPark, Reason: reason, Now: e.cfg.Now()}); err != nil {
		e.problem("park payout of job "+p.JobID, err)
		return
	}
	e.log.Error("payout parked", "job", p.JobID, "agent", p.AgentID, "reason", reason)
	e.status(func(s *Status) { s.LastError, s.LastErrorAt = reason, e.cfg.Now() })
}

// minBalance is the rent-exempt minimum for an account of size bytes.
func (e *Engine) minBalance(ctx context.Context, size uint64) (uint64, error) {
	if v, ok := e.rentMin[size]; ok {
		return v, nil
	}
	rctx, cancel := e.rpcCtx(ctx)
	defer cancel()
	v, err := e.rpc.GetMinimumBalanceForRentExemption(rctx, size, e.cfg.Commitment)
	if err != nil {
		return 0, err
	}
	if e.rentMin == nil {
		e.rentMin = make(map[uint64]uint64)
	}
	e.rentMin[size] = v
	return v, nil
}

// accounts looks up the recipients' accounts (at Commitment), except
// those seen rent-exempt lately.
func (e *Engine) accounts(ctx context.Context, ps []payable) (map[solana.PublicKey]account, error) {
	now := e.cfg.Now()
	out := make(map[solana.PublicKey]account)
	var keys []solana.PublicKey
	for _, p := range ps {
		if _, ok := out[p.to]; ok {
			continue
		}
		if at, ok := e.exempt[p.to]; ok && now.Sub(at) < exemptTTL {
			out[p.to] = account{lamports: 1, min: 0}
			continue
		}
		out[p.to] = account{}
		keys = append(keys, p.to)
	}
	zero := uint64(0)
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), maxAccountsQuery)]
		keys = keys[len(chunk):]
		rctx, cancel := e.rpcCtx(ctx)
		res, err := e.rpc.GetMultipleAccountsWithOpts(rctx, chunk, &rpc.GetMultipleAccountsOpts{
			Commitment: e.cfg.Commitment,
			Encoding:   solana.EncodingBase64,
			DataSlice:  &rpc.DataSlice{Offset: &zero, Length: &zero},
		})
		cancel()
		if err != nil {
			return nil, err
		}
		if len(res.Value) != len(chunk) {
			return nil, fmt.Errorf("getMultipleAccounts answered %d accounts for %d", len(res.Value), len(chunk))
		}
		for i, a := range res.Value {
			var acct account
			if a != nil {
				acct = account{lamports: a.Lamports, executable: a.Executable}
			}
			var space uint64
			if a != nil {
				space = a.Space
			}
			m, err := e.minBalance(ctx, space)
			if err != nil {
				return nil, err
			}
			acct.min = m
			out[chunk[i]] = acct
			if acct.exempt() && !acct.executable {
				e.exempt[chunk[i]] = now
			}
		}
	}
	return out, nil
}

// plan turns payables into units, oldest first. A payout to a rent-exempt
// wallet is a unit of its own. A wallet below its rent-exempt minimum
// (above all one that does not exist yet) can only receive a transfer that
// brings it to the minimum: its oldest payouts are held until their sum
// does, then go together as one unit, merged into one transfer. Its later
// payouts follow: they may join the transaction that carries that unit
// (where they merge into the same transfer), or else wait until the
// account exists.
func (e *Engine) plan(ctx context.Context, ps []payable, accts map[solana.PublicKey]account) []unit {
	byWallet := make(map[solana.PublicKey][]payable)
	for _, p := range ps {
		byWallet[p.to] = append(byWallet[p.to], p)
	}
	type walletState struct {
		started bool
		held    bool
		skip    int // payouts still to come that are in the wallet's first unit
	}
	var units []unit
	ws := make(map[solana.PublicKey]*walletState)
	held, heldWallets := 0, []string{}
	for _, p := range ps {
		a := accts[p.to]
		st := ws[p.to]
		if st == nil {
			st = &walletState{}
			ws[p.to] = st
		}
		switch {
		case a.executable:
			e.park(ctx, p.PayoutRecord, "wallet "+p.Wallet+" is a program (executable) account")
		case a.exempt():
			units = append(units, unit{to: p.to, payouts: []payable{p}, sum: uint64(p.Amount)})
		case st.held:
		case st.skip > 0:
			st.skip--
		case st.started:
			units = append(units, unit{to: p.to, payouts: []payable{p}, sum: uint64(p.Amount), follow: true})
		default:
			st.started = true
			group := byWallet[p.to]
			var sum uint64
			k := 0
			for k < len(group) && k < maxUnitPayouts && a.lamports+sum < a.min {
				sum += uint64(group[k].Amount)
				k++
			}
			if a.lamports+sum < a.min {
				st.held = true
				held += len(group)
				if len(heldWallets) < 5 {
					heldWallets = append(heldWallets, fmt.Sprintf("%s (%d payouts, %d lamports; has %d, needs %d)",
						p.Wallet, len(group), sum, a.lamports, a.min))
				}
				continue
			}
			st.skip = k - 1 // this payout starts the unit; the next k-1 are in it
			units = append(units, unit{to: p.to, payouts: group[:k], sum: sum})
		}
	}
	reason := ""
	if held > 0 {
		reason = "holding payouts to accounts below the rent-exempt minimum until their sum reaches it: " + strings.Join(heldWallets, ", ")
	}
	e.setHeld(held, reason)
	return units
}

func (e *Engine) setHeld(n int, reason string) {
	e.status(func(s *Status) {
		if s.Held != n || s.HeldReason != reason {
			if n > 0 {
				e.log.Info("payouts held for the rent-exempt minimum", "payouts", n, "reason", reason)
			}
		}
		s.Held, s.HeldReason = n, reason
	})
}

// batches groups units into at most n batches of BatchSize payouts and
// MaxTransfersPerTx wallets.
func (e *Engine) batches(units []unit, n int) []batch {
	transfers := MaxTransfersPerTx()
	var out []batch
	var cur batch
	for _, u := range units {
		if u.follow && !cur.wallets[u.to] {
			continue // its wallet's first transfer is elsewhere: wait for the account
		}
		if !cur.fits(u, e.cfg.BatchSize, transfers) {
			if u.follow {
				continue
			}
			out = append(out, cur)
			cur = batch{}
			if len(out) == n {
				return out
			}
		}
		cur.add(u)
	}
	if len(cur.units) > 0 && len(out) < n {
		out = append(out, cur)
	}
	return out
}

// fit keeps the longest prefix of b's units that avail can pay, fee
// included.
func fit(b batch, avail uint64) batch {
	var out batch
	for _, u := range b.units {
		if out.total+u.sum+LamportsPerSignature > avail {
			break
		}
		out.add(u)
	}
	return out
}

// reserved is what the transactions in flight will spend that a balance
// read at Commitment does not show yet.
func (e *Engine) reserved() uint64 {
	seen := map[rpc.CommitmentType]ledger.TxStatus{
		rpc.CommitmentProcessed: ledger.TxProcessed,
		rpc.CommitmentConfirmed: ledger.TxConfirmed,
		rpc.CommitmentFinalized: ledger.TxFinalized,
	}[e.cfg.Commitment]
	var r uint64
	for _, f := range e.flights {
		if statusRank(f.tx.Status) < statusRank(seen) {
			r += uint64(f.tx.Total + f.tx.Fee)
		}
	}
	return r
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// signAndSend builds the batch's transaction (one transfer per wallet),
// signs it, records it with its payouts moved to sent, and sends it.
func (e *Engine) signAndSend(ctx context.Context, b batch, bh *rpc.LatestBlockhashResult) error {
	var order []solana.PublicKey
	sums := make(map[solana.PublicKey]uint64)
	var tps []ledger.TxPayout
	for _, u := range b.units {
		if _, ok := sums[u.to]; !ok {
			order = append(order, u.to)
		}
		sums[u.to] += u.sum
		for _, p := range u.payouts {
			tps = append(tps, ledger.TxPayout{JobID: p.JobID, Wallet: p.Wallet, Amount: p.Amount})
		}
	}
	ixs := make([]solana.Instruction, len(order))
	for i, to := range order {
		ixs[i] = system.NewTransferInstruction(sums[to], e.payer, to).Build()
	}
	tx, err := solana.NewTransaction(ixs, bh.Blockhash, solana.TransactionPayer(e.payer))
	if err != nil {
		return fmt.Errorf("build transaction: %w", err)
	}
	if _, err := tx.Sign(func(k solana.PublicKey) *solana.PrivateKey {
		if k == e.payer {
			return &e.key
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sign transaction: %w", err)
	}
	raw, err := tx.MarshalBinary()
	if err != nil {
		return fmt.Errorf("encode transaction: %w", err)
	}
	if len(raw) > PacketDataSize {
		return fmt.Errorf("transaction of %d transfers is %d bytes, above Solana's %d", len(ixs), len(raw), PacketDataSize)
	}
	rec := ledger.PayoutTx{
		Signature:            tx.Signatures[0].String(),
		Raw:                  raw,
		Blockhash:            bh.Blockhash.String(),
		LastValidBlockHeight: bh.LastValidBlockHeight,
		Payer:                e.payer.String(),
		Payouts:              tps,
		Fee:                  LamportsPerSignature * node3.Lamports(len(tx.Signatures)),
		CreatedAt:            e.cfg.Now(),
	}
	rec, err = e.led.RecordPayoutTx(ctx, rec)
	if node3.ErrorCode(err) == node3.CodeConflict {
		e.log.Debug("payout transaction deferred", "reason", err)
		return errDuplicate
	}
	if err != nil {
		return err
	}
	f := &flight{tx: rec, unsent: true}
	e.flights[rec.Signature] = f
	e.log.Info("payout transaction signed", "signature", rec.Signature, "payouts", len(tps), "transfers", len(ixs),
		"lamports", rec.Total, "attempt", rec.Attempt, "last_valid_block_height", rec.LastValidBlockHeight)
	e.hook("persisted", rec)
	e.send(ctx, f)
	return nil
}

// send sends a transaction in flight as its recorded bytes. The first send
// of a transaction this process signed runs the node's preflight, so that
// an RPC node that refuses it says why; resends skip it, as the same bytes
// are already known good or already landed.
func (e *Engine) send(ctx context.Context, f *flight) {
	first := f.unsent && f.lastSend.IsZero()
	f.lastSend = e.cfg.Now()
	rctx, cancel := e.rpcCtx(ctx)
	_, err := e.rpc.SendEncodedTransactionWithOpts(rctx, base64.StdEncoding.EncodeToString(f.tx.Raw), rpc.TransactionOpts{
		Encoding:            solana.EncodingBase64,
		SkipPreflight:       !first,
		PreflightCommitment: e.cfg.Commitment,
	})
	cancel()
	sig := f.tx.Signature
	switch classifySend(err) {
	case sendAccepted:
		f.unsent = false
		e.hook("sent", f.tx)
		if f.tx.Status == ledger.TxSigned {
			tx, err := e.led.ApplyPayoutTx(ctx, sig, ledger.PayoutEvent{Kind: ledger.PaySent, Now: e.cfg.Now()})
			if err != nil {
				e.problem("record payout transaction "+sig+" as sent", err)
				return
			}
			f.tx = tx
			e.m.txs.WithLabelValues("sent").Inc()
			e.status(func(s *Status) { s.TxsSent++ })
		}
	case sendLanded:
		f.unsent = false // the next lookup sees it
	case sendRejected:
		if f.unsent {
			e.abandon(ctx, f, "refused by the RPC node before it reached a leader: "+rpcErrorText(err))
			return
		}
		e.log.Debug("resend refused", "signature", sig, "err", rpcErrorText(err))
	case sendUncertain:
		f.unsent = false
		e.problem("send payout transaction "+sig, err)
	}
}
