package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/node3/node3"
)

// Idempotent job creation (the IETF Idempotency-Key draft): the job and
// the record of the key that created it are written in one transaction, so
// a client that lost the answer can ask again with the same key and get
// the same job, however often and across coordinator restarts, for
// IdempotencyTTL. The same key with a different request is refused.

// IdempotencyTTL is how long a key is remembered.
const IdempotencyTTL = 24 * time.Hour

// MaxIdempotencyKey bounds a key's length.
const MaxIdempotencyKey = 255

const (
	pIdem     = "ik/"  // ik/<sha256 of key> → idemRecord
	pIdemTime = "ikt/" // ikt/<created, unix ns>/<sha256 of key>, for expiry
)

type idemRecord struct {
	Fingerprint string    `json:"fingerprint"` // sha256 of the normalized spec
	JobID       string    `json:"job_id"`
	At          time.Time `json:"at"`
}

func idemHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// fingerprint identifies a request by what it asks for: the spec after
// defaults, so the same job asked for in other words (a field left to its
// default, another number form of the reward) is the same request.
func fingerprint(spec node3.JobSpec) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("ledger: fingerprint: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// CheckIdempotencyKey validates a key: 1 to MaxIdempotencyKey printable
// ASCII characters, not all spaces.
func CheckIdempotencyKey(key string) error {
	if strings.TrimSpace(key) == "" || len(key) > MaxIdempotencyKey || strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return node3.Errorf(node3.CodeInvalid, "Idempotency-Key must be 1 to %d printable ASCII characters", MaxIdempotencyKey)
	}
	return nil
}

// CreateJobOnce is CreateJob under an idempotency key: the first call
// creates the job; a later one with the same key and the same spec
// returns that job as it stands now with replayed true; one with the same
// key and another spec is a CodeUnprocessable error. An empty key is
// CreateJob.
func (l *Ledger) CreateJobOnce(ctx context.Context, spec node3.JobSpec, now time.Time, key string) (j node3.Job, replayed bool, err error) {
	if key == "" {
		j, err = l.CreateJob(ctx, spec, now)
		return j, false, err
	}
	if err := CheckIdempotencyKey(key); err != nil {
		return node3.Job{}, false, err
	}
	if err := spec.Normalize(); err != nil {
		return node3.Job{}, false, err
	}
	fp, err := fingerprint(spec)
	if err != nil {
		return node3.Job{}, false, err
	}
	fresh, err := newJob(spec, now)
	if err != nil {
		return node3.Job{}, false, err
	}
	hash := idemHash(key)
	err = l.update(ctx, func(w *writer) error {
		replayed = false
		var rec idemRecord
		found, err := w.getJSON(pIdem+hash, &rec)
		if err != nil {
			return err
		}
		if found && now.Sub(rec.At) < IdempotencyTTL {
			if rec.Fingerprint != fp {
				return node3.Errorf(node3.CodeUnprocessable, "Idempotency-Key was used for a different job (%s); use a new key for a new job", rec.JobID)
			}
			ok, err := w.getJSON(jobKey(rec.JobID), &j)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("ledger: idempotency key names job %s, which is missing", rec.JobID)
			}
			replayed = true
			return nil
		}
		if found {
			w.del(tsKey(pIdemTime, rec.At, hash)) // an expired key, not yet swept: reused
		}
		j = fresh
		w.set(tsKey(pIdemTime, now, hash), nil)
		if err := w.setJSON(pIdem+hash, idemRecord{Fingerprint: fp, JobID: j.ID, At: now}); err != nil {
			return err
		}
		return putJob(w, nil, j)
	})
	if err != nil {
		return node3.Job{}, false, err
	}
	return j, replayed, nil
}

// ExpireIdempotencyKeys forgets up to limit keys created IdempotencyTTL or
// more before now, oldest first, and returns how many it forgot.
func (l *Ledger) ExpireIdempotencyKeys(ctx context.Context, now time.Time, limit int) (int, error) {
	var keys []string
	err := l.view(func(txn *badger.Txn) error {
		bound := tsKey(pIdemTime, now.Add(-IdempotencyTTL), "") + "\xff" // at or before the cutoff
		return scan(txn, pIdemTime, false, false, func(key string, _ []byte) (bool, error) {
			if key > bound || len(keys) >= limit {
				return false, nil
			}
			keys = append(keys, key)
			return true, nil
		})
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	err = l.update(ctx, func(w *writer) error {
		for _, k := range keys {
			hash := k[strings.LastIndexByte(k, '/')+1:]
			var rec idemRecord
			found, err := w.getJSON(pIdem+hash, &rec)
			if err != nil {
				return err
			}
			// Delete the record only if this index entry is still its own
			// (a reused key has a newer one).
			if found && tsKey(pIdemTime, rec.At, hash) == k {
				w.del(pIdem + hash)
			}
			w.del(k)
		}
		return nil
	})
	return len(keys), err
}
