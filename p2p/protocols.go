package p2p

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/node3/node3"
)

// Names of the request/response protocols.
const (
	protoClaim  = "claim"
	protoReport = "report"
	protoSync   = "sync"
)

// ClaimProtocol is "/node3/<network>/claim/1": a provider asks a
// coordinator for a job.
func ClaimProtocol(network string) protocol.ID { return protocolID(network, protoClaim) }

// ReportProtocol is "/node3/<network>/report/1": heartbeats and results.
func ReportProtocol(network string) protocol.ID { return protocolID(network, protoReport) }

// SyncProtocol is "/node3/<network>/sync/1": a late joiner fetches the
// open board.
func SyncProtocol(network string) protocol.ID { return protocolID(network, protoSync) }

// Limits of the typed stream messages.
const (
	maxClaimSize     = 64 << 10
	maxReportSize    = node3.MaxResultOutput + 64<<10
	maxSyncLimit     = 1000
	maxSyncPostings  = maxSyncLimit
	defaultSyncLimit = 100
)

// ClaimRequest asks the coordinator for a job, offering GPUs for it.
type ClaimRequest struct {
	Version int         `json:"v"`
	JobID   string      `json:"job_id"`
	GPUs    []node3.GPU `json:"gpus,omitempty"`
	Wallet  string      `json:"wallet_address,omitempty"`
}

// ClaimResponse grants (with a lease) or denies a claim.
type ClaimResponse struct {
	Version        int        `json:"v"`
	JobID          string     `json:"job_id"`
	Granted        bool       `json:"granted"`
	LeaseExpiresAt time.Time  `json:"lease_expires_at,omitzero"`
	Reason         string     `json:"reason,omitempty"` // why denied
	Job            *node3.Job `json:"job,omitempty"`    // the job as granted
}

// ReportKind says what a Report is.
type ReportKind string

// Report kinds.
const (
	ReportHeartbeat ReportKind = "heartbeat" // still running: extend the lease
	ReportCompleted ReportKind = "completed"
	ReportFailed    ReportKind = "failed"
)

// Report is a provider's heartbeat or final report on a job.
type Report struct {
	Version int              `json:"v"`
	Kind    ReportKind       `json:"kind"`
	JobID   string           `json:"job_id"`
	Attempt int              `json:"attempt,omitempty"` // the attempt the grant was for (0: unknown)
	Result  *node3.JobResult `json:"result,omitempty"`  // completed and failed
	Reason  string           `json:"reason,omitempty"`  // failed
	// Retryable asks, for a failure that was not the job's fault (the
	// provider is shutting down), to put the job back while attempts remain.
	Retryable bool      `json:"retryable,omitempty"`
	SentAt    time.Time `json:"sent_at,omitzero"`
}

// ReportAck answers a Report. Cancel tells the provider to stop the job
// (lease lost, job cancelled).
type ReportAck struct {
	Version        int       `json:"v"`
	JobID          string    `json:"job_id"`
	LeaseExpiresAt time.Time `json:"lease_expires_at,omitzero"`
	Cancel         bool      `json:"cancel,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	// Status is the job's state after a completed or failed report
	// (completed, failed, or available when a failure requeued it).
	Status node3.JobStatus `json:"status,omitempty"`
}

// SyncRequest asks for open postings, in job id order after After.
type SyncRequest struct {
	Version int    `json:"v"`
	After   string `json:"after,omitempty"`
	Limit   int    `json:"limit,omitempty"` // 0 means 100; at most 1000
}

// SyncResponse carries open postings; More says there are more after the
// last one.
type SyncResponse struct {
	Version  int          `json:"v"`
	Postings []JobPosting `json:"postings"`
	More     bool         `json:"more,omitempty"`
}

// streamVersion refuses versions other than ours: a stream peer gets a
// clear error instead of a half-understood message.
func streamVersion(v int, what string) error {
	if v != Version {
		return node3.Errorf(node3.CodeInvalid, "%s version %d is not supported (want %d)", what, v, Version)
	}
	return nil
}

func checkGPUs(gpus []node3.GPU) error {
	if len(gpus) > node3.MaxGPUCount {
		return node3.Errorf(node3.CodeInvalid, "more than %d GPUs", node3.MaxGPUCount)
	}
	for i, g := range gpus {
		if len(g.UUID) > maxGPUText || len(g.Vendor) > maxGPUText || len(g.Model) > maxGPUText || len(g.Driver) > maxGPUText {
			return node3.Errorf(node3.CodeInvalid, "gpus[%d] has a field longer than %d bytes", i, maxGPUText)
		}
		if g.Index < 0 || g.Index > 4096 {
			return node3.Errorf(node3.CodeInvalid, "gpus[%d].index is out of range", i)
		}
	}
	return nil
}

// DecodeClaimRequest decodes and checks a claim request.
func DecodeClaimRequest(data []byte) (ClaimRequest, error) {
	var r ClaimRequest
	if err := decodeStrict(data, maxClaimSize, "claim request", &r); err != nil {
		return ClaimRequest{}, err
	}
	if err := streamVersion(r.Version, "claim request"); err != nil {
		return ClaimRequest{}, err
	}
	if err := checkJobID(r.JobID); err != nil {
		return ClaimRequest{}, err
	}
	if err := checkGPUs(r.GPUs); err != nil {
		return ClaimRequest{}, err
	}
	if err := checkWallet(r.Wallet); err != nil {
		return ClaimRequest{}, err
	}
	return r, nil
}

// DecodeClaimResponse decodes and checks a claim response.
func DecodeClaimResponse(data []byte) (ClaimResponse, error) {
	var r ClaimResponse
	if err := decodeStrict(data, MaxJobMessageSize, "claim response", &r); err != nil {
		return ClaimResponse{}, err
	}
	if err := streamVersion(r.Version, "claim response"); err != nil {
		return ClaimResponse{}, err
	}
	if err := checkJobID(r.JobID); err != nil {
		return ClaimResponse{}, err
	}
	if err := checkText("reason", r.Reason, maxReasonLen); err != nil {
		return ClaimResponse{}, err
	}
	if r.Granted && r.LeaseExpiresAt.IsZero() {
		return ClaimResponse{}, node3.Errorf(node3.CodeInvalid, "a granted claim needs lease_expires_at")
	}
	if r.Job != nil && r.Job.ID != r.JobID {
		return ClaimResponse{}, node3.Errorf(node3.CodeInvalid, "granted job id differs from job_id")
	}
	return r, nil
}

// DecodeReport decodes and checks a report.
func DecodeReport(data []byte) (Report, error) {
	var r Report
	if err := decodeStrict(data, maxReportSize, "report", &r); err != nil {
		return Report{}, err
	}
	if err := streamVersion(r.Version, "report"); err != nil {
		return Report{}, err
	}
	if err := r.check(); err != nil {
		return Report{}, err
	}
	return r, nil
}

func (r *Report) check() error {
	if err := checkJobID(r.JobID); err != nil {
		return err
	}
	if r.Attempt < 0 || r.Attempt > node3.MaxMaxAttempts {
		return node3.Errorf(node3.CodeInvalid, "attempt must be between 0 and %d", node3.MaxMaxAttempts)
	}
	switch r.Kind {
	case ReportHeartbeat:
	case ReportCompleted:
		if r.Result == nil {
			return node3.Errorf(node3.CodeInvalid, "a completed report needs a result")
		}
	case ReportFailed:
	default:
		return node3.Errorf(node3.CodeInvalid, "report kind %q is not heartbeat, completed or failed", truncate(string(r.Kind), 32))
	}
	if r.Result != nil {
		if err := r.Result.Check(); err != nil {
			return err
		}
	}
	return checkText("reason", r.Reason, maxReasonLen)
}

// DecodeReportAck decodes and checks a report acknowledgement.
func DecodeReportAck(data []byte) (ReportAck, error) {
	var a ReportAck
	if err := decodeStrict(data, maxClaimSize, "report ack", &a); err != nil {
		return ReportAck{}, err
	}
	if err := streamVersion(a.Version, "report ack"); err != nil {
		return ReportAck{}, err
	}
	if err := checkJobID(a.JobID); err != nil {
		return ReportAck{}, err
	}
	if err := checkText("reason", a.Reason, maxReasonLen); err != nil {
		return ReportAck{}, err
	}
	if a.Status != "" && !knownStatus(a.Status) {
		return ReportAck{}, node3.Errorf(node3.CodeInvalid, "status %q is not a job state", truncate(string(a.Status), 32))
	}
	return a, nil
}

// DecodeSyncRequest decodes and checks a sync request; Limit comes back
// defaulted.
func DecodeSyncRequest(data []byte) (SyncRequest, error) {
	var r SyncRequest
	if err := decodeStrict(data, maxClaimSize, "sync request", &r); err != nil {
		return SyncRequest{}, err
	}
	if err := streamVersion(r.Version, "sync request"); err != nil {
		return SyncRequest{}, err
	}
	if r.After != "" {
		if err := checkJobID(r.After); err != nil {
			return SyncRequest{}, err
		}
	}
	if r.Limit == 0 {
		r.Limit = defaultSyncLimit
	}
	if r.Limit < 1 || r.Limit > maxSyncLimit {
		return SyncRequest{}, node3.Errorf(node3.CodeInvalid, "limit must be between 1 and %d", maxSyncLimit)
	}
	return r, nil
}

// DecodeSyncResponse decodes a sync response of at most max bytes and
// checks the shape of every posting (not times: a board snapshot may hold
// postings issued long ago).
func DecodeSyncResponse(data []byte, max int) (SyncResponse, error) {
	var r SyncResponse
	if err := decodeStrict(data, max, "sync response", &r); err != nil {
		return SyncResponse{}, err
	}
	if err := streamVersion(r.Version, "sync response"); err != nil {
		return SyncResponse{}, err
	}
	if len(r.Postings) > maxSyncPostings {
		return SyncResponse{}, node3.Errorf(node3.CodeInvalid, "more than %d postings", maxSyncPostings)
	}
	for i := range r.Postings {
		p := &r.Postings[i]
		if err := checkVersion(p.Version, "posting"); err != nil {
			return SyncResponse{}, fmt.Errorf("postings[%d]: %w", i, err)
		}
		if err := p.check(); err != nil {
			return SyncResponse{}, fmt.Errorf("postings[%d]: %w", i, err)
		}
	}
	return r, nil
}

// Typed clients and servers of the three protocols.

// RequestClaim sends a claim to a coordinator.
func (n *Node) RequestClaim(ctx context.Context, coordinator peer.ID, req ClaimRequest) (ClaimResponse, error) {
	req.Version = Version
	data, err := json.Marshal(req)
	if err != nil {
		return ClaimResponse{}, fmt.Errorf("encode claim: %w", err)
	}
	out, err := n.Request(ctx, coordinator, ClaimProtocol(n.cfg.Network), data)
	if err != nil {
		return ClaimResponse{}, err
	}
	resp, err := DecodeClaimResponse(out)
	if err != nil {
		return ClaimResponse{}, fmt.Errorf("claim response from %s: %w", coordinator.ShortString(), err)
	}
	if resp.JobID != req.JobID {
		return ClaimResponse{}, fmt.Errorf("claim response from %s is for job %s, not %s", coordinator.ShortString(), resp.JobID, req.JobID)
	}
	return resp, nil
}

// HandleClaim serves claims with h; the response's Version and JobID are
// filled in.
func (n *Node) HandleClaim(h func(ctx context.Context, from peer.ID, req ClaimRequest) (ClaimResponse, error)) {
	n.Handle(ClaimProtocol(n.cfg.Network), func(ctx context.Context, from peer.ID, data []byte) ([]byte, error) {
		req, err := DecodeClaimRequest(data)
		if err != nil {
			return nil, err
		}
		resp, err := h(ctx, from, req)
		if err != nil {
			return nil, err
		}
		resp.Version, resp.JobID = Version, req.JobID
		return json.Marshal(resp)
	})
}

// SendReport sends a heartbeat or final report to a coordinator.
func (n *Node) SendReport(ctx context.Context, coordinator peer.ID, r Report) (ReportAck, error) {
	r.Version = Version
	if r.SentAt.IsZero() {
		r.SentAt = n.cfg.Clock()
	}
	if err := r.check(); err != nil {
		return ReportAck{}, fmt.Errorf("send report: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return ReportAck{}, fmt.Errorf("encode report: %w", err)
	}
	out, err := n.Request(ctx, coordinator, ReportProtocol(n.cfg.Network), data)
	if err != nil {
		return ReportAck{}, err
	}
	ack, err := DecodeReportAck(out)
	if err != nil {
		return ReportAck{}, fmt.Errorf("report ack from %s: %w", coordinator.ShortString(), err)
	}
	return ack, nil
}

// HandleReport serves reports with h; the ack's Version and JobID are
// filled in.
func (n *Node) HandleReport(h func(ctx context.Context, from peer.ID, r Report) (ReportAck, error)) {
	n.Handle(ReportProtocol(n.cfg.Network), func(ctx context.Context, from peer.ID, data []byte) ([]byte, error) {
		r, err := DecodeReport(data)
		if err != nil {
			return nil, err
		}
		ack, err := h(ctx, from, r)
		if err != nil {
			return nil, err
		}
		ack.Version, ack.JobID = Version, r.JobID
		return json.Marshal(ack)
	})
}

// RequestSync fetches open postings from a coordinator. Every posting must
// be the coordinator's own.
func (n *Node) RequestSync(ctx context.Context, coordinator peer.ID, req SyncRequest) (SyncResponse, error) {
	req.Version = Version
	data, err := json.Marshal(req)
	if err != nil {
		return SyncResponse{}, fmt.Errorf("encode sync request: %w", err)
	}
	out, err := n.Request(ctx, coordinator, SyncProtocol(n.cfg.Network), data)
	if err != nil {
		return SyncResponse{}, err
	}
	resp, err := DecodeSyncResponse(out, n.cfg.MaxFrameSize)
	if err != nil {
		return SyncResponse{}, fmt.Errorf("sync response from %s: %w", coordinator.ShortString(), err)
	}
	for _, p := range resp.Postings {
		if p.Coordinator != coordinator {
			return SyncResponse{}, fmt.Errorf("sync response from %s: posting %s names coordinator %s", coordinator.ShortString(), p.JobID, p.Coordinator.ShortString())
		}
	}
	return resp, nil
}

// HandleSync serves sync requests with h. Postings are filled like
// PublishJob fills them (Version, Coordinator = this node, IssuedAt, Seq,
// ExpiresAt) and the list is cut, with More set, to fit the request's
// limit and MaxFrameSize.
func (n *Node) HandleSync(h func(ctx context.Context, from peer.ID, req SyncRequest) (SyncResponse, error)) {
	n.Handle(SyncProtocol(n.cfg.Network), func(ctx context.Context, from peer.ID, data []byte) ([]byte, error) {
		req, err := DecodeSyncRequest(data)
		if err != nil {
			return nil, err
		}
		resp, err := h(ctx, from, req)
		if err != nil {
			return nil, err
		}
		return n.encodeSync(resp, req.Limit)
	})
}

func (n *Node) encodeSync(resp SyncResponse, limit int) ([]byte, error) {
	resp.Version = Version
	if len(resp.Postings) > limit {
		resp.Postings, resp.More = resp.Postings[:limit], true
	}
	budget := n.cfg.MaxFrameSize - 64 // envelope: {"v":1,"postings":[...],"more":true}
	size := 0
	for i := range resp.Postings {
		p := &resp.Postings[i]
		if err := n.fillPosting(p); err != nil {
			return nil, fmt.Errorf("sync posting %d: %w", i, err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode sync posting: %w", err)
		}
		if size+len(b)+1 > budget {
			if i == 0 {
				return nil, node3.Errorf(node3.CodeInternal, "posting %s does not fit in a frame", p.JobID)
			}
			resp.Postings, resp.More = resp.Postings[:i], true
			break
		}
		size += len(b) + 1
	}
	if resp.Postings == nil {
		resp.Postings = []JobPosting{}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode sync response: %w", err)
	}
	if len(out) > n.cfg.MaxFrameSize {
		return nil, errors.New("sync response does not fit in a frame")
	}
	return out, nil
}

// fillPosting completes a posting this node issues and checks it.
func (n *Node) fillPosting(p *JobPosting) error {
	if p.Version == 0 {
		p.Version = Version
	}
	if p.Coordinator == "" {
		p.Coordinator = n.self
	}
	if p.IssuedAt.IsZero() {
		p.IssuedAt = n.cfg.Clock()
	}
	if p.Seq == 0 {
		p.Seq = n.nextSeq(p.IssuedAt)
	}
	if p.Status == "" && p.Job != nil {
		p.Status = p.Job.Status
	}
	if p.ExpiresAt.IsZero() {
		if p.Kind == PostingPosted && p.Job != nil && p.Job.ExpiresAt.After(p.IssuedAt) {
			p.ExpiresAt = p.Job.ExpiresAt
		} else {
			p.ExpiresAt = p.IssuedAt.Add(DefaultStatusLifetime)
		}
	}
	if err := checkVersion(p.Version, "job posting"); err != nil {
		return err
	}
	return p.check()
}
