package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/node3/node3"
)

// FuzzClientAnswer feeds arbitrary answers (status and body) to the
// client's decoder, directly and through a real HTTP server. An error
// status is always a *node3.Error whose code follows the status and whose
// message is one line of valid UTF-8 with at most maxAnswerMessage bytes
// of the server's text (a coordinator's, or a proxy's, answer is printed
// on the operator's terminal); a 2xx body is taken only if it is JSON of
// the expected shape, and then survives a round trip.
func FuzzClientAnswer(f *testing.F) {
	for _, c := range []struct {
		status int
		body   string
	}{
		{200, `{"job":{"job_id":"j1","status":"pending","reward_sol":0.1}}`},
		{200, `{"job":null}`},
		{200, `not json`},
		{200, ``},
		{404, `{"error":"job j1 not found","code":"not_found"}`},
		{409, `{"error":"","code":"conflict"}`},
		{500, "<html>\x1b[31mboom\x1b[0m\n" + strings.Repeat("é", 400) + "</html>"},
		{503, `{"error":"overloaded\r\nSet-Cookie: x"}`},
		{401, "\xff\xfe"},
		{302, `{"error":"moved"}`},
	} {
		f.Add(c.status, []byte(c.body))
	}
	var status atomic.Int64
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write(body.Load().([]byte))
	}))
	f.Cleanup(srv.Close)
	c, err := NewClient(ClientConfig{BaseURL: srv.URL, AdminKey: "admin"})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, st int, raw []byte) {
		if st < 200 || st > 599 {
			st = 200 + (st%400+400)%400
		}
		var out JobResponse
		err := decodeAnswer("GET", "/api/jobs/j1", st, raw, &out)
		if st >= 300 {
			checkAnswerError(t, st, err)
			var eb errorBody
			if json.Unmarshal(raw, &eb) == nil && eb.Error != "" && eb.Error == answerText(eb.Error) {
				if !strings.HasSuffix(err.Error(), " "+eb.Error) {
					t.Fatalf("the server's message %q is not in %q", eb.Error, err)
				}
			}
		} else if err == nil {
			if !json.Valid(raw) {
				t.Fatalf("took a body that is not JSON: %q", raw)
			}
			b, merr := json.Marshal(out)
			var again JobResponse
			if merr != nil || json.Unmarshal(b, &again) != nil {
				t.Fatalf("decoded answer does not round-trip: %v %s", merr, b)
			}
		} else if !strings.Contains(err.Error(), "decode response") {
			t.Fatalf("a 2xx that does not decode: %v", err)
		}

		// The same through HTTP (1xx and 204/304 bodies are the
		// transport's business; only the error rule is checked).
		status.Store(int64(st))
		body.Store(raw)
		_, err = c.Wallet(context.Background())
		if st >= 300 && st != 304 {
			checkAnswerError(t, st, err)
		}
	})
}

func checkAnswerError(t *testing.T, st int, err error) {
	t.Helper()
	var ne *node3.Error
	if !errors.As(err, &ne) {
		t.Fatalf("status %d: error %v is not a *node3.Error", st, err)
	}
	if ne.Code != codeOf(st) {
		t.Fatalf("status %d: code %s, want %s", st, ne.Code, codeOf(st))
	}
	msg := ne.Message
	if !utf8.ValidString(msg) || strings.ContainsFunc(msg, unicode.IsControl) {
		t.Fatalf("status %d: message is not one clean line: %q", st, msg)
	}
	if !strings.Contains(msg, fmt.Sprintf(": %d", st)) {
		t.Fatalf("status %d: message %q does not say the status", st, msg)
	}
	if len(msg) > len("GET /api/admin/wallet: 599 ")+maxAnswerMessage+len("…") {
		t.Fatalf("status %d: message of %d bytes", st, len(msg))
	}
}
