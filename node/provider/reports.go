package provider

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
	"github.com/node3/node3/p2p"
)

// reporter sends heartbeats and final reports over streams to the
// coordinator that granted each job (or, after a restart that forgot it,
// to every trusted coordinator in turn). Both libp2p transports use it.
type reporter struct {
	pn      *p2p.Node
	trusted []peer.ID
	// reports bounds the reports in flight, below the per-peer stream
	// limit of the report protocol (16).
	reports chan struct{}

	mu      sync.Mutex
	coordOf map[string]peer.ID // jobs granted to us → who granted them
}

func newReporter(pn *p2p.Node, trusted []peer.ID) *reporter {
	return &reporter{pn: pn, trusted: trusted, reports: make(chan struct{}, maxInFlight), coordOf: make(map[string]peer.ID)}
}

// remember notes who granted a job.
func (t *reporter) remember(jobID string, coord peer.ID) {
	t.mu.Lock()
	t.coordOf[jobID] = coord
	t.mu.Unlock()
}

// reportTimeout bounds one heartbeat.
const reportTimeout = 10 * time.Second

// coordinatorsFor lists whom to send a report about jobID: the coordinator
// that granted it, or — after a restart, when that is forgotten — every
// trusted coordinator in turn.
func (t *reporter) coordinatorsFor(jobID string) []peer.ID {
	t.mu.Lock()
	c, ok := t.coordOf[jobID]
	t.mu.Unlock()
	if ok {
		return []peer.ID{c}
	}
	return t.trusted
}

func (t *reporter) report(ctx context.Context, r p2p.Report) (p2p.ReportAck, error) {
	targets := t.coordinatorsFor(r.JobID)
	if len(targets) == 0 {
		return p2p.ReportAck{}, errNoCoordinator
	}
	if err := acquire(ctx, t.reports); err != nil {
		return p2p.ReportAck{}, err
	}
	defer func() { <-t.reports }()
	var last error
	for i, c := range targets {
		ack, err := t.pn.SendReport(ctx, c, r)
		if node3.ErrorCode(err) == node3.CodeNotFound && i < len(targets)-1 {
			last = err
			continue // not this coordinator's job: ask the next
		}
		if err == nil && len(targets) > 1 {
			t.mu.Lock()
			t.coordOf[r.JobID] = c
			t.mu.Unlock()
		}
		return ack, err
	}
	return p2p.ReportAck{}, last
}

func (t *reporter) Heartbeat(ctx context.Context, jobID string, attempt int) error {
	hctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	ack, err := t.report(hctx, p2p.Report{Kind: p2p.ReportHeartbeat, JobID: jobID, Attempt: attempt})
	if err != nil {
		return err
	}
	if ack.Cancel {
		return node3.Errorf(node3.CodeConflict, "the coordinator took job %s back: %s", jobID, ack.Reason)
	}
	return nil
}

func (t *reporter) Complete(ctx context.Context, jobID string, attempt int, res node3.JobResult) (Ack, error) {
	ack, err := t.report(ctx, p2p.Report{Kind: p2p.ReportCompleted, JobID: jobID, Attempt: attempt, Result: &res})
	return t.final(jobID, ack, err, node3.StatusCompleted)
}

func (t *reporter) Fail(ctx context.Context, jobID string, attempt int, reason string, retryable bool, res node3.JobResult) (Ack, error) {
	if len(reason) > 1024 {
		reason = reason[:1020] + "…"
	}
	ack, err := t.report(ctx, p2p.Report{Kind: p2p.ReportFailed, JobID: jobID, Attempt: attempt, Result: &res, Reason: reason, Retryable: retryable})
	guess := node3.StatusFailed
	if retryable {
		guess = node3.StatusAvailable
	}
	return t.final(jobID, ack, err, guess)
}

func (t *reporter) final(jobID string, ack p2p.ReportAck, err error, guess node3.JobStatus) (Ack, error) {
	if err != nil {
		if node3.Refused(err) || node3.ErrorCode(err) == node3.CodeInvalid {
			t.forget(jobID)
		}
		return Ack{}, err
	}
	t.forget(jobID)
	if ack.Status == "" {
		ack.Status = guess
	}
	return Ack{Status: ack.Status}, nil
}

func (t *reporter) forget(jobID string) {
	t.mu.Lock()
	delete(t.coordOf, jobID)
	t.mu.Unlock()
}
