package payout

import (
	"context"
	"fmt"
	"sort"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"

	"github.com/node3/node3/ledger"
)

func statusRank(s ledger.TxStatus) int {
	switch s {
	case ledger.TxSigned:
		return 1
	case ledger.TxSent:
		return 2
	case ledger.TxProcessed:
		return 3
	case ledger.TxConfirmed:
		return 4
	case ledger.TxFinalized:
		return 5
	}
	return 0
}

// landing reads the commitment level of a signature status. A node that
// does not send confirmationStatus marks rooted transactions with null
// confirmations.
func landing(st *rpc.SignatureStatusesResult) (ledger.Landing, ledger.TxStatus) {
	switch st.ConfirmationStatus {
	case rpc.ConfirmationStatusFinalized:
		return ledger.Finalized, ledger.TxFinalized
	case rpc.ConfirmationStatusConfirmed:
		return ledger.Confirmed, ledger.TxConfirmed
	case rpc.ConfirmationStatusProcessed:
		return ledger.Processed, ledger.TxProcessed
	}
	if st.Confirmations == nil {
		return ledger.Finalized, ledger.TxFinalized
	}
	return ledger.Processed, ledger.TxProcessed
}

// sortedFlights lists the transactions in flight, oldest first.
func (e *Engine) sortedFlights() []*flight {
	fl := make([]*flight, 0, len(e.flights))
	for _, f := range e.flights {
		fl = append(fl, f)
	}
	sort.Slice(fl, func(i, j int) bool {
		if !fl[i].tx.CreatedAt.Equal(fl[j].tx.CreatedAt) {
			return fl[i].tx.CreatedAt.Before(fl[j].tx.CreatedAt)
		}
		return fl[i].tx.Signature < fl[j].tx.Signature
	})
	return fl
}

// statuses looks signatures up, searching the transaction history too.
func (e *Engine) statuses(ctx context.Context, fl []*flight) ([]*rpc.SignatureStatusesResult, error) {
	out := make([]*rpc.SignatureStatusesResult, 0, len(fl))
	for len(fl) > 0 {
		chunk := fl[:min(len(fl), maxStatusQuery)]
		fl = fl[len(chunk):]
		sigs := make([]solana.Signature, len(chunk))
		for i, f := range chunk {
			sig, err := solana.SignatureFromBase58(f.tx.Signature)
			if err != nil {
				return nil, fmt.Errorf("recorded signature %q: %w", f.tx.Signature, err)
			}
			sigs[i] = sig
		}
		rctx, cancel := e.rpcCtx(ctx)
		res, err := e.rpc.GetSignatureStatuses(rctx, true, sigs...)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(res.Value) != len(sigs) {
			return nil, fmt.Errorf("getSignatureStatuses answered %d statuses for %d signatures", len(res.Value), len(sigs))
		}
		out = append(out, res.Value...)
	}
	return out, nil
}

// track looks up every transaction in flight and moves it (and its
// payouts) on: landed at a higher commitment, failed, or expired. Those
// not seen on chain are resent as the same bytes.
func (e *Engine) track(ctx context.Context) {
	fl := e.sortedFlights()
	sts, err := e.statuses(ctx, fl)
	if err != nil {
		e.problem("look up payout transactions", err)
		return
	}
	var unknown []*flight
	for i, f := range fl {
		if sts[i] == nil {
			unknown = append(unknown, f)
			continue
		}
		e.observe(ctx, f, sts[i])
	}
	if len(unknown) == 0 {
		return
	}

	// A transaction whose blockhash has expired can never land. Once the
	// finalized block height has passed its last valid height, one more
	// lookup (made after reading the height) that still does not find it
	// proves it never landed: only then are its payouts signed again.
	rctx, cancel := e.rpcCtx(ctx)
	height, err := e.rpc.GetBlockHeight(rctx, rpc.CommitmentFinalized)
	cancel()
	var dead []*flight
	if err != nil {
		e.log.Debug("get block height", "err", rpcErrorText(err))
	} else {
		for _, f := range unknown {
			if height > f.tx.LastValidBlockHeight {
				dead = append(dead, f)
			}
		}
	}
	if len(dead) > 0 {
		dead = e.provable(ctx, dead, height)
	}
	if len(dead) > 0 {
		again, err := e.statuses(ctx, dead)
		if err != nil {
			e.problem("look up expired payout transactions", err)
			dead = nil
		}
		for i, f := range dead {
			if again[i] != nil {
				e.observe(ctx, f, again[i])
				continue
			}
			e.expire(ctx, f, fmt.Sprintf("transaction %s never landed: its blockhash expired (finalized block height %d > last valid %d)",
				f.tx.Signature, height, f.tx.LastValidBlockHeight))
		}
	}
	now := e.cfg.Now()
	for _, f := range unknown {
		if _, live := e.flights[f.tx.Signature]; !live {
			continue
		}
		if f.lastSend.IsZero() || now.Sub(f.lastSend) >= e.cfg.ResendInterval {
			e.send(ctx, f)
		}
	}
}

const (
	// trustBlocks is how far back (about an hour of Solana blocks) an RPC
	// node that cannot say where its history starts is trusted to know
	// every transaction: far beyond the status cache (300 slots), far
	// short of any RPC node's ledger retention.
	trustBlocks = 9000
	// windowBlocks bounds how many blocks before its last valid height a
	// transaction could have landed (Solana's window is 150).
	windowBlocks = 300
)

// provable keeps the transactions whose absence a lookup proves. That
// holds when the RPC node keeps transaction history back to the start of
// a transaction's landing window, as getFirstAvailableBlock tells; a node
// that cannot say is trusted for trustBlocks. For a transaction that
// expired before that (a restart after a long outage), "unknown" might only
// mean "pruned", and signing its payouts again could pay them twice: those
// wait, and the engine says why.
func (e *Engine) provable(ctx context.Context, dead []*flight, height uint64) []*flight {
	rctx, cancel := e.rpcCtx(ctx)
	first, err := e.rpc.GetFirstAvailableBlock(rctx)
	cancel()
	out := dead[:0:0]
	for _, f := range dead {
		lv := f.tx.LastValidBlockHeight
		switch {
		case err == nil && first > sub(lv, windowBlocks):
			e.problem("prove that transaction "+f.tx.Signature+" never landed", fmt.Errorf(
				"the RPC node's history starts at block %d, after the transaction's landing window (blocks up to %d); "+
					"use an RPC node with full transaction history", first, lv))
		case err != nil && height-lv > trustBlocks:
			e.problem("prove that transaction "+f.tx.Signature+" never landed (it expired "+
				fmt.Sprint(height-lv)+" blocks ago; the RPC node must say how far back its history goes)", err)
		default:
			out = append(out, f)
		}
	}
	return out
}

// observe applies a signature status to a transaction in flight.
func (e *Engine) observe(ctx context.Context, f *flight, st *rpc.SignatureStatusesResult) {
	f.unsent = false
	sig := f.tx.Signature
	now := e.cfg.Now()
	if st.Err != nil {
		reason := fmt.Sprintf("transaction %s failed on chain at slot %d: %s", sig, st.Slot, txErrText(st.Err))
		if st.ConfirmationStatus != rpc.ConfirmationStatusFinalized {
			if f.errSeen == "" {
				e.log.Warn("payout transaction landed with an error; waiting for it to finalize", "signature", sig, "reason", reason)
			}
			f.errSeen = reason
			return
		}
		retry := e.retryDelay(f.tx.Attempt)
		tx, err := e.led.ApplyPayoutTx(ctx, sig, ledger.PayoutEvent{Kind: ledger.PayLandedError, Reason: reason, Retry: retry, Slot: st.Slot, Now: now})
		if err != nil {
			e.problem("record failed payout transaction "+sig, err)
			return
		}
		delete(e.flights, sig)
		clear(e.exempt)
		if at := now.Add(retry); e.retryAt.IsZero() || at.Before(e.retryAt) {
			e.retryAt = at
		}
		e.m.txs.WithLabelValues("failed").Inc()
		e.m.fees.Add(float64(tx.Fee))
		e.status(func(s *Status) { s.TxsFailed++; s.Fees += tx.Fee })
		e.problem("", fmt.Errorf("%s; its %d payouts are retried in %s", reason, len(tx.Payouts), retry))
		e.backOff()
		e.hook("failed", tx)
		return
	}
	level, next := landing(st)
	if statusRank(next) <= statusRank(f.tx.Status) {
		return
	}
	tx, err := e.led.ApplyPayoutTx(ctx, sig, ledger.PayoutEvent{Kind: ledger.PayLanded, Level: level, Slot: st.Slot, Now: now})
	if err != nil {
		e.problem("record payout transaction "+sig+" as "+string(level), err)
		return
	}
	f.tx = tx
	if level == ledger.Finalized {
		delete(e.flights, sig)
		e.m.txs.WithLabelValues("finalized").Inc()
		e.m.payouts.Add(float64(len(tx.Payouts)))
		e.m.lamports.Add(float64(tx.Total))
		e.m.fees.Add(float64(tx.Fee))
		e.m.latency.Observe(now.Sub(tx.CreatedAt).Seconds())
		e.status(func(s *Status) { s.TxsFinalized++; s.Fees += tx.Fee })
		e.log.Info("payout transaction finalized", "signature", sig, "payouts", len(tx.Payouts), "lamports", tx.Total, "slot", st.Slot)
	}
	e.hook(string(level), tx)
}

// expire gives up on a transaction that can never land: its payouts go
// back to pending, to be signed again.
func (e *Engine) expire(ctx context.Context, f *flight, reason string) {
	sig := f.tx.Signature
	tx, err := e.led.ApplyPayoutTx(ctx, sig, ledger.PayoutEvent{Kind: ledger.PayExpired, Reason: reason, Now: e.cfg.Now()})
	if err != nil {
		e.problem("record expired payout transaction "+sig, err)
		return
	}
	delete(e.flights, sig)
	e.m.txs.WithLabelValues("expired").Inc()
	e.status(func(s *Status) { s.TxsExpired++ })
	e.log.Warn("payout transaction dropped; its payouts will be signed again", "signature", sig, "payouts", len(tx.Payouts), "reason", reason)
	e.hook("expired", tx)
}

// abandon gives up on a transaction every send of which the RPC node
// refused before forwarding it: it cannot land, so its payouts go back to
// pending at once, and new batches wait out a backoff.
func (e *Engine) abandon(ctx context.Context, f *flight, reason string) {
	clear(e.exempt)
	e.expire(ctx, f, reason)
	e.status(func(s *Status) { s.LastError, s.LastErrorAt = reason, e.cfg.Now() })
	e.log.Warn("payouts held up", "reason", reason)
	e.backOff()
}
