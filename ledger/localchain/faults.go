package localchain

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// FaultKind is what an injected fault does to a request.
type FaultKind int

const (
	// FaultDelay waits FaultRule.Delay, then answers normally.
	FaultDelay FaultKind = iota + 1
	// FaultDrop closes the connection without an answer; the request is
	// not executed.
	FaultDrop
	// FaultDropResponse executes the request, then closes the connection
	// without an answer: the client cannot know whether, say, its
	// transaction landed.
	FaultDropResponse
	// FaultEmpty answers HTTP 200 with an empty body; the request is not
	// executed.
	FaultEmpty
	// FaultRPCError answers with a JSON-RPC error (FaultRule.Code and
	// Message; default -32005 "Node is unhealthy"); not executed.
	FaultRPCError
	// FaultHTTPError answers with an HTTP status (FaultRule.Status; default
	// 500) and a plain-text body; not executed.
	FaultHTTPError
	// FaultStall never answers: the handler holds the request until the
	// client gives up (its context ends) or the chain is closed.
	FaultStall
	// FaultNeverLand applies to sendTransaction only: the transaction is
	// decoded and preflighted as usual and its signature returned, but it
	// is silently dropped and never lands, like a transaction a leader
	// never included.
	FaultNeverLand
)

func (k FaultKind) String() string {
	switch k {
	case FaultDelay:
		return "delay"
	case FaultDrop:
		return "drop"
	case FaultDropResponse:
		return "drop-response"
	case FaultEmpty:
		return "empty"
	case FaultRPCError:
		return "rpc-error"
	case FaultHTTPError:
		return "http-error"
	case FaultStall:
		return "stall"
	case FaultNeverLand:
		return "never-land"
	default:
		return fmt.Sprintf("FaultKind(%d)", int(k))
	}
}

// FaultRule says which requests a fault hits and how.
type FaultRule struct {
	// Method is the JSON-RPC method the rule applies to; "" means every
	// method (FaultNeverLand rules only ever apply to sendTransaction).
	Method string
	Kind   FaultKind
	// Probability is the chance that a matching request triggers the rule,
	// drawn from the seeded generator; 0 means 1 (always).
	Probability float64
	// Count is how many times the rule may trigger before it removes
	// itself; 0 means no limit. Count 1 with Probability 0 is "the next
	// matching request".
	Count int
	// Delay is how long FaultDelay waits.
	Delay time.Duration
	// Code and Message are FaultRPCError's JSON-RPC error.
	Code    int
	Message string
	// Status is FaultHTTPError's HTTP status code.
	Status int
}

// RuleID names a rule added to a Faults.
type RuleID int

type faultState struct {
	id        RuleID
	rule      FaultRule
	remaining int // for Count > 0
}

// Faults is a set of fault rules, safe for concurrent use and changeable
// while the chain serves requests. Rules are tried in the order they were
// added; the draws come from one generator seeded by NewFaults, so a
// single-threaded sequence of requests sees the same faults on every run.
// The methods of a nil *Faults do nothing.
type Faults struct {
	mu    sync.Mutex
	rng   *rand.Rand
	next  RuleID
	rules []*faultState
	fired map[RuleID]int
}

// NewFaults returns an empty set of rules whose random draws come from a
// generator seeded with seed.
func NewFaults(seed uint64) *Faults {
	return &Faults{
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		fired: make(map[RuleID]int),
	}
}

// Add installs a rule and returns its id.
func (f *Faults) Add(r FaultRule) (RuleID, error) {
	if f == nil {
		return 0, errors.New("localchain: nil Faults")
	}
	if r.Kind < FaultDelay || r.Kind > FaultNeverLand {
		return 0, fmt.Errorf("localchain: unknown fault kind %d", int(r.Kind))
	}
	if r.Probability < 0 || r.Probability > 1 {
		return 0, fmt.Errorf("localchain: fault probability %v outside [0, 1]", r.Probability)
	}
	if r.Count < 0 || r.Delay < 0 {
		return 0, errors.New("localchain: negative fault count or delay")
	}
	if r.Kind == FaultHTTPError && r.Status != 0 && (r.Status < 400 || r.Status > 599) {
		return 0, fmt.Errorf("localchain: fault HTTP status %d is not an error status", r.Status)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.rules = append(f.rules, &faultState{id: f.next, rule: r, remaining: r.Count})
	return f.next, nil
}

// Remove deletes a rule; its Fired count stays readable.
func (f *Faults) Remove(id RuleID) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = removeRule(f.rules, id)
}

// Clear deletes every rule.
func (f *Faults) Clear() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Fired reports how many times a rule has triggered.
func (f *Faults) Fired(id RuleID) int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fired[id]
}

func removeRule(rules []*faultState, id RuleID) []*faultState {
	out := rules[:0:0]
	for _, r := range rules {
		if r.id != id {
			out = append(out, r)
		}
	}
	return out
}

// faultAction is what the rules decided for one request.
type faultAction struct {
	delay     time.Duration
	terminal  *FaultRule // first non-delay, non-never-land rule that fired
	neverLand bool
	fired     []RuleID
}

// decide rolls every rule that matches method. Delays add up; the first
// other rule that fires decides the outcome.
func (f *Faults) decide(method string) faultAction {
	var act faultAction
	if f == nil {
		return act
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var expired []RuleID
	for _, st := range f.rules {
		r := &st.rule
		if r.Method != "" && r.Method != method {
			continue
		}
		if r.Kind == FaultNeverLand && method != "sendTransaction" {
			continue
		}
		if act.terminal != nil && r.Kind != FaultDelay {
			continue // outcome already decided; do not consume this rule
		}
		if r.Probability > 0 && r.Probability < 1 && f.rng.Float64() >= r.Probability {
			continue
		}
		f.fired[st.id]++
		act.fired = append(act.fired, st.id)
		if r.Count > 0 {
			st.remaining--
			if st.remaining == 0 {
				expired = append(expired, st.id)
			}
		}
		switch r.Kind {
		case FaultDelay:
			act.delay += r.Delay
		case FaultNeverLand:
			act.neverLand = true
		default:
			rule := *r
			act.terminal = &rule
		}
	}
	for _, id := range expired {
		f.rules = removeRule(f.rules, id)
	}
	return act
}
