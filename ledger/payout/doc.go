// Package payout is the coordinator's payout engine: it pays each completed
// job's reward, in lamports, from the marketplace wallet to the wallet of
// the provider that ran it, exactly once, in batched System Program
// transfers built and signed with solana-go. The same code runs against a
// real cluster (an *rpc.Client for SOLANA_RPC_URL) and against
// ledger/localchain; nothing is special-cased for either.
//
// # Use
//
//	eng, err := payout.New(payout.Config{Ledger: led, RPC: payout.NewClient(url), Payer: wallet, Logger: log})
//	go eng.Run(ctx)           // until ctx ends; returns nil
//	eng.Notify()              // after a job completes (optional: Run also polls)
//	st := eng.Status()        // backlog, in flight, last error ("insufficient funds in marketplace wallet …")
//	rep, err := payout.Reconcile(ctx, led, client, wallet.Address()) // ledger against chain; rep.OK()
//
// The ledger creates one pending payout per completed job, in the same
// write as the completion (ledger.Transition); the engine only moves
// payouts on. Its state machine is ledger.ApplyPayout / ledger.ApplyTx.
//
// # Exactly once
//
// A payout is in at most one transaction that can still land:
//
//  1. A batch is signed, then recorded — signature, raw bytes, blockhash,
//     last valid block height, jobs and amounts — in the same atomic,
//     fsynced ledger write that moves its payouts from pending to sent
//     (ledger.RecordPayoutTx). Only then is it sent. A payout that is not
//     pending cannot be recorded into another transaction, and a signature
//     is never recorded twice.
//  2. Every poll looks the transactions in flight up
//     (getSignatureStatuses, searching history) and records what it sees:
//     processed, confirmed (payouts confirmed), finalized (payouts paid).
//     Those not seen are resent as the same bytes every ResendInterval.
//  3. A transaction is given up — its payouts back to pending, to be signed
//     again — only when the finalized block height has passed its last
//     valid block height and a lookup made after that still does not know
//     its signature: then it can never land. (For one that expired long
//     ago, the RPC node must also keep history back to its landing window,
//     as getFirstAvailableBlock tells; otherwise the engine waits and says
//     why.) The single shortcut: a transaction this process signed whose
//     every send the RPC node refused before forwarding it (a JSON-RPC
//     error such as a failed preflight) reached no leader, and is given up
//     at once.
//  4. A transaction that landed with an error transferred nothing; once
//     that is finalized its payouts fail and are retried after a backoff.
//  5. After a crash, Run starts by loading the transactions in flight from
//     the ledger and goes on at step 2.
//
// # Decisions
//
// Batching. A transaction carries up to BatchSize payouts (default 16, at
// most MaxBatchSize = 256) and one transfer per distinct recipient, whose
// amount is the sum of that recipient's payouts in it; at most
// MaxTransfersPerTx() = 21 transfers fit in Solana's 1,232-byte packet with
// one signature. A partial batch waits BatchDelay (500ms) from its oldest
// payout for company. One fee (5,000 lamports, one signature, no Compute
// Budget instruction) per transaction. Two batches with the same transfers
// signed against the same blockhash would be the same transaction: the
// second waits for the next blockhash.
//
// Rent. Solana refuses a transfer that leaves an account with fewer
// lamports than its rent-exempt minimum (890,880 for a wallet) unless it
// ends empty, and one bad transfer fails the whole transaction. So
// recipients are looked up (getMultipleAccounts at Commitment) before a
// batch is signed. A rent-exempt account is paid any amount. For an account
// below the minimum (usually one that does not exist yet) the oldest
// payouts are held until their sum reaches the minimum, then paid together
// in one transfer; that account's later payouts may ride in the same
// transaction, or wait until the account exists. Status().Held and
// HeldReason say which payouts wait and why. Payouts of zero are finalized
// with no transaction; payouts to an address that is not a valid public
// key, or to a program account, are parked: failed, with the reason in the
// payout's LastError, never retried by themselves, and never in the way of
// the others.
//
// Funds. Before signing, the payer's balance (at Commitment, less what the
// transactions in flight will still spend) must cover the batch, its fee
// and the payer's own rent-exempt minimum. The oldest payouts that fit are
// sent; when even the first does not, the engine waits with backoff and
// Status().LastError reads "insufficient funds in marketplace wallet X: has
// N lamports, needs M (…)".
//
// Backoff. After a problem (funds, an RPC error or refusal, a transaction
// that failed on chain) new batches wait MinBackoff (1s), doubling to
// MaxBackoff (2min), reset by the next batch that goes out; lookups of
// transactions in flight go on every PollInterval regardless. A failed
// payout is retried after MinBackoff·2^(attempts-1), capped at MaxBackoff.
// The same problem is logged at most every 30s while it lasts.
//
// Commitment. Blockhashes, preflight, balances and accounts are read at
// Commitment (confirmed by default: the blockhash and the preflight must
// agree, or preflight fails with BlockhashNotFound); payouts count as paid
// only when finalized.
//
// # Limits
//
// One engine per ledger (Badger allows one process anyway). The RPC node
// should be a single node, or a pool that answers consistently: proving a
// transaction never landed reads the block height and then the signature
// status. Reconcile checks every transaction the ledger recorded; a
// transfer from the marketplace wallet that the ledger never recorded
// (made by hand, say) is outside its view.
package payout
