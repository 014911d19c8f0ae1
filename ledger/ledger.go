package ledger

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/node3/node3"
	"github.com/node3/node3/internal/fileperm"
)

// Config configures a Ledger.
type Config struct {
	Dir    string       // Badger directory; created if missing
	Logger *slog.Logger // nil discards
	// NoSync turns off fsync on commit. Only for benchmarks that want to
	// measure everything but the disk; never for a real node.
	NoSync bool
	// MaxBatch caps how many write requests share one commit (default 512).
	MaxBatch int
	// GCInterval is how often the value log is garbage-collected (default 10 min).
	GCInterval time.Duration
}

// Ledger is a node's durable store. It is safe for concurrent use.
type Ledger struct {
	db  *badger.DB
	log *slog.Logger

	reqs      chan *writeReq
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	maxBatch  int
	mu        sync.RWMutex // guards closed against sends on reqs
	closed    bool
	obsMu     sync.RWMutex
	observers []func(node3.Job)
	sync      bool // fsync commits that carry a durable write
	statsMu   sync.Mutex
	batches   uint64
	committed uint64
	syncs     uint64
}

// writeReq is one atomic write: fn reads through w and stages mutations;
// they are applied only if fn returns nil.
type writeReq struct {
	fn   func(w *writer) error
	done chan error
	// lazy writes are not fsynced on their own: they are in the
	// operating system's hands when they return (a killed process keeps
	// them), and on disk with the next durable commit. A power loss may
	// undo them.
	lazy bool
}

// Open opens (or creates) the ledger in cfg.Dir.
func Open(cfg Config) (*Ledger, error) {
	if cfg.Dir == "" {
		return nil, errors.New("ledger: no directory given")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Badger creates its files with the process umask; an existing ledger
	// open to group or others is tightened, one of another user refused.
	if err := fileperm.Tree(cfg.Dir, log); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 512
	}
	if cfg.GCInterval <= 0 {
		cfg.GCInterval = 10 * time.Minute
	}
	opts := badger.DefaultOptions(cfg.Dir).
		WithLogger(badgerLogger{log}).
		// The ledger fsyncs itself, once per commit that carries a
		// durable write (Ledger.commitPrefix).
		WithSyncWrites(false).
		WithDetectConflicts(false). // one writer goroutine: nothing to conflict with
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(8).
		WithValueLogFileSize(64 << 20).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).
		WithValueThreshold(64 << 10)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", cfg.Dir, err)
	}
	l := &Ledger{
		db:       db,
		log:      log,
		reqs:     make(chan *writeReq, cfg.MaxBatch),
		stop:     make(chan struct{}),
		maxBatch: cfg.MaxBatch,
		sync:     !cfg.NoSync,
	}
	l.wg.Add(2)
	go l.writeLoop()
	go l.gcLoop(cfg.GCInterval)
	return l, nil
}

// Close stops the writer after it has committed every request already
// queued, and closes Badger.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.stop)
		l.mu.Unlock()
		l.wg.Wait()
		l.closeErr = l.db.Close()
	})
	return l.closeErr
}

// WriteStats reports how many commits the writer made and how many write
// requests they carried: requests/batches is the group-commit factor.
func (l *Ledger) WriteStats() (batches, requests uint64) {
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	return l.batches, l.committed
}

// Syncs reports how many fsyncs the writer made.
func (l *Ledger) Syncs() uint64 {
	l.statsMu.Lock()
	defer l.statsMu.Unlock()
	return l.syncs
}

var errClosed = node3.Errorf(node3.CodeUnavailable, "ledger is closed")

// update runs fn atomically and durably. Once queued the request is carried
// out even if ctx ends; ctx only bounds the wait for a place in the queue.
func (l *Ledger) update(ctx context.Context, fn func(w *writer) error) error {
	return l.enqueue(ctx, &writeReq{fn: fn, done: make(chan error, 1)})
}

// updateLazy runs fn atomically, and durably only as far as a lazy write
// is (see writeReq.lazy): for what a power loss may undo at no cost but
// some repeated work, and is written too often to wait for the disk.
func (l *Ledger) updateLazy(ctx context.Context, fn func(w *writer) error) error {
	return l.enqueue(ctx, &writeReq{fn: fn, done: make(chan error, 1), lazy: true})
}

func (l *Ledger) enqueue(ctx context.Context, r *writeReq) error {
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return errClosed
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	l.mu.RUnlock()
	return <-r.done
}

func (l *Ledger) writeLoop() {
	defer l.wg.Done()
	batch := make([]*writeReq, 0, l.maxBatch)
	for {
		select {
		case r := <-l.reqs:
			batch = append(batch[:0], r)
		fill:
			for len(batch) < l.maxBatch {
				select {
				case r := <-l.reqs:
					batch = append(batch, r)
				default:
					break fill
				}
			}
			l.commit(batch)
		case <-l.stop:
			// Closed: update no longer sends, so what is queued is all there is.
			for {
				select {
				case r := <-l.reqs:
					l.commit([]*writeReq{r})
				default:
					return
				}
			}
		}
	}
}

// commit applies a batch in as few transactions as Badger allows and
// answers each request after its transaction is durable.
func (l *Ledger) commit(batch []*writeReq) {
	for len(batch) > 0 {
		n, errs := l.commitPrefix(batch)
		for i := 0; i < n; i++ {
			batch[i].done <- errs[i]
		}
		batch = batch[n:]
	}
}

// commitPrefix commits as many requests from the front of batch as fit in
// one transaction and returns how many it handled and their results.
func (l *Ledger) commitPrefix(batch []*writeReq) (int, []error) {
	txn := l.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	errs := make([]error, 0, len(batch))
	var ok []*writer // the requests whose mutations are in txn
	for _, r := range batch {
		w := &writer{txn: txn}
		err := safeRun(r.fn, w)
		if err == nil {
			if err = applyAll(txn, w.muts); err != nil {
				// Part of this request may be in txn: rebuild it from the
				// requests before it, which applied cleanly.
				txn.Discard()
				txn = l.db.NewTransaction(true)
				for _, o := range ok {
					if err := applyAll(txn, o.muts); err != nil {
						return l.failAll(len(errs), err)
					}
				}
				if errors.Is(err, badger.ErrTxnTooBig) {
					if len(errs) > 0 {
						break // this one starts the next transaction
					}
					err = node3.Errorf(node3.CodeTooLarge, "write is too large for one transaction")
				} else {
					err = fmt.Errorf("ledger: %w", err)
				}
			} else {
				ok = append(ok, w)
			}
		}
		errs = append(errs, err)
	}
	n := len(errs)
	if err := txn.Commit(); err != nil {
		return l.failAll(n, err)
	}
	durable := false
	for _, r := range batch[:n] {
		durable = durable || !r.lazy
	}
	synced := false
	if durable && l.sync {
		if err := l.db.Sync(); err != nil {
			// Committed, but maybe not on disk: the durable writes fail
			// (what they wrote may or may not survive a power loss).
			err = fmt.Errorf("ledger: fsync: %w", err)
			l.log.Error("ledger fsync failed", "err", err)
			for i, r := range batch[:n] {
				if !r.lazy && errs[i] == nil {
					errs[i] = err
				}
			}
		}
		synced = true
	}
	l.statsMu.Lock()
	l.batches++
	l.committed += uint64(n)
	if synced {
		l.syncs++
	}
	l.statsMu.Unlock()
	// Observers see committed job changes in commit order.
	l.obsMu.RLock()
	obs := l.observers
	l.obsMu.RUnlock()
	if len(obs) > 0 {
		for _, w := range ok {
			for _, j := range w.jobs {
				for _, f := range obs {
					f(j)
				}
			}
		}
	}
	return n, errs
}

// Watch registers f to be called with every job change after it is
// committed, in commit order, from the writer goroutine: f must be quick
// and must not call back into the ledger's write methods.
func (l *Ledger) Watch(f func(node3.Job)) {
	l.obsMu.Lock()
	l.observers = append(append([]func(node3.Job){}, l.observers...), f)
	l.obsMu.Unlock()
}

func (l *Ledger) failAll(n int, err error) (int, []error) {
	err = fmt.Errorf("ledger: commit: %w", err)
	l.log.Error("ledger commit failed", "err", err)
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return n, errs
}

func applyAll(txn *badger.Txn, muts []mutation) error {
	for _, m := range muts {
		var err error
		if m.del {
			err = txn.Delete(m.key)
		} else {
			err = txn.Set(m.key, m.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func safeRun(fn func(*writer) error, w *writer) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ledger: write panicked: %v", p)
		}
	}()
	return fn(w)
}

func (l *Ledger) gcLoop(every time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			for l.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// writer stages the mutations of one request. Reads see the request's own
// staged writes first, then the transaction (earlier requests of the batch
// and the committed state).
type writer struct {
	txn  *badger.Txn
	jobs []node3.Job // job changes, for observers
	muts []mutation
	own  map[string]int // key → index in muts
}

type mutation struct {
	key []byte
	val []byte
	del bool
}

func (w *writer) set(key string, val []byte) {
	w.stage(mutation{key: []byte(key), val: val})
}

func (w *writer) del(key string) {
	w.stage(mutation{key: []byte(key), del: true})
}

func (w *writer) stage(m mutation) {
	if w.own == nil {
		w.own = make(map[string]int)
	}
	if i, ok := w.own[string(m.key)]; ok {
		w.muts[i] = m
		return
	}
	w.own[string(m.key)] = len(w.muts)
	w.muts = append(w.muts, m)
}

func (w *writer) setJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ledger: encode %s: %w", key, err)
	}
	w.set(key, b)
	return nil
}

// get returns the value of key, or nil, false when it is absent.
func (w *writer) get(key string) ([]byte, bool, error) {
	if i, ok := w.own[key]; ok {
		m := w.muts[i]
		return m.val, !m.del, nil
	}
	return txnGet(w.txn, key)
}

func (w *writer) getJSON(key string, v any) (bool, error) {
	b, ok, err := w.get(key)
	if err != nil || !ok {
		return ok, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("ledger: decode %s: %w", key, err)
	}
	return true, nil
}

// add adds delta to the int64 counter at key.
func (w *writer) add(key string, delta int64) error {
	if delta == 0 {
		return nil
	}
	b, ok, err := w.get(key)
	if err != nil {
		return err
	}
	var v int64
	if ok && len(b) == 8 {
		v = int64(binary.BigEndian.Uint64(b))
	}
	out := make([]byte, 8)
	binary.BigEndian.PutUint64(out, uint64(v+delta))
	w.set(key, out)
	return nil
}

func txnGet(txn *badger.Txn, key string) ([]byte, bool, error) {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ledger: get %s: %w", key, err)
	}
	b, err := item.ValueCopy(nil)
	if err != nil {
		return nil, false, fmt.Errorf("ledger: read %s: %w", key, err)
	}
	return b, true, nil
}

func txnGetJSON(txn *badger.Txn, key string, v any) (bool, error) {
	b, ok, err := txnGet(txn, key)
	if err != nil || !ok {
		return ok, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("ledger: decode %s: %w", key, err)
	}
	return true, nil
}

func counterValue(txn *badger.Txn, key string) (int64, error) {
	b, ok, err := txnGet(txn, key)
	if err != nil || !ok || len(b) != 8 {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// scan calls fn for each key with prefix, in key order (or reverse order),
// until fn returns false.
func scan(txn *badger.Txn, prefix string, reverse, values bool, fn func(key string, val []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(prefix)
	opts.PrefetchValues = values
	opts.Reverse = reverse
	it := txn.NewIterator(opts)
	defer it.Close()
	start := []byte(prefix)
	if reverse {
		start = append([]byte(prefix), 0xff)
	}
	for it.Seek(start); it.ValidForPrefix([]byte(prefix)); it.Next() {
		item := it.Item()
		var val []byte
		if values {
			var err error
			if val, err = item.ValueCopy(nil); err != nil {
				return err
			}
		}
		more, err := fn(string(item.Key()), val)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// badgerLogger sends Badger's chatter to slog at debug level, warnings and
// errors at their own levels.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger: " + trimNL(fmt.Sprintf(f, a...)))
}
func (b badgerLogger) Infof(f string, a ...any) { b.l.Debug("badger: " + trimNL(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug("badger: " + trimNL(fmt.Sprintf(f, a...)))
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}

// view runs a read-only transaction; after Close it fails cleanly.
func (l *Ledger) view(fn func(txn *badger.Txn) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return errClosed
	}
	return l.db.View(fn)
}
