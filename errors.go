package node3

import (
	"errors"
	"fmt"
)

// Code classifies an error for the edges of the system: the HTTP layer maps
// codes to status codes, the CLI to exit messages. Only those edges look at
// codes; everything else wraps errors with context as usual.
type Code string

// Error codes.
const (
	CodeInvalid       Code = "invalid"       // the request is malformed or out of range
	CodeNotFound      Code = "not_found"     // no such job, agent or record
	CodeConflict      Code = "conflict"      // the state of the thing does not allow the call
	CodeUnprocessable Code = "unprocessable" // well-formed, but contradicts an earlier request (an idempotency key reused for another)
	CodeUnauthorized  Code = "unauthorized"  // no or unknown credentials
	CodeForbidden     Code = "forbidden"     // known credentials, not allowed
	CodeUnavailable   Code = "unavailable"   // shutting down, overloaded: try again
	CodeTooLarge      Code = "too_large"     // a body or field over its limit
	CodeRateLimited   Code = "rate_limited"  // over a request limit: try again after a while
	CodeInternal      Code = "internal"      // a bug or an I/O failure
)

// Error is an error with a Code and a message safe to show to a caller.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the caller-safe message of the first *Error in err's
// chain, or a generic message for internal errors, which may carry paths
// or other details that do not belong in a response.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Refused reports whether err is a refusal by the other side — the job
// is not, or no longer, the caller's (CodeConflict, CodeNotFound,
// CodeForbidden) — rather than a failure to reach it.
func Refused(err error) bool {
	switch ErrorCode(err) {
	case CodeConflict, CodeNotFound, CodeForbidden:
		return true
	}
	return false
}
