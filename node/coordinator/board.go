package coordinator

import (
	"slices"
	"time"

	"github.com/node3/node3"
)

// board is the coordinator's in-memory list of the available jobs in
// creation order, fed in commit order by the ledger's job-change feed, so
// that the open board (for a late joiner's sync) is a walk over a slice
// instead of a scan of Badger's index. Who gets which job is the
// scheduler's business (schedule.Scheduler), not the board's.
//
// board is not safe for concurrent use; the coordinator guards it.
type board struct {
	jobs  map[string]node3.Job // available jobs by id
	order []string             // ids in job-id (creation) order; may hold ids no longer available
	dead  int                  // how many ids in order are not in jobs
}

func newBoard() *board {
	return &board{jobs: make(map[string]node3.Job)}
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

// page returns up to limit available jobs unexpired at now with ids after
// after ("" for the first page), in id (creation) order.
func (b *board) page(after string, limit int, now time.Time) []node3.Job {
	i := 0
	if after != "" {
		i, _ = slices.BinarySearch(b.order, after)
		if i < len(b.order) && b.order[i] == after {
			i++
		}
	}
	var out []node3.Job
	for ; i < len(b.order) && len(out) < limit; i++ {
		j, ok := b.jobs[b.order[i]]
		if !ok || !now.Before(j.ExpiresAt) {
			continue
		}
		out = append(out, j)
	}
	return out
}
