package ledger

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/node3/node3"
)

// crashDirEnv names the Badger directory of TestCrashChild; set only in
// the child process that TestCrashDurability starts.
const crashDirEnv = "NODE3_LEDGER_CRASH_DIR"

// progress orders the states a crash-child job goes through.
var progress = map[node3.JobStatus]int{
	node3.StatusAvailable: 1,
	node3.StatusAccepted:  2,
	node3.StatusRunning:   3,
	node3.StatusCompleted: 4,
}

// TestCrashChild is the process TestCrashDurability kills. It creates jobs
// and drives them to completion from several goroutines, printing
// "ack <job id> <status>" once each call has returned nil, until killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashDurability")
	}
	l, err := Open(Config{Dir: dir})
	if err != nil {
		fmt.Printf("error open: %v\n", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	ack := func(id string, st node3.JobStatus) {
		mu.Lock()
		defer mu.Unlock()
		// One write per line; if the parent is gone, SIGPIPE ends us.
		os.Stdout.WriteString("ack " + id + " " + string(st) + "\n")
	}
	for g := range 4 {
		go func() {
			agent := fmt.Sprintf("crash-agent-%d", g)
			for {
				now := time.Now().UTC()
				j, err := l.CreateJob(ctx, noopSpec(1000), now)
				if err != nil {
					fmt.Printf("error create: %v\n", err)
					os.Exit(2)
				}
				ack(j.ID, j.Status)
				for _, ev := range []Event{
					{Kind: EvAccept, AgentID: agent, Now: now, Lease: time.Hour},
					{Kind: EvHeartbeat, AgentID: agent, Now: now, Lease: time.Hour},
					{Kind: EvComplete, AgentID: agent, Now: now},
				} {
					if j, err = l.Transition(ctx, j.ID, ev); err != nil {
						fmt.Printf("error %s: %v\n", ev.Kind, err)
						os.Exit(2)
					}
					ack(j.ID, j.Status)
				}
				// A lazy write (not fsynced on its own) survives the
				// kill as well as the durable ones do.
				if err := l.EnqueueReport(ctx, j, node3.Report{JobID: j.ID, Attempt: j.Attempt, Kind: node3.ReportCompleted, At: now}); err != nil {
					fmt.Printf("error enqueue report: %v\n", err)
					os.Exit(2)
				}
				ack(j.ID, "outbox")
			}
		}()
	}
	select {}
}

// TestCrashDurability runs TestCrashChild in a child process, SIGKILLs it
// once it has acknowledged a few hundred writes, reopens its ledger and
// checks that every acknowledged write, durable or lazy, survived. Three rounds, on the same
// directory, each killed at a different point.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	acked := make(map[string]node3.JobStatus) // the furthest acknowledged state of each job
	outbox := make(map[string]bool)           // jobs whose (lazy) report write was acknowledged
	for round, killAfter := range []int{150, 311, 457} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.timeout=2m", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A child that stalls is killed all the same; the count below fails.
		watchdog := time.AfterFunc(60*time.Second, func() { syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) })
		sc := bufio.NewScanner(stdout)
		n := 0
		var bad []string
		for n < killAfter && sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "ack" && f[2] == "outbox" {
				outbox[f[1]] = true
				n++
				continue
			}
			if len(f) != 3 || f[0] != "ack" || progress[node3.JobStatus(f[2])] == 0 {
				bad = append(bad, sc.Text())
				continue
			}
			if st := node3.JobStatus(f[2]); progress[st] > progress[acked[f[1]]] {
				acked[f[1]] = st
			}
			n++
		}
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		cmd.Wait()
		watchdog.Stop()
		if n < killAfter || len(bad) > 0 {
			t.Fatalf("round %d: %d acks of %d; unexpected output %q; stderr:\n%s", round, n, killAfter, bad, stderr.String())
		}

		l, err := Open(Config{Dir: dir})
		if err != nil {
			t.Fatalf("round %d: reopen after kill: %v", round, err)
		}
		lost := 0
		for id, st := range acked {
			j, err := l.Job(ctx, id)
			if err != nil || progress[j.Status] < progress[st] {
				if lost++; lost <= 5 {
					t.Errorf("round %d: job %s was acknowledged %s, reads %q (%v)", round, id, st, j.Status, err)
				}
			}
		}
		pending, err := l.PendingReports(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		inOutbox := make(map[string]bool, len(pending))
		for _, r := range pending {
			inOutbox[r.JobID] = true
		}
		for id := range outbox {
			if !inOutbox[id] {
				if lost++; lost <= 5 {
					t.Errorf("round %d: the report of job %s was acknowledged, is not in the outbox", round, id)
				}
			}
		}
		// The books still balance: counters match the jobs, one payout per
		// completed job.
		s, err := l.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		all, err := l.Jobs(ctx, JobFilter{Limit: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		count := make(map[node3.JobStatus]int64)
		for _, j := range all {
			count[j.Status]++
		}
		for _, st := range node3.AllStatuses {
			if s.Jobs[st] != count[st] {
				t.Errorf("round %d: Stats.Jobs[%s] = %d, %d jobs are", round, st, s.Jobs[st], count[st])
			}
		}
		if s.JobsTotal != int64(len(all)) || s.PayoutsPending != count[node3.StatusCompleted] {
			t.Errorf("round %d: total %d for %d jobs, %d payouts for %d completed", round, s.JobsTotal, len(all), s.PayoutsPending, count[node3.StatusCompleted])
		}
		t.Logf("round %d: killed after %d acks; %d jobs acknowledged so far, %d on disk, %v; %d reports in the outbox", round, n, len(acked), len(all), count, len(pending))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}
