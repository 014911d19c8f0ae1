package payout

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"

	"github.com/node3/node3"
)

// NewClient returns a solana-go RPC client for endpoint whose errors never
// carry the endpoint's secrets. solana-go quotes the full URL (query,
// path, userinfo and all) in its transport and HTTP errors; RPC providers
// put API keys there. Every call of the client goes through one
// JSON-RPC client, and this wraps it: an error's text is rewritten with
// node3.RedactURLText, a JSON-RPC error (*jsonrpc.RPCError) keeps its type
// and code for the engine to classify, and errors.Is still sees context
// cancellation and deadlines. Use it for every chain the node talks to.
func NewClient(endpoint string) *rpc.Client {
	return rpc.NewWithCustomRPCClient(redactingRPC{inner: rpc.New(endpoint), url: endpoint})
}

// redactingRPC is the JSON-RPC client under an *rpc.Client with its errors
// made safe to log and to show.
type redactingRPC struct {
	inner *rpc.Client // solana-go's own, reached through its raw calls
	url   string
}

func (c redactingRPC) Close() error { return c.inner.Close() }

func (c redactingRPC) CallForInto(ctx context.Context, out any, method string, params []any) error {
	return c.clean(c.inner.RPCCallForInto(ctx, out, method, params))
}

func (c redactingRPC) CallWithCallback(ctx context.Context, method string, params []any, cb func(*http.Request, *http.Response) error) error {
	return c.clean(c.inner.RPCCallWithCallback(ctx, method, params, cb))
}

func (c redactingRPC) CallBatch(ctx context.Context, reqs jsonrpc.RPCRequests) (jsonrpc.RPCResponses, error) {
	res, err := c.inner.RPCCallBatch(ctx, reqs)
	for _, r := range res {
		if r != nil && r.Error != nil {
			r.Error = c.cleanRPC(r.Error)
		}
	}
	return res, c.clean(err)
}

func (c redactingRPC) clean(err error) error {
	if err == nil {
		return nil
	}
	var re *jsonrpc.RPCError
	if errors.As(err, &re) {
		return c.cleanRPC(re)
	}
	return &redactedError{msg: node3.RedactURLText(dropBodyExcerpt(err.Error()), c.url), cause: err}
}

// bodyExcerpt starts the part of a decode error where solana-go's JSON
// decoder quotes up to 50 bytes of the answer around the fault. A node or
// proxy may echo the request URL there, cut anywhere (so a secret could
// show in part, which no replacement catches); it is dropped.
const bodyExcerpt = ", error found in #"

func dropBodyExcerpt(s string) string {
	if i := strings.Index(s, bodyExcerpt); i >= 0 {
		return s[:i] + " (answer not shown)"
	}
	return s
}

// cleanRPC copies a JSON-RPC error with its message redacted (a node or a
// proxy may echo the URL it was called on).
func (c redactingRPC) cleanRPC(re *jsonrpc.RPCError) *jsonrpc.RPCError {
	cp := *re
	cp.Message = node3.RedactURLText(re.Message, c.url)
	return &cp
}

// redactedError is an rpc client error with the endpoint's secrets taken
// out of its text. It has no Unwrap, so that nothing can reach the text
// of the original (which quotes the URL); Is answers for it.
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }

// Is lets errors.Is see what the cause is (context.Canceled,
// context.DeadlineExceeded, net errors' sentinels).
func (e *redactedError) Is(target error) bool { return errors.Is(e.cause, target) }
