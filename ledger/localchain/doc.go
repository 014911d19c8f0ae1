// Package localchain is an in-process, Solana-compatible JSON-RPC endpoint
// for offline runs: tests, CI and `node3 up` use it in place of a real
// cluster. The unmodified solana-go rpc.Client works against it, and the
// transactions it accepts are real ones: built and signed with solana-go,
// verified with ed25519, paid for with Solana's fees, and subject to
// Solana's blockhash, duplicate and rent rules. It never pretends to be a
// public cluster: its genesis hash is derived from Config.Seed and its
// getVersion feature-set is 0.
//
// # Usage
//
//	chain := localchain.New(localchain.Config{SlotInterval: 20 * time.Millisecond})
//	chain.Start(ctx)             // the slot clock; or SlotInterval < 0 and AdvanceSlots
//	defer chain.Close()
//	go chain.Serve(ctx, ln)      // or httptest.NewServer(chain.Handler())
//	chain.Airdrop(wallet, 10*1_000_000_000)
//	client := rpc.New("http://" + ln.Addr().String())
//	// ... GetLatestBlockhash, SendTransaction, GetSignatureStatuses as on devnet
//	chain.Faults().Add(localchain.FaultRule{Method: "sendTransaction", Kind: localchain.FaultDropResponse, Count: 1})
//
// New makes a chain that lives in memory only. Open with Config.Dir keeps
// it in a ledger directory, as solana-test-validator's --ledger does:
//
//	chain, err := localchain.Open(localchain.Config{Dir: "/var/lib/node3/localchain"})
//	...
//	defer chain.Close() // records the exact head slot
//
// # Persistence
//
// With Config.Dir the chain keeps two files there: LOCK, held with flock
// while the chain is open, so that two processes never share a directory
// (the kernel drops it if the process dies), and txlog, an append-only log
// (its format is described in txlog.go) of:
//
//   - a header naming the chain: a hash of Seed and the BlockhashWindow,
//     which must not change between runs (Open refuses a log of another
//     chain);
//   - every transaction that landed, successful or failed, sendTransaction
//     and airdrops alike (airdrops are faucet-signed transactions): its
//     raw wire bytes, its slot, the start time of that slot, and a digest
//     of its outcome (fee, units, accounts before and after, error, logs).
//     The record is written and fsynced, under the chain's lock, before
//     the transaction changes any state, so before any answer shows it. If
//     the write fails, the transaction does not land (sendTransaction
//     answers -32603, Airdrop an error) and the chain lands nothing more
//     and its clock stops until it is reopened;
//   - the head slot: the slot clock writes a reservation headReserve (32)
//     slots ahead before it passes the last one, and Close writes the exact
//     head. So the chain never answers with a slot the log does not vouch
//     for, at the cost of one fsync per 32 slots.
//
// Open replays the log deterministically: it moves the head to each
// transaction's slot (blockhashes derive from Seed and slot, so the recent
// blockhashes come back with it), re-executes the transaction against the
// state the ones before it built, and checks that it loads and that the
// digest of its outcome matches; a mismatch is an error naming the file,
// never silent divergence. The head then goes to the last slot the log
// vouches for: exactly where Close left it, or after a crash (SIGKILL) up
// to 32 slots past the last slot answered, inside the blockhash window.
// The clock goes on from there; it never goes back, and the time the
// process was down is not made up. Everything a client could read comes
// back: balances and accounts at every commitment, signature statuses
// (with and without searchTransactionHistory), getTransaction with its
// slot and blockTime, and blockhashes fetched before the restart stay
// valid for what remains of their window.
//
// A crash mid-append leaves a torn last record (short, zero-filled, or
// failing its checksum as the last record): Open logs a warning, drops it
// and truncates the file. That transaction was never acknowledged. Any
// other damage (a bad record followed by more data, an unknown kind, a
// transaction that does not decode) is an error naming the file and
// offset, and the file is left as it is.
//
// Not persisted: the fault rules (Faults), which a restarted chain starts
// without; requests in flight, and transactions accepted with the
// never-land fault (they never landed); the wall-clock time the chain was
// down. Signatures are not re-verified on replay: they were verified
// before the transaction landed, and each record carries a checksum.
//
// The log is never compacted: it grows by about 270 bytes per one-transfer
// transaction plus 17 bytes per 32 slots, and Open replays all of it:
// 10,000 transactions (a 2.7 MB log) take about 0.15 s of one core
// (BenchmarkOpen10k), most of it decoding and re-executing. Landing a
// transaction costs one write and one fsync (BenchmarkAirdropPersisted:
// 1.5 to 3 ms on an ordinary SSD), which payouts, being batched, amortise.
//
// # What is modelled
//
//   - A slot clock: one block per slot, block height equal to slot. A
//     transaction lands in the current slot, is "confirmed" ConfirmDepth
//     slots later and "finalized" FinalizeDepth slots later
//     (confirmations null), as getSignatureStatuses reports.
//   - Commitment levels. Methods that take a commitment answer from the
//     bank at that level, finalized by default as on Solana: balances and
//     accounts are rebuilt for the confirmed and finalized views,
//     getLatestBlockhash at finalized returns the finalized block's hash,
//     and sendTransaction's preflight simulates against the finalized bank
//     unless preflightCommitment says otherwise. So a blockhash fetched at
//     "confirmed" and sent with the default preflight fails with
//     BlockhashNotFound here exactly as it does on a real cluster, and
//     funds airdropped a moment ago are not yet visible to the default
//     preflight.
//   - Recent blockhashes: sha256 of the chain seed and the slot; valid for
//     BlockhashWindow blocks (lastValidBlockHeight = height + window).
//   - sendTransaction as agave does it: decode (base58 by default, base64),
//     size limits, sanitize (-32602), then unless skipPreflight: signature
//     verification (-32003) and simulation (-32002 with Solana's err, logs
//     and unitsConsumed). What then reaches the "leader" is dropped
//     silently if it cannot load (bad signature, expired blockhash,
//     duplicate, fee payer missing or short of the fee), and otherwise
//     lands: the fee payer (first account) pays 5000 lamports per
//     signature even if the transaction fails, and the instructions apply
//     all or nothing.
//   - The System Program's Transfer and CreateAccount with their checks
//     (signer, no data, insufficient lamports as Custom(1), account in use
//     as Custom(0), read-only and foreign-owned accounts), and Solana's
//     rent-state rule for every writable account (InsufficientFundsForRent:
//     an account may end empty or rent-exempt, not in between).
//   - Airdrops are real transfers signed by a faucet key, so their
//     signatures have statuses and getTransaction returns them.
//   - JSON-RPC 2.0 over HTTP POST: single and batch requests,
//     notifications, ids echoed byte for byte, -32700/-32600/-32601/-32602,
//     a 50 KiB body limit (agave's MAX_REQUEST_BODY_SIZE; HTTP 413 above).
//   - Fault injection (Faults): drop, drop-after-executing, empty answer,
//     JSON-RPC error, HTTP error, delay, stall, and accept-but-never-land
//     for sendTransaction; per method, by probability from a seeded
//     generator or for the next N requests.
//
// # What is deliberately not modelled
//
//   - Programs other than the System Program, which fail the transaction
//     with InstructionError UnsupportedProgramId; that includes the
//     Compute Budget program, so priority fees cannot be used here. System
//     instructions other than Transfer and CreateAccount fail with
//     InvalidInstructionData. Precompile signatures are not counted in fees.
//   - Address lookup tables (a v0 message using one fails as on a cluster
//     without the table), durable nonces, account data (it is always
//     zeros), rent collection, inflation, rewards, and the fee split: fees
//     are burned.
//   - Forks, skipped slots, leaders, forwarding and maxRetries: a
//     transaction that lands is never rolled back and always finalizes.
//   - Websocket subscriptions, and the methods not listed in lookupMethod
//     (getBlock, getSignaturesForAddress, getEpochInfo, ...), which answer
//     -32601.
//   - Pruning: every landed transaction is kept for getTransaction and
//     searchTransactionHistory; the status cache searched without history
//     holds 2×BlockhashWindow slots, like Solana's 300.
//   - Exact JSON strictness: config members are matched case-insensitively
//     (encoding/json) where Solana's serde is case-sensitive.
package localchain
