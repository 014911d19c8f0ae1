package localchain

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"

	"github.com/gagliardetto/solana-go"
	"github.com/mr-tron/base58"
)

const (
	// apiVersion is what getVersion and every response context report.
	apiVersion = "2.2.0"
	// featureSet is getVersion's feature-set: not a real cluster's.
	featureSet = 0

	maxBase58TxSize        = 1683 // agave MAX_BASE58_SIZE
	maxBase64TxSize        = 1644 // agave MAX_BASE64_SIZE
	maxSignatureStatuses   = 256  // MAX_GET_SIGNATURE_STATUSES_QUERY_ITEMS
	maxMultipleAccounts    = 100  // MAX_MULTIPLE_ACCOUNTS
	maxBase58AccountData   = 128  // MAX_BASE58_BYTES
	rentEpochRentExempt    = math.MaxUint64
	txVersionLegacyJSONTag = "legacy"
)

type method func(c *Chain, ctx context.Context, p params, neverLand bool) (any, *rpcError)

// lookupMethod maps a JSON-RPC method name to its implementation.
func lookupMethod(name string) method {
	switch name {
	case "getHealth":
		return (*Chain).rpcGetHealth
	case "getVersion":
		return (*Chain).rpcGetVersion
	case "getGenesisHash":
		return (*Chain).rpcGetGenesisHash
	case "getSlot":
		return (*Chain).rpcGetSlot
	case "getBlockHeight":
		return (*Chain).rpcGetSlot // block height equals slot: no slot is ever skipped
	case "getLatestBlockhash":
		return (*Chain).rpcGetLatestBlockhash
	case "isBlockhashValid":
		return (*Chain).rpcIsBlockhashValid
	case "getFeeForMessage":
		return (*Chain).rpcGetFeeForMessage
	case "getMinimumBalanceForRentExemption":
		return (*Chain).rpcGetMinimumBalanceForRentExemption
	case "getBalance":
		return (*Chain).rpcGetBalance
	case "getAccountInfo":
		return (*Chain).rpcGetAccountInfo
	case "getMultipleAccounts":
		return (*Chain).rpcGetMultipleAccounts
	case "requestAirdrop":
		return (*Chain).rpcRequestAirdrop
	case "sendTransaction":
		return (*Chain).rpcSendTransaction
	case "simulateTransaction":
		return (*Chain).rpcSimulateTransaction
	case "getSignatureStatuses":
		return (*Chain).rpcGetSignatureStatuses
	case "getTransaction":
		return (*Chain).rpcGetTransaction
	default:
		return nil
	}
}

func (c *Chain) invoke(ctx context.Context, name string, rawParams json.RawMessage, neverLand bool) (any, *rpcError) {
	m := lookupMethod(name)
	if m == nil {
		return nil, &rpcError{Code: codeMethodNotFound, Message: "Method not found"}
	}
	p, rerr := parseParams(rawParams)
	if rerr != nil {
		return nil, rerr
	}
	return m(c, ctx, p, neverLand)
}

// params are a request's positional parameters.
type params []json.RawMessage

func parseParams(raw json.RawMessage) (params, *rpcError) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var p params
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, invalidParams("Invalid params: expected an array of positional parameters")
	}
	return p, nil
}

// arity checks the number of parameters.
func (p params) arity(minimum, maximum int) *rpcError {
	if len(p) < minimum || len(p) > maximum {
		if minimum == maximum {
			return invalidParams("Invalid params: invalid length %d, expected %d", len(p), minimum)
		}
		return invalidParams("Invalid params: invalid length %d, expected %d to %d", len(p), minimum, maximum)
	}
	return nil
}

// present reports whether parameter i was given and is not null.
func (p params) present(i int) bool { return i < len(p) && string(p[i]) != "null" }

// decode unmarshals parameter i (if present) into dst.
func (p params) decode(i int, dst any) *rpcError {
	if !p.present(i) {
		return nil
	}
	if err := json.Unmarshal(p[i], dst); err != nil {
		return invalidParams("Invalid params: %v", err)
	}
	return nil
}

func (p params) pubkey(i int) (solana.PublicKey, *rpcError) {
	var s string
	if !p.present(i) {
		return solana.PublicKey{}, invalidParams("Invalid params: missing public key")
	}
	if rerr := p.decode(i, &s); rerr != nil {
		return solana.PublicKey{}, rerr
	}
	k, err := solana.PublicKeyFromBase58(s)
	if err != nil {
		return solana.PublicKey{}, invalidParams("Invalid param: %v", err)
	}
	return k, nil
}

func (p params) signature(i int) (solana.Signature, *rpcError) {
	var s string
	if !p.present(i) {
		return solana.Signature{}, invalidParams("Invalid params: missing signature")
	}
	if rerr := p.decode(i, &s); rerr != nil {
		return solana.Signature{}, rerr
	}
	return parseSignature(s)
}

func parseSignature(s string) (solana.Signature, *rpcError) {
	b, err := base58.Decode(s)
	if err != nil || len(b) != 64 {
		return solana.Signature{}, invalidParams("Invalid param: invalid signature %q", s)
	}
	return solana.SignatureFromBytes(b), nil
}

// commitmentConfig is the part of config objects most methods share.
type commitmentConfig struct {
	Commitment     *string `json:"commitment"`
	MinContextSlot *uint64 `json:"minContextSlot"`
}

// parseCommitment reads a commitment level; absent means finalized, the
// default of Solana's RPC. The deprecated names map as Solana maps them.
func parseCommitment(s *string) (commitment, *rpcError) {
	if s == nil {
		return commitFinalized, nil
	}
	switch *s {
	case "processed", "recent":
		return commitProcessed, nil
	case "confirmed", "single", "singleGossip":
		return commitConfirmed, nil
	case "finalized", "max", "root":
		return commitFinalized, nil
	default:
		return 0, invalidParams("Invalid params: unknown variant `%s`, expected one of `processed`, `confirmed`, `finalized`", *s)
	}
}

// viewForLocked resolves a commitment config to the slot it sees, enforcing
// minContextSlot. Call with c.mu held.
func (c *Chain) viewForLocked(cfg commitmentConfig) (uint64, *rpcError) {
	cm, rerr := parseCommitment(cfg.Commitment)
	if rerr != nil {
		return 0, rerr
	}
	v := c.viewLocked(cm)
	if cfg.MinContextSlot != nil && v < *cfg.MinContextSlot {
		return 0, &rpcError{
			Code:    codeMinContextSlotNotReach,
			Message: "Minimum context slot has not been reached",
			Data:    map[string]uint64{"contextSlot": v},
		}
	}
	return v, nil
}

// rpcContext and withContext are Solana's RpcResponse wrapper.
type rpcContext struct {
	Slot       uint64 `json:"slot"`
	APIVersion string `json:"apiVersion"`
}

type withContext struct {
	Context rpcContext `json:"context"`
	Value   any        `json:"value"`
}

func inContext(slot uint64, v any) withContext {
	return withContext{Context: rpcContext{Slot: slot, APIVersion: apiVersion}, Value: v}
}

func (c *Chain) rpcGetHealth(_ context.Context, p params, _ bool) (any, *rpcError) {
	if rerr := p.arity(0, 0); rerr != nil {
		return nil, rerr
	}
	return "ok", nil
}

func (c *Chain) rpcGetVersion(_ context.Context, p params, _ bool) (any, *rpcError) {
	if rerr := p.arity(0, 0); rerr != nil {
		return nil, rerr
	}
	return map[string]any{"solana-core": apiVersion, "feature-set": featureSet}, nil
}

func (c *Chain) rpcGetGenesisHash(_ context.Context, p params, _ bool) (any, *rpcError) {
	if rerr := p.arity(0, 0); rerr != nil {
		return nil, rerr
	}
	return c.genesis.String(), nil
}

// rpcGetSlot serves getSlot and getBlockHeight.
func (c *Chain) rpcGetSlot(_ context.Context, p params, _ bool) (any, *rpcError) {
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(0, 1), p.decode(0, &cfg)); rerr != nil {
		return nil, rerr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.viewForLocked(cfg)
}

func (c *Chain) rpcGetLatestBlockhash(_ context.Context, p params, _ bool) (any, *rpcError) {
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(0, 1), p.decode(0, &cfg)); rerr != nil {
		return nil, rerr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(cfg)
	if rerr != nil {
		return nil, rerr
	}
	return inContext(v, map[string]any{
		"blockhash":            c.blockhash(v).String(),
		"lastValidBlockHeight": v + c.cfg.BlockhashWindow,
	}), nil
}

func (c *Chain) rpcIsBlockhashValid(_ context.Context, p params, _ bool) (any, *rpcError) {
	var s string
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &s), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	hash, err := solana.HashFromBase58(s)
	if err != nil {
		return nil, invalidParams("Invalid param: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(cfg)
	if rerr != nil {
		return nil, rerr
	}
	return inContext(v, c.blockhashValidLocked(hash, v)), nil
}

func (c *Chain) rpcGetFeeForMessage(_ context.Context, p params, _ bool) (any, *rpcError) {
	var s string
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &s), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, invalidParams("invalid base64 encoding: %v", err)
	}
	if len(raw) > packetDataSize {
		return nil, invalidParams("decoded message too large: %d bytes (max: %d bytes)", len(raw), packetDataSize)
	}
	msg, err := decodeMessage(raw)
	if err != nil {
		return nil, invalidParams("invalid transaction message: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(cfg)
	if rerr != nil {
		return nil, rerr
	}
	if !c.blockhashValidLocked(msg.RecentBlockhash, v) {
		return inContext(v, nil), nil
	}
	return inContext(v, LamportsPerSignature*uint64(msg.Header.NumRequiredSignatures)), nil
}

// decodeMessage deserializes a bare message (getFeeForMessage).
func decodeMessage(raw []byte) (m *solana.Message, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("malformed message: %v", r)
		}
	}()
	if len(raw) == 0 {
		return nil, fmt.Errorf("empty message")
	}
	if raw[0] == 0x7f || (raw[0]&0x80 != 0 && raw[0] != 0x80) {
		return nil, fmt.Errorf("unsupported message version byte 0x%x", raw[0])
	}
	m = new(solana.Message)
	if err := m.UnmarshalBase64(base64.StdEncoding.EncodeToString(raw)); err != nil {
		return nil, err
	}
	if m.Header.NumReadonlySignedAccounts >= m.Header.NumRequiredSignatures ||
		int(m.Header.NumRequiredSignatures)+int(m.Header.NumReadonlyUnsignedAccounts) > len(m.AccountKeys) {
		return nil, fmt.Errorf("message failed to sanitize")
	}
	return m, nil
}

func (c *Chain) rpcGetMinimumBalanceForRentExemption(_ context.Context, p params, _ bool) (any, *rpcError) {
	var size uint64
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &size), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	if _, rerr := parseCommitment(cfg.Commitment); rerr != nil {
		return nil, rerr
	}
	return MinimumBalanceForRentExemption(size), nil
}

// Balances and accounts honour the commitment level: the confirmed and
// finalized views are rebuilt from each account's recent history.

func (c *Chain) rpcGetBalance(_ context.Context, p params, _ bool) (any, *rpcError) {
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	key, rerr := p.pubkey(0)
	if rerr != nil {
		return nil, rerr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(cfg)
	if rerr != nil {
		return nil, rerr
	}
	return inContext(v, c.accountAtLocked(key, v).lamports), nil
}

// accountConfig is getAccountInfo's and getMultipleAccounts' config.
type accountConfig struct {
	commitmentConfig
	Encoding  *string `json:"encoding"`
	DataSlice *struct {
		Offset uint64 `json:"offset"`
		Length uint64 `json:"length"`
	} `json:"dataSlice"`
}

// uiAccount is Solana's UiAccount.
type uiAccount struct {
	Data       any    `json:"data"`
	Executable bool   `json:"executable"`
	Lamports   uint64 `json:"lamports"`
	Owner      string `json:"owner"`
	RentEpoch  uint64 `json:"rentEpoch"`
	Space      uint64 `json:"space"`
}

// checkAccountEncoding validates an account encoding; absent means
// "binary" (a bare base58 string), Solana's legacy default.
func checkAccountEncoding(enc *string) (string, *rpcError) {
	if enc == nil {
		return "binary", nil
	}
	switch *enc {
	case "binary", "base58", "base64", "jsonParsed":
		return *enc, nil
	case "base64+zstd":
		return "", invalidParams("Invalid params: encoding base64+zstd is not supported by localchain")
	default:
		return "", invalidParams("Invalid params: unknown variant `%s`, expected one of `binary`, `base58`, `base64`, `jsonParsed`, `base64+zstd`", *enc)
	}
}

// encodeAccount renders an account; nil for one that does not exist.
func encodeAccount(a account, enc string, cfg accountConfig) (*uiAccount, *rpcError) {
	if a.lamports == 0 {
		return nil, nil
	}
	// Data is never written by the System Program: it is all zeros.
	n := a.space
	var off uint64
	if cfg.DataSlice != nil {
		off = min(cfg.DataSlice.Offset, n)
		n = min(cfg.DataSlice.Length, n-off)
	}
	data := make([]byte, n)
	var ui any
	switch enc {
	case "binary", "base58":
		if len(data) > maxBase58AccountData {
			return nil, invalidParams("Encoded binary (base 58) data should be less than %d bytes, please use Base64 encoding.", maxBase58AccountData)
		}
		if enc == "binary" {
			ui = base58.Encode(data)
		} else {
			ui = []string{base58.Encode(data), "base58"}
		}
	default: // base64, and jsonParsed, which falls back to base64 for data no parser understands
		ui = []string{base64.StdEncoding.EncodeToString(data), "base64"}
	}
	return &uiAccount{
		Data:      ui,
		Lamports:  a.lamports,
		Owner:     a.owner.String(),
		RentEpoch: rentEpochRentExempt,
		Space:     a.space,
	}, nil
}

func (c *Chain) rpcGetAccountInfo(_ context.Context, p params, _ bool) (any, *rpcError) {
	var cfg accountConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	key, rerr := p.pubkey(0)
	if rerr != nil {
		return nil, rerr
	}
	enc, rerr := checkAccountEncoding(cfg.Encoding)
	if rerr != nil {
		return nil, rerr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(cfg.commitmentConfig)
	if rerr != nil {
		return nil, rerr
	}
	ui, rerr := encodeAccount(c.accountAtLocked(key, v), enc, cfg)
	if rerr != nil {
		return nil, rerr
	}
	if ui == nil {
		return inContext(v, nil), nil
	}
	return inContext(v, ui), nil
}

func (c *Chain) rpcGetMultipleAccounts(_ context.Context, p params, _ bool) (any, *rpcError) {
	var keys []string
	var cfg accountConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &keys), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	if len(keys) > maxMultipleAccounts {
		return nil, invalidParams("Too many inputs provided; max %d", maxMultipleAccounts)
	}
	pks := make([]solana.PublicKey, len(keys))
	for i, s := range keys {
		k, err := solana.PublicKeyFromBase58(s)
		if err != nil {
			return nil, invalidParams("Invalid param: %v", err)
		}
		pks[i] = k
	}
	enc, rerr := checkAccountEncoding(cfg.Encoding)
	if rerr != nil {
		return nil, rerr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(cfg.commitmentConfig)
	if rerr != nil {
		return nil, rerr
	}
	out := make([]*uiAccount, len(pks))
	for i, k := range pks {
		if out[i], rerr = encodeAccount(c.accountAtLocked(k, v), enc, cfg); rerr != nil {
			return nil, rerr
		}
	}
	return inContext(v, out), nil
}

func (c *Chain) rpcRequestAirdrop(_ context.Context, p params, _ bool) (any, *rpcError) {
	var lamports uint64
	var cfg commitmentConfig
	if rerr := firstErr(p.arity(2, 3), p.decode(1, &lamports), p.decode(2, &cfg)); rerr != nil {
		return nil, rerr
	}
	key, rerr := p.pubkey(0)
	if rerr != nil {
		return nil, rerr
	}
	if _, rerr := parseCommitment(cfg.Commitment); rerr != nil {
		return nil, rerr
	}
	if lamports == 0 {
		return nil, invalidParams("Invalid params: airdrop of 0 lamports")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Like a faucet, the RPC answers with the signature even when the
	// airdrop lands as a failed transaction (for example below the
	// rent-exempt minimum); its status carries the error.
	sig, _, err := c.airdropLocked(key, lamports)
	if err != nil {
		return nil, &rpcError{Code: codeInternalError, Message: "airdrop request failed: " + err.Error()}
	}
	return sig.String(), nil
}

// decodeEncodedTx undoes sendTransaction's and simulateTransaction's
// encoding, with agave's size limits and messages.
func decodeEncodedTx(s string, encoding *string) ([]byte, *rpcError) {
	const what = "solana_transaction::versioned::VersionedTransaction"
	enc := "base58"
	if encoding != nil {
		enc = *encoding
	}
	var raw []byte
	switch enc {
	case "base58":
		if len(s) > maxBase58TxSize {
			return nil, invalidParams("base58 encoded %s too large: %d bytes (max: encoded/raw %d/%d)", what, len(s), maxBase58TxSize, packetDataSize)
		}
		b, err := base58.Decode(s)
		if err != nil {
			return nil, invalidParams("invalid base58 encoding: %v", err)
		}
		raw = b
	case "base64":
		if len(s) > maxBase64TxSize {
			return nil, invalidParams("base64 encoded %s too large: %d bytes (max: encoded/raw %d/%d)", what, len(s), maxBase64TxSize, packetDataSize)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, invalidParams("invalid base64 encoding: %v", err)
		}
		raw = b
	default:
		return nil, invalidParams("unsupported encoding: %s. Supported encodings: base58, base64", enc)
	}
	if len(raw) > packetDataSize {
		return nil, invalidParams("decoded %s too large: %d bytes (max: %d bytes)", what, len(raw), packetDataSize)
	}
	return raw, nil
}

// decodeAndSanitize turns an encoded transaction into a sanitized wireTx.
func decodeAndSanitize(s string, encoding *string) (*wireTx, *rpcError) {
	raw, rerr := decodeEncodedTx(s, encoding)
	if rerr != nil {
		return nil, rerr
	}
	w, err := decodeWire(raw)
	if err != nil {
		return nil, invalidParams("failed to deserialize solana_transaction::versioned::VersionedTransaction: %v", err)
	}
	if te := w.sanitize(); te != nil {
		return nil, invalidParams("invalid transaction: %s", te.Error())
	}
	return w, nil
}

// simResult is Solana's RpcSimulateTransactionResult.
type simResult struct {
	Err                  *TxError     `json:"err"`
	Logs                 []string     `json:"logs"`
	Accounts             []*uiAccount `json:"accounts"`
	UnitsConsumed        uint64       `json:"unitsConsumed"`
	ReturnData           any          `json:"returnData"`
	InnerInstructions    any          `json:"innerInstructions"`
	ReplacementBlockhash any          `json:"replacementBlockhash"`
}

func newSimResult(out outcome) simResult {
	r := simResult{Logs: out.logs, UnitsConsumed: out.units}
	if r.Logs == nil {
		r.Logs = []string{}
	}
	if out.loadErr != nil {
		r.Err = out.loadErr
	} else {
		r.Err = out.err
	}
	return r
}

type sendConfig struct {
	Encoding            *string `json:"encoding"`
	SkipPreflight       bool    `json:"skipPreflight"`
	PreflightCommitment *string `json:"preflightCommitment"`
	MaxRetries          *uint64 `json:"maxRetries"`
	MinContextSlot      *uint64 `json:"minContextSlot"`
}

// rpcSendTransaction follows agave's send_transaction: decode, sanitize;
// unless skipPreflight, verify signatures and simulate against the bank of
// preflightCommitment (finalized by default, as on a real cluster); then
// hand the transaction to the "leader", which drops it silently if it
// cannot be loaded (bad signature, expired blockhash, duplicate, fee payer
// short of the fee) and otherwise lands it, charging the fee even if it
// fails.
func (c *Chain) rpcSendTransaction(_ context.Context, p params, neverLand bool) (any, *rpcError) {
	var s string
	var cfg sendConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &s), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	w, rerr := decodeAndSanitize(s, cfg.Encoding)
	if rerr != nil {
		return nil, rerr
	}
	valid := w.verify()
	if !cfg.SkipPreflight {
		if !valid {
			return nil, &rpcError{Code: codeSignatureVerification, Message: "Transaction signature verification failure"}
		}
		c.mu.Lock()
		v, rerr := c.viewForLocked(commitmentConfig{Commitment: cfg.PreflightCommitment, MinContextSlot: cfg.MinContextSlot})
		if rerr != nil {
			c.mu.Unlock()
			return nil, rerr
		}
		out := c.executeLocked(w, v, c.viewLoader(v))
		c.mu.Unlock()
		if out.loadErr != nil || out.err != nil {
			sim := newSimResult(out)
			return nil, &rpcError{
				Code:    codePreflightFailure,
				Message: "Transaction simulation failed: " + sim.Err.Error(),
				Data:    sim,
			}
		}
	}
	if neverLand {
		c.log.Info("localchain: transaction accepted but will never land (fault)", "signature", w.sig)
		return w.sig.String(), nil
	}
	if !valid {
		c.log.Debug("localchain: dropped transaction with a bad signature", "signature", w.sig)
		return w.sig.String(), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.executeLocked(w, c.head, c.headLoader())
	if out.loadErr != nil {
		c.log.Debug("localchain: dropped transaction", "signature", w.sig, "err", out.loadErr)
		return w.sig.String(), nil
	}
	if err := c.persistLocked(w, out); err != nil {
		// Not landed: nobody may be told it was. The log is stuck, so the
		// chain lands nothing more until it is reopened.
		c.log.Error("localchain: transaction not landed: the log cannot be written", "signature", w.sig, "err", err)
		return nil, &rpcError{Code: codeInternalError, Message: "Internal error: the ledger cannot be written"}
	}
	c.landLocked(w, out)
	return w.sig.String(), nil
}

type simulateConfig struct {
	SigVerify              bool    `json:"sigVerify"`
	ReplaceRecentBlockhash bool    `json:"replaceRecentBlockhash"`
	Commitment             *string `json:"commitment"`
	Encoding               *string `json:"encoding"`
	MinContextSlot         *uint64 `json:"minContextSlot"`
	InnerInstructions      bool    `json:"innerInstructions"`
	Accounts               *struct {
		Addresses []string `json:"addresses"`
		Encoding  *string  `json:"encoding"`
	} `json:"accounts"`
}

func (c *Chain) rpcSimulateTransaction(_ context.Context, p params, _ bool) (any, *rpcError) {
	var s string
	var cfg simulateConfig
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &s), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	if cfg.SigVerify && cfg.ReplaceRecentBlockhash {
		return nil, invalidParams("sigVerify may not be used with replaceRecentBlockhash")
	}
	w, rerr := decodeAndSanitize(s, cfg.Encoding)
	if rerr != nil {
		return nil, rerr
	}
	if cfg.SigVerify && !w.verify() {
		return nil, &rpcError{Code: codeSignatureVerification, Message: "Transaction signature verification failure"}
	}
	var addrs []solana.PublicKey
	accEnc := "base64"
	if cfg.Accounts != nil {
		var err *rpcError
		if accEnc, err = checkAccountEncoding(cfg.Accounts.Encoding); err != nil {
			return nil, err
		}
		if accEnc == "binary" || accEnc == "base58" {
			return nil, invalidParams("Invalid params: base58 account encoding is not supported by simulateTransaction")
		}
		for _, a := range cfg.Accounts.Addresses {
			k, err := solana.PublicKeyFromBase58(a)
			if err != nil {
				return nil, invalidParams("Invalid param: %v", err)
			}
			addrs = append(addrs, k)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, rerr := c.viewForLocked(commitmentConfig{Commitment: cfg.Commitment, MinContextSlot: cfg.MinContextSlot})
	if rerr != nil {
		return nil, rerr
	}
	var replacement any
	if cfg.ReplaceRecentBlockhash {
		tx := *w.tx
		tx.Message.RecentBlockhash = c.blockhash(v)
		w = &wireTx{raw: w.raw, msg: w.msg, tx: &tx, sig: w.sig}
		replacement = map[string]any{"blockhash": c.blockhash(v).String(), "lastValidBlockHeight": v + c.cfg.BlockhashWindow}
	}
	out := c.executeLocked(w, v, c.viewLoader(v))
	res := newSimResult(out)
	res.ReplacementBlockhash = replacement
	if cfg.Accounts != nil && out.loadErr == nil {
		res.Accounts = make([]*uiAccount, len(addrs))
		for i, k := range addrs {
			a := c.accountAtLocked(k, v)
			for j, key := range w.tx.Message.AccountKeys {
				if key == k {
					a = out.post[j]
				}
			}
			res.Accounts[i], _ = encodeAccount(a, accEnc, accountConfig{})
		}
	}
	return inContext(v, res), nil
}

// sigStatus is Solana's TransactionStatus.
type sigStatus struct {
	Slot               uint64         `json:"slot"`
	Confirmations      *uint64        `json:"confirmations"`
	Err                *TxError       `json:"err"`
	Status             map[string]any `json:"status"`
	ConfirmationStatus string         `json:"confirmationStatus"`
}

func statusField(err *TxError) map[string]any {
	if err == nil {
		return map[string]any{"Ok": nil}
	}
	return map[string]any{"Err": err}
}

// statusLocked is a landed transaction's status as seen from the head: by
// slot depth processed, then confirmed, then finalized (confirmations
// null).
func (c *Chain) statusLocked(rec *txRecord) *sigStatus {
	depth := c.head - rec.slot
	st := &sigStatus{Slot: rec.slot, Err: rec.err, Status: statusField(rec.err)}
	switch {
	case depth >= uint64(c.cfg.FinalizeDepth):
		st.ConfirmationStatus = "finalized"
	case depth >= uint64(c.cfg.ConfirmDepth):
		st.ConfirmationStatus = "confirmed"
		st.Confirmations = &depth
	default:
		st.ConfirmationStatus = "processed"
		st.Confirmations = &depth
	}
	return st
}

// statusCacheSlots is how long a signature stays in the status cache that
// getSignatureStatuses searches without searchTransactionHistory (Solana
// keeps MAX_RECENT_BLOCKHASHES = 300 slots, twice the blockhash window).
func (c *Chain) statusCacheSlots() uint64 { return 2 * c.cfg.BlockhashWindow }

func (c *Chain) rpcGetSignatureStatuses(_ context.Context, p params, _ bool) (any, *rpcError) {
	var sigs []string
	var cfg struct {
		SearchTransactionHistory bool `json:"searchTransactionHistory"`
	}
	if rerr := firstErr(p.arity(1, 2), p.decode(0, &sigs), p.decode(1, &cfg)); rerr != nil {
		return nil, rerr
	}
	if len(sigs) > maxSignatureStatuses {
		return nil, invalidParams("Too many inputs provided; max %d", maxSignatureStatuses)
	}
	parsed := make([]solana.Signature, len(sigs))
	for i, s := range sigs {
		sig, rerr := parseSignature(s)
		if rerr != nil {
			return nil, rerr
		}
		parsed[i] = sig
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*sigStatus, len(parsed))
	for i, sig := range parsed {
		rec, ok := c.txs[sig]
		if !ok || (!cfg.SearchTransactionHistory && c.head-rec.slot > c.statusCacheSlots()) {
			continue
		}
		out[i] = c.statusLocked(rec)
	}
	return inContext(c.head, out), nil
}

// txMeta is Solana's UiTransactionStatusMeta.
type txMeta struct {
	Err                  *TxError       `json:"err"`
	Status               map[string]any `json:"status"`
	Fee                  uint64         `json:"fee"`
	PreBalances          []uint64       `json:"preBalances"`
	PostBalances         []uint64       `json:"postBalances"`
	InnerInstructions    []any          `json:"innerInstructions"`
	LogMessages          []string       `json:"logMessages"`
	PreTokenBalances     []any          `json:"preTokenBalances"`
	PostTokenBalances    []any          `json:"postTokenBalances"`
	Rewards              []any          `json:"rewards"`
	LoadedAddresses      map[string]any `json:"loadedAddresses"`
	ComputeUnitsConsumed uint64         `json:"computeUnitsConsumed"`
}

type txResult struct {
	Slot        uint64 `json:"slot"`
	BlockTime   *int64 `json:"blockTime"`
	Transaction any    `json:"transaction"`
	Meta        txMeta `json:"meta"`
	Version     any    `json:"version,omitempty"`
}

func (c *Chain) rpcGetTransaction(_ context.Context, p params, _ bool) (any, *rpcError) {
	if rerr := p.arity(1, 2); rerr != nil {
		return nil, rerr
	}
	sig, rerr := p.signature(0)
	if rerr != nil {
		return nil, rerr
	}
	var cfg struct {
		Encoding                       *string `json:"encoding"`
		Commitment                     *string `json:"commitment"`
		MaxSupportedTransactionVersion *uint8  `json:"maxSupportedTransactionVersion"`
	}
	if p.present(1) && len(p[1]) > 0 && p[1][0] == '"' {
		// The deprecated form: the encoding alone.
		if rerr := p.decode(1, &cfg.Encoding); rerr != nil {
			return nil, rerr
		}
	} else if rerr := p.decode(1, &cfg); rerr != nil {
		return nil, rerr
	}
	cm, rerr := parseCommitment(cfg.Commitment)
	if rerr != nil {
		return nil, rerr
	}
	if cm == commitProcessed {
		return nil, invalidParams("Method does not support commitment below `confirmed`")
	}
	enc := "json"
	if cfg.Encoding != nil {
		enc = *cfg.Encoding
	}
	switch enc {
	case "json", "base64", "base58", "binary":
	case "jsonParsed":
		return nil, invalidParams("Invalid params: encoding jsonParsed is not supported by localchain")
	default:
		return nil, invalidParams("Invalid params: unknown variant `%s`, expected one of `binary`, `base64`, `base58`, `json`, `jsonParsed`", enc)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.txs[sig]
	if !ok || rec.slot > c.viewLocked(cm) {
		return nil, nil
	}
	w := rec.w
	var version any
	if w.tx.Message.IsVersioned() {
		if cfg.MaxSupportedTransactionVersion == nil {
			return nil, &rpcError{
				Code:    codeUnsupportedTxVersion,
				Message: `Transaction version (0) is not supported by the requesting client. Please try the request again with the following configuration parameter: "maxSupportedTransactionVersion": 0`,
			}
		}
		version = 0
	} else if cfg.MaxSupportedTransactionVersion != nil {
		version = txVersionLegacyJSONTag
	}
	var tx any
	switch enc {
	case "json":
		tx = w.tx
	case "base64":
		tx = []string{base64.StdEncoding.EncodeToString(w.raw), "base64"}
	case "base58":
		tx = []string{base58.Encode(w.raw), "base58"}
	case "binary":
		tx = base58.Encode(w.raw)
	}
	blockTime := rec.blockTime
	logs := rec.logs
	if logs == nil {
		logs = []string{}
	}
	return txResult{
		Slot:        rec.slot,
		BlockTime:   &blockTime,
		Transaction: tx,
		Version:     version,
		Meta: txMeta{
			Err:                  rec.err,
			Status:               statusField(rec.err),
			Fee:                  rec.fee,
			PreBalances:          rec.pre,
			PostBalances:         rec.post,
			InnerInstructions:    []any{},
			LogMessages:          logs,
			PreTokenBalances:     []any{},
			PostTokenBalances:    []any{},
			Rewards:              []any{},
			LoadedAddresses:      map[string]any{"readonly": []string{}, "writable": []string{}},
			ComputeUnitsConsumed: rec.units,
		},
	}, nil
}

func firstErr(errs ...*rpcError) *rpcError {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
