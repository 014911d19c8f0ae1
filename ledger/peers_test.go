package ledger

import (
	"testing"
	"time"

	"github.com/node3/node3"
)

const testPeer = "12D3KooWRGDGaCsCwHScggvTUaiGAJmxfmEiqBe94SuSbr3j6BPt"

func TestUpsertPeerAgent(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir, true)
	gpus := []node3.GPU{{Index: 0, Vendor: "NVIDIA", Model: "A100", MemoryBytes: 80 << 30}}

	_, _, err := l.UpsertPeerAgent(ctx, "", node3.Agent{WalletAddress: wallet(1)}, t0)
	wantCode(t, "no peer", err, node3.CodeInvalid)
	_, _, err = l.UpsertPeerAgent(ctx, testPeer, node3.Agent{}, t0)
	wantCode(t, "no wallet", err, node3.CodeInvalid)

	a, changed, err := l.UpsertPeerAgent(ctx, testPeer, node3.Agent{WalletAddress: wallet(1), GPUs: gpus, Version: "v1", JobsCompleted: 5}, t0)
	if err != nil || !changed {
		t.Fatalf("create: %+v %v %v", a, changed, err)
	}
	if a.ID != testPeer || a.GPUModel != "A100" || a.JobsCompleted != 0 || !a.RegisteredAt.Equal(t0) {
		t.Fatalf("created %+v", a)
	}
	// The same again writes nothing.
	_, changed, err = l.UpsertPeerAgent(ctx, testPeer, node3.Agent{WalletAddress: wallet(1), GPUs: gpus, Version: "v1"}, t0.Add(time.Second))
	if err != nil || changed {
		t.Fatalf("repeat: changed=%v %v", changed, err)
	}
	// It earns; then a new wallet keeps its books and registration.
	j := mustCreate(t, l, noopSpec(1000), t0)
	mustTransition(t, l, j.ID, Event{Kind: EvAccept, AgentID: testPeer, Now: t0, Lease: time.Minute})
	mustTransition(t, l, j.ID, Event{Kind: EvComplete, AgentID: testPeer, Now: t0, Result: &node3.JobResult{}})
	a, changed, err = l.UpsertPeerAgent(ctx, testPeer, node3.Agent{WalletAddress: wallet(2), GPUs: gpus, Version: "v2"}, t0.Add(time.Hour))
	if err != nil || !changed || a.WalletAddress != wallet(2) || a.Version != "v2" || a.JobsCompleted != 1 || a.Earned != 1000 || !a.RegisteredAt.Equal(t0) {
		t.Fatalf("update: %+v %v %v", a, changed, err)
	}
	// Durable across a reopen, and counted once among the agents.
	l.Close()
	l = openAt(t, dir, true)
	got, err := l.Agent(ctx, testPeer)
	if err != nil || got.WalletAddress != wallet(2) || got.JobsCompleted != 1 {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	s, err := l.Stats(ctx)
	if err != nil || s.Agents != 1 {
		t.Fatalf("agents counted %d, %v", s.Agents, err)
	}
}

func TestAckReportAs(t *testing.T) {
	l := openTest(t)
	j := node3.Job{ID: "job-1", JobSpec: noopSpec(500), Status: node3.StatusCompleted}
	r := node3.Report{JobID: j.ID, Kind: node3.ReportCompleted, At: t0}
	if err := l.EnqueueReport(ctx, j, r); err != nil {
		t.Fatal(err)
	}
	if err := l.AckReportAs(ctx, j.ID, node3.StatusCompleted, testPeer, t0); err != nil {
		t.Fatal(err)
	}
	if err := l.AckReportAs(ctx, j.ID, node3.StatusCompleted, testPeer, t0); err != nil {
		t.Fatal(err) // a repeat is a no-op
	}
	e, err := l.Earnings(ctx, t0)
	if err != nil || e.Total != 500 || e.Completed != 1 {
		t.Fatalf("earnings %+v %v", e, err)
	}
	p, _ := l.PendingReports(ctx, 0)
	h, _ := l.LocalJobs(ctx, 10)
	if len(p) != 0 || len(h) != 1 || h[0].AgentID != testPeer || h[0].Status != node3.StatusCompleted {
		t.Fatalf("outbox %v, history %+v", p, h)
	}
}
