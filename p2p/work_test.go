package p2p

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/node3/node3"
)

// workNodes starts a coordinator and a provider that trusts it, connected.
func workNodes(t testing.TB, listen []string, mod func(coord, prov *Config)) (coord, prov *Node) {
	t.Helper()
	net := testNetwork(t)
	cc, pc := testConfig(t, net), testConfig(t, net)
	if listen != nil {
		cc.ListenAddrs, pc.ListenAddrs = listen, listen
	}
	if mod != nil {
		mod(&cc, &pc)
	}
	coord = startNode(t, cc)
	pc.TrustedCoordinators = []peer.ID{coord.ID()}
	prov = startNode(t, pc)
	connect(t, prov, coord)
	return coord, prov
}

// workServer records a coordinator's work streams and what reaches its
// handler. A stream's messages are all in msgs before its end is in ended.
type workServer struct {
	conns chan *WorkConn
	msgs  chan WorkMessage
	ended chan error
}

func newWorkServer(n *Node) *workServer {
	ws := &workServer{conns: make(chan *WorkConn, 16), msgs: make(chan WorkMessage, 1024), ended: make(chan error, 16)}
	n.HandleWork(func(c *WorkConn) {
		ws.conns <- c
		for m := range c.Messages() {
			ws.msgs <- m
		}
		ws.ended <- c.Err()
	})
	return ws
}

func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func waitDone(t testing.TB, c *WorkConn, what string) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

func openWork(t testing.TB, prov *Node, coord peer.ID) *WorkConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := prov.OpenWork(ctx, coord)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testGrant(id string, now time.Time) Grant {
	j := testJob(id, now)
	j.Status, j.Attempt = node3.StatusAccepted, 1
	return Grant{
		Job:            *j,
		Attempt:        1,
		GPUs:           []GPURef{{Index: 0, UUID: "GPU-0"}},
		LeaseExpiresAt: now.Add(time.Minute).UTC().Truncate(time.Second),
		AckBy:          now.Add(5 * time.Second).UTC().Truncate(time.Second),
	}
}

func testCapacity() Capacity {
	return Capacity{
		FreeSlots:  1,
		TotalSlots: 2,
		GPUs: []CapacityGPU{
			{GPU: node3.GPU{Index: 0, UUID: "GPU-0", Vendor: "NVIDIA", Model: "H200", MemoryBytes: 141 << 30}},
			{GPU: node3.GPU{Index: 1, UUID: "GPU-1", Vendor: "NVIDIA", Model: "H200", MemoryBytes: 141 << 30}, Busy: true},
		},
		PriceFloor:      5000,
		Wallet:          "11111111111111111111111111111111",
		SoftwareVersion: "node3/test",
	}
}

func TestWorkRoundTrip(t *testing.T) {
	for name, listen := range transports {
		t.Run(name, func(t *testing.T) { testWorkRoundTrip(t, listen) })
	}
}

func testWorkRoundTrip(t *testing.T, listen []string) {
	coord, prov := workNodes(t, listen, nil)
	ws := newWorkServer(coord)
	pc := openWork(t, prov, coord.ID())
	if pc.Peer() != coord.ID() {
		t.Fatalf("provider's stream peer %s", pc.Peer())
	}

	// Capacity → grant → ack.
	if err := pc.SendCapacity(testCapacity()); err != nil {
		t.Fatal(err)
	}
	cc := recv(t, ws.conns, "work stream at the coordinator")
	if cc.Peer() != prov.ID() {
		t.Fatalf("coordinator's stream peer %s, want %s", cc.Peer(), prov.ID())
	}
	m := recv(t, ws.msgs, "capacity")
	if m.Type != WorkCapacity || m.Capacity == nil || m.Capacity.Seq == 0 || len(m.Capacity.GPUs) != 2 ||
		m.Capacity.GPUs[0].UUID != "GPU-0" || !m.Capacity.GPUs[1].Busy || m.Capacity.PriceFloor != 5000 {
		t.Fatalf("capacity %+v", m)
	}
	now := time.Now()
	g := testGrant("job-1", now)
	if err := cc.SendGrant(g); err != nil {
		t.Fatal(err)
	}
	m = recv(t, pc.Messages(), "grant")
	if m.Type != WorkGrant || m.Grant == nil || m.Grant.Job.ID != "job-1" || m.Grant.Attempt != 1 ||
		!m.Grant.LeaseExpiresAt.Equal(g.LeaseExpiresAt) || !m.Grant.AckBy.Equal(g.AckBy) ||
		len(m.Grant.GPUs) != 1 || m.Grant.GPUs[0] != g.GPUs[0] || m.Grant.Job.Kind != node3.KindNoop {
		t.Fatalf("grant %+v", m)
	}
	if err := pc.SendAck("job-1", 1); err != nil {
		t.Fatal(err)
	}
	m = recv(t, ws.msgs, "ack")
	if m.Type != WorkAck || *m.Ack != (Ack{JobID: "job-1", Attempt: 1}) {
		t.Fatalf("ack %+v", m)
	}

	// Decline, revoke.
	if err := cc.SendGrant(testGrant("job-2", now)); err != nil {
		t.Fatal(err)
	}
	if m = recv(t, pc.Messages(), "second grant"); m.Grant == nil || m.Grant.Job.ID != "job-2" {
		t.Fatalf("grant %+v", m)
	}
	if err := pc.SendDecline("job-2", 1, "gpu busy"); err != nil {
		t.Fatal(err)
	}
	m = recv(t, ws.msgs, "decline")
	if m.Type != WorkDecline || *m.Decline != (Decline{JobID: "job-2", Attempt: 1, Reason: "gpu busy"}) {
		t.Fatalf("decline %+v", m)
	}
	if err := cc.SendRevoke("job-1", 1, "cancelled"); err != nil {
		t.Fatal(err)
	}
	m = recv(t, pc.Messages(), "revoke")
	if m.Type != WorkRevoke || *m.Revoke != (Revoke{JobID: "job-1", Attempt: 1, Reason: "cancelled"}) {
		t.Fatalf("revoke %+v", m)
	}

	// Each side refuses to send what only the other side sends, and
	// messages that do not validate; the stream stays up.
	if err := pc.SendGrant(g); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("provider sent a grant: %v", err)
	}
	if err := cc.SendAck("job-1", 1); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("coordinator sent an ack: %v", err)
	}
	if err := pc.SendAck("bad/id", 1); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("bad ack sent: %v", err)
	}
	if err := pc.SendCapacity(Capacity{Seq: 1}); node3.ErrorCode(err) != node3.CodeInvalid {
		t.Fatalf("stale capacity sent: %v", err)
	}
	if err := pc.SendCapacity(Capacity{}); err != nil {
		t.Fatal(err)
	}
	if m = recv(t, ws.msgs, "second capacity"); m.Capacity == nil || m.Capacity.TotalSlots != 0 {
		t.Fatalf("capacity %+v", m)
	}

	acc, _ := coord.WorkConns()
	_, opened := prov.WorkConns()
	if len(acc) != 1 || acc[0] != cc || len(opened) != 1 || opened[0] != pc {
		t.Fatalf("work conns: %v %v", acc, opened)
	}
	for _, c := range []struct {
		n         *Node
		typ, dir  string
		wantAtLst float64
	}{
		{coord, "capacity", "in", 2}, {coord, "grant", "out", 2}, {coord, "ack", "in", 1},
		{prov, "capacity", "out", 2}, {prov, "grant", "in", 2}, {prov, "revoke", "in", 1},
	} {
		if v := metricValue(c.n.metrics.workMessages.WithLabelValues(c.typ, c.dir)); v != c.wantAtLst {
			t.Errorf("%s %s messages = %v, want %v", c.typ, c.dir, v, c.wantAtLst)
		}
	}
	if v := metricValue(coord.metrics.workStreams); v != 1 {
		t.Errorf("coordinator work_streams = %v", v)
	}
}

func TestWorkOpenRefused(t *testing.T) {
	coord, prov := workNodes(t, nil, nil)
	other := startNode(t, testConfig(t, coord.Network()))
	connect(t, prov, other)
	ctx := context.Background()
	if _, err := prov.OpenWork(ctx, other.ID()); node3.ErrorCode(err) != node3.CodeForbidden {
		t.Fatalf("untrusted coordinator: %v", err)
	}
	// A coordinator that loses the provider's trust loses its stream.
	newWorkServer(coord)
	c := openWork(t, prov, coord.ID())
	prov.SetTrustedCoordinators([]peer.ID{other.ID()})
	if err := waitDone(t, c, "stream to an untrusted coordinator closed"); !errors.Is(err, ErrWorkClosed) || !strings.Contains(err.Error(), "no longer trusted") {
		t.Fatalf("ended with %v", err)
	}
	// Trusted, but it serves no work streams.
	prov.SetTrustedCoordinators([]peer.ID{coord.ID(), other.ID()})
	c, err := prov.OpenWork(ctx, other.ID())
	if err == nil {
		// Negotiation may be lazy: the refusal then ends the stream.
		if err := waitDone(t, c, "refused stream to end"); !errors.Is(err, ErrWorkBroken) {
			t.Fatalf("stream to a node without the protocol ended with %v", err)
		}
	}
}

func TestWorkKeepAliveAndIdle(t *testing.T) {
	t.Run("pings keep it open", func(t *testing.T) {
		coord, prov := workNodes(t, nil, func(c, p *Config) {
			c.WorkKeepAlive, c.WorkIdleTimeout = 20*time.Millisecond, time.Second
			p.WorkKeepAlive, p.WorkIdleTimeout = 20*time.Millisecond, time.Second
		})
		ws := newWorkServer(coord)
		pc := openWork(t, prov, coord.ID())
		if err := pc.SendCapacity(testCapacity()); err != nil {
			t.Fatal(err)
		}
		cc := recv(t, ws.conns, "work stream")
		// 75 pings each way take at least 1.5s, more than the idle timeout.
		eventually(t, 15*time.Second, "pings", func() bool {
			return metricValue(coord.metrics.workMessages.WithLabelValues("ping", "in")) >= 75 &&
				metricValue(prov.metrics.workMessages.WithLabelValues("ping", "in")) >= 75
		})
		if cc.Err() != nil || pc.Err() != nil {
			t.Fatalf("closed despite pings: %v / %v", cc.Err(), pc.Err())
		}
		if len(ws.msgs) != 1 {
			t.Fatalf("pings reached the handler: %d messages", len(ws.msgs))
		}
	})
	t.Run("silent peer times out", func(t *testing.T) {
		coord, prov := workNodes(t, nil, func(c, p *Config) {
			c.WorkKeepAlive, c.WorkIdleTimeout = 20*time.Millisecond, 200*time.Millisecond
			p.WorkKeepAlive = time.Hour // never pings
		})
		ws := newWorkServer(coord)
		pc := openWork(t, prov, coord.ID())
		if err := pc.SendCapacity(testCapacity()); err != nil {
			t.Fatal(err)
		}
		cc := recv(t, ws.conns, "work stream")
		if err := waitDone(t, cc, "idle close"); !errors.Is(err, ErrWorkIdle) {
			t.Fatalf("coordinator end: %v", err)
		}
		if err := waitDone(t, pc, "provider to see the close"); !errors.Is(err, ErrWorkBroken) {
			t.Fatalf("provider end: %v", err)
		}
		if v := metricValue(coord.metrics.workClosed.WithLabelValues(workReasonIdle)); v != 1 {
			t.Fatalf("idle closes = %v", v)
		}
		if coord.WorkPenalty(prov.ID()) != 0 {
			t.Fatal("an idle peer was penalised")
		}
	})
}

func TestWorkRemoteClose(t *testing.T) {
	for _, closer := range []string{"provider", "coordinator", "coordinator node"} {
		t.Run(closer, func(t *testing.T) {
			coord, prov := workNodes(t, nil, nil)
			ws := newWorkServer(coord)
			pc := openWork(t, prov, coord.ID())
			_ = pc.SendCapacity(testCapacity())
			cc := recv(t, ws.conns, "work stream")
			recv(t, ws.msgs, "capacity")
			start := time.Now()
			var local, remote *WorkConn
			switch closer {
			case "provider":
				local, remote = pc, cc
				_ = pc.Close()
			case "coordinator":
				local, remote = cc, pc
				_ = cc.Close()
			default:
				local, remote = cc, pc
				_ = coord.Close()
			}
			if err := waitDone(t, local, "local end"); !errors.Is(err, ErrWorkClosed) {
				t.Fatalf("local end: %v", err)
			}
			if err := waitDone(t, remote, "remote end"); !errors.Is(err, ErrWorkBroken) {
				t.Fatalf("remote end: %v", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("close seen after %s", d)
			}
			if err := recv(t, ws.ended, "handler to return"); err == nil {
				t.Fatal("handler saw no error")
			}
			if _, ok := <-pc.Messages(); ok {
				t.Fatal("provider's messages channel still open")
			}
			if err := pc.SendAck("job-1", 1); err == nil {
				t.Fatal("send on a closed stream")
			}
			eventually(t, 2*time.Second, "gauges back to zero", func() bool {
				return metricValue(coord.metrics.workStreams) == 0 && metricValue(prov.metrics.workStreams) == 0
			})
		})
	}
}

func TestWorkOneStreamPerPeer(t *testing.T) {
	coord, prov := workNodes(t, nil, nil)
	ws := newWorkServer(coord)
	first := openWork(t, prov, coord.ID())
	_ = first.SendCapacity(testCapacity())
	firstAtCoord := recv(t, ws.conns, "first stream")
	second := openWork(t, prov, coord.ID())
	if err := waitDone(t, first, "first stream replaced locally"); !errors.Is(err, ErrWorkReplaced) {
		t.Fatalf("first stream at provider: %v", err)
	}
	_ = second.SendCapacity(testCapacity())
	secondAtCoord := recv(t, ws.conns, "second stream")
	if err := waitDone(t, firstAtCoord, "first stream replaced at coordinator"); !errors.Is(err, ErrWorkReplaced) && !errors.Is(err, ErrWorkBroken) {
		t.Fatalf("first stream at coordinator: %v", err)
	}
	if err := second.SendAck("job-1", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "ack on the second stream", func() bool {
		for len(ws.msgs) > 0 {
			if m := <-ws.msgs; m.Ack != nil {
				return true
			}
		}
		return false
	})
	acc, _ := coord.WorkConns()
	_, opened := prov.WorkConns()
	if len(acc) != 1 || acc[0] != secondAtCoord || len(opened) != 1 || opened[0] != second {
		t.Fatalf("work conns %v %v", acc, opened)
	}
	// The connection is kept from the connection manager's trimming while
	// a work stream lives, under the stream's own tag — the replaced
	// stream's end released only its own — and released when it ends.
	cm := func(n *Node) interface{ IsProtected(peer.ID, string) bool } { return n.host.ConnManager() }
	if cm(prov).IsProtected(coord.ID(), first.protectTag) || !cm(prov).IsProtected(coord.ID(), second.protectTag) ||
		!cm(coord).IsProtected(prov.ID(), secondAtCoord.protectTag) {
		t.Fatal("the live work stream's connection is not protected from trimming, or the replaced one still is")
	}
	second.Close()
	_ = waitDone(t, secondAtCoord, "second stream closed at coordinator")
	if cm(prov).IsProtected(coord.ID(), second.protectTag) {
		t.Fatal("the provider's connection is still protected after its work stream closed")
	}
	if cm(coord).IsProtected(prov.ID(), secondAtCoord.protectTag) {
		t.Fatal("the coordinator's connection is still protected after the work stream closed")
	}
}

// rawHost is a bare libp2p host that speaks the work protocol by hand.
func rawHost(t testing.TB, n *Node) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.PrometheusRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Connect(ctx, n.AddrInfo()); err != nil {
		t.Fatal(err)
	}
	return h
}

func frame(t testing.TB, payloads ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range payloads {
		if err := writeFrame(&buf, frameData, p); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func workJSON(t testing.TB, m WorkMessage) []byte {
	t.Helper()
	if m.Version == 0 {
		m.Version = Version
	}
	return mustJSON(t, m)
}

func TestWorkBadFrames(t *testing.T) {
	coord, _ := workNodes(t, nil, nil)
	ws := newWorkServer(coord)
	now := time.Now()
	capa := testCapacity()
	capa.Seq = 5
	validCap := workJSON(t, WorkMessage{Type: WorkCapacity, Capacity: &capa})
	badCap := testCapacity()
	badCap.Seq, badCap.FreeSlots = 1, 3
	grant := testGrant("job-1", now)
	ack := workJSON(t, WorkMessage{Type: WorkAck, Ack: &Ack{JobID: "job-1", Attempt: 1}})
	cases := []struct {
		name, reason string
		data         []byte
		delivered    int
	}{
		{"http garbage", reasonMalformed, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0},
		{"error frame", reasonMalformed, append([]byte{frameError, 2}, "{}"...), 0},
		{"bad varint", reasonMalformed, []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 0},
		{"declared 2^63", reasonOversize, []byte{0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 0},
		{"declared over the limit", reasonOversize, []byte{0, 0x81, 0x80, 0x04}, 0},
		{"ack too large for its type", reasonOversize, frame(t, append(ack, bytes.Repeat([]byte(" "), maxWorkSmallSize)...)), 0},
		{"not json", reasonMalformed, frame(t, []byte("{{")), 0},
		{"trailing data", reasonMalformed, frame(t, append(append([]byte{}, ack...), ack...)), 0},
		{"wrong version", reasonVersion, frame(t, mustJSON(t, WorkMessage{Version: 2, Type: WorkAck, Ack: &Ack{JobID: "job-1", Attempt: 1}})), 0},
		{"no version", reasonVersion, frame(t, []byte(`{"type":"ping"}`)), 0},
		{"unknown type", reasonMalformed, frame(t, []byte(`{"v":1,"type":"steal"}`)), 0},
		{"two bodies", reasonMalformed, frame(t, workJSON(t, WorkMessage{Type: WorkAck, Ack: &Ack{JobID: "j", Attempt: 1}, Capacity: &capa})), 0},
		{"bad field", reasonMalformed, frame(t, workJSON(t, WorkMessage{Type: WorkCapacity, Capacity: &badCap})), 0},
		{"grant from a provider", workReasonDirection, frame(t, workJSON(t, WorkMessage{Type: WorkGrant, Grant: &grant})), 0},
		{"stale capacity", workReasonStale, frame(t, validCap, validCap), 1},
		{"bad after good", reasonMalformed, frame(t, ack, []byte("[1]")), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := rawHost(t, coord)
			before := metricValue(coord.metrics.workDropped.WithLabelValues(tc.reason))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := h.NewStream(ctx, coord.ID(), WorkProtocol(coord.Network()))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Reset()
			if _, err := s.Write(tc.data); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, ws.ended, "stream closed"); !errors.Is(err, ErrWorkProtocol) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("stream ended with %v, want a %s violation", err, tc.reason)
			}
			if got := len(ws.msgs); got != tc.delivered {
				t.Fatalf("%d messages reached the handler, want %d", got, tc.delivered)
			}
			for len(ws.msgs) > 0 {
				<-ws.msgs
			}
			<-ws.conns
			if v := metricValue(coord.metrics.workDropped.WithLabelValues(tc.reason)); v != before+1 {
				t.Fatalf("dropped{%s} = %v, want %v", tc.reason, v, before+1)
			}
			if p := coord.WorkPenalty(h.ID()); p < workPenaltyPoints*0.99 || p > workPenaltyPoints {
				t.Fatalf("penalty %v", p)
			}
			// The raw peer sees the reset.
			_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(s); err == nil || isTimeout(err) {
				t.Fatalf("raw stream not reset: %v", err)
			}
		})
	}
}

// A provider drops a coordinator that sends garbage, too.
func TestWorkBadCoordinator(t *testing.T) {
	prov := startNode(t, testConfig(t, testNetwork(t)))
	h := rawHost(t, prov)
	prov.SetTrustedCoordinators([]peer.ID{h.ID()})
	h.SetStreamHandler(WorkProtocol(prov.Network()), func(s network.Stream) {
		_, _ = s.Write(frame(t, workJSON(t, WorkMessage{Type: WorkAck, Ack: &Ack{JobID: "job-1", Attempt: 1}})))
	})
	c := openWork(t, prov, h.ID())
	if err := waitDone(t, c, "provider to drop the stream"); !errors.Is(err, ErrWorkProtocol) {
		t.Fatalf("ended with %v", err)
	}
	if _, ok := <-c.Messages(); ok {
		t.Fatal("an ack from the coordinator reached the provider")
	}
	if v := metricValue(prov.metrics.workDropped.WithLabelValues(workReasonDirection)); v != 1 {
		t.Fatalf("dropped = %v", v)
	}
	if prov.WorkPenalty(h.ID()) == 0 {
		t.Fatal("no penalty")
	}
}

func TestWorkSlowReader(t *testing.T) {
	coord, _ := workNodes(t, nil, func(c, _ *Config) { c.WorkSendQueue = 4 })
	ws := newWorkServer(coord)
	h := rawHost(t, coord)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, coord.ID(), WorkProtocol(coord.Network()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	capa := testCapacity()
	capa.Seq = 1
	if _, err := s.Write(frame(t, workJSON(t, WorkMessage{Type: WorkCapacity, Capacity: &capa}))); err != nil {
		t.Fatal(err)
	}
	cc := recv(t, ws.conns, "work stream")
	// The raw peer never reads: the stream window fills, then the queue.
	g := testGrant("job-1", time.Now())
	g.Job.Description = strings.Repeat("d", 4000)
	start := time.Now()
	var sendErr error
	for i := 0; i < 100000 && sendErr == nil; i++ {
		sendErr = cc.SendGrant(g)
	}
	if !errors.Is(sendErr, ErrWorkSlowPeer) {
		t.Fatalf("send error %v", sendErr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s to drop the slow peer", d)
	}
	if err := waitDone(t, cc, "slow peer dropped"); !errors.Is(err, ErrWorkSlowPeer) {
		t.Fatalf("ended with %v", err)
	}
	if v := metricValue(coord.metrics.workOverflows); v != 1 {
		t.Fatalf("overflows = %v", v)
	}
	if coord.WorkPenalty(h.ID()) != 0 {
		t.Fatal("a slow peer was penalised")
	}
}

func TestWorkPenaltyScore(t *testing.T) {
	clk := &fakeClock{t: time.Now()}
	var ps penalties
	p := newPeerID(t)
	ps.add(p, clk.now())
	ps.add(p, clk.now())
	if v := ps.get(p, clk.now()); v != 200 {
		t.Fatalf("penalty %v", v)
	}
	clk.add(workPenaltyHalfLife)
	if v := ps.get(p, clk.now()); v < 99.9 || v > 100.1 {
		t.Fatalf("penalty after a half-life %v", v)
	}
	for range maxPenalisedPeers + 10 {
		ps.add(newPeerID(t), clk.now())
	}
	if len(ps.m) > maxPenalisedPeers {
		t.Fatalf("%d peers remembered", len(ps.m))
	}
}

func TestDecodeWorkMessage(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g := testGrant("job-1", now)
	capa := testCapacity()
	capa.Seq = 1
	good := []WorkMessage{
		{Type: WorkPing},
		{Type: WorkCapacity, Capacity: &capa},
		{Type: WorkGrant, Grant: &g},
		{Type: WorkAck, Ack: &Ack{JobID: "job-1", Attempt: 1}},
		{Type: WorkDecline, Decline: &Decline{JobID: "job-1", Attempt: 2, Reason: "busy"}},
		{Type: WorkRevoke, Revoke: &Revoke{JobID: "job-1", Attempt: 3}},
	}
	for _, m := range good {
		if _, err := DecodeWorkMessage(workJSON(t, m)); err != nil {
			t.Errorf("%s: %v", m.Type, err)
		}
	}
	mut := func(f func(g *Grant)) *Grant {
		c := testGrant("job-1", now)
		f(&c)
		return &c
	}
	capMut := func(f func(c *Capacity)) *Capacity {
		c := testCapacity()
		c.Seq = 1
		f(&c)
		return &c
	}
	bad := map[string]WorkMessage{
		"ping with body":       {Type: WorkPing, Ack: &Ack{JobID: "j", Attempt: 1}},
		"ack without body":     {Type: WorkAck},
		"attempt zero":         {Type: WorkAck, Ack: &Ack{JobID: "j"}},
		"attempt too high":     {Type: WorkAck, Ack: &Ack{JobID: "j", Attempt: node3.MaxMaxAttempts + 1}},
		"long reason":          {Type: WorkDecline, Decline: &Decline{JobID: "j", Attempt: 1, Reason: strings.Repeat("r", maxReasonLen+1)}},
		"bad job spec":         {Type: WorkGrant, Grant: mut(func(g *Grant) { g.Job.Kind = "evil" })},
		"command without argv": {Type: WorkGrant, Grant: mut(func(g *Grant) { g.Job.Kind = node3.KindCommand })},
		"no lease":             {Type: WorkGrant, Grant: mut(func(g *Grant) { g.LeaseExpiresAt = time.Time{} })},
		"ack after lease":      {Type: WorkGrant, Grant: mut(func(g *Grant) { g.AckBy = g.LeaseExpiresAt.Add(time.Second) })},
		"same gpu twice":       {Type: WorkGrant, Grant: mut(func(g *Grant) { g.GPUs = []GPURef{{Index: 1}, {Index: 1}} })},
		"bad job status":       {Type: WorkGrant, Grant: mut(func(g *Grant) { g.Job.Status = "stolen" })},
		"seq zero":             {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.Seq = 0 })},
		"free above total":     {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.FreeSlots = 3 })},
		"negative slots":       {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.TotalSlots = -1 })},
		"duplicate uuid":       {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.GPUs[1].UUID = "GPU-0" })},
		"bad wallet":           {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.Wallet = "not-base58!" })},
		"price above max":      {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.PriceFloor = node3.MaxReward + 1 })},
		"long gpu model":       {Type: WorkCapacity, Capacity: capMut(func(c *Capacity) { c.GPUs[0].Model = strings.Repeat("m", maxGPUText+1) })},
	}
	for name, m := range bad {
		if _, err := DecodeWorkMessage(workJSON(t, m)); node3.ErrorCode(err) != node3.CodeInvalid {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	// A grant carries the full job: the command of a command job survives.
	cmd := mut(func(g *Grant) { g.Job.Kind, g.Job.Command = node3.KindCommand, []string{"echo", "hi"} })
	m, err := DecodeWorkMessage(workJSON(t, WorkMessage{Type: WorkGrant, Grant: cmd}))
	if err != nil || len(m.Grant.Job.Command) != 2 {
		t.Fatalf("command grant: %+v %v", m, err)
	}
	// Normalize ran on a copy: defaults are not filled in.
	raw := mut(func(g *Grant) { g.Job.TimeoutSecs = 0 })
	if m, err := DecodeWorkMessage(workJSON(t, WorkMessage{Type: WorkGrant, Grant: raw})); err != nil || m.Grant.Job.TimeoutSecs != 0 {
		t.Fatalf("grant changed by decoding: %v %v", m.Grant.Job.TimeoutSecs, err)
	}
	if _, err := DecodeWorkMessage(bytes.Repeat([]byte(" "), maxWorkGrantSize+1)); node3.ErrorCode(err) != node3.CodeTooLarge {
		t.Fatalf("oversized: %v", err)
	}
}

// One coordinator, several providers: each stream is its peer's, and a
// grant goes to the one provider it is sent to.
func TestWorkManyProviders(t *testing.T) {
	net := testNetwork(t)
	coord := startNode(t, testConfig(t, net))
	ws := newWorkServer(coord)
	provs := map[peer.ID]*WorkConn{}
	for range 3 {
		cfg := testConfig(t, net)
		cfg.TrustedCoordinators = []peer.ID{coord.ID()}
		p := startNode(t, cfg)
		connect(t, p, coord)
		c := openWork(t, p, coord.ID())
		if err := c.SendCapacity(testCapacity()); err != nil {
			t.Fatal(err)
		}
		provs[p.ID()] = c
	}
	at := map[peer.ID]*WorkConn{}
	for range provs {
		c := recv(t, ws.conns, "work stream")
		if _, ok := provs[c.Peer()]; !ok {
			t.Fatalf("stream from unknown peer %s", c.Peer())
		}
		at[c.Peer()] = c
	}
	if len(at) != len(provs) {
		t.Fatalf("%d distinct streams, want %d", len(at), len(provs))
	}
	now := time.Now()
	for id, c := range at {
		if err := c.SendGrant(testGrant("job-"+id.String()[len(id.String())-8:], now)); err != nil {
			t.Fatal(err)
		}
	}
	for id, pc := range provs {
		m := recv(t, pc.Messages(), "grant")
		if m.Grant == nil || m.Grant.Job.ID != "job-"+id.String()[len(id.String())-8:] {
			t.Fatalf("provider %s got %+v", id.ShortString(), m)
		}
	}
	if acc, _ := coord.WorkConns(); len(acc) != len(provs) {
		t.Fatalf("%d accepted streams", len(acc))
	}
	_ = coord.Close()
	for id, pc := range provs {
		if err := waitDone(t, pc, "coordinator shutdown seen by "+id.ShortString()); !errors.Is(err, ErrWorkBroken) {
			t.Fatalf("provider %s: %v", id.ShortString(), err)
		}
	}
}

// A work-stream violation lowers the sender's GossipSub score.
func TestWorkPenaltyLowersGossipScore(t *testing.T) {
	coord, prov := workNodes(t, nil, nil)
	ws := newWorkServer(coord)
	waitTopicPeer(t, coord, JobsTopic(coord.Network()), prov.ID())
	eventually(t, 5*time.Second, "provider scored", func() bool {
		_, ok := coord.PeerScore(prov.ID())
		return ok
	})
	before, _ := coord.PeerScore(prov.ID())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := prov.Host().NewStream(ctx, coord.ID(), WorkProtocol(coord.Network()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if err := recv(t, ws.ended, "stream dropped"); !errors.Is(err, ErrWorkProtocol) {
		t.Fatalf("ended with %v", err)
	}
	eventually(t, 5*time.Second, "score to drop", func() bool {
		score, _ := coord.PeerScore(prov.ID())
		return score <= before-workPenaltyPoints*0.9
	})
}

func TestWorkConfig(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"idle not above keepalive": func(c *Config) { c.WorkKeepAlive, c.WorkIdleTimeout = time.Second, time.Second },
		"negative keepalive":       func(c *Config) { c.WorkKeepAlive = -1 },
		"negative send queue":      func(c *Config) { c.WorkSendQueue = -1 },
	} {
		cfg := testConfig(t, "x")
		mod(&cfg)
		if _, err := cfg.withDefaults(); node3.ErrorCode(err) != node3.CodeInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg, err := testConfig(t, "x").withDefaults()
	if err != nil || cfg.WorkKeepAlive != DefaultWorkKeepAlive || cfg.WorkIdleTimeout != 3*DefaultWorkKeepAlive ||
		cfg.WorkWriteTimeout != DefaultWorkWriteTimeout || cfg.WorkSendQueue != DefaultWorkSendQueue {
		t.Fatalf("defaults %+v %v", cfg, err)
	}
}

func TestKeepWork(t *testing.T) {
	coord, prov := workNodes(t, nil, nil)
	conns := make(chan *WorkConn, 16)
	coord.HandleWork(func(c *WorkConn) {
		conns <- c
		for m := range c.Messages() {
			if m.Capacity != nil {
				return // drop the stream: the provider must come back
			}
		}
	})
	opened := make(chan struct{}, 16)
	stop, err := prov.KeepWork(coord.ID(), func(c *WorkConn) {
		opened <- struct{}{}
		_ = c.SendCapacity(testCapacity())
		for range c.Messages() {
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prov.KeepWork(coord.ID(), func(*WorkConn) {}); node3.ErrorCode(err) != node3.CodeConflict {
		t.Fatalf("second KeepWork: %v", err)
	}
	for range 3 {
		recv(t, opened, "stream (re)opened")
		recv(t, conns, "stream at the coordinator")
	}
	stop()
	eventually(t, 5*time.Second, "no work streams", func() bool {
		acc, _ := coord.WorkConns()
		_, out := prov.WorkConns()
		return len(acc) == 0 && len(out) == 0
	})
	// Stopped loops can be started again.
	stop, err = prov.KeepWork(coord.ID(), func(c *WorkConn) {
		for range c.Messages() {
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, conns, "stream after restart")
	stop()
}
