package p2p

import (
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
)

// Reasons a gossip message is not accepted; they are metric labels.
const (
	reasonOversize  = "oversize"
	reasonMalformed = "malformed"
	reasonVersion   = "version"
	reasonAuthor    = "author_mismatch"
	reasonUntrusted = "untrusted"
	reasonFuture    = "future"
	reasonExpired   = "expired"
	reasonReplay    = "replay"
)

// verdict is the outcome of validating one gossip message.
type verdict struct {
	result pubsub.ValidationResult
	reason string
	err    error
}

var accepted = verdict{result: pubsub.ValidationAccept}

func reject(reason string, err error) verdict {
	return verdict{result: pubsub.ValidationReject, reason: reason, err: err}
}

func ignore(reason string, err error) verdict {
	return verdict{result: pubsub.ValidationIgnore, reason: reason, err: err}
}

// trustSet is the run-time changeable set of trusted coordinators.
type trustSet struct {
	mu  sync.RWMutex
	set map[peer.ID]struct{}
	fn  func(peer.ID) bool
}

func (t *trustSet) trusted(p peer.ID) bool {
	t.mu.RLock()
	_, ok := t.set[p]
	fn := t.fn
	t.mu.RUnlock()
	return ok || (fn != nil && fn(p))
}

func (t *trustSet) replace(ids []peer.ID) {
	set := make(map[peer.ID]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	t.mu.Lock()
	t.set = set
	t.mu.Unlock()
}

func (t *trustSet) list() []peer.ID {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]peer.ID, 0, len(t.set))
	for id := range t.set {
		out = append(out, id)
	}
	return out
}

// validator holds the rules of the two gossip topics. It is independent of
// pubsub so the rules can be tested directly.
//
// Reject (the forwarder's score drops) is for what no honest forwarder
// passes on: malformed or oversized data, a claimed identity that is not
// the signer's, an untrusted coordinator, a time far in the future or a
// message expired for longer than the allowed clock skew. Ignore (dropped,
// no penalty) is for what depends on this node's own state: replays and
// stale sequence numbers, messages that expired moments ago, and versions
// newer than this node speaks.
type validator struct {
	self    peer.ID
	clock   func() time.Time
	skew    time.Duration
	trust   *trustSet
	jobs    *replayCache
	adverts *replayCache
}

func (v *validator) checkTimes(issued, expires time.Time) verdict {
	now := v.clock()
	if issued.After(now.Add(v.skew)) {
		return reject(reasonFuture, fmt.Errorf("issued %s in the future", issued.Sub(now)))
	}
	if now.After(expires) {
		err := fmt.Errorf("expired %s ago", now.Sub(expires))
		if now.After(expires.Add(v.skew)) {
			return reject(reasonExpired, err)
		}
		return ignore(reasonExpired, err)
	}
	return accepted
}

func decodeVerdict(err error) verdict {
	if errors.Is(err, errNewerVersion) {
		return ignore(reasonVersion, err)
	}
	if node3.ErrorCode(err) == node3.CodeTooLarge {
		return reject(reasonOversize, err)
	}
	return reject(reasonMalformed, err)
}

// job validates a jobs-topic message signed by author, a single posting or
// a batch, and returns the postings to deliver. A batch is rejected whole
// if any posting in it is one no honest coordinator signs (malformed,
// another coordinator's, far in the future or long expired); postings
// that only this node's state makes stale (replays, older Seq, just
// expired) are dropped one by one, and a batch with none left is ignored.
func (v *validator) job(author peer.ID, data []byte) ([]JobPosting, verdict) {
	ps, err := DecodeJobMessage(data)
	if err != nil {
		return nil, decodeVerdict(err)
	}
	// Every posting names one coordinator (DecodeJobMessage checks a
	// batch's agree).
	if ps[0].Coordinator != author {
		return nil, reject(reasonAuthor, fmt.Errorf("posting names coordinator %s but is signed by %s", ps[0].Coordinator, author))
	}
	if author != v.self && !v.trust.trusted(author) {
		return nil, reject(reasonUntrusted, fmt.Errorf("coordinator %s is not trusted", author))
	}
	keep := make([]bool, len(ps))
	last := accepted
	for i := range ps {
		vd := v.checkTimes(ps[i].IssuedAt, ps[i].ExpiresAt)
		switch vd.result {
		case pubsub.ValidationReject:
			return nil, vd
		case pubsub.ValidationAccept:
			keep[i] = true
		default:
			last = vd
		}
	}
	// Only a message that passed every check touches the replay cache.
	now := v.clock()
	out := ps[:0]
	for i, p := range ps {
		if !keep[i] {
			continue
		}
		if !v.jobs.admit(string(author)+"\x00"+p.JobID, p.Seq, p.ExpiresAt.Add(v.skew), now) {
			last = ignore(reasonReplay, fmt.Errorf("posting %s seq %d already seen", p.JobID, p.Seq))
			continue
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, last
	}
	return out, accepted
}

// advert validates a providers-topic message signed by author.
func (v *validator) advert(author peer.ID, data []byte) (ProviderAdvert, verdict) {
	a, err := DecodeAdvert(data)
	if err != nil {
		return ProviderAdvert{}, decodeVerdict(err)
	}
	if a.Peer != author {
		return a, reject(reasonAuthor, fmt.Errorf("advert claims peer %s but is signed by %s", a.Peer, author))
	}
	if vd := v.checkTimes(a.IssuedAt, a.Expires()); vd.result != pubsub.ValidationAccept {
		return a, vd
	}
	if !v.adverts.admit(string(author), a.Seq, a.Expires().Add(v.skew), v.clock()) {
		return a, ignore(reasonReplay, fmt.Errorf("advert seq %d already seen", a.Seq))
	}
	return a, accepted
}
