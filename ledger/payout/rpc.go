package payout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"
)

// RPC is the part of solana-go's *rpc.Client the engine and Reconcile use.
// An *rpc.Client satisfies it, for a real cluster or for localchain alike.
type RPC interface {
	GetLatestBlockhash(ctx context.Context, commitment rpc.CommitmentType) (*rpc.GetLatestBlockhashResult, error)
	SendEncodedTransactionWithOpts(ctx context.Context, encodedTx string, opts rpc.TransactionOpts) (solana.Signature, error)
	GetSignatureStatuses(ctx context.Context, searchTransactionHistory bool, sigs ...solana.Signature) (*rpc.GetSignatureStatusesResult, error)
	GetBlockHeight(ctx context.Context, commitment rpc.CommitmentType) (uint64, error)
	GetFirstAvailableBlock(ctx context.Context) (uint64, error)
	GetBalance(ctx context.Context, account solana.PublicKey, commitment rpc.CommitmentType) (*rpc.GetBalanceResult, error)
	GetMultipleAccountsWithOpts(ctx context.Context, accounts []solana.PublicKey, opts *rpc.GetMultipleAccountsOpts) (*rpc.GetMultipleAccountsResult, error)
	GetMinimumBalanceForRentExemption(ctx context.Context, dataSize uint64, commitment rpc.CommitmentType) (uint64, error)
	GetTransaction(ctx context.Context, sig solana.Signature, opts *rpc.GetTransactionOpts) (*rpc.GetTransactionResult, error)
}

var _ RPC = (*rpc.Client)(nil)

// Solana limits and prices the engine builds around.
const (
	// PacketDataSize is the largest serialized transaction Solana accepts.
	PacketDataSize = 1232
	// LamportsPerSignature is Solana's base fee per signature. A payout
	// transaction has one signature (the marketplace wallet's) and no
	// Compute Budget instruction, so this is its whole fee.
	LamportsPerSignature = 5000
	// MaxBatchSize caps Config.BatchSize: payouts (jobs) per transaction.
	// Payouts to one wallet share a transfer, so a transaction can carry
	// more payouts than transfers; the ledger record grows with each.
	MaxBatchSize = 256
	// maxUnitPayouts caps the payouts merged into one transfer to a new
	// account that must reach the rent-exempt minimum in one go.
	maxUnitPayouts = 1024
	// maxStatusQuery is getSignatureStatuses' limit per call.
	maxStatusQuery = 256
	// maxAccountsQuery is getMultipleAccounts' limit per call.
	maxAccountsQuery = 100
)

// MaxTransfersPerTx is how many System transfers to distinct recipients
// fit in one legacy transaction of at most PacketDataSize bytes paid by one
// signer: 21. It is computed by building such transactions with solana-go.
func MaxTransfersPerTx() int { return maxTransfers() }

var maxTransfers = sync.OnceValue(func() int {
	payer := solana.PublicKey{1}
	n := 0
	for k := 1; k < 64; k++ {
		ixs := make([]solana.Instruction, k)
		for i := range ixs {
			to := solana.PublicKey{2, byte(i)}
			ixs[i] = system.NewTransferInstruction(^uint64(0), payer, to).Build()
		}
		tx, err := solana.NewTransaction(ixs, solana.Hash{3}, solana.TransactionPayer(payer))
		if err != nil {
			break
		}
		tx.Signatures = make([]solana.Signature, 1)
		raw, err := tx.MarshalBinary()
		if err != nil || len(raw) > PacketDataSize {
			break
		}
		n = k
	}
	return n
})

// RPC error codes the engine tells apart (agave's rpc_custom_error.rs).
const (
	codePreflightFailure      = -32002
	codeSignatureVerification = -32003
	codeNodeUnhealthy         = -32005
	codeSignatureLenMismatch  = -32013
	codeUnsupportedTxVersion  = -32015
	codeInvalidParams         = -32602
)

// rpcErrorText renders an error from the rpc client in one line of at
// most maxErrorText bytes: solana-go prints JSON-RPC errors as a
// multi-line dump, and what a node answers is outside input that goes to
// logs and to the admin API.
func rpcErrorText(err error) string {
	if err == nil {
		return ""
	}
	var re *jsonrpc.RPCError
	if errors.As(err, &re) {
		msg := fmt.Sprintf("rpc error %d: %s", re.Code, re.Message)
		if re.Code == codePreflightFailure {
			if e := preflightErr(re); e != "" && !strings.Contains(re.Message, e) {
				msg += " (" + e + ")"
			}
		}
		return oneLine(msg)
	}
	return oneLine(err.Error())
}

// maxErrorText bounds rpcErrorText.
const maxErrorText = 300

// oneLine turns control characters into spaces, makes s valid UTF-8 and
// cuts it at maxErrorText bytes (on a character boundary).
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= maxErrorText {
		return s
	}
	cut := maxErrorText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// preflightErr returns the transaction error of a failed preflight as
// compact JSON ("AlreadyProcessed", {"InstructionError":[0,{"Custom":1}]}).
func preflightErr(re *jsonrpc.RPCError) string {
	data, ok := re.Data.(map[string]any)
	if !ok {
		return ""
	}
	e, ok := data["err"]
	if !ok || e == nil {
		return ""
	}
	return txErrText(e)
}

// txErrText renders a transaction error as Solana sends it (compact JSON).
func txErrText(e any) string {
	if s, ok := e.(string); ok {
		return s
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Sprint(e)
	}
	return string(b)
}

// sendOutcome classifies the answer to a sendTransaction.
type sendOutcome int

const (
	sendAccepted  sendOutcome = iota // the node took it
	sendLanded                       // preflight says it already landed
	sendRejected                     // the node refused it: it reached no leader
	sendUncertain                    // no clear answer: it may have reached a leader
)

func classifySend(err error) sendOutcome {
	if err == nil {
		return sendAccepted
	}
	var re *jsonrpc.RPCError
	if !errors.As(err, &re) {
		return sendUncertain // transport error, HTTP error, empty body, timeout
	}
	if re.Code == codePreflightFailure && preflightErr(re) == "AlreadyProcessed" {
		return sendLanded
	}
	switch re.Code {
	case codePreflightFailure, codeSignatureVerification, codeInvalidParams, codeNodeUnhealthy,
		codeSignatureLenMismatch, codeUnsupportedTxVersion:
		// Raised by the checks an RPC node runs before it forwards a
		// transaction (decode, sanitize, signature verification, health,
		// preflight simulation): the transaction reached no leader.
		return sendRejected
	}
	// Anything else (an internal error, a provider's rate limit or
	// timeout) might come from a proxy after it forwarded the transaction.
	return sendUncertain
}
