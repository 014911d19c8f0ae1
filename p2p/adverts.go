package p2p

import (
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AdvertTable holds the latest advert of every provider this node heard
// of, until it expires: the network's provider directory as this node
// sees it. Every p2p node keeps one. It is safe for concurrent use.
type AdvertTable struct {
	mu  sync.Mutex
	ads map[peer.ID]AdvertEntry
	ops int
	max int
}

// AdvertEntry is one provider's latest advert.
type AdvertEntry struct {
	Advert ProviderAdvert
	ID     string    // Advert.Peer as a string
	First  time.Time // when this node first heard of the provider
}

// MaxAdvertTableLen bounds an AdvertTable; adverts of new providers past
// it are dropped until some expire.
const MaxAdvertTableLen = 50_000

// NewAdvertTable returns an empty table.
func NewAdvertTable() *AdvertTable {
	return &AdvertTable{ads: make(map[peer.ID]AdvertEntry), max: MaxAdvertTableLen}
}

// Put records an advert unless the table holds a newer one of its peer.
func (t *AdvertTable) Put(a ProviderAdvert, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ops++; t.ops%1024 == 0 {
		t.pruneLocked(now)
	}
	e, ok := t.ads[a.Peer]
	if !ok {
		if len(t.ads) >= t.max {
			return
		}
		e.First, e.ID = now, a.Peer.String()
	} else if a.Seq != 0 && e.Advert.Seq > a.Seq {
		return // an older advert than the one we hold
	}
	e.Advert = a
	t.ads[a.Peer] = e
}

// Get returns p's live advert.
func (t *AdvertTable) Get(p peer.ID, now time.Time) (ProviderAdvert, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.ads[p]
	if !ok || now.After(e.Advert.Expires()) {
		return ProviderAdvert{}, false
	}
	return e.Advert, true
}

func (t *AdvertTable) pruneLocked(now time.Time) {
	for id, e := range t.ads {
		if now.After(e.Advert.Expires()) {
			delete(t.ads, id)
		}
	}
}

// List returns the live entries, by peer ID.
func (t *AdvertTable) List(now time.Time) []AdvertEntry {
	t.mu.Lock()
	t.pruneLocked(now)
	out := make([]AdvertEntry, 0, len(t.ads))
	for _, e := range t.ads {
		out = append(out, e)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Advert.Peer < out[j].Advert.Peer })
	return out
}

// Len is the number of providers in the table, expired ones included
// until the next prune.
func (t *AdvertTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.ads)
}
