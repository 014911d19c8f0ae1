package localchain

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/gagliardetto/solana-go"
)

// packetDataSize is the largest serialized transaction Solana accepts
// (PACKET_DATA_SIZE: an IPv6 MTU minus headers).
const packetDataSize = 1232

// wireTx is a transaction as it arrived: its bytes, the message bytes its
// signatures cover, and its decoded form.
type wireTx struct {
	raw []byte
	msg []byte
	tx  *solana.Transaction
	sig solana.Signature // the first signature: the transaction id
}

// decodeWire deserializes a transaction the way Solana does. The
// signatures are verified later against the message bytes exactly as
// received (raw[len(signature section):]), not against a re-encoding.
func decodeWire(raw []byte) (w *wireTx, err error) {
	// solana-go's decoder sees untrusted bytes here; a panic in it must not
	// take the endpoint down.
	defer func() {
		if r := recover(); r != nil {
			w, err = nil, fmt.Errorf("malformed transaction: %v", r)
		}
	}()
	n, off, err := readShortVec(raw)
	if err != nil {
		return nil, fmt.Errorf("signature count: %w", err)
	}
	if n > (len(raw)-off)/64 {
		return nil, errors.New("io error: unexpected end of file")
	}
	msg := raw[off+64*n:]
	if len(msg) == 0 {
		return nil, errors.New("io error: unexpected end of file")
	}
	switch {
	case msg[0] == 0x7f:
		// A legacy message needing 127 signatures cannot fit in a packet,
		// and solana-go would misread the byte as a version prefix.
		return nil, errors.New("invalid value: 127 required signatures")
	case msg[0]&0x80 != 0 && msg[0] != 0x80:
		return nil, fmt.Errorf("invalid value: integer `%d`, expected a valid transaction message version", msg[0]&0x7f)
	}
	tx, err := solana.TransactionFromBytes(raw)
	if err != nil {
		return nil, err
	}
	if len(tx.Signatures) != n {
		return nil, errors.New("signature section mismatch")
	}
	w = &wireTx{raw: raw, msg: msg, tx: tx}
	if n > 0 {
		w.sig = tx.Signatures[0]
	}
	return w, nil
}

// wireFromTransaction encodes a transaction built in process.
func wireFromTransaction(tx *solana.Transaction) (*wireTx, error) {
	raw, err := tx.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return decodeWire(raw)
}

// readShortVec decodes Solana's compact-u16 length prefix, rejecting the
// non-canonical and overflowing encodings Solana rejects.
func readShortVec(b []byte) (value, size int, err error) {
	for i := range 3 {
		if i >= len(b) {
			return 0, 0, errors.New("io error: unexpected end of file")
		}
		elem := int(b[i])
		if elem == 0 && i > 0 {
			return 0, 0, errors.New("short_vec: alias (non-canonical encoding)")
		}
		if i == 2 && elem > 3 {
			return 0, 0, errors.New("short_vec: overflow")
		}
		value |= (elem & 0x7f) << (7 * i)
		if elem&0x80 == 0 {
			return value, i + 1, nil
		}
	}
	return 0, 0, errors.New("short_vec: too long")
}

// sanitize applies Solana's structural checks (Message::sanitize plus the
// signature count); failures are answered as invalid params.
func (w *wireTx) sanitize() *TxError {
	m := &w.tx.Message
	h := m.Header
	nkeys := len(m.AccountKeys)
	if h.NumReadonlySignedAccounts >= h.NumRequiredSignatures ||
		int(h.NumRequiredSignatures)+int(h.NumReadonlyUnsignedAccounts) > nkeys ||
		len(w.tx.Signatures) != int(h.NumRequiredSignatures) {
		return errSanitizeFailure
	}
	for _, ix := range m.Instructions {
		if ix.ProgramIDIndex == 0 || int(ix.ProgramIDIndex) >= nkeys {
			return errSanitizeFailure
		}
		for _, a := range ix.Accounts {
			if int(a) >= nkeys {
				return errSanitizeFailure
			}
		}
	}
	if m.IsVersioned() && len(m.AddressTableLookups) > 0 {
		// No address lookup table exists on this chain.
		return errAddressLookupNotFound
	}
	return nil
}

// verify checks every signature with ed25519 against the message bytes as
// received. Call it only after sanitize.
func (w *wireTx) verify() bool {
	keys := w.tx.Message.AccountKeys
	for i, sig := range w.tx.Signatures {
		if !ed25519.Verify(keys[i][:], w.msg, sig[:]) {
			return false
		}
	}
	return true
}

// txRecord is a landed transaction, successful or failed.
type txRecord struct {
	w         *wireTx
	slot      uint64
	blockTime int64
	err       *TxError // nil on success
	fee       uint64
	pre, post []uint64
	logs      []string
	units     uint64
}

// outcome is what running a transaction against some state produced.
type outcome struct {
	// loadErr is set when the transaction could not be loaded (blockhash,
	// status cache, fee payer, account locks): it does not land and no fee
	// is charged.
	loadErr *TxError
	// err is set when the transaction landed but failed: only the fee is
	// charged.
	err   *TxError
	fee   uint64
	orig  []account // as loaded
	post  []account // final state, fee included
	logs  []string
	units uint64
}

type loader func(solana.PublicKey) account

func (c *Chain) headLoader() loader {
	return func(k solana.PublicKey) account { return c.accounts[k] }
}

func (c *Chain) viewLoader(view uint64) loader {
	return func(k solana.PublicKey) account { return c.accountAtLocked(k, view) }
}

// executeLocked runs a sanitized transaction against the bank at slot
// view, whose accounts load provides, without changing anything. The
// checks come in Solana's order: account locks, blockhash age, status
// cache, fee payer; then the instructions, atomically, then the rent
// state of every writable account.
func (c *Chain) executeLocked(w *wireTx, view uint64, load loader) outcome {
	m := &w.tx.Message
	keys := m.AccountKeys
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[i] == keys[j] {
				return outcome{loadErr: errAccountLoadedTwice}
			}
		}
	}
	if !c.blockhashValidLocked(m.RecentBlockhash, view) {
		return outcome{loadErr: errBlockhashNotFound}
	}
	if rec, ok := c.txs[w.sig]; ok && rec.slot <= view {
		return outcome{loadErr: errAlreadyProcessed}
	}
	fee := LamportsPerSignature * uint64(m.Header.NumRequiredSignatures)
	orig := make([]account, len(keys))
	for i, k := range keys {
		orig[i] = load(k)
	}
	payer := orig[0]
	switch {
	case payer.lamports == 0:
		return outcome{loadErr: errAccountNotFound}
	case payer.owner != solana.SystemProgramID || payer.space != 0:
		return outcome{loadErr: errInvalidAccountForFee}
	case payer.lamports < fee:
		return outcome{loadErr: errInsufficientFundsForFee}
	}
	paid := payer
	paid.lamports -= fee
	if !rentTransitionAllowed(payer, paid) {
		return outcome{loadErr: errInsufficientFundsForRent(0)}
	}
	base := slices.Clone(orig)
	base[0] = paid

	ex := executor{
		msg:      m,
		accounts: slices.Clone(base),
		writable: writableFlags(m),
	}
	var txErr *TxError
	for i, ix := range m.Instructions {
		if ie, ok := ex.run(ix); !ok {
			txErr = errInstruction(i, ie)
			break
		}
	}
	if txErr == nil {
		for i := range keys {
			if ex.writable[i] && !rentTransitionAllowed(base[i], ex.accounts[i]) {
				txErr = errInsufficientFundsForRent(i)
				break
			}
		}
	}
	post := ex.accounts
	if txErr != nil {
		post = base // all or nothing: only the fee sticks
	}
	return outcome{err: txErr, fee: fee, orig: orig, post: post, logs: ex.logs, units: ex.units}
}

// landLocked commits an executed transaction at the head slot.
func (c *Chain) landLocked(w *wireTx, out outcome) {
	keys := w.tx.Message.AccountKeys
	pre := make([]uint64, len(keys))
	post := make([]uint64, len(keys))
	for i, k := range keys {
		pre[i] = out.orig[i].lamports
		post[i] = out.post[i].lamports
		if out.post[i] != out.orig[i] {
			c.setAccountLocked(k, out.post[i])
		}
	}
	c.txs[w.sig] = &txRecord{
		w:         w,
		slot:      c.head,
		blockTime: c.headTime.Unix(),
		err:       out.err,
		fee:       out.fee,
		pre:       pre,
		post:      post,
		logs:      out.logs,
		units:     out.units,
	}
	c.txCount++
	if out.err != nil {
		c.log.Debug("localchain: transaction failed", "signature", w.sig, "slot", c.head, "err", out.err)
	} else {
		c.log.Debug("localchain: transaction landed", "signature", w.sig, "slot", c.head)
	}
}

// rentTransitionAllowed is Solana's rent-state rule for a writable account:
// it may end empty or rent-exempt; it may stay rent-paying only if it was
// rent-paying with the same size and did not gain lamports.
func rentTransitionAllowed(pre, post account) bool {
	postMin := MinimumBalanceForRentExemption(post.space)
	if post.lamports == 0 || post.lamports >= postMin {
		return true
	}
	prePaying := pre.lamports > 0 && pre.lamports < MinimumBalanceForRentExemption(pre.space)
	return prePaying && pre.space == post.space && post.lamports <= pre.lamports
}

// writableFlags is Message::is_writable for every account: by position in
// the header's sections, with invoked programs and the System Program
// demoted to read-only.
func writableFlags(m *solana.Message) []bool {
	n := len(m.AccountKeys)
	signed := int(m.Header.NumRequiredSignatures)
	w := make([]bool, n)
	for i := range n {
		if i < signed {
			w[i] = i < signed-int(m.Header.NumReadonlySignedAccounts)
		} else {
			w[i] = i < n-int(m.Header.NumReadonlyUnsignedAccounts)
		}
	}
	for _, ix := range m.Instructions {
		w[ix.ProgramIDIndex] = false
	}
	for i, k := range m.AccountKeys {
		if k == solana.SystemProgramID {
			w[i] = false
		}
	}
	return w
}

// executor runs instructions on a scratch copy of the accounts.
type executor struct {
	msg      *solana.Message
	accounts []account
	writable []bool
	logs     []string
	units    uint64
}

func (ex *executor) logf(format string, args ...any) {
	ex.logs = append(ex.logs, fmt.Sprintf(format, args...))
}

func (ex *executor) signer(i uint16) bool { return int(i) < int(ex.msg.Header.NumRequiredSignatures) }

// run executes one instruction; only the System Program is modelled.
func (ex *executor) run(ix solana.CompiledInstruction) (instrError, bool) {
	prog := ex.msg.AccountKeys[ix.ProgramIDIndex]
	ex.logf("Program %s invoke [1]", prog)
	var ie instrError
	ok := false
	if prog != solana.SystemProgramID {
		ex.logf("Program log: localchain executes only the System Program")
		ie = ieUnsupportedProgramID
	} else {
		ex.units += systemInstructionUnits
		ie, ok = ex.system(ix)
	}
	if ok {
		ex.logf("Program %s success", prog)
	} else {
		ex.logf("Program %s failed: %s", prog, ie.text())
	}
	return ie, ok
}

// System Program instruction discriminants (bincode u32, little endian).
const (
	sysCreateAccount = 0
	sysTransfer      = 2
)

func (ex *executor) system(ix solana.CompiledInstruction) (instrError, bool) {
	data := []byte(ix.Data)
	if len(data) < 4 {
		return ieInvalidInstructionData, false
	}
	switch kind := binary.LittleEndian.Uint32(data); kind {
	case sysTransfer:
		if len(data) < 12 {
			return ieInvalidInstructionData, false
		}
		if len(ix.Accounts) < 2 {
			return ieNotEnoughAccountKeys, false
		}
		return ex.transfer(ix.Accounts[0], ix.Accounts[1], binary.LittleEndian.Uint64(data[4:]))
	case sysCreateAccount:
		if len(data) < 52 {
			return ieInvalidInstructionData, false
		}
		if len(ix.Accounts) < 2 {
			return ieNotEnoughAccountKeys, false
		}
		lamports := binary.LittleEndian.Uint64(data[4:])
		space := binary.LittleEndian.Uint64(data[12:])
		owner := solana.PublicKeyFromBytes(data[20:52])
		return ex.createAccount(ix.Accounts[0], ix.Accounts[1], lamports, space, owner)
	default:
		ex.logf("Program log: localchain does not model system instruction %d", kind)
		return ieInvalidInstructionData, false
	}
}

// transfer is system_processor::transfer plus the runtime's checks on
// lamport changes.
func (ex *executor) transfer(fromIdx, toIdx uint16, lamports uint64) (instrError, bool) {
	keys := ex.msg.AccountKeys
	if !ex.signer(fromIdx) {
		ex.logf("Transfer: `from` account %s must sign", keys[fromIdx])
		return ieMissingRequiredSig, false
	}
	from := &ex.accounts[fromIdx]
	if from.space != 0 {
		ex.logf("Transfer: `from` must not carry data")
		return ieInvalidArgument, false
	}
	if lamports > from.lamports {
		ex.logf("Transfer: insufficient lamports %d, need %d", from.lamports, lamports)
		return ieResultWithNegativeLamps, false
	}
	if lamports == 0 {
		return instrError{}, true
	}
	if from.owner != solana.SystemProgramID {
		return ieExternalAccountSpend, false
	}
	if !ex.writable[fromIdx] || !ex.writable[toIdx] {
		return ieReadonlyLamportChange, false
	}
	from.lamports -= lamports
	to := &ex.accounts[toIdx]
	if to.lamports > ^uint64(0)-lamports {
		return ieArithmeticOverflow, false
	}
	to.lamports += lamports
	return instrError{}, true
}

// createAccount is system_processor::create_account: allocate and assign
// the new account, then fund it.
func (ex *executor) createAccount(fromIdx, toIdx uint16, lamports, space uint64, owner solana.PublicKey) (instrError, bool) {
	keys := ex.msg.AccountKeys
	to := &ex.accounts[toIdx]
	if to.lamports > 0 {
		ex.logf("Create Account: account %s already in use", keys[toIdx])
		return ieAccountAlreadyInUse, false
	}
	if !ex.signer(toIdx) {
		ex.logf("Allocate: 'to' account %s must sign", keys[toIdx])
		return ieMissingRequiredSig, false
	}
	if to.space != 0 || to.owner != solana.SystemProgramID {
		ex.logf("Allocate: account %s already in use", keys[toIdx])
		return ieAccountAlreadyInUse, false
	}
	if space > MaxAccountDataLength {
		ex.logf("Allocate: requested %d, max allowed %d", space, MaxAccountDataLength)
		return ieInvalidAccountDataLen, false
	}
	if (space != 0 || owner != solana.SystemProgramID) && !ex.writable[toIdx] {
		return ieReadonlyDataModified, false
	}
	to.space = space
	to.owner = owner
	return ex.transfer(fromIdx, toIdx, lamports)
}
