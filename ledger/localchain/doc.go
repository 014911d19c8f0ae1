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
