package coordinator

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/node3/node3"
)

// TestBoard: the board lists exactly the available, unexpired jobs in id
// order, pages after a given id, keeps a requeued job's place and
// compacts the ids of closed jobs away.
func TestBoard(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	job := func(id string, st node3.JobStatus) node3.Job {
		return node3.Job{ID: id, Status: st, ExpiresAt: now.Add(time.Hour)}
	}
	ids := func(js []node3.Job) []string {
		out := make([]string, len(js))
		for i, j := range js {
			out[i] = j.ID
		}
		return out
	}
	steps := []struct {
		name   string
		change node3.Job
		after  string
		limit  int
		want   []string
	}{
		{"posted", job("b", node3.StatusAvailable), "", 10, []string{"b"}},
		{"an earlier id goes first", job("a", node3.StatusAvailable), "", 10, []string{"a", "b"}},
		{"a later one last", job("c", node3.StatusAvailable), "", 10, []string{"a", "b", "c"}},
		{"taken: off the board", job("b", node3.StatusAccepted), "", 10, []string{"a", "c"}},
		{"requeued: back in its place", job("b", node3.StatusAvailable), "", 10, []string{"a", "b", "c"}},
		{"a page after an id", job("d", node3.StatusAvailable), "b", 10, []string{"c", "d"}},
		{"a page after an id not on the board", job("c", node3.StatusCompleted), "bb", 10, []string{"d"}},
		{"the limit", job("e", node3.StatusAvailable), "", 2, []string{"a", "b"}},
		{"an expired job is not listed", node3.Job{ID: "f", Status: node3.StatusAvailable, ExpiresAt: now}, "", 10, []string{"a", "b", "d", "e"}},
		{"a change of a job never available", job("zz", node3.StatusFailed), "", 10, []string{"a", "b", "d", "e"}},
	}
	b := newBoard()
	for _, s := range steps {
		b.update(s.change)
		if got := ids(b.page(s.after, s.limit, now)); !slices.Equal(got, s.want) {
			t.Fatalf("%s: page(%q, %d) = %v, want %v", s.name, s.after, s.limit, got, s.want)
		}
	}

	// Many jobs closing: the dead ids are compacted away.
	c := newBoard()
	for i := range 1000 {
		c.update(job(fmt.Sprintf("j%04d", i), node3.StatusAvailable))
	}
	for i := range 990 {
		c.update(job(fmt.Sprintf("j%04d", i), node3.StatusCompleted))
	}
	if len(c.order) >= 1000 || c.dead > 256 {
		t.Fatalf("after 990 closed of 1000: %d ids kept, %d dead", len(c.order), c.dead)
	}
	if got := c.page("", 100, now); len(got) != 10 || got[0].ID != "j0990" {
		t.Fatalf("the open rest: %v", ids(got))
	}
}
