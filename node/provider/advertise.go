package provider

import (
	"context"
	"log/slog"
	"time"

	"github.com/node3/node3"
	"github.com/node3/node3/p2p"
)

// AdvertiserConfig configures a provider's advert loop.
type AdvertiserConfig struct {
	Node  *p2p.Node
	Table *p2p.AdvertTable // this node's table: its own advert goes in too
	// Free is the provider's free slots now; Changed signals when they
	// change (Provider.FreeSlots, Provider.CapacityChanged).
	Free       func() int
	Changed    <-chan struct{}
	GPUs       []node3.GPU
	PriceFloor node3.Lamports
	Wallet     string
	Version    string
	Interval   time.Duration // re-send period
	TTL        time.Duration // how long each advert is valid
	// Push: adverts are for discovery only (capacity goes over the work
	// streams), so they are not re-sent when capacity changes — on a busy
	// network that would be every provider, every second, to every node.
	Push   bool
	Now    func() time.Time
	Logger *slog.Logger
}

// advertMinGap is the least time between two adverts sent because the
// free capacity changed.
const advertMinGap = time.Second

// RunAdvertiser publishes the provider's advert at start (once a peer is
// on the topic, or after an interval), every Interval and, without Push,
// soon after its free capacity changes (at most every advertMinGap),
// until ctx ends.
func RunAdvertiser(ctx context.Context, cfg AdvertiserConfig) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var last time.Time
	publish := func() {
		a := p2p.ProviderAdvert{
			GPUs:            cfg.GPUs,
			FreeSlots:       min(cfg.Free(), 1024),
			PriceFloor:      cfg.PriceFloor,
			Wallet:          cfg.Wallet,
			SoftwareVersion: node3.Truncate(cfg.Version, 64),
			TTLSecs:         int(cfg.TTL / time.Second),
		}
		if a.GPUs == nil {
			a.GPUs = []node3.GPU{}
		}
		a.IssuedAt = cfg.Now()
		if err := cfg.Node.PublishAdvert(ctx, a); err != nil {
			if ctx.Err() == nil {
				cfg.Logger.Warn("publishing the provider advert failed", "err", err)
			}
			return
		}
		a.Peer = cfg.Node.ID()
		cfg.Table.Put(a, a.IssuedAt) // our own: gossip does not echo it back
		last = time.Now()
	}
	// A publish before any peer is on the topic reaches nobody: the first
	// advert waits for one (at most an interval).
	topic := p2p.ProvidersTopic(cfg.Node.Network())
	for deadline := time.Now().Add(cfg.Interval); len(cfg.Node.TopicPeers(topic)) == 0 && time.Now().Before(deadline); {
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	publish()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	pending := false
	changed := cfg.Changed
	if cfg.Push {
		changed = nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			publish()
		case <-changed:
			if wait := advertMinGap - time.Since(last); wait > 0 {
				if !pending {
					pending = true
					soon.Reset(wait)
				}
				continue
			}
			publish()
		case <-soon.C:
			pending = false
			publish()
		}
	}
}

// RivalsOf lists the live adverts of t for claim ranking (GossipConfig.Rivals).
func RivalsOf(t *p2p.AdvertTable) func(now time.Time) []Rival {
	return func(now time.Time) []Rival {
		entries := t.List(now)
		out := make([]Rival, len(entries))
		for i, e := range entries {
			out[i] = Rival{Peer: e.ID, GPUs: e.Advert.GPUs, Free: e.Advert.FreeSlots}
		}
		return out
	}
}
