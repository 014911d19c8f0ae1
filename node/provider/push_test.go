package provider

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
	"github.com/node3/node3/p2p"
)

// TestPushGrantPastAckDeadline: a grant that waited here past its ack
// deadline is not started (the coordinator has given it back and may
// have granted it elsewhere); one within it goes on to be acked.
func TestPushGrantPastAckDeadline(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	coord := peer.ID("coordinator")
	tr := &Push{
		cfg:    PushConfig{Now: func() time.Time { return now }},
		log:    slog.New(slog.DiscardHandler),
		conns:  map[peer.ID]*p2p.WorkConn{}, // no stream: an ack would have nowhere to go
		grants: map[string]pushGrant{},
	}
	tr.grants["late"] = pushGrant{coord: coord, job: node3.Job{ID: "late"}, attempt: 1, ackBy: now.Add(-time.Millisecond)}
	tr.grants["fresh"] = pushGrant{coord: coord, job: node3.Job{ID: "fresh"}, attempt: 1, ackBy: now.Add(time.Second)}

	_, err := tr.Accept(context.Background(), "late")
	if node3.ErrorCode(err) != node3.CodeConflict || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("late grant: %v, want a conflict saying it expired", err)
	}
	_, err = tr.Accept(context.Background(), "fresh")
	if err == nil || strings.Contains(err.Error(), "expired") {
		t.Fatalf("fresh grant: %v, want it to get as far as the (missing) stream", err)
	}
	if len(tr.grants) != 0 {
		t.Fatalf("grants left waiting: %v", tr.grants)
	}
}
