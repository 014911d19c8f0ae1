package localchain

import (
	"encoding/json"
	"fmt"
)

// TxError is a Solana TransactionError: the value a real cluster puts in
// the "err" field of a signature status, a transaction's meta and a failed
// preflight. Its JSON is serde's externally tagged form, byte for byte what
// Solana sends ("BlockhashNotFound", {"InstructionError":[0,{"Custom":1}]},
// {"InsufficientFundsForRent":{"account_index":1}}), and Error() is
// Solana's Display text.
type TxError struct {
	wire any    // what encoding/json marshals
	msg  string // Solana's Display text
}

// Error returns Solana's human-readable text for the error.
func (e *TxError) Error() string { return e.msg }

// MarshalJSON writes the error as Solana does.
func (e *TxError) MarshalJSON() ([]byte, error) { return json.Marshal(e.wire) }

// JSON returns the error as Solana sends it on the wire (a string or an
// object), for comparisons in tests.
func (e *TxError) JSON() string {
	b, _ := json.Marshal(e.wire)
	return string(b)
}

func unitTxError(name, msg string) *TxError { return &TxError{wire: name, msg: msg} }

// Transaction-level errors. The ones raised before execution (blockhash,
// status cache, fee payer, account locks) are load errors: the transaction
// never lands and nobody is charged.
var (
	errBlockhashNotFound       = unitTxError("BlockhashNotFound", "Blockhash not found")
	errAlreadyProcessed        = unitTxError("AlreadyProcessed", "This transaction has already been processed")
	errAccountNotFound         = unitTxError("AccountNotFound", "Attempt to debit an account but found no record of a prior credit.")
	errInsufficientFundsForFee = unitTxError("InsufficientFundsForFee", "Insufficient funds for fee")
	errInvalidAccountForFee    = unitTxError("InvalidAccountForFee", "This account may not be used to pay transaction fees")
	errAccountLoadedTwice      = unitTxError("AccountLoadedTwice", "Account loaded twice")
	errSanitizeFailure         = unitTxError("SanitizeFailure", "Transaction failed to sanitize accounts offsets correctly")
	errAddressLookupNotFound   = unitTxError("AddressLookupTableNotFound", "Transaction loads an address table account that doesn't exist")
	errUnsupportedVersion      = unitTxError("UnsupportedVersion", "Transaction version is unsupported")
)

func errInsufficientFundsForRent(accountIndex int) *TxError {
	return &TxError{
		wire: map[string]any{"InsufficientFundsForRent": map[string]int{"account_index": accountIndex}},
		msg:  fmt.Sprintf("Transaction results in an account (%d) with insufficient funds for rent", accountIndex),
	}
}

// instrError is a Solana InstructionError: a unit variant such as
// "InvalidInstructionData" or Custom(n).
type instrError struct {
	name   string // unit variant name, or "" for Custom
	custom uint32
	msg    string
}

func (e instrError) wire() any {
	if e.name == "" {
		return map[string]uint32{"Custom": e.custom}
	}
	return e.name
}

func (e instrError) text() string {
	if e.name == "" {
		return fmt.Sprintf("custom program error: 0x%x", e.custom)
	}
	return e.msg
}

// The instruction errors the System Program (and the runtime around it)
// produces for the instructions localchain executes.
var (
	ieInvalidInstructionData  = instrError{name: "InvalidInstructionData", msg: "invalid instruction data"}
	ieInvalidArgument         = instrError{name: "InvalidArgument", msg: "invalid program argument"}
	ieMissingRequiredSig      = instrError{name: "MissingRequiredSignature", msg: "missing required signature for instruction"}
	ieNotEnoughAccountKeys    = instrError{name: "NotEnoughAccountKeys", msg: "insufficient account keys for instruction"}
	ieUnsupportedProgramID    = instrError{name: "UnsupportedProgramId", msg: "Unsupported program id"}
	ieReadonlyLamportChange   = instrError{name: "ReadonlyLamportChange", msg: "instruction changed the balance of a read-only account"}
	ieExternalAccountSpend    = instrError{name: "ExternalAccountLamportSpend", msg: "instruction spent from the balance of an account it does not own"}
	ieReadonlyDataModified    = instrError{name: "ReadonlyDataModified", msg: "instruction modified data of a read-only account"}
	ieArithmeticOverflow      = instrError{name: "ArithmeticOverflow", msg: "Program arithmetic overflowed"}
	ieAccountAlreadyInUse     = instrError{custom: 0} // SystemError::AccountAlreadyInUse
	ieResultWithNegativeLamps = instrError{custom: 1} // SystemError::ResultWithNegativeLamports
	ieInvalidAccountDataLen   = instrError{custom: 3} // SystemError::InvalidAccountDataLength
)

func errInstruction(index int, ie instrError) *TxError {
	return &TxError{
		wire: map[string][]any{"InstructionError": {index, ie.wire()}},
		msg:  fmt.Sprintf("Error processing Instruction %d: %s", index, ie.text()),
	}
}
