package coordinator

import (
	"slices"
	"time"

	"github.com/node3/node3"
)

// board is the coordinator's in-memory view of the available jobs, fed in
// commit order by the ledger's job-change feed, so that finding work for an
// agent costs a walk over a slice instead of a scan of Badger's index (and
// its tombstones). It also remembers which agent each job was just offered
// to, so that concurrent polls are not all handed the same job.
//
// board is not safe for concurrent use; the coordinator guards it.
type board struct {
	jobs   map[string]node3.Job // available jobs by id
	order  []string             // ids in job-id (creation) order; may hold ids no longer available
	dead   int                  // how many ids in order are not in jobs
	offers map[string]offer     // job id → who it was last offered to, until when
}

type offer struct {
	agent string
	at    time.Time
	until time.Time
}

// reofferAfter is how long a job on offer is kept from the agent it was
// offered to: long enough for its accept to land, short enough that a
// poll answer lost on the way costs little.
const reofferAfter = 250 * time.Millisecond

func newBoard() *board {
	return &board{jobs: make(map[string]node3.Job), offers: make(map[string]offer)}
}

// update applies one committed job change.
func (b *board) update(j node3.Job) {
	_, had := b.jobs[j.ID]
	if j.Status == node3.StatusAvailable {
		b.jobs[j.ID] = j
		if had {
			return
		}
		if i, found := slices.BinarySearch(b.order, j.ID); found {
			b.dead-- // back from the dead: a requeued job keeps its place
		} else {
			b.order = slices.Insert(b.order, i, j.ID)
		}
		return
	}
	delete(b.offers, j.ID)
	if !had {
		return
	}
	delete(b.jobs, j.ID)
	b.dead++
	if b.dead > 256 && b.dead > len(b.order)/2 {
		live := b.order[:0]
		for _, id := range b.order {
			if _, ok := b.jobs[id]; ok {
				live = append(live, id)
			}
		}
		clear(b.order[len(live):])
		b.order, b.dead = live, 0
	}
}

// take returns up to limit available jobs, oldest first, that match and
// are not on offer right now — to another agent until the offer lapses, to
// this agent for reofferAfter — and puts them on offer to agent until now+ttl.
func (b *board) take(agent string, limit int, now time.Time, ttl time.Duration, match func(node3.Job) bool) []node3.Job {
	var out []node3.Job
	for _, id := range b.order {
		if len(out) == limit {
			break
		}
		j, ok := b.jobs[id]
		if !ok || !now.Before(j.ExpiresAt) {
			continue
		}
		if o, held := b.offers[id]; held && now.Before(o.until) && (o.agent != agent || now.Sub(o.at) < reofferAfter) {
			continue
		}
		if !match(j) {
			continue
		}
		b.offers[id] = offer{agent: agent, at: now, until: now.Add(ttl)}
		out = append(out, j)
	}
	return out
}

// release withdraws the offers made to agent at least reofferAfter ago:
// an agent that asks again did not take them.
func (b *board) release(agent string, now time.Time) {
	for id, o := range b.offers {
		if o.agent == agent && now.Sub(o.at) >= reofferAfter {
			delete(b.offers, id)
		}
	}
}

// offeredTo counts the live offers to agent.
func (b *board) offeredTo(agent string, now time.Time) int {
	n := 0
	for _, o := range b.offers {
		if o.agent == agent && now.Before(o.until) {
			n++
		}
	}
	return n
}

// expireOffers forgets offers that have run out.
func (b *board) expireOffers(now time.Time) {
	for id, o := range b.offers {
		if !now.Before(o.until) {
			delete(b.offers, id)
		}
	}
}

// size is the number of available jobs.
func (b *board) size() int { return len(b.jobs) }
