package p2p

import (
	"testing"
	"time"
)

// TestAdvertTable: the newest advert of each provider wins, expired ones
// are not served, List is ordered by peer, and the table is bounded.
func TestAdvertTable(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a, b := newPeerID(t), newPeerID(t)
	tab := NewAdvertTable()
	tab.Put(testAdvert(a, 5, now), now)
	tab.Put(testAdvert(a, 4, now.Add(time.Second)), now.Add(time.Second)) // older seq: ignored
	if got, ok := tab.Get(a, now); !ok || got.Seq != 5 {
		t.Fatalf("Get after an older advert: %+v %v", got, ok)
	}
	tab.Put(testAdvert(a, 6, now), now)
	if got, _ := tab.Get(a, now); got.Seq != 6 {
		t.Fatalf("a newer advert did not replace: seq %d", got.Seq)
	}
	tab.Put(testAdvert(b, 1, now), now)
	l := tab.List(now)
	if len(l) != 2 || l[0].Advert.Peer > l[1].Advert.Peer || !l[0].First.Equal(now) {
		t.Fatalf("List %+v", l)
	}
	late := testAdvert(a, 6, now).Expires().Add(time.Second)
	if _, ok := tab.Get(a, late); ok {
		t.Fatal("an expired advert was served")
	}
	if l := tab.List(late); len(l) != 0 || tab.Len() != 0 {
		t.Fatalf("List after expiry: %d entries, Len %d", len(l), tab.Len())
	}
	tab.max = 1
	tab.Put(testAdvert(a, 7, now), now)
	tab.Put(testAdvert(b, 2, now), now)
	if tab.Len() != 1 {
		t.Fatalf("a full table took a new provider: Len %d", tab.Len())
	}
}
