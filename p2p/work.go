package p2p

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/node3/node3"
)

// The work protocol: one long-lived stream from a provider to each
// coordinator it trusts. The provider reports its free capacity; the
// coordinator, which alone decides who gets a job, pushes grants (the whole
// job) on it; the provider acks or declines each grant. Every frame is a
// data frame (see stream.go) holding one WorkMessage.

const protoWork = "work"

// errWorkVersion marks a work message of another version. A stream's
// version is its protocol ID's, so a different "v" is a protocol error.
var errWorkVersion = errors.New("work message version")

// WorkProtocol is "/node3/<network>/work/1".
func WorkProtocol(network string) protocol.ID { return protocolID(network, protoWork) }

// WorkType tags a WorkMessage.
type WorkType string

// Work message types. Capacity, ack and decline go from provider to
// coordinator; grant and revoke from coordinator to provider; ping either
// way.
const (
	WorkCapacity WorkType = "capacity"
	WorkAck      WorkType = "ack"
	WorkDecline  WorkType = "decline"
	WorkGrant    WorkType = "grant"
	WorkRevoke   WorkType = "revoke"
	WorkPing     WorkType = "ping"
)

// fromProvider reports whether a provider may send t; fromCoordinator
// whether a coordinator may.
func (t WorkType) fromProvider() bool {
	return t == WorkCapacity || t == WorkAck || t == WorkDecline || t == WorkPing
}

func (t WorkType) fromCoordinator() bool {
	return t == WorkGrant || t == WorkRevoke || t == WorkPing
}

// Size limits of work messages (the whole JSON frame payload). A grant
// carries a full job spec, whose text may reach ~60 KiB before JSON
// escaping; everything else is small.
const (
	maxWorkCapacitySize = 64 << 10
	maxWorkSmallSize    = 4 << 10 // ack, decline, revoke, ping
	maxWorkGrantSize    = 512 << 10
	// maxWorkFromProvider and maxWorkFromCoordinator bound a frame's
	// declared length before it is read, by direction.
	maxWorkFromProvider    = maxWorkCapacitySize
	maxWorkFromCoordinator = maxWorkGrantSize
)

func (t WorkType) maxSize() int {
	switch t {
	case WorkCapacity:
		return maxWorkCapacitySize
	case WorkGrant:
		return maxWorkGrantSize
	default:
		return maxWorkSmallSize
	}
}

// WorkMessage is one frame on a work stream: the version, the type and the
// one body of that type (none for ping), e.g.
//
//	{"v":1,"type":"grant","grant":{"job":{…},"attempt":1,…}}
//	{"v":1,"type":"ping"}
//
// Send fills Version, and Type from the body when it is empty.
type WorkMessage struct {
	Version  int       `json:"v"`
	Type     WorkType  `json:"type"`
	Capacity *Capacity `json:"capacity,omitempty"`
	Ack      *Ack      `json:"ack,omitempty"`
	Decline  *Decline  `json:"decline,omitempty"`
	Grant    *Grant    `json:"grant,omitempty"`
	Revoke   *Revoke   `json:"revoke,omitempty"`
}

// Capacity is a provider's free capacity, sent when the stream
// opens and whenever it changes. Seq rises with every report on a stream.
type Capacity struct {
	Seq             uint64         `json:"seq"`
	FreeSlots       int            `json:"free_slots"`
	TotalSlots      int            `json:"total_slots"`
	GPUs            []CapacityGPU  `json:"gpus,omitempty"`
	PriceFloor      node3.Lamports `json:"price_floor_lamports"`
	Wallet          string         `json:"wallet_address,omitempty"` // base58 Solana address
	SoftwareVersion string         `json:"software_version,omitempty"`
}

// CapacityGPU is one of a provider's GPUs (index, UUID, vendor, model, memory,
// driver) and whether it is busy now.
type CapacityGPU struct {
	node3.GPU
	Busy bool `json:"busy,omitempty"`
}

// Ack accepts a grant.
type Ack struct {
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
}

// Decline refuses a grant; the coordinator requeues the job.
type Decline struct {
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason,omitempty"`
}

// Grant assigns a job to the provider. The coordinator has already
// committed the accept; the provider must ack by AckBy or the job is
// requeued. GPUs are the provider's GPUs assigned to the job.
type Grant struct {
	Job            node3.Job `json:"job"`
	Attempt        int       `json:"attempt"`
	GPUs           []GPURef  `json:"gpus,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	AckBy          time.Time `json:"ack_by"`
}

// GPURef names one GPU of the provider by index and, if known, UUID.
type GPURef struct {
	Index int    `json:"index"`
	UUID  string `json:"uuid,omitempty"`
}

// Revoke takes a granted job back (cancelled, lease lost).
type Revoke struct {
	JobID   string `json:"job_id"`
	Attempt int    `json:"attempt"`
	Reason  string `json:"reason,omitempty"`
}

// bodyType is the type of the one body set, "" for none, or an error for
// more than one.
func (m *WorkMessage) bodyType() (WorkType, error) {
	var t WorkType
	n := 0
	set := func(ok bool, wt WorkType) {
		if ok {
			t = wt
			n++
		}
	}
	set(m.Capacity != nil, WorkCapacity)
	set(m.Ack != nil, WorkAck)
	set(m.Decline != nil, WorkDecline)
	set(m.Grant != nil, WorkGrant)
	set(m.Revoke != nil, WorkRevoke)
	if n > 1 {
		return "", node3.Errorf(node3.CodeInvalid, "work message has %d bodies, want one", n)
	}
	return t, nil
}

// check validates a work message's shape (not its direction).
func (m *WorkMessage) check() error {
	body, err := m.bodyType()
	if err != nil {
		return err
	}
	if m.Type == WorkPing {
		if body != "" {
			return node3.Errorf(node3.CodeInvalid, "a ping has no body")
		}
		return nil
	}
	if body != m.Type {
		return node3.Errorf(node3.CodeInvalid, "work message of type %q needs a %q body", truncate(string(m.Type), 32), truncate(string(m.Type), 32))
	}
	switch m.Type {
	case WorkCapacity:
		return m.Capacity.check()
	case WorkAck:
		return checkJobAttempt(m.Ack.JobID, m.Ack.Attempt)
	case WorkDecline:
		if err := checkJobAttempt(m.Decline.JobID, m.Decline.Attempt); err != nil {
			return err
		}
		return checkText("reason", m.Decline.Reason, maxReasonLen)
	case WorkRevoke:
		if err := checkJobAttempt(m.Revoke.JobID, m.Revoke.Attempt); err != nil {
			return err
		}
		return checkText("reason", m.Revoke.Reason, maxReasonLen)
	case WorkGrant:
		return m.Grant.check()
	}
	return node3.Errorf(node3.CodeInvalid, "work message type %q is unknown", truncate(string(m.Type), 32))
}

func checkJobAttempt(id string, attempt int) error {
	if err := checkJobID(id); err != nil {
		return err
	}
	if attempt < 1 || attempt > node3.MaxMaxAttempts {
		return node3.Errorf(node3.CodeInvalid, "attempt must be between 1 and %d", node3.MaxMaxAttempts)
	}
	return nil
}

func (c *Capacity) check() error {
	if c.Seq == 0 {
		return node3.Errorf(node3.CodeInvalid, "seq is zero")
	}
	if c.TotalSlots < 0 || c.TotalSlots > maxSlots {
		return node3.Errorf(node3.CodeInvalid, "total_slots must be between 0 and %d", maxSlots)
	}
	if c.FreeSlots < 0 || c.FreeSlots > c.TotalSlots {
		return node3.Errorf(node3.CodeInvalid, "free_slots must be between 0 and total_slots (%d)", c.TotalSlots)
	}
	gpus := make([]node3.GPU, len(c.GPUs))
	for i, g := range c.GPUs {
		gpus[i] = g.GPU
	}
	if err := checkGPUs(gpus); err != nil {
		return err
	}
	if err := checkGPURefs(gpus); err != nil {
		return err
	}
	if c.PriceFloor > node3.MaxReward {
		return node3.Errorf(node3.CodeInvalid, "price floor is above the maximum reward")
	}
	if err := checkWallet(c.Wallet); err != nil {
		return err
	}
	return checkText("software_version", c.SoftwareVersion, maxVersionLen)
}

// checkGPURefs requires distinct indexes and distinct non-empty UUIDs.
func checkGPURefs(gpus []node3.GPU) error {
	idx := make(map[int]bool, len(gpus))
	uuids := make(map[string]bool, len(gpus))
	for i, g := range gpus {
		if idx[g.Index] {
			return node3.Errorf(node3.CodeInvalid, "gpus[%d]: index %d appears twice", i, g.Index)
		}
		idx[g.Index] = true
		if g.UUID != "" {
			if uuids[g.UUID] {
				return node3.Errorf(node3.CodeInvalid, "gpus[%d]: uuid appears twice", i)
			}
			uuids[g.UUID] = true
		}
	}
	return nil
}

func (g *Grant) check() error {
	if err := checkJobAttempt(g.Job.ID, g.Attempt); err != nil {
		return err
	}
	if !knownStatus(g.Job.Status) {
		return node3.Errorf(node3.CodeInvalid, "job status %q is not a job state", truncate(string(g.Job.Status), 32))
	}
	spec := g.Job.JobSpec // Normalize fills defaults: check a copy
	if err := spec.Normalize(); err != nil {
		return err
	}
	if g.Job.Result != nil {
		if err := g.Job.Result.Check(); err != nil {
			return err
		}
	}
	if err := checkText("job.error", g.Job.Error, maxReasonLen); err != nil {
		return err
	}
	if err := checkWallet(g.Job.Wallet); err != nil {
		return err
	}
	if len(g.GPUs) > node3.MaxGPUCount {
		return node3.Errorf(node3.CodeInvalid, "more than %d GPUs", node3.MaxGPUCount)
	}
	gpus := make([]node3.GPU, len(g.GPUs))
	for i, r := range g.GPUs {
		gpus[i] = node3.GPU{Index: r.Index, UUID: r.UUID}
	}
	if err := checkGPUs(gpus); err != nil {
		return err
	}
	if err := checkGPURefs(gpus); err != nil {
		return err
	}
	if g.LeaseExpiresAt.IsZero() || g.AckBy.IsZero() {
		return node3.Errorf(node3.CodeInvalid, "a grant needs lease_expires_at and ack_by")
	}
	if g.AckBy.After(g.LeaseExpiresAt) {
		return node3.Errorf(node3.CodeInvalid, "ack_by is after lease_expires_at")
	}
	return nil
}

// DecodeWorkMessage decodes and checks one work-stream message: at most
// its type's size, version 1, exactly the body its type names, every field
// in range (a grant's job spec passes JobSpec.Normalize). It does not check
// direction or sequence; the stream does.
func DecodeWorkMessage(data []byte) (WorkMessage, error) {
	var m WorkMessage
	if err := decodeStrict(data, maxWorkGrantSize, "work message", &m); err != nil {
		return WorkMessage{}, err
	}
	if m.Version != Version {
		return WorkMessage{}, fmt.Errorf("%w: %w", errWorkVersion, node3.Errorf(node3.CodeInvalid, "work message version %d is not supported (want %d)", m.Version, Version))
	}
	if len(data) > m.Type.maxSize() {
		return WorkMessage{}, node3.Errorf(node3.CodeTooLarge, "%s message is %d bytes, more than %d", truncate(string(m.Type), 32), len(data), m.Type.maxSize())
	}
	if err := m.check(); err != nil {
		return WorkMessage{}, err
	}
	return m, nil
}

// encodeWork fills and checks m, then encodes it.
func encodeWork(m *WorkMessage) ([]byte, error) {
	m.Version = Version
	if m.Type == "" {
		t, err := m.bodyType()
		if err != nil {
			return nil, err
		}
		if t == "" {
			t = WorkPing
		}
		m.Type = t
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if len(data) > m.Type.maxSize() {
		return nil, node3.Errorf(node3.CodeTooLarge, "%s message is %d bytes, more than %d", m.Type, len(data), m.Type.maxSize())
	}
	return data, nil
}
