package p2p

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/node3/node3"
)

// Fuzz targets: every decoder of outside input must not panic, must bound
// what it accepts, and what it accepts must survive a re-encode.

var fuzzNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fuzzPeer() string {
	return "12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5"
}

func FuzzDecodeJobPosting(f *testing.F) {
	id := newPeerID(f)
	f.Add(mustJSON(f, testPosting(id, "job-1", 1, fuzzNow)))
	st := testPosting(id, "job-1", 2, fuzzNow)
	st.Kind, st.Job, st.Status, st.Provider = PostingStatus, nil, node3.StatusAccepted, id
	f.Add(mustJSON(f, st))
	f.Add([]byte(`{"v":1,"kind":"posted","job_id":"x","coordinator":"` + fuzzPeer() + `"}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"v":1,"job":{"env":{"A":"\u0000"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeJobPosting(data)
		if len(data) > MaxJobMessageSize && err == nil {
			t.Fatal("accepted an oversized posting")
		}
		if err != nil {
			return
		}
		again, err := DecodeJobPosting(mustJSON(t, p))
		if err != nil {
			t.Fatalf("re-encoded posting does not decode: %v", err)
		}
		if again.JobID != p.JobID || again.Seq != p.Seq || again.Coordinator != p.Coordinator {
			t.Fatal("round trip changed the posting")
		}
	})
}

func FuzzDecodeJobMessage(f *testing.F) {
	id := newPeerID(f)
	one := testPosting(id, "job-1", 1, fuzzNow)
	st := testPosting(id, "job-2", 2, fuzzNow)
	st.Kind, st.Job, st.Status = PostingStatus, nil, node3.StatusCompleted
	f.Add(mustJSON(f, one))
	f.Add(mustJSON(f, PostingBatch{Version: Version, Coordinator: id, Postings: []JobPosting{one, st}}))
	f.Add([]byte(`{"v":1,"coordinator":"` + fuzzPeer() + `","postings":[]}`))
	f.Add([]byte(`{"v":1,"coordinator":"` + fuzzPeer() + `","postings":[{"v":2}]}`))
	f.Add([]byte(`{"v":1,"postings":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := DecodeJobMessage(data)
		if len(data) > MaxJobMessageSize && err == nil {
			t.Fatal("accepted an oversized message")
		}
		if err != nil {
			return
		}
		if len(ps) == 0 || len(ps) > MaxBatchPostings {
			t.Fatalf("accepted %d postings", len(ps))
		}
		again, err := DecodeJobMessage(mustJSON(t, PostingBatch{Version: Version, Coordinator: ps[0].Coordinator, Postings: ps}))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		for i := range ps {
			if ps[i].Coordinator != ps[0].Coordinator {
				t.Fatal("accepted a batch of several coordinators")
			}
			if again[i].JobID != ps[i].JobID || again[i].Seq != ps[i].Seq {
				t.Fatal("round trip changed a posting")
			}
		}
	})
}

func FuzzDecodeAdvert(f *testing.F) {
	id := newPeerID(f)
	f.Add(mustJSON(f, testAdvert(id, 1, fuzzNow)))
	a := testAdvert(id, 2, fuzzNow)
	a.GPUs, a.Wallet = nil, ""
	f.Add(mustJSON(f, a))
	f.Add([]byte(`{"v":1,"peer_id":"` + fuzzPeer() + `","seq":1,"issued_at":"2026-01-01T00:00:00Z","ttl_seconds":5}`))
	f.Add([]byte(`{"v":1,"gpus":[{"index":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAdvert(data)
		if len(data) > MaxAdvertMessageSize && err == nil {
			t.Fatal("accepted an oversized advert")
		}
		if err != nil {
			return
		}
		if len(a.GPUs) > node3.MaxGPUCount || a.TTLSecs < 1 || a.Seq == 0 {
			t.Fatalf("accepted out-of-range advert %+v", a)
		}
		if _, err := DecodeAdvert(mustJSON(t, a)); err != nil {
			t.Fatalf("re-encoded advert does not decode: %v", err)
		}
	})
}

func FuzzDecodeClaim(f *testing.F) {
	f.Add([]byte(`{"v":1,"job_id":"job-1","gpus":[{"index":0,"vendor":"NVIDIA","model":"H200","memory_bytes":1}]}`), false)
	f.Add([]byte(`{"v":1,"job_id":"job-1","granted":true,"lease_expires_at":"2026-01-01T00:00:00Z"}`), true)
	f.Add([]byte(`{"v":1,"job_id":"job-1","granted":false,"reason":"taken"}`), true)
	f.Add([]byte(`{"v":1,"job_id":"job-1","wallet_address":"11111111111111111111111111111111"}`), false)
	f.Fuzz(func(t *testing.T, data []byte, response bool) {
		if response {
			r, err := DecodeClaimResponse(data)
			if err == nil {
				if r.Granted && r.LeaseExpiresAt.IsZero() {
					t.Fatal("grant without lease")
				}
				if _, err := DecodeClaimResponse(mustJSON(t, r)); err != nil {
					t.Fatalf("round trip: %v", err)
				}
			}
			return
		}
		r, err := DecodeClaimRequest(data)
		if len(data) > maxClaimSize && err == nil {
			t.Fatal("accepted an oversized claim")
		}
		if err == nil {
			if _, err := DecodeClaimRequest(mustJSON(t, r)); err != nil {
				t.Fatalf("round trip: %v", err)
			}
		}
	})
}

func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"heartbeat","job_id":"job-1"}`), false)
	f.Add([]byte(`{"v":1,"kind":"completed","job_id":"job-1","result":{"execution_time":1.5,"exit_code":0,"metrics":{"tflops":3}}}`), false)
	f.Add([]byte(`{"v":1,"kind":"failed","job_id":"job-1","reason":"oom"}`), false)
	f.Add([]byte(`{"v":1,"job_id":"job-1","lease_expires_at":"2026-01-01T00:00:00Z","cancel":true}`), true)
	f.Fuzz(func(t *testing.T, data []byte, ack bool) {
		if ack {
			a, err := DecodeReportAck(data)
			if err == nil {
				if _, err := DecodeReportAck(mustJSON(t, a)); err != nil {
					t.Fatalf("round trip: %v", err)
				}
			}
			return
		}
		r, err := DecodeReport(data)
		if len(data) > maxReportSize && err == nil {
			t.Fatal("accepted an oversized report")
		}
		if err != nil {
			return
		}
		if r.Kind == ReportCompleted && r.Result == nil {
			t.Fatal("completed without result")
		}
		if _, err := DecodeReport(mustJSON(t, r)); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzDecodeSync(f *testing.F) {
	id := newPeerID(f)
	resp := SyncResponse{Version: 1, Postings: []JobPosting{testPosting(id, "job-1", 1, fuzzNow)}, More: true}
	f.Add(mustJSON(f, resp), true)
	f.Add([]byte(`{"v":1,"postings":[]}`), true)
	f.Add([]byte(`{"v":1,"after":"job-1","limit":7}`), false)
	f.Add([]byte(`{"v":1,"limit":-1}`), false)
	f.Fuzz(func(t *testing.T, data []byte, response bool) {
		if response {
			r, err := DecodeSyncResponse(data, 1<<20)
			if err == nil {
				if len(r.Postings) > maxSyncPostings {
					t.Fatal("too many postings accepted")
				}
				if _, err := DecodeSyncResponse(mustJSON(t, r), 2<<20); err != nil {
					t.Fatalf("round trip: %v", err)
				}
			}
			return
		}
		r, err := DecodeSyncRequest(data)
		if err == nil && (r.Limit < 1 || r.Limit > maxSyncLimit) {
			t.Fatalf("limit %d accepted", r.Limit)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = writeFrame(&buf, frameData, []byte("hello"))
	f.Add(buf.Bytes())
	buf.Reset()
	ef, _ := json.Marshal(errorFrame{Code: node3.CodeConflict, Message: "taken"})
	_ = writeFrame(&buf, frameError, ef)
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{1, 3, '{', '}', 0})
	const max = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		kind, payload, err := readFrame(bufio.NewReader(bytes.NewReader(data)), max)
		if err != nil {
			return
		}
		if len(payload) > max || len(payload) > len(data) {
			t.Fatalf("payload of %d bytes from %d input bytes", len(payload), len(data))
		}
		if kind == frameError {
			e := decodeErrorFrame(payload)
			if !knownCodes[e.Code] || len(e.Message) > maxErrorMessage {
				t.Fatalf("unsanitised error frame %+v", e)
			}
			var re error = &RemoteError{Code: e.Code, Message: e.Message}
			var ne *node3.Error
			if !errors.As(re, &ne) || ne.Code != e.Code {
				t.Fatal("RemoteError does not unwrap")
			}
		}
	})
}

// FuzzParseBootstrapFile: any file parses or fails with an error naming a
// line; it never panics, and what it accepts is bounded.
func FuzzParseBootstrapFile(f *testing.F) {
	f.Add("# comment\n\n/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWBhSWnDLNpEGZqjrmb98pGEqBPqUHXSKjGRuDXGMTAoTa\n")
	f.Add("/ip4/1.2.3.4/tcp/1\n")
	f.Add("garbage line\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		infos, err := ParseBootstrapFile(strings.NewReader(s))
		if err != nil {
			if !strings.Contains(err.Error(), "line") {
				t.Fatalf("error names no line: %v", err)
			}
			return
		}
		if len(infos) > strings.Count(s, "\n")+1 {
			t.Fatalf("%d peers from %d lines", len(infos), strings.Count(s, "\n")+1)
		}
	})
}
