package localchain

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/rpc"
)

// openEnv is newEnv on a chain kept in dir. Its cleanup closes the chain;
// tests that reopen call e.close first.
func openEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	if cfg.SlotInterval == 0 {
		cfg.SlotInterval = -1
	}
	c, err := Open(cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	srv := httptest.NewServer(c.Handler())
	client := rpc.New(srv.URL)
	t.Cleanup(func() {
		_ = c.Close()
		srv.Close()
		_ = client.Close()
	})
	return &env{t: t, chain: c, client: client, url: srv.URL, http: srv.Client()}
}

func (e *env) close() {
	e.t.Helper()
	if err := e.chain.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
}

// snapshot is what a client can observe of some accounts and signatures:
// the raw JSON-RPC answers, so that any difference shows.
func (e *env) snapshot(keys []solana.PublicKey, sigs []solana.Signature) string {
	e.t.Helper()
	var b strings.Builder
	call := func(body string) {
		_, out := e.post(body)
		b.WriteString(body + "\n=> " + out + "\n")
	}
	call(`{"jsonrpc":"2.0","id":1,"method":"getSlot","params":[{"commitment":"processed"}]}`)
	for _, cm := range []string{"processed", "confirmed", "finalized"} {
		call(`{"jsonrpc":"2.0","id":1,"method":"getLatestBlockhash","params":[{"commitment":"` + cm + `"}]}`)
		for _, k := range keys {
			call(`{"jsonrpc":"2.0","id":1,"method":"getBalance","params":["` + k.String() + `",{"commitment":"` + cm + `"}]}`)
			call(`{"jsonrpc":"2.0","id":1,"method":"getAccountInfo","params":["` + k.String() + `",{"commitment":"` + cm + `","encoding":"base64"}]}`)
		}
	}
	var list []string
	for _, s := range sigs {
		list = append(list, `"`+s.String()+`"`)
		call(`{"jsonrpc":"2.0","id":1,"method":"getTransaction","params":["` + s.String() + `",{"commitment":"confirmed"}]}`)
	}
	for _, hist := range []string{"true", "false"} {
		call(`{"jsonrpc":"2.0","id":1,"method":"getSignatureStatuses","params":[[` + strings.Join(list, ",") + `],{"searchTransactionHistory":` + hist + `}]}`)
	}
	return b.String()
}

// TestReopenKeepsEverything lands airdrops (direct and by RPC), transfers
// and a failed transaction, closes the chain and opens its directory
// again: every answer a client could get is byte for byte the same, and
// a blockhash fetched before the restart is still valid after it.
func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, ConfirmDepth: 2, FinalizeDepth: 6, BlockhashWindow: 40}
	e := openEnv(t, cfg)
	alice, bob, carol := key("alice"), key("bob"), key("carol")
	var sigs []solana.Signature
	sig, err := e.chain.Airdrop(alice.PublicKey(), 10*sol)
	if err != nil {
		t.Fatal(err)
	}
	sigs = append(sigs, sig)
	sig, err = e.client.RequestAirdrop(ctxT(t), carol.PublicKey(), 2*sol, "")
	if err != nil {
		t.Fatal(err)
	}
	sigs = append(sigs, sig)
	e.chain.AdvanceSlots(cfg.FinalizeDepth)
	for i := range 5 {
		tx := signedTx(t, e.blockhash(), alice, xfer{alice, bob.PublicKey(), uint64(i+1) * sol / 10})
		sigs = append(sigs, e.mustSend(tx))
		e.chain.AdvanceSlots(i) // some in one slot, some apart
	}
	// A transfer that lands failed (more than alice has): only the fee moves.
	bh, _ := e.chain.LatestBlockhash()
	failed := signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), 100 * sol})
	sig, err = e.send(failed, rpc.TransactionOpts{SkipPreflight: true})
	if err != nil {
		t.Fatal(err)
	}
	sigs = append(sigs, sig)
	e.chain.AdvanceSlots(3) // leaves some transactions confirmed, some processed
	keys := []solana.PublicKey{alice.PublicKey(), bob.PublicKey(), carol.PublicKey(), e.chain.Faucet()}
	before := e.snapshot(keys, sigs)
	slot := e.chain.Slot()
	oldHash, _ := e.chain.LatestBlockhash()
	e.close()

	e2 := openEnv(t, cfg)
	if got := e2.chain.Slot(); got != slot {
		t.Fatalf("slot after a clean reopen: %d, want %d", got, slot)
	}
	if after := e2.snapshot(keys, sigs); after != before {
		t.Fatalf("answers differ after reopening\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if got := txCount(e2.chain); got != uint64(len(sigs)) {
		t.Fatalf("transaction count %d, want %d", got, len(sigs))
	}
	// The chain goes on: a blockhash from before the restart still lands.
	tx := signedTx(t, oldHash, bob, xfer{bob, carol.PublicKey(), sol / 100})
	if _, err := e2.send(tx, rpc.TransactionOpts{SkipPreflight: true}); err != nil {
		t.Fatal(err)
	}
	if st := e2.status(tx.Signatures[0], false); st == nil || st.Err != nil {
		t.Fatalf("status after restart: %+v", st)
	}
	sigs = append(sigs, tx.Signatures[0])
	e2.chain.AdvanceSlots(2)
	before = e2.snapshot(keys, sigs)
	e2.close()

	e3 := openEnv(t, cfg)
	if after := e3.snapshot(keys, sigs); after != before {
		t.Fatalf("answers differ after the second reopen\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestClosedChainLandsNothing: after Close a persisted chain answers
// reads but refuses to land, so nothing it acknowledges can miss the log.
func TestClosedChainLandsNothing(t *testing.T) {
	e := openEnv(t, Config{Dir: t.TempDir()})
	alice := key("alice")
	if _, err := e.chain.Airdrop(alice.PublicKey(), sol); err != nil {
		t.Fatal(err)
	}
	e.close()
	slot := e.chain.Slot()
	e.chain.AdvanceSlots(3)
	if got := e.chain.Slot(); got != slot {
		t.Fatalf("closed chain moved from slot %d to %d", slot, got)
	}
	if _, err := e.chain.Airdrop(alice.PublicKey(), sol); !errors.Is(err, errStoreClosed) {
		t.Fatalf("airdrop on a closed chain: %v, want %v", err, errStoreClosed)
	}
	bh, _ := e.chain.LatestBlockhash()
	tx := signedTx(t, bh, alice, xfer{alice, key("bob").PublicKey(), 1000})
	_, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true})
	if re := rpcErr(t, err); re.Code != codeInternalError {
		t.Fatalf("send on a closed chain: %v", err)
	}
	if got := e.balance(alice.PublicKey(), rpc.CommitmentProcessed); got != sol {
		t.Fatalf("balance %d, want %d", got, sol)
	}
}

func TestLedgerDirIsLocked(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir, SlotInterval: -1}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of one directory: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c, err = Open(Config{Dir: dir, SlotInterval: -1})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	_ = c.Close()
}

func TestOtherChainsLogIsRejected(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	for _, cfg := range []Config{
		{Dir: dir, SlotInterval: -1, Seed: []byte("another")},
		{Dir: dir, SlotInterval: -1, BlockhashWindow: 10},
	} {
		if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, logFileName)) {
			t.Fatalf("open with another seed or window: %v", err)
		}
	}
}

func txCount(c *Chain) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.txCount
}

// landSome opens a chain on dir, lands n airdrops to distinct keys and
// closes it; it returns their signatures.
func landSome(t *testing.T, dir string, n int) []solana.Signature {
	t.Helper()
	c, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	var sigs []solana.Signature
	for i := range n {
		sig, err := c.Airdrop(key(fmt.Sprint("k", i)).PublicKey(), sol)
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, sig)
		c.AdvanceSlots(1)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return sigs
}

// recordOffsets returns where each record of the log in dir starts, and
// the log's bytes.
func recordOffsets(t *testing.T, dir string) ([]int, []byte) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, logFileName))
	if err != nil {
		t.Fatal(err)
	}
	var offs []int
	for off := 0; off < len(data); {
		_, n, err := decodeRecord(data[off:])
		if err != nil {
			t.Fatalf("offset %d: %v", off, err)
		}
		offs = append(offs, off)
		off += n
	}
	return offs, data
}

// TestTornTailIsDropped cuts the log inside its last transaction record,
// as a crash during the append would: the chain opens without it, with
// everything before it, and truncates the file.
func TestTornTailIsDropped(t *testing.T) {
	for _, tear := range []string{"cut", "zeros", "garbled"} {
		t.Run(tear, func(t *testing.T) {
			dir := t.TempDir()
			sigs := landSome(t, dir, 3)
			offs, data := recordOffsets(t, dir)
			// Records: header, (tx, head reservation?)..., head. Find the last tx.
			last := -1
			for i, off := range offs {
				if data[off+recordFrameBytes] == recTx {
					last = i
				}
			}
			start := offs[last]
			end := offs[last+1]
			var torn []byte
			switch tear {
			case "cut":
				torn = data[:start+(end-start)/2]
			case "zeros": // the file grew but the data never reached the disk
				torn = append(bytes.Clone(data[:start]), make([]byte, end-start)...)
			case "garbled": // all of it is there but not all its bytes are right
				torn = bytes.Clone(data[:end])
				torn[end-1] ^= 0xff
			}
			path := filepath.Join(dir, logFileName)
			if err := os.WriteFile(path, torn, 0o600); err != nil {
				t.Fatal(err)
			}
			e := openEnv(t, Config{Dir: dir})
			for _, s := range sigs[:2] {
				if st := e.status(s, true); st == nil {
					t.Fatalf("%s lost", s)
				}
			}
			if st := e.status(sigs[2], true); st != nil {
				t.Fatalf("torn transaction came back: %+v", st)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(start) {
				t.Fatalf("log is %d bytes, want it truncated to %d", fi.Size(), start)
			}
			// And the log goes on from there.
			if _, err := e.chain.Airdrop(key("after").PublicKey(), sol); err != nil {
				t.Fatal(err)
			}
			e.close()
			e = openEnv(t, Config{Dir: dir})
			if got := e.chain.Balance(key("after").PublicKey()); got != sol {
				t.Fatalf("balance after reopen %d", got)
			}
		})
	}
}

// TestCorruptLogIsAnError damages a record in the middle of the log: that
// is not a torn write, and Open says which file is broken.
func TestCorruptLogIsAnError(t *testing.T) {
	dir := t.TempDir()
	landSome(t, dir, 3)
	offs, data := recordOffsets(t, dir)
	data[offs[2]+recordFrameBytes+3] ^= 0x01
	path := filepath.Join(dir, logFileName)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("open of a corrupt log: %v", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(after, data) {
		t.Fatal("a corrupt log was changed")
	}
}

// TestReplayMismatchIsAnError rewrites a logged outcome (with a valid
// checksum): replay notices that the transaction re-executes differently
// instead of diverging silently.
func TestReplayMismatchIsAnError(t *testing.T) {
	dir := t.TempDir()
	sigs := landSome(t, dir, 2)
	offs, data := recordOffsets(t, dir)
	path := filepath.Join(dir, logFileName)
	var out []byte
	for i, off := range offs {
		end := len(data)
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		r, _, err := decodeRecord(data[off:end])
		if err != nil {
			t.Fatal(err)
		}
		if r.kind == recTx && r.slot > 0 {
			r.digest[0] ^= 1
		}
		out = appendRecord(out, r)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Config{Dir: dir, SlotInterval: -1})
	if err == nil || !strings.Contains(err.Error(), "another outcome") || !strings.Contains(err.Error(), sigs[1].String()) {
		t.Fatalf("open of a log that replays differently: %v", err)
	}
}

// Environment of TestCrashChild, set only in the child TestCrashKeepsAcknowledged starts.
const crashDirEnv = "NODE3_LOCALCHAIN_CRASH_DIR"

// TestCrashChild runs a chain on the parent's directory with its clock
// running, lands transfers and airdrops as fast as it can and prints
// "ack <signature> <slot>" once each is acknowledged, until the parent
// kills it.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashKeepsAcknowledged")
	}
	c, err := Open(Config{Dir: dir, SlotInterval: time.Millisecond})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	c.Start(context.Background())
	srv := httptest.NewServer(c.Handler())
	client := rpc.New(srv.URL)
	alice, bob, carol := key("alice"), key("bob"), key("carol")
	if _, err := c.Airdrop(alice.PublicKey(), 1000*sol); err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	for i := 0; ; i++ {
		var sig solana.Signature
		if i%2 == 0 {
			sig, err = c.Airdrop(carol.PublicKey(), sol)
		} else {
			bh, _ := c.LatestBlockhash()
			tx := signedTx(t, bh, alice, xfer{alice, bob.PublicKey(), sol + uint64(i)}) // distinct within a slot
			sig, err = client.SendTransactionWithOpts(context.Background(), tx, rpc.TransactionOpts{PreflightCommitment: rpc.CommitmentProcessed})
		}
		if err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(3)
		}
		fmt.Printf("ack %s %d\n", sig, c.Slot())
	}
}

// TestCrashKeepsAcknowledged SIGKILLs a process landing transactions on a
// persisted chain (twice, on one directory): every transaction it
// acknowledged is there after reopening, with its balance effects, and the
// slot never goes back.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	var acked []solana.Signature
	var maxSlot uint64
	for round := range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		for n < 200 && sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "ack" {
				sig, err := solana.SignatureFromBase58(f[1])
				if err != nil {
					t.Fatal(err)
				}
				slot, _ := strconv.ParseUint(f[2], 10, 64)
				if slot < maxSlot {
					t.Fatalf("round %d: slot %d after slot %d", round, slot, maxSlot)
				}
				maxSlot = slot
				acked = append(acked, sig)
				n++
			} else if strings.HasPrefix(sc.Text(), "error") {
				t.Fatalf("child: %s", sc.Text())
			}
		}
		if n < 200 {
			t.Fatalf("round %d: child stopped after %d acknowledgements", round, n)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}
	e := openEnv(t, Config{Dir: dir})
	if got := e.chain.Slot(); got < maxSlot {
		t.Fatalf("reopened at slot %d, before slot %d the child answered with", got, maxSlot)
	}
	for i := 0; i < len(acked); i += maxSignatureStatuses {
		batch := acked[i:min(i+maxSignatureStatuses, len(acked))]
		res, err := e.client.GetSignatureStatuses(ctxT(t), true, batch...)
		if err != nil {
			t.Fatal(err)
		}
		for j, st := range res.Value {
			if st == nil || st.Err != nil {
				t.Fatalf("acknowledged %s: status %+v after the crash", batch[j], st)
			}
		}
	}
	// Lamports are conserved: what left the faucet is in the three
	// accounts or was burned as fees, 5000 per transaction.
	var sum uint64
	for _, k := range []solana.PublicKey{e.chain.Faucet(), key("alice").PublicKey(), key("bob").PublicKey(), key("carol").PublicKey()} {
		sum += e.chain.Balance(k)
	}
	n := txCount(e.chain)
	if sum+n*LamportsPerSignature != faucetLamports {
		t.Fatalf("balances sum to %d after %d transactions, want %d", sum, n, faucetLamports-n*LamportsPerSignature)
	}
	if uint64(len(acked)) > n {
		t.Fatalf("%d acknowledged, %d on the chain", len(acked), n)
	}
}
