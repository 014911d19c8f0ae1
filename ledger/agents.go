package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"

	"github.com/node3/node3"
)

const (
	pAgent    = "a/"  // a/<id> → Agent
	pAgentKey = "ak/" // ak/<sha256 of API key, hex> → agent id
	cAgents   = "c/agents"
	// cAgentPaid + agent id: lamports of that agent's finalized payouts.
	cAgentPaid = "c/agent/paid/"
	// APIKeyPrefix starts every agent API key, so a leaked key is easy to
	// recognise in a scan.
	APIKeyPrefix = "n3_"
)

func agentKey(id string) string { return pAgent + id }

// HashKey returns the hex SHA-256 of an API key. Keys are 256 random bits,
// so a fast hash is enough: nothing can be guessed from it.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// NewAPIKey returns a fresh random API key.
func NewAPIKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("new api key: %w", err)
	}
	return APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// RegisterAgent stores a new agent and returns it with its API key, which
// is shown this once: the ledger keeps only its hash.
func (l *Ledger) RegisterAgent(ctx context.Context, a node3.Agent, now time.Time) (node3.Agent, string, error) {
	if err := CheckAgent(&a); err != nil {
		return node3.Agent{}, "", err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return node3.Agent{}, "", fmt.Errorf("new agent id: %w", err)
	}
	key, err := NewAPIKey()
	if err != nil {
		return node3.Agent{}, "", err
	}
	a.ID = id.String()
	a.RegisteredAt, a.LastSeen = now, now
	a.JobsCompleted, a.JobsFailed, a.Earned = 0, 0, 0
	err = l.update(ctx, func(w *writer) error {
		w.set(pAgentKey+HashKey(key), []byte(a.ID))
		if err := w.add(cAgents, 1); err != nil {
			return err
		}
		return w.setJSON(agentKey(a.ID), a)
	})
	if err != nil {
		return node3.Agent{}, "", err
	}
	return a, key, nil
}

// CheckAgent validates the fields an agent registers with.
func CheckAgent(a *node3.Agent) error {
	a.WalletAddress = strings.TrimSpace(a.WalletAddress)
	if err := node3.CheckWalletAddress("wallet_address", a.WalletAddress); err != nil {
		return err
	}
	switch {
	case a.Slots < 0 || a.Slots > node3.MaxSlots:
		return node3.Errorf(node3.CodeInvalid, "slots must be between 0 and %d", node3.MaxSlots)
	case len(a.GPUModel) > 256 || len(a.GPUVendor) > 64 || len(a.Version) > 64:
		return node3.Errorf(node3.CodeInvalid, "gpu_model, gpu_vendor or version is too long")
	case len(a.GPUs) > node3.MaxGPUCount:
		return node3.Errorf(node3.CodeInvalid, "more than %d GPUs", node3.MaxGPUCount)
	}
	for _, g := range a.GPUs {
		if len(g.Model) > 256 || len(g.Vendor) > 64 || len(g.UUID) > 128 || len(g.Driver) > 64 {
			return node3.Errorf(node3.CodeInvalid, "a GPU field is too long")
		}
	}
	return nil
}

// AgentByKey returns the agent that owns an API key.
func (l *Ledger) AgentByKey(ctx context.Context, key string) (node3.Agent, error) {
	var a node3.Agent
	err := l.view(func(txn *badger.Txn) error {
		id, ok, err := txnGet(txn, pAgentKey+HashKey(key))
		if err != nil {
			return err
		}
		if !ok {
			return node3.Errorf(node3.CodeUnauthorized, "unknown API key")
		}
		ok, err = txnGetJSON(txn, agentKey(string(id)), &a)
		if err == nil && !ok {
			err = node3.Errorf(node3.CodeUnauthorized, "unknown API key")
		}
		if err == nil {
			err = fillPaid(txn, &a)
		}
		return err
	})
	return a, err
}

// Agent returns the agent with the given id.
func (l *Ledger) Agent(ctx context.Context, id string) (node3.Agent, error) {
	var a node3.Agent
	err := l.view(func(txn *badger.Txn) error {
		ok, err := txnGetJSON(txn, agentKey(id), &a)
		if err == nil && !ok {
			err = node3.Errorf(node3.CodeNotFound, "agent %q not found", truncate(id, 64))
		}
		if err == nil {
			err = fillPaid(txn, &a)
		}
		return err
	})
	return a, err
}

// Agents lists every registered agent, oldest first.
func (l *Ledger) Agents(ctx context.Context) ([]node3.Agent, error) {
	var out []node3.Agent
	err := l.view(func(txn *badger.Txn) error {
		return scan(txn, pAgent, false, true, func(_ string, v []byte) (bool, error) {
			var a node3.Agent
			if err := json.Unmarshal(v, &a); err != nil {
				return false, err
			}
			if err := fillPaid(txn, &a); err != nil {
				return false, err
			}
			out = append(out, a)
			return true, nil
		})
	})
	return out, err
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("ledger: decode: %w", err)
	}
	return nil
}

// fillPaid sets what the agent has been paid: its finalized payouts.
func fillPaid(txn *badger.Txn, a *node3.Agent) error {
	v, err := counterValue(txn, cAgentPaid+a.ID)
	a.Paid = node3.Lamports(v)
	return err
}

// SetAgentGPUs records the GPUs an agent says it has now (the seed's agents
// send them with every poll). It writes only when they differ from the
// record, so a poll that changes nothing costs no durable write.
func (l *Ledger) SetAgentGPUs(ctx context.Context, a node3.Agent, gpus []node3.GPU, model, vendor string, memory uint64) (node3.Agent, error) {
	next := a
	next.GPUs, next.GPUModel, next.GPUVendor, next.GPUMemory = gpus, model, vendor, memory
	if err := CheckAgent(&next); err != nil {
		return a, err
	}
	if sameGPUs(a, next) {
		return a, nil
	}
	var out node3.Agent
	err := l.update(ctx, func(w *writer) error {
		var cur node3.Agent
		found, err := w.getJSON(agentKey(a.ID), &cur)
		if err != nil {
			return err
		}
		if !found {
			return node3.Errorf(node3.CodeNotFound, "agent %q not found", truncate(a.ID, 64))
		}
		cur.GPUs, cur.GPUModel, cur.GPUVendor, cur.GPUMemory = next.GPUs, next.GPUModel, next.GPUVendor, next.GPUMemory
		out = cur
		return w.setJSON(agentKey(a.ID), cur)
	})
	if err != nil {
		return a, err
	}
	out.Paid = a.Paid
	return out, nil
}

func sameGPUs(a, b node3.Agent) bool {
	return a.GPUModel == b.GPUModel && a.GPUVendor == b.GPUVendor && a.GPUMemory == b.GPUMemory && slices.Equal(a.GPUs, b.GPUs)
}
