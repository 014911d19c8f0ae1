package p2p

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/mr-tron/base58"

	"github.com/node3/node3"
)

// Version is the version of every message this package encodes. Decoders
// reject messages without a version and ignore (gossip) or refuse (streams)
// messages with a newer one.
const Version = 1

// Size limits of gossip messages. A valid job spec can reach ~60 KiB of
// text before JSON escaping, so postings get more room than adverts.
const (
	MaxJobMessageSize    = 128 << 10
	MaxAdvertMessageSize = 64 << 10
)

// Lifetimes of gossip messages.
const (
	// MaxPostingLifetime bounds ExpiresAt-IssuedAt of a JobPosting: a
	// posting may live as long as its job may wait (node3.MaxTTL), plus a day.
	MaxPostingLifetime = time.Duration(node3.MaxTTL)*time.Second + 24*time.Hour
	// DefaultStatusLifetime is how long a status update stays valid when
	// the publisher does not say.
	DefaultStatusLifetime = time.Hour
	// MaxAdvertTTL bounds ProviderAdvert.TTLSecs; providers re-send adverts
	// well within it.
	MaxAdvertTTL = time.Hour
	// DefaultAdvertTTL is used when an advert is published without a TTL.
	DefaultAdvertTTL = 5 * time.Minute
)

// Field limits.
const (
	maxJobIDLen   = 128
	maxReasonLen  = 1024
	maxVersionLen = 64
	maxWalletLen  = 64
	maxSlots      = 1024
	maxGPUText    = 256
)

// PostingKind says what a JobPosting announces.
type PostingKind string

// Posting kinds.
const (
	PostingPosted PostingKind = "posted" // a new job is open for claims
	PostingStatus PostingKind = "status" // a job changed state (assigned, done, …)
)

// JobPosting is a message on the jobs topic. It is authored, and signed, by
// a coordinator: Coordinator must equal the gossip author, and receivers act
// only on coordinators they trust.
type JobPosting struct {
	Version int         `json:"v"`
	Kind    PostingKind `json:"kind"`
	JobID   string      `json:"job_id"`
	// Job is the job itself; required for PostingPosted, optional for
	// status updates. Keep Result out of postings: it does not fit.
	Job      *node3.Job      `json:"job,omitempty"`
	Status   node3.JobStatus `json:"status"`
	Provider peer.ID         `json:"provider,omitempty"` // assigned provider, if any
	Reason   string          `json:"reason,omitempty"`
	// Coordinator is the peer that issued the posting.
	Coordinator peer.ID `json:"coordinator"`
	// Seq orders the postings of one job: receivers drop a posting whose Seq
	// is not above the last one seen for the same coordinator and job.
	Seq       uint64    `json:"seq"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"` // when the message stops mattering
}

// PostingBatch is a jobs-topic message that carries several postings of
// one coordinator under one signature: a coordinator at work changes
// thousands of jobs a second, and signing, forwarding and verifying each
// change on its own would cost every node on the topic more than the work
// itself. Every posting names the batch's coordinator; each is checked,
// ordered (Seq) and replay-filtered on its own, as if it came alone.
type PostingBatch struct {
	Version     int          `json:"v"`
	Coordinator peer.ID      `json:"coordinator"`
	Postings    []JobPosting `json:"postings"`
}

// MaxBatchPostings bounds the postings of one PostingBatch (the message
// size, MaxJobMessageSize, bounds it too).
const MaxBatchPostings = 512

// ProviderAdvert is a message on the providers topic: a provider's offer,
// signed by the provider's own peer key.
type ProviderAdvert struct {
	Version         int            `json:"v"`
	Peer            peer.ID        `json:"peer_id"` // must equal the gossip author
	GPUs            []node3.GPU    `json:"gpus"`
	FreeSlots       int            `json:"free_slots"`
	PriceFloor      node3.Lamports `json:"price_floor_lamports"`
	Wallet          string         `json:"wallet_address,omitempty"` // base58 Solana address
	SoftwareVersion string         `json:"software_version,omitempty"`
	Seq             uint64         `json:"seq"` // increases with every advert of this peer
	IssuedAt        time.Time      `json:"issued_at"`
	TTLSecs         int            `json:"ttl_seconds"`
}

// Expires is when the advert stops being valid.
func (a ProviderAdvert) Expires() time.Time {
	return a.IssuedAt.Add(time.Duration(a.TTLSecs) * time.Second)
}

// errNewerVersion marks a well-formed message of a version this node does
// not speak: gossip ignores it rather than punishing the forwarder.
var errNewerVersion = errors.New("newer message version")

// decodeStrict decodes exactly one JSON value of at most max bytes into v.
// Unknown fields are accepted (a version may grow fields), trailing data is
// not.
func decodeStrict(data []byte, max int, what string, v any) error {
	if len(data) > max {
		return node3.Errorf(node3.CodeTooLarge, "%s is %d bytes, more than %d", what, len(data), max)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return node3.Errorf(node3.CodeInvalid, "%s is not valid JSON: %v", what, trimErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return node3.Errorf(node3.CodeInvalid, "%s has trailing data", what)
	}
	return nil
}

func checkVersion(v int, what string) error {
	switch {
	case v == Version:
		return nil
	case v > Version:
		return fmt.Errorf("%s version %d: %w", what, v, errNewerVersion)
	default:
		return node3.Errorf(node3.CodeInvalid, "%s has no valid version (v=%d)", what, v)
	}
}

// DecodeJobPosting decodes and checks the shape of a jobs-topic message. It
// does not check time, trust or replays: the gossip validator does that.
func DecodeJobPosting(data []byte) (JobPosting, error) {
	var p JobPosting
	if err := decodeStrict(data, MaxJobMessageSize, "job posting", &p); err != nil {
		return JobPosting{}, err
	}
	if err := checkVersion(p.Version, "job posting"); err != nil {
		return JobPosting{}, err
	}
	if err := p.check(); err != nil {
		return JobPosting{}, err
	}
	return p, nil
}

// jobMessage is either wire form of a jobs-topic message: a JobPosting or
// a PostingBatch (the batch's v and coordinator fill the embedded
// posting's fields of the same names).
type jobMessage struct {
	JobPosting
	Postings []JobPosting `json:"postings"`
}

// DecodeJobMessage decodes and checks the shape of a jobs-topic message,
// a single JobPosting or a PostingBatch, and returns its postings (at
// least one). Like DecodeJobPosting it does not check time, trust or
// replays.
func DecodeJobMessage(data []byte) ([]JobPosting, error) {
	var m jobMessage
	if err := decodeStrict(data, MaxJobMessageSize, "job message", &m); err != nil {
		return nil, err
	}
	if m.Postings == nil {
		if err := checkVersion(m.Version, "job posting"); err != nil {
			return nil, err
		}
		if err := m.JobPosting.check(); err != nil {
			return nil, err
		}
		return []JobPosting{m.JobPosting}, nil
	}
	if err := checkVersion(m.Version, "posting batch"); err != nil {
		return nil, err
	}
	if m.Kind != "" || m.JobID != "" || m.Job != nil || m.Seq != 0 {
		return nil, node3.Errorf(node3.CodeInvalid, "a posting batch carries its postings only in postings")
	}
	if err := checkPeer("coordinator", m.Coordinator, true); err != nil {
		return nil, err
	}
	if len(m.Postings) == 0 {
		return nil, node3.Errorf(node3.CodeInvalid, "posting batch is empty")
	}
	if len(m.Postings) > MaxBatchPostings {
		return nil, node3.Errorf(node3.CodeInvalid, "posting batch has %d postings, more than %d", len(m.Postings), MaxBatchPostings)
	}
	for i := range m.Postings {
		p := &m.Postings[i]
		if err := checkVersion(p.Version, "job posting"); err != nil {
			return nil, fmt.Errorf("posting %d: %w", i, err)
		}
		if err := p.check(); err != nil {
			return nil, fmt.Errorf("posting %d: %w", i, err)
		}
		if p.Coordinator != m.Coordinator {
			return nil, node3.Errorf(node3.CodeInvalid, "posting %d names coordinator %s, not the batch's", i, p.Coordinator.ShortString())
		}
	}
	return m.Postings, nil
}

// DecodeAdvert decodes and checks the shape of a providers-topic message.
func DecodeAdvert(data []byte) (ProviderAdvert, error) {
	var a ProviderAdvert
	if err := decodeStrict(data, MaxAdvertMessageSize, "provider advert", &a); err != nil {
		return ProviderAdvert{}, err
	}
	if err := checkVersion(a.Version, "provider advert"); err != nil {
		return ProviderAdvert{}, err
	}
	if err := a.check(); err != nil {
		return ProviderAdvert{}, err
	}
	return a, nil
}

func checkJobID(id string) error {
	if id == "" {
		return node3.Errorf(node3.CodeInvalid, "job_id is empty")
	}
	if len(id) > maxJobIDLen {
		return node3.Errorf(node3.CodeInvalid, "job_id is longer than %d bytes", maxJobIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return node3.Errorf(node3.CodeInvalid, "job_id may only contain letters, digits and -_.:")
		}
	}
	return nil
}

func knownStatus(s node3.JobStatus) bool {
	for _, k := range node3.AllStatuses {
		if s == k {
			return true
		}
	}
	return false
}

func checkText(name, s string, max int) error {
	if len(s) > max {
		return node3.Errorf(node3.CodeInvalid, "%s is longer than %d bytes", name, max)
	}
	return nil
}

func checkPeer(name string, p peer.ID, required bool) error {
	if p == "" {
		if required {
			return node3.Errorf(node3.CodeInvalid, "%s is missing", name)
		}
		return nil
	}
	if err := p.Validate(); err != nil {
		return node3.Errorf(node3.CodeInvalid, "%s is not a peer ID", name)
	}
	return nil
}

// check validates the shape of a posting: fields present, known and within
// limits. It does not look at clocks.
func (p *JobPosting) check() error {
	if err := checkJobID(p.JobID); err != nil {
		return err
	}
	if err := checkPeer("coordinator", p.Coordinator, true); err != nil {
		return err
	}
	if err := checkPeer("provider", p.Provider, false); err != nil {
		return err
	}
	if !knownStatus(p.Status) {
		return node3.Errorf(node3.CodeInvalid, "status %q is not a job state", truncate(string(p.Status), 32))
	}
	if err := checkText("reason", p.Reason, maxReasonLen); err != nil {
		return err
	}
	switch p.Kind {
	case PostingPosted:
		if p.Job == nil {
			return node3.Errorf(node3.CodeInvalid, "a posted job carries its job")
		}
		if p.Status != node3.StatusAvailable {
			return node3.Errorf(node3.CodeInvalid, "a posted job must be available, not %s", p.Status)
		}
	case PostingStatus:
	default:
		return node3.Errorf(node3.CodeInvalid, "kind %q is not posted or status", truncate(string(p.Kind), 32))
	}
	if p.Job != nil {
		if p.Job.ID != p.JobID {
			return node3.Errorf(node3.CodeInvalid, "job id %q differs from job_id %q", truncate(p.Job.ID, 32), p.JobID)
		}
		if p.Job.Status != p.Status {
			return node3.Errorf(node3.CodeInvalid, "job status %q differs from status %q", truncate(string(p.Job.Status), 32), p.Status)
		}
		spec := p.Job.JobSpec // Normalize fills defaults: check a copy
		if err := spec.NormalizePublic(); err != nil {
			return err
		}
		if p.Job.Result != nil {
			if err := p.Job.Result.Check(); err != nil {
				return err
			}
		}
	}
	if p.Seq == 0 {
		return node3.Errorf(node3.CodeInvalid, "seq is zero")
	}
	if p.IssuedAt.IsZero() || p.ExpiresAt.IsZero() {
		return node3.Errorf(node3.CodeInvalid, "issued_at and expires_at are required")
	}
	if !p.ExpiresAt.After(p.IssuedAt) {
		return node3.Errorf(node3.CodeInvalid, "expires_at is not after issued_at")
	}
	if p.ExpiresAt.Sub(p.IssuedAt) > MaxPostingLifetime {
		return node3.Errorf(node3.CodeInvalid, "posting lives longer than %s", MaxPostingLifetime)
	}
	return nil
}

func (a *ProviderAdvert) check() error {
	if err := checkPeer("peer_id", a.Peer, true); err != nil {
		return err
	}
	if err := checkGPUs(a.GPUs); err != nil {
		return err
	}
	if a.FreeSlots < 0 || a.FreeSlots > maxSlots {
		return node3.Errorf(node3.CodeInvalid, "free_slots must be between 0 and %d", maxSlots)
	}
	if a.PriceFloor > node3.MaxReward {
		return node3.Errorf(node3.CodeInvalid, "price floor is above the maximum reward")
	}
	if err := checkWallet(a.Wallet); err != nil {
		return err
	}
	if err := checkText("software_version", a.SoftwareVersion, maxVersionLen); err != nil {
		return err
	}
	if a.Seq == 0 {
		return node3.Errorf(node3.CodeInvalid, "seq is zero")
	}
	if a.IssuedAt.IsZero() {
		return node3.Errorf(node3.CodeInvalid, "issued_at is required")
	}
	if a.TTLSecs < 1 || time.Duration(a.TTLSecs)*time.Second > MaxAdvertTTL {
		return node3.Errorf(node3.CodeInvalid, "ttl_seconds must be between 1 and %d", int(MaxAdvertTTL/time.Second))
	}
	return nil
}

// checkWallet accepts an empty wallet or a base58 ed25519 public key (a
// Solana address).
func checkWallet(w string) error {
	if w == "" {
		return nil
	}
	if len(w) > maxWalletLen {
		return node3.Errorf(node3.CodeInvalid, "wallet_address is too long")
	}
	b, err := base58.Decode(w)
	if err != nil || len(b) != 32 {
		return node3.Errorf(node3.CodeInvalid, "wallet_address is not a base58 Solana address")
	}
	return nil
}

func truncate(s string, n int) string { return node3.Truncate(s, n) }

// trimErr keeps decoder errors short: they may quote attacker input.
func trimErr(err error) string { return truncate(err.Error(), 200) }
