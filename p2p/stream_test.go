package p2p

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/node3/node3"
)

var transports = map[string][]string{
	"tcp":  {"/ip4/127.0.0.1/tcp/0"},
	"quic": {"/ip4/127.0.0.1/udp/0/quic-v1"},
}

func streamPair(t *testing.T, serverFrame, clientFrame int, listen ...string) (server, client *Node) {
	t.Helper()
	net := testNetwork(t)
	scfg := testConfig(t, net)
	scfg.MaxFrameSize = serverFrame
	ccfg := testConfig(t, net)
	ccfg.MaxFrameSize = clientFrame
	if len(listen) > 0 {
		scfg.ListenAddrs, ccfg.ListenAddrs = listen, listen
	}
	server, client = startNode(t, scfg), startNode(t, ccfg)
	connect(t, client, server)
	return server, client
}

func TestStreamRoundTrip(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) { testStreamRoundTrip(t, listen) })
	}
}

func testStreamRoundTrip(t *testing.T, listen []string) {
	server, client := streamPair(t, 1024, 4<<20, listen...)
	echo := protocol.ID("/node3/test/echo/1")
	slow := protocol.ID("/node3/test/slow/1")
	fails := protocol.ID("/node3/test/fails/1")
	started := make(chan struct{}, 1)
	server.Handle(echo, func(ctx context.Context, from peer.ID, req []byte) ([]byte, error) {
		if from != client.ID() {
			return nil, fmt.Errorf("from %s", from)
		}
		return append([]byte("echo:"), req...), nil
	})
	server.Handle(slow, func(ctx context.Context, _ peer.ID, _ []byte) ([]byte, error) {
		started <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	server.Handle(fails, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
		if string(req) == "conflict" {
			return nil, node3.Errorf(node3.CodeConflict, "job j1 is already taken")
		}
		return nil, errors.New("disk on fire at /var/secret")
	})
	ctx := context.Background()

	t.Run("echo", func(t *testing.T) {
		for _, req := range [][]byte{[]byte("hi"), {}, bytes.Repeat([]byte{7}, 1000)} {
			resp, err := client.Request(ctx, server.ID(), echo, req)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resp, append([]byte("echo:"), req...)) {
				t.Fatalf("response %q", resp)
			}
		}
	})
	t.Run("oversize request rejected by the server", func(t *testing.T) {
		for _, size := range []int{2048, 3 << 20} { // small, and larger than the stream window
			start := time.Now()
			_, err := client.Request(ctx, server.ID(), echo, bytes.Repeat([]byte{1}, size))
			var re *RemoteError
			if !errors.As(err, &re) || re.Code != node3.CodeTooLarge || node3.ErrorCode(err) != node3.CodeTooLarge {
				t.Fatalf("size %d: err = %v", size, err)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("size %d: took %s", size, time.Since(start))
			}
		}
	})
	t.Run("oversize request refused locally", func(t *testing.T) {
		_, err := server.Request(ctx, client.ID(), echo, make([]byte, 1025))
		if node3.ErrorCode(err) != node3.CodeTooLarge {
			t.Fatalf("err = %v", err)
		}
		var re *RemoteError
		if errors.As(err, &re) {
			t.Fatal("local refusal reported as remote")
		}
	})
	t.Run("deadline honoured", func(t *testing.T) {
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := client.Request(dctx, server.ID(), slow, []byte("x"))
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if took > 2*time.Second {
			t.Fatalf("returned after %s", took)
		}
		<-started
	})
	t.Run("cancel honoured", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		go func() { <-started; cancel() }()
		_, err := client.Request(cctx, server.ID(), slow, []byte("x"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("typed error frames", func(t *testing.T) {
		_, err := client.Request(ctx, server.ID(), fails, []byte("conflict"))
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != node3.CodeConflict || re.Peer != server.ID() || re.Protocol != fails {
			t.Fatalf("err = %#v", err)
		}
		if node3.ErrorCode(err) != node3.CodeConflict || node3.ErrorMessage(err) != "job j1 is already taken" {
			t.Fatalf("code %s message %q", node3.ErrorCode(err), node3.ErrorMessage(err))
		}
		_, err = client.Request(ctx, server.ID(), fails, []byte("boom"))
		if node3.ErrorCode(err) != node3.CodeInternal || strings.Contains(err.Error(), "secret") {
			t.Fatalf("internal error leaked or miscoded: %v", err)
		}
	})
	t.Run("unknown protocol", func(t *testing.T) {
		if _, err := client.Request(ctx, server.ID(), "/node3/test/none/1", nil); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestTypedProtocols(t *testing.T) {
	server, client := streamPair(t, 0, 0)
	lease := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	server.HandleClaim(func(_ context.Context, from peer.ID, req ClaimRequest) (ClaimResponse, error) {
		if req.JobID == "taken" {
			return ClaimResponse{Reason: "already assigned"}, nil
		}
		if len(req.GPUs) != 1 || from != client.ID() {
			return ClaimResponse{}, node3.Errorf(node3.CodeInvalid, "bad claim")
		}
		return ClaimResponse{Granted: true, LeaseExpiresAt: lease}, nil
	})
	reports := make(chan Report, 4) // the network is no happens-before edge for the race detector
	server.HandleReport(func(_ context.Context, _ peer.ID, r Report) (ReportAck, error) {
		reports <- r
		return ReportAck{LeaseExpiresAt: lease}, nil
	})
	now := time.Now()
	board := make([]JobPosting, 0, 30)
	for i := range 30 {
		id := fmt.Sprintf("job-%02d", i)
		board = append(board, JobPosting{Kind: PostingPosted, JobID: id, Job: testJob(id, now)})
	}
	server.HandleSync(func(_ context.Context, _ peer.ID, req SyncRequest) (SyncResponse, error) {
		var out []JobPosting
		for _, p := range board {
			if p.JobID > req.After {
				out = append(out, p)
			}
		}
		return SyncResponse{Postings: out}, nil
	})
	ctx := context.Background()
	gpu := testAdvert(client.ID(), 1, now).GPUs

	resp, err := client.RequestClaim(ctx, server.ID(), ClaimRequest{JobID: "job-1", GPUs: gpu})
	if err != nil || !resp.Granted || !resp.LeaseExpiresAt.Equal(lease) || resp.JobID != "job-1" {
		t.Fatalf("claim: %+v %v", resp, err)
	}
	resp, err = client.RequestClaim(ctx, server.ID(), ClaimRequest{JobID: "taken", GPUs: gpu})
	if err != nil || resp.Granted || resp.Reason != "already assigned" {
		t.Fatalf("denied claim: %+v %v", resp, err)
	}
	if _, err := client.RequestClaim(ctx, server.ID(), ClaimRequest{JobID: "bad/id"}); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("bad claim: %v", err)
	}

	ack, err := client.SendReport(ctx, server.ID(), Report{Kind: ReportCompleted, JobID: "job-1",
		Result: &node3.JobResult{ExecutionTime: 1.5, ExitCode: 0, Output: "ok"}})
	if err != nil || ack.JobID != "job-1" || !ack.LeaseExpiresAt.Equal(lease) {
		t.Fatalf("report: %+v %v", ack, err)
	}
	gotReport := <-reports
	if gotReport.Result == nil || gotReport.Result.Output != "ok" || gotReport.SentAt.IsZero() {
		t.Fatalf("server got %+v", gotReport)
	}
	if _, err := client.SendReport(ctx, server.ID(), Report{Kind: ReportCompleted, JobID: "job-1"}); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("completed report without result: %v", err)
	}

	// Paging through the board, 7 at a time.
	var all []JobPosting
	after := ""
	for range 10 {
		page, err := client.RequestSync(ctx, server.ID(), SyncRequest{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Postings...)
		if !page.More {
			break
		}
		after = page.Postings[len(page.Postings)-1].JobID
	}
	if len(all) != len(board) {
		t.Fatalf("synced %d postings, want %d", len(all), len(board))
	}
	for _, p := range all {
		if p.Coordinator != server.ID() || p.Seq == 0 || p.Job == nil {
			t.Fatalf("posting not filled: %+v", p)
		}
	}
}

func TestStreamLargeFrames(t *testing.T) {
	server, client := streamPair(t, 0, 0)
	p := protocol.ID("/node3/test/big/1")
	server.Handle(p, func(_ context.Context, _ peer.ID, req []byte) ([]byte, error) {
		return bytes.Repeat([]byte{'r'}, DefaultMaxFrameSize), nil
	})
	req := bytes.Repeat([]byte{'q'}, DefaultMaxFrameSize)
	resp, err := client.Request(context.Background(), server.ID(), p, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp) != DefaultMaxFrameSize {
		t.Fatalf("response of %d bytes", len(resp))
	}
}

func TestSyncCutToFrame(t *testing.T) {
	server, client := streamPair(t, 8<<10, 8<<10)
	now := time.Now()
	server.HandleSync(func(context.Context, peer.ID, SyncRequest) (SyncResponse, error) {
		out := make([]JobPosting, 50)
		for i := range out {
			id := fmt.Sprintf("job-%02d", i)
			out[i] = JobPosting{Kind: PostingPosted, JobID: id, Job: testJob(id, now)}
		}
		return SyncResponse{Postings: out}, nil
	})
	page, err := client.RequestSync(context.Background(), server.ID(), SyncRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !page.More || len(page.Postings) == 0 || len(page.Postings) >= 50 {
		t.Fatalf("got %d postings, more=%v", len(page.Postings), page.More)
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 300)} {
		buf.Reset()
		if err := writeFrame(&buf, frameData, p); err != nil {
			t.Fatal(err)
		}
		k, got, err := readFrame(bufio.NewReader(&buf), 1000)
		if err != nil || k != frameData || !bytes.Equal(got, p) {
			t.Fatalf("round trip %q: %v %q", p, err, got)
		}
	}
	buf.Reset()
	_ = writeFrame(&buf, frameData, make([]byte, 100))
	if _, _, err := readFrame(bufio.NewReader(&buf), 99); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	// A declared length of 2^63 must not allocate.
	hdr := []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(hdr)), 1<<20); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("huge length: %v", err)
	}
	for _, bad := range [][]byte{{}, {2, 0}, {0}, {0, 5, 'a'}, {0, 0x80}} {
		if _, _, err := readFrame(bufio.NewReader(bytes.NewReader(bad)), 100); err == nil {
			t.Fatalf("%v: no error", bad)
		}
	}
	ef := decodeErrorFrame([]byte(`{"code":"pwned","message":"a\u0000b"}`))
	if ef.Code != node3.CodeInternal || strings.ContainsRune(ef.Message, 0) {
		t.Fatalf("error frame not sanitised: %+v", ef)
	}
}
