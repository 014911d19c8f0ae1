package localchain

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gagliardetto/solana-go/rpc"
	"github.com/gagliardetto/solana-go/rpc/jsonrpc"
)

func mustAdd(t *testing.T, f *Faults, r FaultRule) RuleID {
	t.Helper()
	id, err := f.Add(r)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestFaultModes(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.chain.Faults()
	ctx := ctxT(t)

	t.Run("drop", func(t *testing.T) {
		id := mustAdd(t, f, FaultRule{Method: "getSlot", Kind: FaultDrop, Count: 1})
		if _, err := e.client.GetSlot(ctx, ""); err == nil {
			t.Fatal("dropped request succeeded")
		}
		if _, err := e.client.GetSlot(ctx, ""); err != nil {
			t.Fatalf("request after the fault expired: %v", err)
		}
		if f.Fired(id) != 1 {
			t.Errorf("fired %d times", f.Fired(id))
		}
	})

	t.Run("other methods unaffected", func(t *testing.T) {
		id := mustAdd(t, f, FaultRule{Method: "getBalance", Kind: FaultDrop})
		defer f.Remove(id)
		if _, err := e.client.GetHealth(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("empty", func(t *testing.T) {
		mustAdd(t, f, FaultRule{Kind: FaultEmpty, Count: 1})
		if _, err := e.client.GetHealth(ctx); err == nil {
			t.Fatal("empty answer accepted")
		}
	})

	t.Run("rpc error", func(t *testing.T) {
		mustAdd(t, f, FaultRule{Method: "getHealth", Kind: FaultRPCError, Count: 1})
		_, err := e.client.GetHealth(ctx)
		if re := rpcErr(t, err); re.Code != codeNodeUnhealthy {
			t.Errorf("code %d", re.Code)
		}
		mustAdd(t, f, FaultRule{Method: "getHealth", Kind: FaultRPCError, Count: 1, Code: -32099, Message: "custom"})
		_, err = e.client.GetHealth(ctx)
		if re := rpcErr(t, err); re.Code != -32099 || re.Message != "custom" {
			t.Errorf("custom error %+v", re)
		}
	})

	t.Run("http error", func(t *testing.T) {
		mustAdd(t, f, FaultRule{Kind: FaultHTTPError, Count: 1})
		_, err := e.client.GetHealth(ctx)
		var he *jsonrpc.HTTPError
		if !errors.As(err, &he) || he.Code != 500 {
			t.Fatalf("err = %v", err)
		}
		mustAdd(t, f, FaultRule{Kind: FaultHTTPError, Count: 1, Status: 429})
		_, err = e.client.GetHealth(ctx)
		if !errors.As(err, &he) || he.Code != 429 {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("delay", func(t *testing.T) {
		mustAdd(t, f, FaultRule{Kind: FaultDelay, Delay: 60 * time.Millisecond, Count: 1})
		start := time.Now()
		if _, err := e.client.GetHealth(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 60*time.Millisecond {
			t.Errorf("answered after %v", d)
		}
	})

	t.Run("stall", func(t *testing.T) {
		id := mustAdd(t, f, FaultRule{Method: "getHealth", Kind: FaultStall})
		defer f.Remove(id)
		sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := e.client.GetHealth(sctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stalled call: %v", err)
		}
	})

	t.Run("drop response after landing", func(t *testing.T) {
		alice := key("alice-dr")
		e.fund(alice, sol)
		mustAdd(t, f, FaultRule{Method: "sendTransaction", Kind: FaultDropResponse, Count: 1})
		tx := signedTx(t, e.blockhash(), alice, xfer{alice, key("bob").PublicKey(), sol / 2})
		if _, err := e.send(tx, rpc.TransactionOpts{}); err == nil {
			t.Fatal("dropped answer arrived")
		}
		if st := e.status(tx.Signatures[0], false); st == nil {
			t.Fatal("transaction whose answer was dropped did not land")
		}
		// Resending the same bytes is safe.
		if _, err := e.send(tx, rpc.TransactionOpts{SkipPreflight: true}); err != nil {
			t.Fatal(err)
		}
		if got := e.chain.Balance(alice.PublicKey()); got != sol-sol/2-5000 {
			t.Errorf("balance %d: charged more than once", got)
		}
	})

	t.Run("never land", func(t *testing.T) {
		alice := key("alice-nl")
		e.fund(alice, sol)
		id := mustAdd(t, f, FaultRule{Kind: FaultNeverLand, Count: 1})
		res, err := e.client.GetLatestBlockhash(ctx, rpc.CommitmentFinalized)
		if err != nil {
			t.Fatal(err)
		}
		tx := signedTx(t, res.Value.Blockhash, alice, xfer{alice, key("bob").PublicKey(), sol / 2})
		sig := e.mustSend(tx)
		if f.Fired(id) != 1 {
			t.Fatal("never-land rule did not fire")
		}
		e.chain.AdvanceSlots(5)
		if st := e.status(sig, true); st != nil {
			t.Fatalf("never-land transaction landed: %+v", st)
		}
		// Past lastValidBlockHeight the same bytes are refused for good.
		e.chain.AdvanceSlots(int(res.Value.LastValidBlockHeight - e.chain.Slot() + 1))
		_, err = e.send(tx, rpc.TransactionOpts{PreflightCommitment: rpc.CommitmentProcessed})
		if got := preflightErr(t, err); got != `"BlockhashNotFound"` {
			t.Errorf("expired resend: %s", got)
		}
		if got := e.chain.Balance(alice.PublicKey()); got != sol {
			t.Errorf("balance %d, want untouched", got)
		}
	})

	t.Run("stall released by Close", func(t *testing.T) {
		e2 := newEnv(t, Config{})
		mustAdd(t, e2.chain.Faults(), FaultRule{Kind: FaultStall})
		errc := make(chan error, 1)
		go func() {
			_, err := e2.client.GetHealth(context.Background())
			errc <- err
		}()
		time.Sleep(30 * time.Millisecond)
		_ = e2.chain.Close()
		select {
		case err := <-errc:
			if err == nil {
				t.Error("stalled call succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not release a stalled request")
		}
	})
}

// TestFaultProbabilityIsReproducible checks that a seed fixes the pattern.
func TestFaultProbabilityIsReproducible(t *testing.T) {
	pattern := func(seed uint64) []bool {
		f := NewFaults(seed)
		if _, err := f.Add(FaultRule{Method: "getSlot", Kind: FaultRPCError, Probability: 0.3}); err != nil {
			t.Fatal(err)
		}
		out := make([]bool, 200)
		for i := range out {
			out[i] = f.decide("getSlot").terminal != nil
		}
		return out
	}
	a, b := pattern(7), pattern(7)
	hits := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed, different faults at request %d", i)
		}
		if a[i] {
			hits++
		}
	}
	if hits < 30 || hits > 90 {
		t.Errorf("%d of 200 requests faulted at p=0.3", hits)
	}
	c := pattern(8)
	same := true
	for i := range a {
		same = same && a[i] == c[i]
	}
	if same {
		t.Error("different seeds gave the same pattern")
	}

	// Over HTTP, with the client observing it.
	e := newEnv(t, Config{Faults: NewFaults(7)})
	mustAdd(t, e.chain.Faults(), FaultRule{Method: "getSlot", Kind: FaultRPCError, Probability: 0.3})
	for i := range 40 {
		_, err := e.client.GetSlot(ctxT(t), "")
		if (err != nil) != a[i] {
			t.Fatalf("request %d: err %v, seeded pattern says %v", i, err, a[i])
		}
	}
}

func TestFaultRuleValidation(t *testing.T) {
	f := NewFaults(1)
	for _, r := range []FaultRule{
		{},
		{Kind: FaultKind(99)},
		{Kind: FaultDrop, Probability: 1.5},
		{Kind: FaultDelay, Delay: -time.Second},
		{Kind: FaultHTTPError, Status: 200},
	} {
		if _, err := f.Add(r); err == nil {
			t.Errorf("rule %+v accepted", r)
		}
	}
	var nilFaults *Faults
	if act := nilFaults.decide("getSlot"); act.terminal != nil || act.delay != 0 {
		t.Error("nil Faults injected something")
	}
	id := mustAdd(t, f, FaultRule{Kind: FaultDrop})
	f.Clear()
	if f.decide("getSlot").terminal != nil {
		t.Error("Clear left a rule")
	}
	_ = id
}
