package p2p

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/node3/node3"
)

func workSeeds(f *testing.F) [][]byte {
	g := testGrant("job-1", fuzzNow)
	capa := testCapacity()
	capa.Seq = 1
	var out [][]byte
	for _, m := range []WorkMessage{
		{Type: WorkPing},
		{Type: WorkCapacity, Capacity: &capa},
		{Type: WorkGrant, Grant: &g},
		{Type: WorkAck, Ack: &Ack{JobID: "job-1", Attempt: 1}},
		{Type: WorkDecline, Decline: &Decline{JobID: "job-1", Attempt: 1, Reason: "busy"}},
		{Type: WorkRevoke, Revoke: &Revoke{JobID: "job-1", Attempt: 1, Reason: "cancelled"}},
	} {
		out = append(out, workJSON(f, m))
	}
	return append(out,
		[]byte(`{"v":1,"type":"ack","ack":{"job_id":"j","attempt":1},"capacity":{"seq":1}}`),
		[]byte(`{"v":2,"type":"ping"}`),
		[]byte(`{"v":1,"type":"grant","grant":{"job":{"id":"j","job_type":"noop","status":"accepted"},"attempt":1}}`),
		[]byte(`null`),
	)
}

// FuzzDecodeWorkMessage: accepted ⇒ within its type's size, exactly the
// body its type names, and a fixed point of encode∘decode.
func FuzzDecodeWorkMessage(f *testing.F) {
	for _, s := range workSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeWorkMessage(data)
		if err != nil {
			if node3.ErrorCode(err) != node3.CodeInvalid && node3.ErrorCode(err) != node3.CodeTooLarge {
				t.Fatalf("error without a client code: %v", err)
			}
			return
		}
		if len(data) > m.Type.maxSize() {
			t.Fatalf("accepted %d bytes of %s", len(data), m.Type)
		}
		body, err := m.bodyType()
		if err != nil || (m.Type != WorkPing && body != m.Type) || (m.Type == WorkPing && body != "") {
			t.Fatalf("type %s with body %q (%v)", m.Type, body, err)
		}
		if !m.Type.fromProvider() && !m.Type.fromCoordinator() {
			t.Fatalf("unknown type %q accepted", m.Type)
		}
		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeWorkMessage(enc)
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("round trip changed the message:\n%s\n%s", enc, enc2)
		}
	})
}

// FuzzReadWorkMessage: from any byte stream, every message read is valid
// and allowed in its direction; a failure is a protocol violation with a
// reason, or (only) the input running out.
func FuzzReadWorkMessage(f *testing.F) {
	for _, s := range workSeeds(f) {
		f.Add(frame(f, s), true)
		f.Add(frame(f, s, s), false)
	}
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, true)
	f.Add([]byte{1, 2, '{', '}'}, false)
	f.Add([]byte("GET / HTTP/1.1\r\n"), true)
	const max = 8 << 10
	f.Fuzz(func(t *testing.T, data []byte, fromProvider bool) {
		r := bufio.NewReader(bytes.NewReader(data))
		for range 64 {
			m, reason, err := readWorkMessage(r, max, fromProvider, nil)
			if err != nil {
				if reason == "" && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("failure without a reason: %v", err)
				}
				return
			}
			if reason != "" {
				t.Fatalf("reason %q without an error", reason)
			}
			if err := m.check(); err != nil {
				t.Fatalf("invalid message read: %v", err)
			}
			if fromProvider && !m.Type.fromProvider() || !fromProvider && !m.Type.fromCoordinator() {
				t.Fatalf("%s accepted from the wrong side", m.Type)
			}
		}
	})
}
