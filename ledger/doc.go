// Package ledger keeps a node's books in Badger: jobs and their state
// machine, leases, agents and their API keys (stored hashed), payouts,
// counters for stats, and a provider's own outbox and job history.
//
// The job state machine is pure (Apply in jobstate.go: no I/O, no clock;
// the caller passes the time), so every transition is a table test. The
// Ledger applies it inside Badger transactions.
//
// Writes go through one writer goroutine that gathers concurrent requests
// into a single Badger transaction and commits them with one fsync (group
// commit). Each request is still atomic on its own: it computes its
// mutations from what it reads, and they are applied only if it succeeds.
// A call that returns nil has been synced to disk and survives kill -9.
//
//	l, err := ledger.Open(ledger.Config{Dir: dir})
//	defer l.Close()
//	job, err := l.CreateJob(ctx, spec, now)
//	job, err = l.Transition(ctx, job.ID, ledger.Event{Kind: ledger.EvAccept, AgentID: a, Now: now, Lease: 30 * time.Second})
package ledger
