package ledger

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/node3/node3"
)

func TestCallsAfterClose(t *testing.T) {
	l := openTest(t)
	j := mustCreate(t, l, noopSpec(1), t0)
	a, key := mustRegister(t, l, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+2, err)
		}
	}
	calls := map[string]func() error{
		"CreateJob":  func() error { _, err := l.CreateJob(ctx, noopSpec(1), t0); return err },
		"Transition": func() error { _, err := l.Transition(ctx, j.ID, acceptEv(a.ID, t0)); return err },
		"Sweep":      func() error { _, err := l.Sweep(ctx, EvLeaseExpire, t0, 10); return err },
		"Job":        func() error { _, err := l.Job(ctx, j.ID); return err },
		"Jobs":       func() error { _, err := l.Jobs(ctx, JobFilter{}); return err },
		"Jobs(status)": func() error {
			_, err := l.Jobs(ctx, JobFilter{Status: node3.StatusAvailable})
			return err
		},
		"Stats":          func() error { _, err := l.Stats(ctx); return err },
		"RegisterAgent":  func() error { _, _, err := l.RegisterAgent(ctx, node3.Agent{WalletAddress: wallet(2)}, t0); return err },
		"AgentByKey":     func() error { _, err := l.AgentByKey(ctx, key); return err },
		"Agent":          func() error { _, err := l.Agent(ctx, a.ID); return err },
		"Agents":         func() error { _, err := l.Agents(ctx); return err },
		"Payout":         func() error { _, err := l.Payout(ctx, j.ID); return err },
		"Payouts":        func() error { _, err := l.Payouts(ctx, "", 0); return err },
		"SetSetting":     func() error { return l.SetSetting(ctx, "k", "v") },
		"Setting":        func() error { _, err := l.Setting(ctx, "k"); return err },
		"RecordLocalJob": func() error { return l.RecordLocalJob(ctx, j) },
		"EnqueueReport":  func() error { return l.EnqueueReport(ctx, j, node3.Report{JobID: j.ID}) },
		"PendingReports": func() error { _, err := l.PendingReports(ctx, 0); return err },
		"BumpReport":     func() error { return l.BumpReport(ctx, j.ID) },
		"AckReport":      func() error { return l.AckReport(ctx, j.ID, nil, a.ID, t0) },
		"LocalJobs":      func() error { _, err := l.LocalJobs(ctx, 0); return err },
		"Earnings":       func() error { _, err := l.Earnings(ctx, t0); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("panicked after Close: %v", p)
				}
			}()
			wantCode(t, name+" after Close", call(), node3.CodeUnavailable)
		})
	}
}

// TestCloseUnderLoad closes the ledger while writers and readers are busy:
// every call either works or says unavailable, none panics, and every write
// that returned nil is there after a reopen.
func TestCloseUnderLoad(t *testing.T) {
	dir := t.TempDir()
	l := openAt(t, dir, false)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	fail := make(chan string, 16)
	// Writers create jobs (and read them back); readers scan.
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					fail <- "panic: " + toString(p)
				}
			}()
			for {
				var err error
				if g%2 == 0 {
					var j node3.Job
					if j, err = l.CreateJob(ctx, noopSpec(1), t0); err == nil {
						mu.Lock()
						acked = append(acked, j.ID)
						mu.Unlock()
						_, err = l.Job(ctx, j.ID)
					}
				} else {
					if _, err = l.Jobs(ctx, JobFilter{Status: node3.StatusAvailable, Limit: 5}); err == nil {
						_, err = l.Stats(ctx)
					}
				}
				if err != nil {
					if node3.ErrorCode(err) != node3.CodeUnavailable {
						fail <- "error: " + err.Error()
					}
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(fail)
	for f := range fail {
		t.Error(f)
	}
	if len(acked) == 0 {
		t.Fatal("no write succeeded before Close")
	}
	l = openAt(t, dir, true)
	for _, id := range acked {
		mustJob(t, l, id)
	}
	if s, _ := l.Stats(ctx); s.JobsTotal != int64(len(acked)) {
		t.Fatalf("%d jobs counted, %d acknowledged", s.JobsTotal, len(acked))
	}
}

func toString(v any) string {
	if e, ok := v.(error); ok {
		return e.Error()
	}
	if s, ok := v.(string); ok {
		return s
	}
	return "non-string panic value"
}

// TestOpenTightensPermissions: an existing ledger whose directory and
// files are open to others is tightened before Badger opens it.
func TestOpenTightensPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	l, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("ledger files: %v, %v", entries, err)
	}
	for _, e := range entries {
		if err := os.Chmod(filepath.Join(dir, e.Name()), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	l, err = Open(Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("ledger directory mode %04o, want 0700", st.Mode().Perm())
	}
	for _, e := range entries {
		st, err := os.Stat(filepath.Join(dir, e.Name()))
		if err == nil && st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %04o still open to others", e.Name(), st.Mode().Perm())
		}
	}
	if !strings.Contains(logs.String(), "tightened permissions") {
		t.Errorf("no warning logged: %q", logs.String())
	}
}
