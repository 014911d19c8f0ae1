package localchain

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

const (
	// logFileName and lockFileName live in Config.Dir.
	logFileName  = "txlog"
	lockFileName = "LOCK"
	// headReserve is how far ahead of the slot clock the log's head record
	// is kept: after a crash the chain reopens at most this many slots
	// past the last slot it answered with, well inside the blockhash
	// window, and the clock costs one fsync per headReserve slots.
	headReserve = 32
)

var errStoreClosed = errors.New("localchain: the chain is closed")

// store is the append side of the ledger directory's log. It is used
// with Chain.mu held.
type store struct {
	path     string
	f        *os.File
	unlock   func() error
	buf      []byte
	reserved uint64 // the head slot the log vouches for
	err      error  // sticky: once an append fails nothing more is written
}

// appendSync writes one record and fsyncs it. A failure is sticky: the
// file may hold part of the record, so nothing may follow it.
func (s *store) appendSync(r logRecord) error {
	if s.err != nil {
		return s.err
	}
	s.buf = appendRecord(s.buf[:0], r)
	if _, err := s.f.Write(s.buf); err != nil {
		s.err = fmt.Errorf("localchain: write %s: %w", s.path, err)
		return s.err
	}
	if err := s.f.Sync(); err != nil {
		s.err = fmt.Errorf("localchain: sync %s: %w", s.path, err)
		return s.err
	}
	return nil
}

// close writes the exact head and closes the log.
func (s *store) close(head uint64) error {
	if s.f == nil {
		return nil
	}
	var errs []error
	if s.err == nil {
		errs = append(errs, s.appendSync(logRecord{kind: recHead, slot: head}))
	}
	errs = append(errs, s.f.Close(), s.unlock())
	s.f = nil
	s.err = errStoreClosed
	return errors.Join(errs...)
}

// seedHash names the chain a log belongs to without storing the seed.
func seedHash(seed []byte) [32]byte { return sha256.Sum256(append([]byte("seed:"), seed...)) }

// openStore locks cfg.Dir, replays its log into c (a fresh chain at slot
// 0) and leaves the log open for appends.
func (c *Chain) openStore() (err error) {
	dir := c.cfg.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("localchain: ledger dir: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, lockFileName))
	if err != nil {
		return err
	}
	path := filepath.Join(dir, logFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		_ = unlock()
		return fmt.Errorf("localchain: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = unlock()
		}
	}()
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("localchain: read %s: %w", path, err)
	}
	recs, valid, err := readLog(data)
	if err != nil {
		return fmt.Errorf("localchain: %s is corrupt: %w", path, err)
	}
	if valid < len(data) {
		c.log.Warn("localchain: truncating a torn record at the end of the log (a crash mid-write)",
			"file", path, "offset", valid, "bytes", len(data)-valid)
		if err := f.Truncate(int64(valid)); err != nil {
			return fmt.Errorf("localchain: truncate %s: %w", path, err)
		}
	}
	if _, err := f.Seek(int64(valid), 0); err != nil {
		return fmt.Errorf("localchain: seek %s: %w", path, err)
	}
	s := &store{path: path, f: f, unlock: unlock}
	want := logRecord{kind: recHeader, version: logVersion, window: c.cfg.BlockhashWindow, seedHash: seedHash(c.cfg.Seed)}
	if len(recs) == 0 {
		if err := s.appendSync(want); err != nil {
			return err
		}
		if err := syncDir(dir); err != nil {
			return err
		}
	} else if err := checkHeader(recs[0], want); err != nil {
		return fmt.Errorf("localchain: %s: %w", path, err)
	}
	if len(recs) > 0 {
		if err := c.replay(recs[1:]); err != nil {
			return fmt.Errorf("localchain: replaying %s: %w", path, err)
		}
	}
	s.reserved = c.head
	c.store = s
	return nil
}

func checkHeader(got, want logRecord) error {
	switch {
	case got.kind != recHeader:
		return errors.New("the log does not start with a header record")
	case got.version != want.version:
		return fmt.Errorf("log format version %d, this build reads %d", got.version, want.version)
	case got.seedHash != want.seedHash:
		return errors.New("the log belongs to a chain with another Seed")
	case got.window != want.window:
		return fmt.Errorf("the log was written with BlockhashWindow %d, not %d", got.window, want.window)
	}
	return nil
}

// replay re-executes every logged transaction at its slot and block time
// against the state the ones before it built, checking that each lands
// with the outcome it had, then moves the head to the last slot the log
// vouches for.
func (c *Chain) replay(recs []logRecord) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var head uint64
	for i, r := range recs {
		switch r.kind {
		case recHead:
			head = r.slot
		case recTx:
			if r.slot < c.head {
				return fmt.Errorf("record %d: transaction at slot %d after slot %d", i+1, r.slot, c.head)
			}
			c.advanceLocked(r.slot, time.Unix(0, r.timeNanos))
			w, err := decodeWire(r.raw)
			if err != nil {
				return fmt.Errorf("record %d: transaction: %w", i+1, err)
			}
			if te := w.sanitize(); te != nil {
				return fmt.Errorf("record %d: transaction %s: %w", i+1, w.sig, te)
			}
			out := c.executeLocked(w, c.head, c.headLoader())
			if out.loadErr != nil {
				return fmt.Errorf("record %d: transaction %s landed at slot %d but now fails to load: %w", i+1, w.sig, r.slot, out.loadErr)
			}
			if out.digest() != r.digest {
				return fmt.Errorf("record %d: transaction %s at slot %d replays with another outcome", i+1, w.sig, r.slot)
			}
			c.landLocked(w, out)
		default:
			return fmt.Errorf("record %d: unexpected record kind %d", i+1, r.kind)
		}
	}
	c.advanceLocked(max(head, c.head), c.cfg.Now())
	return nil
}

// digest summarises an outcome for the log, so that replay can tell a
// transaction that re-executes differently.
func (out *outcome) digest() [32]byte {
	h := sha256.New()
	var b [8]byte
	put := func(v uint64) {
		binary.LittleEndian.PutUint64(b[:], v)
		h.Write(b[:])
	}
	put(out.fee)
	put(out.units)
	put(uint64(len(out.orig)))
	for _, set := range [][]account{out.orig, out.post} {
		for _, a := range set {
			put(a.lamports)
			put(a.space)
			h.Write(a.owner[:])
		}
	}
	if out.err != nil {
		h.Write([]byte(out.err.JSON()))
	}
	h.Write([]byte{0})
	for _, l := range out.logs {
		h.Write([]byte(l))
		h.Write([]byte{0})
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// persistLocked logs a transaction about to land at the head slot. With
// no ledger directory it does nothing.
func (c *Chain) persistLocked(w *wireTx, out outcome) error {
	if c.store == nil {
		return nil
	}
	return c.store.appendSync(c.txRecordLocked(w, out))
}

// txRecordLocked is the log record of a transaction landing at the head.
func (c *Chain) txRecordLocked(w *wireTx, out outcome) logRecord {
	return logRecord{
		kind:      recTx,
		slot:      c.head,
		timeNanos: c.headTime.UnixNano(),
		digest:    out.digest(),
		raw:       w.raw,
	}
}

// reserveLocked makes sure the log vouches for slot before the head moves
// there. It reports false if the head must not move (the log failed or is
// closed).
func (c *Chain) reserveLocked(slot uint64) bool {
	s := c.store
	if s == nil {
		return true
	}
	if s.err != nil {
		return false
	}
	if slot <= s.reserved {
		return true
	}
	if err := s.appendSync(logRecord{kind: recHead, slot: slot + headReserve}); err != nil {
		c.log.Error("localchain: the slot clock stopped: the log cannot be written", "err", err)
		return false
	}
	s.reserved = slot + headReserve
	return true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("localchain: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("localchain: sync %s: %w", dir, err)
	}
	return nil
}
