package localchain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// JSON-RPC 2.0 and Solana error codes.
const (
	codeParseError             = -32700
	codeInvalidRequest         = -32600
	codeMethodNotFound         = -32601
	codeInvalidParams          = -32602
	codeInternalError          = -32603
	codePreflightFailure       = -32002 // SendTransactionPreflightFailure
	codeSignatureVerification  = -32003 // TransactionSignatureVerificationFailure
	codeNodeUnhealthy          = -32005
	codeUnsupportedTxVersion   = -32015
	codeMinContextSlotNotReach = -32016
)

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message) }

func invalidParams(format string, args ...any) *rpcError {
	return &rpcError{Code: codeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

var nullID = json.RawMessage("null")

// response is a JSON-RPC response. Exactly the four members the spec
// allows: solana-go decodes responses with DisallowUnknownFields.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
	ID      json.RawMessage `json:"id"`
}

func encodeResponse(id json.RawMessage, result any, rerr *rpcError) json.RawMessage {
	if len(id) == 0 {
		id = nullID
	}
	resp := response{JSONRPC: "2.0", ID: id, Error: rerr}
	if rerr == nil {
		b, err := json.Marshal(result)
		if err != nil {
			resp.Error = &rpcError{Code: codeInternalError, Message: "Internal error: " + err.Error()}
		} else {
			resp.Result = b
		}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		// Only the id could be at fault, and it was validated; be safe anyway.
		out, _ = json.Marshal(response{JSONRPC: "2.0", ID: nullID, Error: &rpcError{Code: codeInternalError, Message: "Internal error"}})
	}
	return out
}

// transport is what happens to the HTTP exchange as a whole.
type transport int

const (
	transportAnswer    transport = iota // write the JSON-RPC answer
	transportDrop                       // close the connection, answer nothing
	transportEmpty                      // HTTP 200, empty body
	transportHTTPError                  // HTTP error status
	transportStall                      // hold the request until the client leaves
)

type dispatchResult struct {
	body      []byte // nil when every request was a notification
	transport transport
	status    int // for transportHTTPError
}

// Handler returns the JSON-RPC endpoint: POST with a single request or a
// batch, as Solana's RPC service accepts them. GET /health answers "ok".
func (c *Chain) Handler() http.Handler { return http.HandlerFunc(c.serveHTTP) }

func (c *Chain) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/health" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Used HTTP Method is not allowed. POST is required", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			http.Error(w, "Supplied content type is not allowed. Content-Type: application/json is required", http.StatusUnsupportedMediaType)
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.cfg.MaxRequestBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			http.Error(w, fmt.Sprintf("request body larger than %d bytes", c.cfg.MaxRequestBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	res := c.dispatch(r.Context(), body)
	switch res.transport {
	case transportDrop:
		abortConnection(w)
	case transportEmpty:
		w.WriteHeader(http.StatusOK)
	case transportHTTPError:
		http.Error(w, http.StatusText(res.status)+" (localchain fault injection)", res.status)
	case transportStall:
		select {
		case <-r.Context().Done():
			// The client left, or the server is shutting down: nothing
			// must reach a client that is still there.
			abortConnection(w)
		case <-c.done:
			http.Error(w, "localchain closed", http.StatusServiceUnavailable)
		}
	default:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if res.body != nil {
			_, _ = w.Write(res.body)
		}
	}
}

// abortConnection closes the client's connection without an answer.
func abortConnection(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	// HTTP/2 or a ResponseWriter that cannot be hijacked: net/http's
	// sentinel aborts the response without logging a stack trace.
	panic(http.ErrAbortHandler)
}

// callResult is the outcome of one request object.
type callResult struct {
	resp      json.RawMessage // nil for a notification or when nothing is answered
	transport transport
	status    int  // for transportHTTPError
	ran       bool // the method ran (matters for a dropped answer)
}

// dispatch decodes a request body (one call or a batch) and runs it.
func (c *Chain) dispatch(ctx context.Context, body []byte) dispatchResult {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		if !json.Valid(body) {
			return dispatchResult{body: encodeResponse(nullID, nil, &rpcError{Code: codeParseError, Message: "Parse error"})}
		}
		cr := c.call(ctx, body)
		return dispatchResult{body: cr.resp, transport: cr.transport, status: cr.status}
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		return dispatchResult{body: encodeResponse(nullID, nil, &rpcError{Code: codeParseError, Message: "Parse error"})}
	}
	if len(elems) == 0 {
		return dispatchResult{body: encodeResponse(nullID, nil, &rpcError{Code: codeInvalidRequest, Message: "Invalid request"})}
	}
	// A fault that ends the exchange (drop, empty, HTTP error, stall) stops
	// the batch there; the calls before it have run. A dropped answer lets
	// the rest of the batch run, then drops the whole answer.
	var buf bytes.Buffer
	dropAnswer := false
	n := 0
	for _, e := range elems {
		cr := c.call(ctx, e)
		switch {
		case cr.transport == transportDrop && cr.ran:
			dropAnswer = true
		case cr.transport != transportAnswer:
			return dispatchResult{transport: cr.transport, status: cr.status}
		}
		if cr.resp == nil {
			continue
		}
		if n == 0 {
			buf.WriteByte('[')
		} else {
			buf.WriteByte(',')
		}
		buf.Write(cr.resp)
		n++
	}
	if dropAnswer {
		return dispatchResult{transport: transportDrop}
	}
	if n == 0 {
		return dispatchResult{} // only notifications: nothing to answer
	}
	buf.WriteByte(']')
	return dispatchResult{body: buf.Bytes()}
}

// call runs one JSON-RPC request object (raw is valid JSON), applying the
// fault rules that match its method.
func (c *Chain) call(ctx context.Context, raw json.RawMessage) callResult {
	answer := func(id json.RawMessage, result any, rerr *rpcError) callResult {
		return callResult{resp: encodeResponse(id, result, rerr)}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return answer(nullID, nil, &rpcError{Code: codeInvalidRequest, Message: "Invalid request"})
	}
	id, hasID := obj["id"]
	if hasID && !validID(id) {
		return answer(nullID, nil, &rpcError{Code: codeInvalidRequest, Message: "Invalid request: id must be a string, a number or null"})
	}
	if !bytes.Equal(obj["jsonrpc"], []byte(`"2.0"`)) {
		return answer(id, nil, &rpcError{Code: codeInvalidRequest, Message: `Invalid request: "jsonrpc" must be "2.0"`})
	}
	var method string
	if obj["method"] == nil || json.Unmarshal(obj["method"], &method) != nil {
		return answer(id, nil, &rpcError{Code: codeInvalidRequest, Message: `Invalid request: "method" must be a string`})
	}
	c.log.Debug("localchain: request", "method", method, "id", string(id))

	act := c.faults.decide(method)
	if len(act.fired) > 0 {
		kind := FaultDelay.String()
		switch {
		case act.terminal != nil:
			kind = act.terminal.Kind.String()
		case act.neverLand:
			kind = FaultNeverLand.String()
		}
		c.log.Info("localchain: injecting fault", "method", method, "fault", kind, "delay", act.delay)
	}
	if act.delay > 0 {
		t := time.NewTimer(act.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return callResult{transport: transportDrop} // the client left
		case <-c.done:
			t.Stop()
		}
	}
	run := func() callResult {
		result, rerr := c.invoke(ctx, method, obj["params"], act.neverLand)
		if !hasID {
			return callResult{ran: true}
		}
		cr := answer(id, result, rerr)
		cr.ran = true
		return cr
	}
	if act.terminal == nil {
		return run()
	}
	switch r := act.terminal; r.Kind {
	case FaultDropResponse:
		run()
		return callResult{transport: transportDrop, ran: true}
	case FaultEmpty:
		return callResult{transport: transportEmpty}
	case FaultStall:
		return callResult{transport: transportStall}
	case FaultHTTPError:
		status := r.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		return callResult{transport: transportHTTPError, status: status}
	case FaultRPCError:
		code, msg := r.Code, r.Message
		if code == 0 {
			code = codeNodeUnhealthy
		}
		if msg == "" {
			msg = "Node is unhealthy"
		}
		if !hasID {
			return callResult{}
		}
		return answer(id, nil, &rpcError{Code: code, Message: msg})
	default: // FaultDrop
		return callResult{transport: transportDrop}
	}
}

// validID reports whether a JSON value is an acceptable request id: a
// string, a number or null.
func validID(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	switch b := raw[0]; {
	case b == '"', b == 'n', b == '-', b >= '0' && b <= '9':
		return true
	default:
		return false
	}
}
