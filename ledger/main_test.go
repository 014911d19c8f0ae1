package ledger

import (
	"context"
	"crypto/sha256"
	"os"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/mr-tron/base58"
	"go.uber.org/goleak"

	"github.com/node3/node3"
)

// TestMain checks that no test leaves a goroutine behind: every Ledger a
// test opens must have stopped its writer, its GC loop and all of Badger's
// goroutines by the time its Close returns.
func TestMain(m *testing.M) {
	if os.Getenv(crashDirEnv) != "" {
		// The crash child is killed mid-run; it never gets to a leak check.
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

var (
	ctx = context.Background()
	// t0 is the tests' clock origin: UTC with no monotonic reading, so it
	// survives a JSON round trip unchanged and reflect.DeepEqual works.
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// openTest opens a ledger in a fresh directory and closes it at the end of
// the test. Functional tests skip fsync to stay fast; durability tests use
// openAt with sync on.
func openTest(t testing.TB) *Ledger {
	t.Helper()
	return openAt(t, t.TempDir(), true)
}

func openAt(t testing.TB, dir string, noSync bool) *Ledger {
	t.Helper()
	l, err := Open(Config{Dir: dir, NoSync: noSync})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

type kv struct{ key, val []byte }

// dumpDB returns every key of the Badger DB with its value, every version
// (deleted ones too) included.
func dumpDB(t testing.TB, l *Ledger) []kv {
	t.Helper()
	var out []kv
	err := l.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.AllVersions = true
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out = append(out, kv{it.Item().KeyCopy(nil), v})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return out
}

// keysWithPrefix lists the current keys under prefix, in order.
func keysWithPrefix(t testing.TB, l *Ledger, prefix string) []string {
	t.Helper()
	var keys []string
	err := l.db.View(func(txn *badger.Txn) error {
		return scan(txn, prefix, false, false, func(k string, _ []byte) (bool, error) {
			keys = append(keys, k)
			return true, nil
		})
	})
	if err != nil {
		t.Fatalf("scan %s: %v", prefix, err)
	}
	return keys
}

// noopSpec is the smallest valid spec.
func noopSpec(reward node3.Lamports) node3.JobSpec {
	return node3.JobSpec{Kind: node3.KindNoop, Reward: reward}
}

func mustCreate(t testing.TB, l *Ledger, spec node3.JobSpec, now time.Time) node3.Job {
	t.Helper()
	j, err := l.CreateJob(ctx, spec, now)
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	return j
}

func mustTransition(t testing.TB, l *Ledger, id string, ev Event) node3.Job {
	t.Helper()
	j, err := l.Transition(ctx, id, ev)
	if err != nil {
		t.Fatalf("Transition %s %s: %v", id, ev.Kind, err)
	}
	return j
}

func mustJob(t testing.TB, l *Ledger, id string) node3.Job {
	t.Helper()
	j, err := l.Job(ctx, id)
	if err != nil {
		t.Fatalf("Job %s: %v", id, err)
	}
	return j
}

// wallet returns a valid base58 address of 44 characters that differs by n.
func wallet(n int) string {
	k := sha256.Sum256([]byte{byte(n), byte(n >> 8), byte(n >> 16)})
	return base58.Encode(k[:])
}

func mustRegister(t testing.TB, l *Ledger, n int) (node3.Agent, string) {
	t.Helper()
	a, key, err := l.RegisterAgent(ctx, node3.Agent{WalletAddress: wallet(n), GPUModel: "H100", GPUVendor: "NVIDIA"}, t0)
	if err != nil {
		t.Fatalf("RegisterAgent: %v", err)
	}
	return a, key
}

func wantCode(t testing.TB, what string, err error, code node3.Code) {
	t.Helper()
	if got := node3.ErrorCode(err); got != code {
		t.Fatalf("%s: error code %q (%v), want %q", what, got, err, code)
	}
}
