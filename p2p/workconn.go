package p2p

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
)

// Why a work stream ended; WorkConn.Err returns one of these (wrapped).
var (
	// ErrWorkClosed: this side called Close, or the node is closing.
	ErrWorkClosed = errors.New("work stream closed")
	// ErrWorkReplaced: the same peer opened a newer work stream.
	ErrWorkReplaced = errors.New("work stream replaced by a newer one from the same peer")
	// ErrWorkIdle: nothing arrived within WorkIdleTimeout.
	ErrWorkIdle = errors.New("work stream idle")
	// ErrWorkSlowPeer: the send queue was full, or a write timed out.
	ErrWorkSlowPeer = errors.New("work stream peer too slow")
	// ErrWorkProtocol: the peer sent a malformed, oversized, wrong-version,
	// wrong-direction or out-of-sequence frame.
	ErrWorkProtocol = errors.New("work stream protocol violation")
	// ErrWorkBroken: the peer closed or reset the stream, or the
	// connection failed.
	ErrWorkBroken = errors.New("work stream broken")
)

// Reasons a work stream is closed; metric labels (violations also label
// node3_p2p_work_dropped_total).
const (
	workReasonClosed    = "closed"
	workReasonReplaced  = "replaced"
	workReasonIdle      = "idle"
	workReasonOverflow  = "send_queue_full"
	workReasonWrite     = "write_failed"
	workReasonBroken    = "broken"
	workReasonDirection = "direction"
	workReasonStale     = "stale_seq"
	workReasonUntrusted = "untrusted"
)

// Work-stream penalties: each protocol violation costs the peer
// workPenaltyPoints, halving every workPenaltyHalfLife. They feed the
// GossipSub application-specific score, so a peer that keeps sending
// garbage on work streams also loses its standing on the topics.
const (
	workPenaltyPoints   = 100
	workPenaltyHalfLife = 15 * time.Minute
	maxPenalisedPeers   = 4096
	workInboxSize       = 16
	maxWorkBatch        = 64 // frames per write
)

// WorkConn is one end of a work stream. The remote peer is authenticated
// by the transport. Received messages (pings excluded) come out of
// Messages in order; Send queues a message without blocking. It is safe
// for concurrent use.
type WorkConn struct {
	n      *Node
	s      network.Stream
	remote peer.ID
	coord  bool // this end is the coordinator (the stream was accepted)
	out    chan workFrame
	in     chan WorkMessage
	done   chan struct{}

	closeOnce sync.Once
	mu        sync.Mutex
	err       error

	sendMu   sync.Mutex
	lastSent uint64 // capacity seq

	protectTag string // the connection manager's protection while it lives
}

type workFrame struct {
	typ  WorkType
	data []byte
}

// workState is a Node's set of work streams and the penalties of peers
// that misbehaved on them.
type workState struct {
	mu      sync.Mutex
	handler func(*WorkConn)
	in, out map[peer.ID]*WorkConn // accepted (we coordinate), opened (we provide)
	keeps   map[peer.ID]bool      // coordinators with a KeepWork loop
	pen     penalties
}

// workProtectTag prefixes the connection manager tags of work streams.
const workProtectTag = "node3-work-"

// Peer is the authenticated remote peer.
func (c *WorkConn) Peer() peer.ID { return c.remote }

// Messages delivers the peer's messages in order; it is closed when the
// stream ends. Stop reading and the peer is slowed (the stream's flow
// control), not dropped.
func (c *WorkConn) Messages() <-chan WorkMessage { return c.in }

// Done is closed when the stream ends.
func (c *WorkConn) Done() <-chan struct{} { return c.done }

// Err says why the stream ended (nil while it is open): errors.Is matches
// ErrWorkClosed, ErrWorkReplaced, ErrWorkIdle, ErrWorkSlowPeer,
// ErrWorkProtocol or ErrWorkBroken.
func (c *WorkConn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the stream; the peer sees it at once. Messages not yet
// written are lost.
func (c *WorkConn) Close() error {
	c.closeWith(workReasonClosed, ErrWorkClosed)
	return nil
}

// Send checks m and queues it for writing. It fills Version, Type (from
// the body when empty) and a capacity report's Seq (when zero). It fails
// for a malformed message, one this side may not send (a provider sends
// capacity, ack, decline; a coordinator grant, revoke), a capacity Seq
// not above the last one sent, or a closed stream. When the queue
// (WorkSendQueue) is full the peer is too slow: the stream is closed with
// ErrWorkSlowPeer. Queued is not delivered: a grant counts as taken only
// when its ack arrives.
func (c *WorkConn) Send(m WorkMessage) error {
	if err := c.Err(); err != nil {
		return err
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if m.Capacity != nil {
		cp := *m.Capacity
		if cp.Seq == 0 {
			cp.Seq = c.n.nextSeq(c.n.cfg.Clock())
		}
		if cp.Seq <= c.lastSent {
			return node3.Errorf(node3.CodeInvalid, "capacity seq %d is not above the last one sent (%d)", cp.Seq, c.lastSent)
		}
		m.Capacity = &cp
	}
	data, err := encodeWork(&m)
	if err != nil {
		return fmt.Errorf("send work message: %w", err)
	}
	if c.coord && !m.Type.fromCoordinator() || !c.coord && !m.Type.fromProvider() {
		return node3.Errorf(node3.CodeInvalid, "send work message: a %s does not send %s", c.side(), m.Type)
	}
	if m.Capacity != nil {
		c.lastSent = m.Capacity.Seq
	}
	select {
	case <-c.done:
		return c.Err()
	default:
	}
	select {
	case c.out <- workFrame{typ: m.Type, data: data}:
		return nil
	default:
		c.n.metrics.workOverflows.Inc()
		c.closeWith(workReasonOverflow, fmt.Errorf("%w: %d messages queued", ErrWorkSlowPeer, cap(c.out)))
		return c.Err()
	}
}

// SendCapacity sends a capacity report (provider side).
func (c *WorkConn) SendCapacity(r Capacity) error { return c.Send(WorkMessage{Capacity: &r}) }

// SendAck acks a grant (provider side).
func (c *WorkConn) SendAck(jobID string, attempt int) error {
	return c.Send(WorkMessage{Ack: &Ack{JobID: jobID, Attempt: attempt}})
}

// SendDecline declines a grant (provider side).
func (c *WorkConn) SendDecline(jobID string, attempt int, reason string) error {
	return c.Send(WorkMessage{Decline: &Decline{JobID: jobID, Attempt: attempt, Reason: reason}})
}

// SendGrant pushes a grant (coordinator side).
func (c *WorkConn) SendGrant(g Grant) error { return c.Send(WorkMessage{Grant: &g}) }

// SendRevoke takes a grant back (coordinator side).
func (c *WorkConn) SendRevoke(jobID string, attempt int, reason string) error {
	return c.Send(WorkMessage{Revoke: &Revoke{JobID: jobID, Attempt: attempt, Reason: reason}})
}

func (c *WorkConn) side() string {
	if c.coord {
		return "coordinator"
	}
	return "provider"
}

func (c *WorkConn) closeWith(reason string, err error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		c.n.work.remove(c)
		c.n.host.ConnManager().Unprotect(c.remote, c.protectTag)
		c.n.metrics.workStreams.Dec()
		c.n.metrics.workClosed.WithLabelValues(reason).Inc()
		c.n.log.Debug("work stream closed", "peer", c.remote, "side", c.side(), "reason", reason, "err", err)
		close(c.done)
		_ = c.s.Reset() // unblocks the reader and writer; the peer sees it at once
	})
}

// HandleWork serves work streams opened by providers (this node is their
// coordinator). h runs, on a goroutine of its own owned by the Node, for
// as long as the stream lives: it should range over c.Messages and return
// when that channel closes; when h returns the stream is closed. A peer
// has at most one work stream to this node: a newer one replaces the
// older, which ends with ErrWorkReplaced (a provider reconnecting after a
// network blip must not wait for the old stream to time out). A later
// HandleWork replaces h for new streams.
func (n *Node) HandleWork(h func(c *WorkConn)) {
	n.work.mu.Lock()
	n.work.handler = h
	n.work.mu.Unlock()
	n.setStreamHandler(WorkProtocol(n.cfg.Network), n.serveWork)
}

func (n *Node) serveWork(s network.Stream) {
	if !n.enter() {
		_ = s.Reset()
		return
	}
	defer n.wg.Done()
	n.work.mu.Lock()
	h := n.work.handler
	n.work.mu.Unlock()
	if h == nil {
		_ = s.Reset()
		return
	}
	c, err := n.startWork(s, true)
	if err != nil {
		return
	}
	defer c.Close()
	h(c)
}

// OpenWork opens this node's work stream to a coordinator it trusts (this
// node is a provider). It replaces an earlier stream to the same
// coordinator. Read c.Messages until it closes, then reopen.
func (n *Node) OpenWork(ctx context.Context, coordinator peer.ID) (*WorkConn, error) {
	if coordinator == n.self {
		return nil, node3.Errorf(node3.CodeInvalid, "open work stream: %s is this node", coordinator.ShortString())
	}
	if !n.trust.trusted(coordinator) {
		return nil, node3.Errorf(node3.CodeForbidden, "open work stream: coordinator %s is not trusted", coordinator.ShortString())
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.StreamTimeout)
		defer cancel()
	}
	s, err := n.host.NewStream(ctx, coordinator, WorkProtocol(n.cfg.Network))
	if err != nil {
		return nil, wrapCtx(ctx, fmt.Errorf("open work stream to %s: %w", coordinator.ShortString(), err))
	}
	return n.startWork(s, false)
}

// KeepWork keeps a work stream open to a coordinator until stop is called
// or the node closes: it opens one (retrying with backoff between
// ReconnectMin and ReconnectMax while the coordinator cannot be reached or
// keeps dropping the stream), runs f with it on a goroutine owned by the
// Node, and when f returns closes the stream and opens the next. f should
// range over c.Messages and return when it closes. stop waits for f to
// return; do not call it from f. There is one KeepWork per coordinator at
// a time (a second is refused): two would keep replacing each other.
func (n *Node) KeepWork(coordinator peer.ID, f func(c *WorkConn)) (stop func(), err error) {
	n.work.mu.Lock()
	if n.work.keeps[coordinator] {
		n.work.mu.Unlock()
		return nil, node3.Errorf(node3.CodeConflict, "a work stream to %s is already kept", coordinator.ShortString())
	}
	if n.work.keeps == nil {
		n.work.keeps = map[peer.ID]bool{}
	}
	n.work.keeps[coordinator] = true
	n.work.mu.Unlock()
	release := func() {
		n.work.mu.Lock()
		delete(n.work.keeps, coordinator)
		n.work.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(n.ctx)
	done := make(chan struct{})
	if !n.goSafe(func() {
		defer close(done)
		defer release()
		n.keepWork(ctx, coordinator, f)
	}) {
		cancel()
		release()
		return nil, fmt.Errorf("keep work stream to %s: %w (node closing)", coordinator.ShortString(), ErrWorkClosed)
	}
	return func() { cancel(); <-done }, nil
}

func (n *Node) keepWork(ctx context.Context, coordinator peer.ID, f func(c *WorkConn)) {
	backoff := n.cfg.ReconnectMin
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, n.cfg.ReconnectMax)
		return true
	}
	for ctx.Err() == nil {
		octx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
		c, err := n.OpenWork(octx, coordinator)
		cancel()
		if err != nil {
			n.log.Debug("open work stream failed", "coordinator", coordinator, "err", err, "retry_in", backoff)
			if !wait() {
				return
			}
			continue
		}
		opened := time.Now()
		unhook := context.AfterFunc(ctx, func() { _ = c.Close() })
		f(c)
		unhook()
		_ = c.Close()
		if time.Since(opened) > n.cfg.ReconnectMax {
			backoff = n.cfg.ReconnectMin // it was healthy: reconnect soon
		}
		n.log.Debug("work stream ended", "coordinator", coordinator, "err", c.Err(), "reopen_in", backoff)
		if !wait() {
			return
		}
	}
}

// startWork registers a work stream and starts its reader and writer.
func (n *Node) startWork(s network.Stream, coord bool) (*WorkConn, error) {
	c := &WorkConn{
		n:      n,
		s:      s,
		remote: s.Conn().RemotePeer(),
		coord:  coord,
		out:    make(chan workFrame, n.cfg.WorkSendQueue),
		in:     make(chan WorkMessage, workInboxSize),
		done:   make(chan struct{}),
	}
	// A connection that carries a work stream is never trimmed by the
	// connection manager: losing it gives back grants and stalls work. The
	// tag is the stream's own, so a replaced stream's end does not
	// unprotect its successor.
	c.protectTag = fmt.Sprintf("%s%p", workProtectTag, c)
	n.host.ConnManager().Protect(c.remote, c.protectTag)
	n.metrics.workStreams.Inc()
	if old := n.work.register(c); old != nil {
		old.closeWith(workReasonReplaced, ErrWorkReplaced)
	}
	started := n.goSafe(c.readLoop)
	if started {
		started = n.goSafe(c.writeLoop)
	}
	if !started {
		c.closeWith(workReasonClosed, ErrWorkClosed)
		return nil, fmt.Errorf("work stream with %s: %w (node closing)", c.remote.ShortString(), ErrWorkClosed)
	}
	n.log.Debug("work stream open", "peer", c.remote, "side", c.side())
	return c, nil
}

func (c *WorkConn) readLoop() {
	defer close(c.in)
	r := bufio.NewReaderSize(c.s, 4<<10)
	max := maxWorkFromCoordinator
	if c.coord {
		max = maxWorkFromProvider
	}
	var lastSeq uint64
	for {
		_ = c.s.SetReadDeadline(time.Now().Add(c.n.cfg.WorkIdleTimeout))
		m, reason, err := readWorkMessage(r, max, c.coord, c.s.Scope())
		if err == nil && m.Capacity != nil {
			if m.Capacity.Seq <= lastSeq {
				reason, err = workReasonStale, fmt.Errorf("capacity seq %d is not above %d", m.Capacity.Seq, lastSeq)
			} else {
				lastSeq = m.Capacity.Seq
			}
		}
		switch {
		case err == nil:
		case reason != "":
			c.violation(reason, err)
			return
		case isTimeout(err):
			c.closeWith(workReasonIdle, fmt.Errorf("%w: nothing from %s for %s", ErrWorkIdle, c.remote.ShortString(), c.n.cfg.WorkIdleTimeout))
			return
		default:
			c.closeWith(workReasonBroken, fmt.Errorf("%w: %w", ErrWorkBroken, err))
			return
		}
		c.n.metrics.workMessages.WithLabelValues(string(m.Type), "in").Inc()
		if m.Type == WorkPing {
			continue
		}
		select {
		case c.in <- m:
		case <-c.done:
			return
		}
	}
}

// violation drops the stream of a peer that broke the protocol, counts it
// and penalises the peer.
func (c *WorkConn) violation(reason string, err error) {
	c.n.metrics.workDropped.WithLabelValues(reason).Inc()
	c.n.work.pen.add(c.remote, c.n.cfg.Clock())
	c.closeWith(reason, fmt.Errorf("%w (%s): %w", ErrWorkProtocol, reason, err))
}

// writeLoop writes queued frames, batching what is queued into one write,
// and pings when it wrote nothing for a keepalive interval.
func (c *WorkConn) writeLoop() {
	ping, err := encodeWork(&WorkMessage{Type: WorkPing})
	if err != nil {
		panic(err) // a constant message
	}
	t := time.NewTicker(c.n.cfg.WorkKeepAlive)
	defer t.Stop()
	wrote := false
	var buf bytes.Buffer
	var types []WorkType
	for {
		buf.Reset()
		types = types[:0]
		add := func(f workFrame) {
			_ = writeFrame(&buf, frameData, f.data) // a bytes.Buffer does not fail
			types = append(types, f.typ)
		}
		select {
		case <-c.done:
			return
		case f := <-c.out:
			add(f)
			for len(types) < maxWorkBatch && buf.Len() < maxWorkFromCoordinator {
				select {
				case f := <-c.out:
					add(f)
					continue
				default:
				}
				break
			}
			wrote = true
		case <-t.C:
			if wrote {
				wrote = false
				continue
			}
			add(workFrame{typ: WorkPing, data: ping})
		}
		_ = c.s.SetWriteDeadline(time.Now().Add(c.n.cfg.WorkWriteTimeout))
		if _, err := c.s.Write(buf.Bytes()); err != nil {
			if isTimeout(err) {
				c.closeWith(workReasonWrite, fmt.Errorf("%w: write timed out after %s", ErrWorkSlowPeer, c.n.cfg.WorkWriteTimeout))
			} else {
				c.closeWith(workReasonBroken, fmt.Errorf("%w: %w", ErrWorkBroken, err))
			}
			return
		}
		for _, typ := range types {
			c.n.metrics.workMessages.WithLabelValues(string(typ), "out").Inc()
		}
	}
}

// memScope accounts frame buffers with the resource manager.
type memScope interface {
	ReserveMemory(size int, prio uint8) error
	ReleaseMemory(size int)
}

// readWorkMessage reads one frame of at most max bytes and decodes it.
// fromProvider says the sender is the provider end; scope, if not nil,
// accounts the frame's buffer. An I/O error (or no memory for the frame)
// comes back with an empty reason; a protocol violation with its reason.
func readWorkMessage(r *bufio.Reader, max int, fromProvider bool, scope memScope) (WorkMessage, string, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return WorkMessage{}, "", err
	}
	if kind != frameData {
		return WorkMessage{}, reasonMalformed, fmt.Errorf("frame kind %d on a work stream", kind)
	}
	size, err := readUvarint(r)
	if err != nil {
		if errors.Is(err, errVarint) {
			return WorkMessage{}, reasonMalformed, err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return WorkMessage{}, "", err
	}
	if size > uint64(max) {
		return WorkMessage{}, reasonOversize, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, size, max)
	}
	if scope != nil {
		if err := scope.ReserveMemory(int(size), network.ReservationPriorityMedium); err != nil {
			return WorkMessage{}, "", fmt.Errorf("no memory for a %d-byte frame: %w", size, err)
		}
		defer scope.ReleaseMemory(int(size))
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return WorkMessage{}, "", err
	}
	m, err := DecodeWorkMessage(payload)
	if err != nil {
		switch {
		case errors.Is(err, errWorkVersion):
			return WorkMessage{}, reasonVersion, err
		case node3.ErrorCode(err) == node3.CodeTooLarge:
			return WorkMessage{}, reasonOversize, err
		}
		return WorkMessage{}, reasonMalformed, err
	}
	if fromProvider && !m.Type.fromProvider() || !fromProvider && !m.Type.fromCoordinator() {
		return WorkMessage{}, workReasonDirection, fmt.Errorf("a %s message may not come from this side", m.Type)
	}
	return m, "", nil
}

var errVarint = errors.New("frame length is not a valid uvarint")

// readUvarint is binary.ReadUvarint that tells a bad encoding (errVarint)
// from a failed read (the reader's error).
func readUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	var s uint
	for i := range binary.MaxVarintLen64 {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, errVarint
			}
			return x | uint64(b)<<s, nil
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	return 0, errVarint
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (w *workState) register(c *WorkConn) (old *WorkConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := &w.out
	if c.coord {
		m = &w.in
	}
	if *m == nil {
		*m = map[peer.ID]*WorkConn{}
	}
	old = (*m)[c.remote]
	(*m)[c.remote] = c
	return old
}

func (w *workState) remove(c *WorkConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.out
	if c.coord {
		m = w.in
	}
	if m[c.remote] == c {
		delete(m, c.remote)
	}
}

// closeAll closes every work stream (Node.Close).
func (w *workState) closeAll() {
	w.mu.Lock()
	var all []*WorkConn
	for _, c := range w.in {
		all = append(all, c)
	}
	for _, c := range w.out {
		all = append(all, c)
	}
	w.mu.Unlock()
	for _, c := range all {
		c.closeWith(workReasonClosed, ErrWorkClosed)
	}
}

// closeUntrusted closes the opened work streams whose coordinator is no
// longer trusted.
func (w *workState) closeUntrusted(t *trustSet) {
	w.mu.Lock()
	out := make([]*WorkConn, 0, len(w.out))
	for _, c := range w.out {
		out = append(out, c)
	}
	w.mu.Unlock()
	for _, c := range out {
		if t.trusted(c.remote) {
			continue
		}
		c.closeWith(workReasonUntrusted, fmt.Errorf("%w: coordinator %s is no longer trusted", ErrWorkClosed, c.remote.ShortString()))
	}
}

// WorkConns are the open work streams: accepted ones (providers of this
// coordinator) and opened ones (coordinators of this provider).
func (n *Node) WorkConns() (accepted, opened []*WorkConn) {
	n.work.mu.Lock()
	defer n.work.mu.Unlock()
	for _, c := range n.work.in {
		accepted = append(accepted, c)
	}
	for _, c := range n.work.out {
		opened = append(opened, c)
	}
	return accepted, opened
}

// WorkPenalty is p's penalty for work-stream violations: 100 points per
// violation, halving every 15 minutes. The GossipSub score of p is lowered
// by the same amount (its application-specific part).
func (n *Node) WorkPenalty(p peer.ID) float64 { return n.work.pen.get(p, n.cfg.Clock()) }

// penalties are decaying per-peer penalty points in bounded memory: when
// full, the smallest penalty makes room.
type penalties struct {
	mu sync.Mutex
	m  map[peer.ID]penalty
}

type penalty struct {
	points float64
	at     time.Time
}

func (p penalty) value(now time.Time) float64 {
	dt := now.Sub(p.at)
	if dt <= 0 {
		return p.points
	}
	return p.points * math.Exp2(-float64(dt)/float64(workPenaltyHalfLife))
}

func (ps *penalties) add(p peer.ID, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = map[peer.ID]penalty{}
	}
	old, ok := ps.m[p]
	if !ok && len(ps.m) >= maxPenalisedPeers {
		var victim peer.ID
		least := math.Inf(1)
		for q, pen := range ps.m {
			if v := pen.value(now); v < least {
				victim, least = q, v
			}
		}
		delete(ps.m, victim)
	}
	ps.m[p] = penalty{points: old.value(now) + workPenaltyPoints, at: now}
}

func (ps *penalties) get(p peer.ID, now time.Time) float64 {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pen, ok := ps.m[p]
	if !ok {
		return 0
	}
	return pen.value(now)
}
