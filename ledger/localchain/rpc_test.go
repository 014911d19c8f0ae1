package localchain

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"
)

func TestIDIsEchoedExactly(t *testing.T) {
	e := newEnv(t, Config{})
	for _, id := range []string{
		`"6ba7b810-9dad-11d1-80b4-00c04fd430c8"`, `""`, `"\u00e9t\u00e9"`,
		`0`, `42`, `18446744073709551615`, `-7`, `1.5`, `1e3`, `null`,
	} {
		_, body := e.post(`{"jsonrpc":"2.0","id":` + id + `,"method":"getSlot"}`)
		var resp map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &resp); err != nil {
			t.Fatalf("id %s: %v: %s", id, err, body)
		}
		if got := string(resp["id"]); got != id {
			t.Errorf("id %s echoed as %s", id, got)
		}
		if string(resp["jsonrpc"]) != `"2.0"` || resp["result"] == nil || resp["error"] != nil || len(resp) != 3 {
			t.Errorf("id %s: response %s", id, body)
		}
	}

	// Batches answer in order, each with its own id.
	status, body := e.post(`[{"jsonrpc":"2.0","id":"a","method":"getSlot"},` +
		`{"jsonrpc":"2.0","id":7,"method":"nope"},` +
		`{"jsonrpc":"2.0","method":"getSlot"},` + // a notification: no answer
		`{"jsonrpc":"2.0","id":null,"method":"getHealth"}]`)
	if status != http.StatusOK {
		t.Fatalf("batch status %d", status)
	}
	var batch []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &batch); err != nil {
		t.Fatalf("batch: %v: %s", err, body)
	}
	if len(batch) != 3 || string(batch[0]["id"]) != `"a"` || string(batch[1]["id"]) != `7` || string(batch[2]["id"]) != `null` {
		t.Fatalf("batch answer %s", body)
	}
	if !strings.Contains(string(batch[1]["error"]), `-32601`) || string(batch[2]["result"]) != `"ok"` {
		t.Errorf("batch answer %s", body)
	}

	// Through the client's own batch call too.
	resps, err := e.client.RPCCallBatch(ctxT(t), jsonrpc.RPCRequests{
		jsonrpc.NewRequest("getHealth"),
		jsonrpc.NewRequest("getMinimumBalanceForRentExemption", 0),
	})
	if err != nil || len(resps) != 2 || string(resps[1].Result) != "890880" {
		t.Errorf("client batch = %v, %v", resps, err)
	}

	// Only notifications: nothing to answer.
	if status, body := e.post(`{"jsonrpc":"2.0","method":"getSlot"}`); status != http.StatusOK || body != "" {
		t.Errorf("notification answered %d %q", status, body)
	}
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t, Config{MaxRequestBytes: 4096})
	cases := []struct {
		name, body string
		code       int
		id         string
	}{
		{"malformed json", `{"jsonrpc":"2.0","id":1,"method":`, codeParseError, `null`},
		{"malformed batch", `[{"jsonrpc":"2.0","id":1,"method":"getSlot"},`, codeParseError, `null`},
		{"empty body", ``, codeParseError, `null`},
		{"empty batch", `[]`, codeInvalidRequest, `null`},
		{"not an object", `42`, codeInvalidRequest, `null`},
		{"no version", `{"id":1,"method":"getSlot"}`, codeInvalidRequest, `1`},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"getSlot"}`, codeInvalidRequest, `1`},
		{"object id", `{"jsonrpc":"2.0","id":{},"method":"getSlot"}`, codeInvalidRequest, `null`},
		{"method not a string", `{"jsonrpc":"2.0","id":1,"method":5}`, codeInvalidRequest, `1`},
		{"unknown method", `{"jsonrpc":"2.0","id":"x","method":"getEverything"}`, codeMethodNotFound, `"x"`},
		{"params object", `{"jsonrpc":"2.0","id":1,"method":"getBalance","params":{"a":1}}`, codeInvalidParams, `1`},
		{"param type", `{"jsonrpc":"2.0","id":1,"method":"getBalance","params":[5]}`, codeInvalidParams, `1`},
		{"bad pubkey", `{"jsonrpc":"2.0","id":1,"method":"getBalance","params":["xyz"]}`, codeInvalidParams, `1`},
		{"missing param", `{"jsonrpc":"2.0","id":1,"method":"getBalance"}`, codeInvalidParams, `1`},
		{"too many params", `{"jsonrpc":"2.0","id":1,"method":"getHealth","params":[1]}`, codeInvalidParams, `1`},
		{"bad commitment", `{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"commitment":"soon"}]}`, codeInvalidParams, `1`},
		{"config not object", `{"jsonrpc":"2.0","id":1,"method":"getSlot","params":["finalized"]}`, codeInvalidParams, `1`},
		{"negative lamports", `{"jsonrpc":"2.0","id":1,"method":"requestAirdrop","params":["11111111111111111111111111111111",-1]}`, codeInvalidParams, `1`},
		{"bad base64 tx", `{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["!!",{"encoding":"base64"}]}`, codeInvalidParams, `1`},
		{"bad base58 tx", `{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["0OIl"]}`, codeInvalidParams, `1`},
		{"garbage tx", `{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["AQID",{"encoding":"base64"}]}`, codeInvalidParams, `1`},
		{"unknown encoding", `{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["AQID",{"encoding":"hex"}]}`, codeInvalidParams, `1`},
		{"oversized tx", `{"jsonrpc":"2.0","id":1,"method":"sendTransaction","params":["` + strings.Repeat("A", 2000) + `",{"encoding":"base64"}]}`, codeInvalidParams, `1`},
		{"too many statuses", `{"jsonrpc":"2.0","id":1,"method":"getSignatureStatuses","params":[[` + strings.Repeat(`"1",`, 256) + `"1"]]}`, codeInvalidParams, `1`},
		{"min context slot", `{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"minContextSlot":99}]}`, codeMinContextSlotNotReach, `1`},
	}
	for _, tc := range cases {
		status, body := e.post(tc.body)
		if status != http.StatusOK {
			t.Errorf("%s: HTTP %d", tc.name, status)
			continue
		}
		var resp struct {
			ID    json.RawMessage `json:"id"`
			Error *rpcError       `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &resp); err != nil || resp.Error == nil {
			t.Errorf("%s: answer %s (%v)", tc.name, body, err)
			continue
		}
		if resp.Error.Code != tc.code || string(resp.ID) != tc.id {
			t.Errorf("%s: code %d id %s, want %d %s (%s)", tc.name, resp.Error.Code, resp.ID, tc.code, tc.id, resp.Error.Message)
		}
	}

	// HTTP-level refusals.
	if status, _ := e.post(`{"jsonrpc":"2.0","id":1,"method":"getSlot","pad":"` + strings.Repeat("x", 5000) + `"}`); status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: HTTP %d, want 413", status)
	}
	req, _ := http.NewRequest(http.MethodGet, e.url, nil)
	if resp, err := e.http.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest(http.MethodPost, e.url, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := e.http.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest(http.MethodGet, e.url+"/health", nil)
	if resp, err := e.http.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health: %v %v", resp, err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Errorf("GET /health = %q", b)
		}
	}
}

func TestServeAndShutdown(t *testing.T) {
	c := New(Config{SlotInterval: -1})
	defer c.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, ln) }()
	client := rpc.New("http://" + ln.Addr().String())
	defer client.Close()
	if h, err := client.GetHealth(ctxT(t)); err != nil || h != "ok" {
		t.Fatalf("getHealth over Serve: %q %v", h, err)
	}
	// A request held by a stall fault does not hold up shutdown.
	if _, err := c.Faults().Add(FaultRule{Kind: FaultStall}); err != nil {
		t.Fatal(err)
	}
	stalled := make(chan error, 1)
	go func() {
		_, err := client.GetSlot(context.Background(), "")
		stalled <- err
	}()
	time.Sleep(30 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("shutdown took %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if err := <-stalled; err == nil {
		t.Error("stalled request got an answer")
	}

	// Closing the chain stops a server too.
	c2 := New(Config{SlotInterval: -1})
	done2 := make(chan error, 1)
	go func() { done2 <- c2.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	time.Sleep(20 * time.Millisecond)
	_ = c2.Close()
	select {
	case err := <-done2:
		if err != nil {
			t.Errorf("ListenAndServe returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after Close")
	}
}

// TestResponsesDecodeStrictly checks that every answer has exactly the
// members solana-go's strict decoder accepts.
func TestResponsesDecodeStrictly(t *testing.T) {
	e := newEnv(t, Config{})
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"getLatestBlockhash"}`,
		`{"jsonrpc":"2.0","id":1,"method":"nope"}`,
		`not json`,
	} {
		_, out := e.post(body)
		dec := json.NewDecoder(bytes.NewReader([]byte(out)))
		dec.DisallowUnknownFields()
		var r jsonrpc.RPCResponse
		if err := dec.Decode(&r); err != nil {
			t.Errorf("%s: %v: %s", body, err, out)
		}
	}
}
