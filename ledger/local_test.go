package ledger

import (
	"reflect"
	"testing"
	"time"

	"github.com/node3/node3"
)

func localJob(t *testing.T, reward node3.Lamports) node3.Job {
	t.Helper()
	id, err := NewJobID()
	if err != nil {
		t.Fatal(err)
	}
	return node3.Job{ID: id, JobSpec: noopSpec(reward), Status: node3.StatusRunning, AgentID: "self", Attempt: 1, CreatedAt: t0}
}

func reportIDs(rs []node3.Report) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.JobID)
	}
	return ids
}

func jobIDs(js []node3.Job) []string {
	var ids []string
	for _, j := range js {
		ids = append(ids, j.ID)
	}
	return ids
}

func TestLocalOutboxAndEarnings(t *testing.T) {
	l := openTest(t)
	const self = "self"
	// Creation order is ID order: j[0] is the oldest.
	var j []node3.Job
	for i := range 4 {
		j = append(j, localJob(t, node3.Lamports(100*(i+1))))
	}
	for _, i := range []int{2, 0, 3, 1} {
		r := node3.Report{JobID: j[i].ID, Kind: node3.ReportCompleted, At: t0, Result: node3.JobResult{ExecutionTime: 2}}
		if err := l.EnqueueReport(ctx, j[i], r); err != nil {
			t.Fatal(err)
		}
	}
	pending, err := l.PendingReports(ctx, 0)
	if err != nil || !reflect.DeepEqual(reportIDs(pending), jobIDs(j)) {
		t.Fatalf("PendingReports = %v, %v; want oldest job first %v", reportIDs(pending), err, jobIDs(j))
	}
	if two, _ := l.PendingReports(ctx, 2); len(two) != 2 || two[0].JobID != j[0].ID {
		t.Fatalf("PendingReports(2) = %v", reportIDs(two))
	}
	hist, err := l.LocalJobs(ctx, 0)
	if err != nil || !reflect.DeepEqual(jobIDs(hist), []string{j[3].ID, j[2].ID, j[1].ID, j[0].ID}) {
		t.Fatalf("LocalJobs = %v, %v; want newest first", jobIDs(hist), err)
	}
	if one, _ := l.LocalJobs(ctx, 1); len(one) != 1 || one[0].ID != j[3].ID {
		t.Fatalf("LocalJobs(1) = %v", jobIDs(one))
	}

	for range 2 {
		if err := l.BumpReport(ctx, j[0].ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.BumpReport(ctx, "unknown-job"); err != nil {
		t.Fatalf("BumpReport of no report: %v", err)
	}
	pending, _ = l.PendingReports(ctx, 0)
	if len(pending) != 4 || pending[0].Attempts != 2 || pending[1].Attempts != 0 {
		t.Fatalf("after bumps: %+v", pending)
	}

	// Acknowledged as completed under us: earned once, however often the
	// ack is repeated. The day is the UTC day, whatever now's zone.
	now := time.Date(2026, 3, 1, 23, 30, 0, 0, time.UTC).In(time.FixedZone("+10", 10*3600))
	done := j[0]
	done.Status, done.FinishedAt = node3.StatusCompleted, t0
	for range 3 {
		if err := l.AckReport(ctx, j[0].ID, &done, self, now); err != nil {
			t.Fatal(err)
		}
	}
	// Failed, completed under another agent, unknown to the coordinator.
	failed := j[1]
	failed.Status = node3.StatusFailed
	theirs := j[2]
	theirs.Status, theirs.AgentID = node3.StatusCompleted, "someone-else"
	for _, a := range []struct {
		id    string
		coord *node3.Job
	}{{j[1].ID, &failed}, {j[1].ID, &failed}, {j[2].ID, &theirs}, {j[3].ID, nil}, {"never-enqueued", &done}} {
		if err := l.AckReport(ctx, a.id, a.coord, self, now); err != nil {
			t.Fatal(err)
		}
	}
	if pending, _ := l.PendingReports(ctx, 0); len(pending) != 0 {
		t.Fatalf("outbox after acks: %v", reportIDs(pending))
	}
	e, err := l.Earnings(ctx, now.UTC())
	if want := (node3.Earnings{Total: 100, Today: 100, Completed: 1, Failed: 1}); err != nil || e != want {
		t.Fatalf("Earnings = %+v, %v; want %+v", e, err, want)
	}
	if e, _ := l.Earnings(ctx, now.UTC().Add(time.Hour)); e.Today != 0 || e.Total != 100 {
		t.Fatalf("next UTC day: %+v", e)
	}

	// The history holds the coordinator's answer where there was one.
	hist, _ = l.LocalJobs(ctx, 0)
	want := []node3.Job{j[3], theirs, failed, done}
	if !reflect.DeepEqual(hist, want) {
		t.Fatalf("history after acks:\n %+v\nwant\n %+v", hist, want)
	}
	// RecordLocalJob replaces, never duplicates.
	upd := j[3]
	upd.Status = node3.StatusCancelled
	if err := l.RecordLocalJob(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if hist, _ := l.LocalJobs(ctx, 0); len(hist) != 4 || hist[0].Status != node3.StatusCancelled {
		t.Fatalf("after RecordLocalJob: %+v", hist)
	}
}

func TestSettings(t *testing.T) {
	l := openTest(t)
	if v, err := l.Setting(ctx, "api_key"); err != nil || v != "" {
		t.Fatalf("unset setting = %q, %v", v, err)
	}
	for _, v := range []string{"n3_first", "n3_second", ""} {
		if err := l.SetSetting(ctx, "api_key", v); err != nil {
			t.Fatal(err)
		}
		if got, err := l.Setting(ctx, "api_key"); err != nil || got != v {
			t.Fatalf("Setting = %q, %v; want %q", got, err, v)
		}
	}
	if err := l.SetSetting(ctx, "agent_id", "a-1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Setting(ctx, "agent_id"); got != "a-1" {
		t.Fatalf("agent_id = %q", got)
	}
}

// TestLazyWritesSkipFsync: a provider's books (history, outbox) are lazy
// writes and cost no fsync; a durable write costs one.
func TestLazyWritesSkipFsync(t *testing.T) {
	l := openAt(t, t.TempDir(), false)
	j := node3.Job{ID: "lazy-1", Status: node3.StatusCompleted}
	before := l.Syncs()
	if err := l.EnqueueReport(ctx, j, node3.Report{JobID: j.ID, Kind: node3.ReportCompleted, At: t0}); err != nil {
		t.Fatal(err)
	}
	if err := l.RecordLocalJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	if got := l.Syncs() - before; got != 0 {
		t.Fatalf("lazy writes made %d fsyncs, want 0", got)
	}
	if pending, err := l.PendingReports(ctx, 0); err != nil || len(pending) != 1 {
		t.Fatalf("outbox after a lazy write: %v, %v", pending, err)
	}
	if err := l.SetSetting(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got := l.Syncs() - before; got != 1 {
		t.Fatalf("a durable write made %d fsyncs, want 1", got)
	}
}
