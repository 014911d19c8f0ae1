package localchain

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
)

// FuzzReadLog feeds arbitrary bytes to the log decoder: it must never
// panic, and whatever it accepts must be a prefix of the input that
// re-encodes to exactly the same bytes.
func FuzzReadLog(f *testing.F) {
	dir := f.TempDir()
	c, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	alice, bob := key("alice"), key("bob")
	if _, err := c.Airdrop(alice.PublicKey(), 10*sol); err != nil {
		f.Fatal(err)
	}
	c.AdvanceSlots(2)
	if _, err := c.Airdrop(bob.PublicKey(), 1000); err == nil { // lands failed: below rent exemption
		f.Fatal("airdrop below the rent-exempt minimum succeeded")
	}
	if err := c.Close(); err != nil {
		f.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(dir, logFileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(log)
	f.Add(log[:len(log)-3])
	f.Add(append(bytes.Clone(log), make([]byte, 20)...))
	f.Add(appendRecord(nil, logRecord{kind: recHead, slot: 7}))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 9})
	f.Add(bytes.Repeat([]byte{0xff}, 16))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, valid, err := readLog(data)
		if err != nil {
			return
		}
		if valid > len(data) {
			t.Fatalf("valid %d past the end %d", valid, len(data))
		}
		var again []byte
		for _, r := range recs {
			again = appendRecord(again, r)
		}
		if !bytes.Equal(again, data[:valid]) {
			t.Fatalf("records re-encode to %x, want %x", again, data[:valid])
		}
	})
}

// writeLog builds, without an fsync per record, the log a chain would
// have written after n transactions (alternating airdrops and transfers
// between a few accounts, a few per slot), and returns the chain's
// balances of those accounts.
func writeLog(tb testing.TB, dir string, n int) map[solana.PublicKey]uint64 {
	tb.Helper()
	cfg := Config{SlotInterval: -1, Now: func() time.Time { return time.Unix(1_700_000_000, 0) }}.withDefaults()
	c := newChain(cfg)
	buf := appendRecord(nil, logRecord{kind: recHeader, version: logVersion, window: cfg.BlockhashWindow, seedHash: seedHash(cfg.Seed)})
	keys := make([]solana.PrivateKey, 8)
	for i := range keys {
		keys[i] = key(fmt.Sprint("bench", i))
	}
	land := func(w *wireTx) {
		out := c.executeLocked(w, c.head, c.headLoader())
		if out.loadErr != nil {
			tb.Fatalf("transaction %d: %v", c.txCount, out.loadErr)
		}
		buf = appendRecord(buf, c.txRecordLocked(w, out))
		c.landLocked(w, out)
	}
	for i := range n {
		if i%4 == 3 {
			c.advanceLocked(c.head+1, cfg.Now())
		}
		from, to := keys[i%len(keys)], keys[(i+1)%len(keys)]
		if i < len(keys) || i%2 == 0 {
			tx := signedTx(tb, c.blockhash(c.head), c.faucet, xfer{c.faucet, from.PublicKey(), 10*sol + uint64(i)})
			w, err := wireFromTransaction(tx)
			if err != nil {
				tb.Fatal(err)
			}
			land(w)
			continue
		}
		tx := signedTx(tb, c.blockhash(c.head), from, xfer{from, to.PublicKey(), sol + uint64(i)})
		w, err := wireFromTransaction(tx)
		if err != nil {
			tb.Fatal(err)
		}
		land(w)
	}
	buf = appendRecord(buf, logRecord{kind: recHead, slot: c.head})
	if err := os.WriteFile(filepath.Join(dir, logFileName), buf, 0o600); err != nil {
		tb.Fatal(err)
	}
	bal := make(map[solana.PublicKey]uint64)
	for _, k := range keys {
		bal[k.PublicKey()] = c.accounts[k.PublicKey()].lamports
	}
	return bal
}

func TestOpenReplaysBuiltLog(t *testing.T) {
	dir := t.TempDir()
	want := writeLog(t, dir, 500)
	c, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for k, v := range want {
		if got := c.Balance(k); got != v {
			t.Fatalf("%s: %d lamports, want %d", k, got, v)
		}
	}
	if got := txCount(c); got != 500 {
		t.Fatalf("%d transactions, want 500", got)
	}
}

// BenchmarkOpen10k measures how long Open takes to replay a log of 10,000
// transactions (about 2,500 slots).
func BenchmarkOpen10k(b *testing.B) {
	dir := b.TempDir()
	writeLog(b, dir, 10_000)
	fi, err := os.Stat(filepath.Join(dir, logFileName))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := Open(Config{Dir: dir, SlotInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		// Close appends a head record; keep the log as built.
		c.mu.Lock()
		c.store.err = errStoreClosed
		c.mu.Unlock()
		_ = c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(fi.Size()), "log-bytes")
}

// BenchmarkAirdropPersisted measures landing one transaction with its
// write and fsync to the ledger directory.
func BenchmarkAirdropPersisted(b *testing.B) {
	c, err := Open(Config{Dir: b.TempDir(), SlotInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	k := key("bench").PublicKey()
	i := uint64(0)
	for b.Loop() {
		i++
		if _, err := c.Airdrop(k, sol+i); err != nil {
			b.Fatal(err)
		}
	}
}
