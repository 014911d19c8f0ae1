package ledger

import (
	"context"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/node3/node3"
)

// Providers that work over libp2p have no API key: a coordinator knows
// them by the peer ID their streams and adverts are authenticated with.
// Their agent record is keyed by that peer ID (agent id = peer id), so the
// peer → agent mapping is as durable as the agent itself and survives
// restarts on both sides without a registration step.

// UpsertPeerAgent makes sure the provider with the given peer ID has an
// agent record carrying a's wallet, GPUs and version: it creates one (with
// no API key) on first sight and updates those fields when they change.
// It reports whether it wrote anything. Counters, registration time and
// earnings of an existing agent are kept.
func (l *Ledger) UpsertPeerAgent(ctx context.Context, peerID string, a node3.Agent, now time.Time) (node3.Agent, bool, error) {
	if peerID == "" || len(peerID) > 128 {
		return node3.Agent{}, false, node3.Errorf(node3.CodeInvalid, "a peer agent needs a peer id")
	}
	if err := CheckAgent(&a); err != nil {
		return node3.Agent{}, false, err
	}
	if len(a.GPUs) > 0 && a.GPUModel == "" {
		a.GPUModel, a.GPUVendor, a.GPUMemory = a.GPUs[0].Model, a.GPUs[0].Vendor, a.GPUs[0].MemoryBytes
	}
	// Most calls change nothing: answer those from a read, without a
	// durable write.
	if old, err := l.Agent(ctx, peerID); err == nil && samePeerAgent(old, a) {
		return old, false, nil
	} else if err != nil && node3.ErrorCode(err) != node3.CodeNotFound {
		return node3.Agent{}, false, err
	}
	var out node3.Agent
	changed := false
	err := l.update(ctx, func(w *writer) error {
		changed = false
		var old node3.Agent
		found, err := w.getJSON(agentKey(peerID), &old)
		if err != nil {
			return err
		}
		if !found {
			a.ID = peerID
			a.RegisteredAt, a.LastSeen = now, now
			a.JobsCompleted, a.JobsFailed, a.Earned = 0, 0, 0
			if err := w.add(cAgents, 1); err != nil {
				return err
			}
			out, changed = a, true
			return w.setJSON(agentKey(peerID), a)
		}
		out = old
		if samePeerAgent(old, a) {
			return nil
		}
		old.WalletAddress, old.GPUs, old.Version = a.WalletAddress, a.GPUs, a.Version
		old.GPUModel, old.GPUVendor, old.GPUMemory = a.GPUModel, a.GPUVendor, a.GPUMemory
		old.LastSeen = now
		out, changed = old, true
		return w.setJSON(agentKey(peerID), old)
	})
	if err != nil {
		return node3.Agent{}, false, err
	}
	return out, changed, nil
}

func samePeerAgent(old, a node3.Agent) bool {
	return old.WalletAddress == a.WalletAddress && old.Version == a.Version &&
		old.GPUModel == a.GPUModel && old.GPUVendor == a.GPUVendor && old.GPUMemory == a.GPUMemory &&
		slices.Equal(old.GPUs, a.GPUs)
}

// AckReportAs removes a delivered report when the coordinator's answer
// carries only the job's new status (a libp2p report ack), not the job:
// the provider's own record of the job, marked with that status under
// holder, stands in for the coordinator's view (see AckReport).
func (l *Ledger) AckReportAs(ctx context.Context, jobID string, status node3.JobStatus, holder string, now time.Time) error {
	var local node3.Job
	found := false
	err := l.view(func(txn *badger.Txn) error {
		var err error
		found, err = txnGetJSON(txn, pHistory+jobID, &local)
		return err
	})
	if err != nil {
		return err
	}
	if !found || status == "" {
		return l.AckReport(ctx, jobID, nil, holder, now)
	}
	local.Status, local.AgentID = status, holder
	return l.AckReport(ctx, jobID, &local, holder, now)
}
