package localchain

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/gagliardetto/solana-go"
	"github.com/gagliardetto/solana-go/programs/system"
)

// Solana constants localchain reproduces.
const (
	// LamportsPerSignature is the base fee per transaction signature.
	LamportsPerSignature uint64 = 5000
	// RentExemptMinimum is the rent-exempt minimum of an account with no
	// data: MinimumBalanceForRentExemption(0).
	RentExemptMinimum uint64 = 890_880
	// MaxAccountDataLength is MAX_PERMITTED_DATA_LENGTH (10 MiB).
	MaxAccountDataLength uint64 = 10 * 1024 * 1024

	accountStorageOverhead = 128  // bytes of metadata rent is charged for
	lamportsPerByteYear    = 3480 // Solana's default rent rate
	exemptionYears         = 2    // rent-exempt threshold in years

	defaultSlotInterval    = 400 * time.Millisecond
	defaultConfirmDepth    = 1
	defaultFinalizeDepth   = 32
	defaultBlockhashWindow = 150
	defaultMaxRequestBytes = 50 << 10 // agave's MAX_REQUEST_BODY_SIZE
	faucetLamports         = 500_000_000 * 1_000_000_000
	systemInstructionUnits = 150 // compute units one System Program instruction costs
)

// MinimumBalanceForRentExemption is Solana's rent-exempt minimum for an
// account holding dataLen bytes: (128 + dataLen) * 3480 * 2 lamports. It
// saturates instead of overflowing for absurd sizes.
func MinimumBalanceForRentExemption(dataLen uint64) uint64 {
	size, carry := bits.Add64(dataLen, accountStorageOverhead, 0)
	hi, lo := bits.Mul64(size, lamportsPerByteYear*exemptionYears)
	if carry != 0 || hi != 0 {
		return math.MaxUint64
	}
	return lo
}

// Config configures a Chain. The zero value is a usable chain with
// Solana's mainnet timing.
type Config struct {
	// SlotInterval is how often the slot clock produces a block once Start
	// is called: 0 means 400ms, like Solana; a negative value means manual,
	// the chain only moves on AdvanceSlots.
	SlotInterval time.Duration
	// ConfirmDepth is how many slots after landing a transaction counts as
	// "confirmed" (0 means 1).
	ConfirmDepth int
	// FinalizeDepth is how many slots after landing a transaction counts as
	// "finalized" (0 means 32). It is raised to ConfirmDepth if lower.
	FinalizeDepth int
	// BlockhashWindow is how many blocks a blockhash stays valid (0 means
	// 150, Solana's MAX_PROCESSING_AGE).
	BlockhashWindow uint64
	// MaxRequestBytes bounds the body of one HTTP request (0 means 50 KiB,
	// the limit agave's RPC service applies); larger bodies get HTTP 413.
	MaxRequestBytes int64
	// Seed makes one chain's blockhashes, genesis hash and faucet key
	// differ from another's. Empty means a fixed seed, so runs reproduce.
	Seed []byte
	// Logger receives debug lines for requests and landed transactions and
	// info lines for injected faults. Nil discards.
	Logger *slog.Logger
	// Faults injects failures into the RPC endpoint; nil means a fresh,
	// empty set, reachable through Chain.Faults.
	Faults *Faults
	// Now is the wall clock used for block times. Nil means time.Now.
	Now func() time.Time
	// Dir is the ledger directory, as solana-test-validator's --ledger:
	// with it the chain keeps every landed transaction and its head slot
	// on disk and Open rebuilds the same chain from it (see "Persistence"
	// in the package doc). Empty means memory only. Seed and
	// BlockhashWindow must not change between runs on one directory.
	Dir string
}

func (cfg Config) withDefaults() Config {
	if cfg.SlotInterval == 0 {
		cfg.SlotInterval = defaultSlotInterval
	}
	if cfg.ConfirmDepth <= 0 {
		cfg.ConfirmDepth = defaultConfirmDepth
	}
	if cfg.FinalizeDepth <= 0 {
		cfg.FinalizeDepth = defaultFinalizeDepth
	}
	if cfg.FinalizeDepth < cfg.ConfirmDepth {
		cfg.FinalizeDepth = cfg.ConfirmDepth
	}
	if cfg.BlockhashWindow == 0 {
		cfg.BlockhashWindow = defaultBlockhashWindow
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = defaultMaxRequestBytes
	}
	if len(cfg.Seed) == 0 {
		cfg.Seed = []byte("node3 localchain")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Faults == nil {
		cfg.Faults = NewFaults(0)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// account is the part of a Solana account localchain models. The zero
// value is an account that does not exist: a system-owned account with no
// lamports and no data, which is what Solana reports for unknown keys.
// Data is not stored: only the System Program runs, and it never writes
// account data, so data is always space zero bytes.
type account struct {
	lamports uint64
	owner    solana.PublicKey // the zero key is the System Program
	space    uint64
}

// change is the state an account had when a slot first modified it.
type change struct {
	slot uint64
	pre  account
}

// Chain is an in-process Solana-like ledger with a slot clock and a
// JSON-RPC endpoint. It is safe for concurrent use.
type Chain struct {
	cfg     Config
	log     *slog.Logger
	faults  *Faults
	faucet  solana.PrivateKey
	genesis solana.Hash

	// lifecycle
	lc      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	mu       sync.Mutex
	head     uint64    // the processed slot; block height equals slot (no skipped slots)
	headTime time.Time // when the head slot started
	hashes   map[solana.Hash]uint64
	accounts map[solana.PublicKey]account
	// hist holds, per account, its state before each of the last
	// FinalizeDepth slots that changed it, so that confirmed and finalized
	// views can be reconstructed; touched indexes it by slot for pruning.
	hist    map[solana.PublicKey][]change
	touched map[uint64][]solana.PublicKey
	txs     map[solana.Signature]*txRecord
	txCount uint64
	store   *store // nil without Config.Dir
}

// New returns a memory-only chain at slot 0 whose only funded account is
// its faucet. Call Start to run the slot clock, or AdvanceSlots to move it
// by hand. New panics if cfg.Dir is set: a ledger directory can fail to
// open, so use Open for one.
func New(cfg Config) *Chain {
	if cfg.Dir != "" {
		panic("localchain: New with a ledger directory; use Open")
	}
	return newChain(cfg.withDefaults())
}

// Open returns a chain kept in cfg.Dir: a new one at slot 0 if the
// directory holds no log, else the chain the log describes, at the head
// slot it last vouched for, with every transaction it ever landed. It
// fails with an error naming the file if the log is corrupt (a torn last
// record is not corruption: it is dropped) or belongs to another chain,
// and if another process has the directory open. With cfg.Dir empty it is
// New. Close the chain to record its exact head.
func Open(cfg Config) (*Chain, error) {
	cfg = cfg.withDefaults()
	c := newChain(cfg)
	if cfg.Dir == "" {
		return c, nil
	}
	if err := c.openStore(); err != nil {
		return nil, err
	}
	return c, nil
}

func newChain(cfg Config) *Chain {
	faucetSeed := sha256.Sum256(append([]byte("faucet:"), cfg.Seed...))
	c := &Chain{
		cfg:      cfg,
		log:      cfg.Logger,
		faults:   cfg.Faults,
		faucet:   solana.PrivateKey(ed25519.NewKeyFromSeed(faucetSeed[:])),
		genesis:  solana.Hash(sha256.Sum256(append([]byte("genesis:"), cfg.Seed...))),
		done:     make(chan struct{}),
		headTime: cfg.Now(),
		hashes:   make(map[solana.Hash]uint64),
		accounts: make(map[solana.PublicKey]account),
		hist:     make(map[solana.PublicKey][]change),
		touched:  make(map[uint64][]solana.PublicKey),
		txs:      make(map[solana.Signature]*txRecord),
	}
	c.hashes[c.blockhash(0)] = 0
	c.accounts[c.faucet.PublicKey()] = account{lamports: faucetLamports}
	return c
}

// Start runs the slot clock until ctx is done or Close is called. It does
// nothing when SlotInterval is negative (manual clock), when already
// started, or after Close.
func (c *Chain) Start(ctx context.Context) {
	c.lc.Lock()
	defer c.lc.Unlock()
	if c.started || c.closed || c.cfg.SlotInterval < 0 {
		return
	}
	c.started = true
	ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Add(1)
	go c.runClock(ctx)
}

func (c *Chain) runClock(ctx context.Context) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.SlotInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
			c.AdvanceSlots(1)
		}
	}
}

// Close stops the slot clock, waits for it, and releases requests stalled
// by a fault. Servers started with Serve return. With a ledger directory
// it records the exact head slot and closes the log: from then on the
// chain answers reads but lands nothing and its clock stands still.
// Close is idempotent.
func (c *Chain) Close() error {
	c.lc.Lock()
	first := !c.closed
	if first {
		c.closed = true
		close(c.done)
		if c.cancel != nil {
			c.cancel()
		}
	}
	c.lc.Unlock()
	c.wg.Wait()
	if !first || c.store == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.store.close(c.head)
}

// Faults returns the chain's fault injector (Config.Faults, or the one New
// made), to be changed at run time.
func (c *Chain) Faults() *Faults { return c.faults }

// Faucet returns the public key of the account airdrops are paid from.
func (c *Chain) Faucet() solana.PublicKey { return c.faucet.PublicKey() }

// GenesisHash returns the chain's genesis hash (getGenesisHash).
func (c *Chain) GenesisHash() solana.Hash { return c.genesis }

// Slot returns the current (processed) slot. Block height equals slot.
func (c *Chain) Slot() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head
}

// LatestBlockhash returns the blockhash of the current (processed) slot
// and the last block height at which it is valid. Like a blockhash fetched
// at "processed", it is unknown to the finalized bank for FinalizeDepth
// slots: send with skipPreflight or preflightCommitment "processed".
func (c *Chain) LatestBlockhash() (solana.Hash, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blockhash(c.head), c.head + c.cfg.BlockhashWindow
}

// AdvanceSlots produces n blocks at once, as n ticks of the slot clock
// would. It works whether or not the clock runs. With a ledger directory
// the head does not move once the chain is closed or its log failed.
func (c *Chain) AdvanceSlots(n int) {
	for range n {
		c.mu.Lock()
		if !c.reserveLocked(c.head + 1) {
			c.mu.Unlock()
			return
		}
		c.advanceLocked(c.head+1, c.cfg.Now())
		c.mu.Unlock()
	}
}

// advanceLocked moves the head to slot to (if later), started at t, and
// forgets what no view needs: blockhashes that left every view's window
// and account history older than the finalized view. One step is a tick
// of the slot clock; replay jumps many at once to the same state.
func (c *Chain) advanceLocked(to uint64, t time.Time) {
	c.headTime = t
	from := c.head
	if to <= from {
		return
	}
	c.head = to
	fd, win := uint64(c.cfg.FinalizeDepth), c.cfg.BlockhashWindow
	// Blockhashes of slots at or above keepFrom(head) stay: the finalized
	// view's window and everything newer.
	keepFrom := func(head uint64) uint64 {
		if head > fd+win {
			return head - fd - win
		}
		return 0
	}
	oldKeep, newKeep := keepFrom(from), keepFrom(to)
	for s := oldKeep; s < newKeep && s <= from; s++ {
		delete(c.hashes, c.blockhash(s))
	}
	for s := max(from+1, newKeep); s <= to; s++ {
		c.hashes[c.blockhash(s)] = s
	}
	if to < fd {
		return
	}
	oldest := to - fd // the finalized view: history at or below it is never read again
	for slot, keys := range c.touched {
		if slot > oldest {
			continue
		}
		for _, key := range keys {
			h := c.hist[key]
			i := 0
			for i < len(h) && h[i].slot <= oldest {
				i++
			}
			if i == len(h) {
				delete(c.hist, key)
			} else {
				c.hist[key] = h[i:]
			}
		}
		delete(c.touched, slot)
	}
}

// blockhash derives the blockhash of a slot from the chain seed.
func (c *Chain) blockhash(slot uint64) solana.Hash {
	h := sha256.New()
	h.Write([]byte("blockhash:"))
	h.Write(c.cfg.Seed)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], slot)
	h.Write(b[:])
	var out solana.Hash
	h.Sum(out[:0])
	return out
}

// commitment is a view of the chain: processed (head), confirmed or
// finalized.
type commitment int

const (
	commitProcessed commitment = iota
	commitConfirmed
	commitFinalized
)

func (cm commitment) String() string {
	switch cm {
	case commitProcessed:
		return "processed"
	case commitConfirmed:
		return "confirmed"
	default:
		return "finalized"
	}
}

// viewLocked returns the slot a commitment level sees.
func (c *Chain) viewLocked(cm commitment) uint64 {
	var depth uint64
	switch cm {
	case commitConfirmed:
		depth = uint64(c.cfg.ConfirmDepth)
	case commitFinalized:
		depth = uint64(c.cfg.FinalizeDepth)
	}
	if c.head < depth {
		return 0
	}
	return c.head - depth
}

// blockhashValidLocked reports whether hash is a recent blockhash as seen
// from the bank at slot view: produced at or before view and at most
// BlockhashWindow blocks older.
func (c *Chain) blockhashValidLocked(hash solana.Hash, view uint64) bool {
	s, ok := c.hashes[hash]
	return ok && s <= view && view-s <= c.cfg.BlockhashWindow
}

// accountAtLocked returns key's account as it was at the end of slot view.
func (c *Chain) accountAtLocked(key solana.PublicKey, view uint64) account {
	a := c.accounts[key]
	h := c.hist[key]
	for i := len(h) - 1; i >= 0 && h[i].slot > view; i-- {
		a = h[i].pre
	}
	return a
}

// setAccountLocked writes an account at the head slot, remembering its
// previous state for the older views. Accounts left with no lamports are
// deleted, as Solana does.
func (c *Chain) setAccountLocked(key solana.PublicKey, a account) {
	old := c.accounts[key]
	if h := c.hist[key]; len(h) == 0 || h[len(h)-1].slot != c.head {
		c.hist[key] = append(h, change{slot: c.head, pre: old})
		c.touched[c.head] = append(c.touched[c.head], key)
	}
	if a.lamports == 0 {
		delete(c.accounts, key)
		return
	}
	c.accounts[key] = a
}

// Balance returns the lamports of pubkey at the processed (head) slot.
func (c *Chain) Balance(pubkey solana.PublicKey) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.accounts[pubkey].lamports
}

// Airdrop pays lamports from the faucet to pubkey in a real, signed System
// transfer that lands at once in the current slot (processed; it reaches
// "finalized" FinalizeDepth slots later, like any transaction). As on a
// real cluster, an airdrop that would leave a new account below the
// rent-exempt minimum lands as a failed transaction: Airdrop then returns
// its signature and the *TxError.
func (c *Chain) Airdrop(pubkey solana.PublicKey, lamports uint64) (solana.Signature, error) {
	if lamports == 0 {
		return solana.Signature{}, errors.New("localchain: airdrop of 0 lamports")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	sig, txErr, err := c.airdropLocked(pubkey, lamports)
	if err != nil {
		return solana.Signature{}, err
	}
	if txErr != nil {
		return sig, txErr
	}
	return sig, nil
}

// airdropLocked builds, signs and lands the faucet's transfer. Identical
// airdrops in one slot would be identical transactions, so each retry
// signs against an older (still valid) blockhash to get a new signature.
func (c *Chain) airdropLocked(to solana.PublicKey, lamports uint64) (solana.Signature, *TxError, error) {
	if c.store != nil && c.store.err != nil {
		return solana.Signature{}, nil, c.store.err
	}
	from := c.faucet.PublicKey()
	for back := uint64(0); back <= c.cfg.BlockhashWindow && back <= c.head; back++ {
		tx, err := solana.NewTransaction(
			[]solana.Instruction{system.NewTransferInstruction(lamports, from, to).Build()},
			c.blockhash(c.head-back),
			solana.TransactionPayer(from),
		)
		if err != nil {
			return solana.Signature{}, nil, fmt.Errorf("localchain: build airdrop: %w", err)
		}
		if _, err := tx.Sign(func(solana.PublicKey) *solana.PrivateKey { return &c.faucet }); err != nil {
			return solana.Signature{}, nil, fmt.Errorf("localchain: sign airdrop: %w", err)
		}
		if _, dup := c.txs[tx.Signatures[0]]; dup {
			continue
		}
		w, err := wireFromTransaction(tx)
		if err != nil {
			return solana.Signature{}, nil, fmt.Errorf("localchain: encode airdrop: %w", err)
		}
		out := c.executeLocked(w, c.head, c.headLoader())
		if out.loadErr != nil {
			return solana.Signature{}, nil, fmt.Errorf("localchain: airdrop: %w", out.loadErr)
		}
		if err := c.persistLocked(w, out); err != nil {
			return solana.Signature{}, nil, err
		}
		c.landLocked(w, out)
		return w.sig, out.err, nil
	}
	return solana.Signature{}, nil, errors.New("localchain: too many identical airdrops in the blockhash window")
}
