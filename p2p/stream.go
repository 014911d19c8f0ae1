package p2p

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/node3/node3"
)

// Stream framing. A request and a response are one frame each:
//
//	kind (1 byte: 0 data, 1 error) | length (uvarint) | payload (length bytes)
//
// An error frame's payload is JSON {"code": node3.Code, "message": string}.
// The requester half-closes after its frame; the responder closes after
// its own.
const (
	frameData  byte = 0
	frameError byte = 1

	maxErrorMessage = 1024
)

// errFrameTooLarge is returned by readFrame for a declared length above max.
var errFrameTooLarge = errors.New("frame too large")

// Handler serves one request of a protocol. from is the authenticated peer
// on the stream. A returned error goes back to the requester as a
// RemoteError carrying node3.ErrorCode(err) and node3.ErrorMessage(err), so
// internal details stay here. ctx ends at StreamTimeout or on Close.
type Handler func(ctx context.Context, from peer.ID, req []byte) ([]byte, error)

// RemoteError is an error frame received from the peer that served a
// request. It unwraps to a *node3.Error with the remote code, so
// node3.ErrorCode works on it.
type RemoteError struct {
	Peer     peer.ID
	Protocol protocol.ID
	Code     node3.Code
	Message  string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("%s: peer %s answered %s: %s", e.Protocol, e.Peer.ShortString(), e.Code, e.Message)
}

// Unwrap returns the remote error as a *node3.Error.
func (e *RemoteError) Unwrap() error { return &node3.Error{Code: e.Code, Message: e.Message} }

type errorFrame struct {
	Code    node3.Code `json:"code"`
	Message string     `json:"message"`
}

var knownCodes = map[node3.Code]bool{
	node3.CodeInvalid: true, node3.CodeNotFound: true, node3.CodeConflict: true,
	node3.CodeUnauthorized: true, node3.CodeForbidden: true, node3.CodeUnavailable: true,
	node3.CodeTooLarge: true, node3.CodeInternal: true,
}

func cleanMessage(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxErrorMessage {
		s = s[:maxErrorMessage]
	}
	return strings.ToValidUTF8(s, "")
}

// decodeErrorFrame turns an error payload into its parts; unknown codes
// become internal, messages are cleaned and capped.
func decodeErrorFrame(payload []byte) errorFrame {
	var ef errorFrame
	if err := json.Unmarshal(payload, &ef); err != nil {
		return errorFrame{Code: node3.CodeInternal, Message: "malformed error frame"}
	}
	if !knownCodes[ef.Code] {
		ef.Code = node3.CodeInternal
	}
	ef.Message = cleanMessage(ef.Message)
	return ef
}

func writeFrame(w io.Writer, kind byte, payload []byte) error {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = kind
	k := binary.PutUvarint(hdr[1:], uint64(len(payload)))
	buf := make([]byte, 0, 1+k+len(payload))
	buf = append(buf, hdr[:1+k]...)
	buf = append(buf, payload...)
	_, err := w.Write(buf)
	return err
}

// readFrameHeader reads kind and length, refusing a length above max
// before anything is allocated.
func readFrameHeader(r *bufio.Reader, max int) (kind byte, size int, err error) {
	kind, err = r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	if kind != frameData && kind != frameError {
		return 0, 0, fmt.Errorf("unknown frame kind %d", kind)
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, fmt.Errorf("frame length: %w", err)
	}
	if n > uint64(max) {
		return kind, 0, fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, max)
	}
	return kind, int(n), nil
}

// readFrame reads one frame of at most max payload bytes.
func readFrame(r *bufio.Reader, max int) (kind byte, payload []byte, err error) {
	kind, size, err := readFrameHeader(r, max)
	if err != nil {
		return kind, nil, err
	}
	payload = make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("frame payload: %w", err)
	}
	return kind, payload, nil
}

func protocolID(network, name string) protocol.ID {
	return protocol.ID("/node3/" + network + "/" + name + "/1")
}

// Handle serves protocol p with h until Close. A later Handle for the same
// protocol replaces the handler.
func (n *Node) Handle(p protocol.ID, h Handler) {
	n.setStreamHandler(p, func(s network.Stream) { n.serve(p, h, s) })
}

// setStreamHandler registers sh for protocol p, to be removed at Close;
// a closing node registers nothing.
func (n *Node) setStreamHandler(p protocol.ID, sh network.StreamHandler) {
	n.lifeMu.Lock()
	if n.closing {
		n.lifeMu.Unlock()
		return
	}
	n.protocols[p] = struct{}{}
	n.lifeMu.Unlock()
	n.host.SetStreamHandler(p, sh)
}

func (n *Node) serve(p protocol.ID, h Handler, s network.Stream) {
	if !n.enter() {
		_ = s.Reset()
		return
	}
	defer n.wg.Done()
	from := s.Conn().RemotePeer()
	result := "error"
	defer func() { n.metrics.requests.WithLabelValues(string(p), "server", result).Inc() }()

	_ = s.SetDeadline(time.Now().Add(n.cfg.StreamTimeout))
	fail := func(code node3.Code, msg string) {
		ef, _ := json.Marshal(errorFrame{Code: code, Message: cleanMessage(msg)})
		_ = s.CloseRead()
		if err := writeFrame(s, frameError, ef); err != nil {
			_ = s.Reset()
			return
		}
		_ = s.Close()
	}
	r := bufio.NewReaderSize(s, 512)
	kind, size, err := readFrameHeader(r, n.cfg.MaxFrameSize)
	if err != nil {
		if errors.Is(err, errFrameTooLarge) {
			fail(node3.CodeTooLarge, fmt.Sprintf("request is larger than %d bytes", n.cfg.MaxFrameSize))
			return
		}
		n.log.Debug("bad request frame", "protocol", p, "from", from, "err", err)
		_ = s.Reset()
		return
	}
	if kind != frameData {
		fail(node3.CodeInvalid, "expected a data frame")
		return
	}
	// Account the request buffer with the resource manager.
	if err := s.Scope().ReserveMemory(size, network.ReservationPriorityMedium); err != nil {
		fail(node3.CodeUnavailable, "out of resources, try again")
		return
	}
	defer s.Scope().ReleaseMemory(size)
	req := make([]byte, size)
	if _, err := io.ReadFull(r, req); err != nil {
		n.log.Debug("short request", "protocol", p, "from", from, "err", err)
		_ = s.Reset()
		return
	}

	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.StreamTimeout)
	resp, herr := h(ctx, from, req)
	cancel()
	if herr != nil {
		fail(node3.ErrorCode(herr), node3.ErrorMessage(herr))
		if node3.ErrorCode(herr) == node3.CodeInternal {
			n.log.Warn("request handler failed", "protocol", p, "from", from, "err", herr)
		}
		return
	}
	if len(resp) > n.cfg.MaxFrameSize {
		n.log.Warn("response too large", "protocol", p, "size", len(resp))
		fail(node3.CodeInternal, "response too large")
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(n.cfg.StreamTimeout))
	if err := writeFrame(s, frameData, resp); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
	result = "ok"
}

// Request sends req to peer p on protocol proto and returns the response.
// The exchange ends at ctx's deadline (or StreamTimeout without one); a
// cancelled ctx aborts it. A request above MaxFrameSize fails locally with
// node3.CodeTooLarge; an error frame from the peer is a *RemoteError.
func (n *Node) Request(ctx context.Context, p peer.ID, proto protocol.ID, req []byte) (_ []byte, err error) {
	result := "error"
	defer func() {
		if err == nil {
			result = "ok"
		}
		n.metrics.requests.WithLabelValues(string(proto), "client", result).Inc()
	}()
	if len(req) > n.cfg.MaxFrameSize {
		return nil, node3.Errorf(node3.CodeTooLarge, "%s request is %d bytes, more than %d", proto, len(req), n.cfg.MaxFrameSize)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.StreamTimeout)
		defer cancel()
	}
	s, err := n.host.NewStream(ctx, p, proto)
	if err != nil {
		return nil, wrapCtx(ctx, fmt.Errorf("%s: open stream to %s: %w", proto, p.ShortString(), err))
	}
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	// Cancelling ctx resets the stream, which unblocks reads and writes.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()

	// Write in the background while reading, so an early answer (an error
	// frame for an oversized request) is seen even if the peer stops
	// reading.
	werr := make(chan error, 1)
	go func() {
		err := writeFrame(s, frameData, req)
		if err == nil {
			err = s.CloseWrite()
		}
		werr <- err
	}()
	kind, payload, rerr := readFrame(bufio.NewReaderSize(s, 512), n.cfg.MaxFrameSize)
	if rerr != nil || kind == frameError {
		// Done with the stream either way; the reset also unblocks a
		// writer the peer stopped reading from.
		_ = s.Reset()
		<-werr
	} else if err := <-werr; err != nil {
		_ = s.Reset()
		return nil, wrapCtx(ctx, fmt.Errorf("%s: write request to %s: %w", proto, p.ShortString(), err))
	} else {
		_ = s.Close()
	}
	switch {
	case errors.Is(rerr, errFrameTooLarge):
		return nil, node3.Errorf(node3.CodeTooLarge, "%s: response from %s is larger than %d bytes", proto, p.ShortString(), n.cfg.MaxFrameSize)
	case rerr != nil:
		return nil, wrapCtx(ctx, fmt.Errorf("%s: read response from %s: %w", proto, p.ShortString(), rerr))
	case kind == frameError:
		ef := decodeErrorFrame(payload)
		return nil, &RemoteError{Peer: p, Protocol: proto, Code: ef.Code, Message: ef.Message}
	}
	return payload, nil
}

// wrapCtx makes a failure caused by ctx (deadline, cancel) or by the
// stream deadline (set from ctx's) match context.DeadlineExceeded /
// context.Canceled with errors.Is.
func wrapCtx(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil {
		var ne net.Error
		dl, ok := ctx.Deadline()
		if errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) || (ok && !time.Now().Before(dl)) {
			cerr = context.DeadlineExceeded
		}
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (%w)", err, cerr)
	}
	return err
}
