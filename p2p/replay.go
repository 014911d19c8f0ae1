package p2p

import (
	"container/heap"
	"sync"
	"time"
)

// replayCache remembers, per key (author plus job, or author alone), the
// highest sequence number accepted and until when the message carrying it
// stays valid. A message whose seq is not above the remembered one is a
// replay or stale. Memory is bounded: past max entries the entry closest to
// expiry is forgotten first (after expiry a replay fails the time check
// anyway), so only a flood of more than max live keys can make an old
// message acceptable again — and consumers are idempotent.
type replayCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*replayEntry
	byExp   expiryHeap
	evicted uint64
}

type replayEntry struct {
	key     string
	seq     uint64
	expires time.Time
	idx     int
}

func newReplayCache(max int) *replayCache {
	if max < 1 {
		max = 1
	}
	return &replayCache{max: max, entries: make(map[string]*replayEntry)}
}

// admit reports whether seq is new for key and, if so, records it until
// expires. now prunes entries whose messages have expired.
func (c *replayCache) admit(key string, seq uint64, expires, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.byExp) > 0 && c.byExp[0].expires.Before(now) {
		e := heap.Pop(&c.byExp).(*replayEntry)
		delete(c.entries, e.key)
	}
	if e, ok := c.entries[key]; ok {
		if seq <= e.seq {
			return false
		}
		e.seq = seq
		if expires.After(e.expires) {
			e.expires = expires
			heap.Fix(&c.byExp, e.idx)
		}
		return true
	}
	if len(c.entries) >= c.max {
		e := heap.Pop(&c.byExp).(*replayEntry)
		delete(c.entries, e.key)
		c.evicted++
	}
	e := &replayEntry{key: key, seq: seq, expires: expires}
	heap.Push(&c.byExp, e)
	c.entries[key] = e
	return true
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

type expiryHeap []*replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*replayEntry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	e.idx = -1
	return e
}
