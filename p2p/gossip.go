package p2p

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/node3/node3"
)

// Queue sizes: postings come in bursts when a coordinator takes a batch of
// submissions; the library default of 32 drops messages in tight loops.
const (
	peerOutboundQueue = 512
	validateQueue     = 512
	subscriptionQueue = 512
)

// Metric labels of the topics.
const (
	labelJobs      = "jobs"
	labelProviders = "providers"
)

// Peer score thresholds. One rejected message costs a sender 100 points on
// the jobs topic (50 on providers) and the penalty grows with the square of
// the count, so a handful of invalid messages silences a peer (gossip,
// publish) and a few more graylist it entirely; honest peers sit at or
// slightly above zero. The penalty decays over an hour.
var scoreThresholds = pubsub.PeerScoreThresholds{
	GossipThreshold:             -500,
	PublishThreshold:            -1000,
	GraylistThreshold:           -2500,
	AcceptPXThreshold:           100, // only reachable with app-specific score, which is 0
	OpportunisticGraftThreshold: 3,
}

func topicScore(weight float64) *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight: weight,
		// P1: time in mesh, up to +1 after 10 minutes.
		TimeInMeshWeight:  0.1,
		TimeInMeshQuantum: time.Minute,
		TimeInMeshCap:     10,
		// P2: first deliveries, up to +20.
		FirstMessageDeliveriesWeight: 1,
		FirstMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:    20,
		// P3/P3b: off. Both topics are sparse (a posting every few seconds
		// at best); delivery-rate penalties would punish honest peers.
		// P4: invalid messages.
		InvalidMessageDeliveriesWeight: -100,
		InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
	}
}

// scoreParams builds the peer score; app is the application-specific
// part (minus work-stream penalties).
func scoreParams(jobs, providers string, whitelist []*net.IPNet, app func(peer.ID) float64) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics: map[string]*pubsub.TopicScoreParams{
			jobs:      topicScore(1),
			providers: topicScore(0.5),
		},
		TopicScoreCap:     50,
		AppSpecificScore:  app,
		AppSpecificWeight: 1,
		// P6: more than 8 peers behind one IP costs (n-8)^2 * 10; loopback
		// (and configured LANs) are exempt so local networks are not
		// punished for sharing 127.0.0.1.
		IPColocationFactorWeight:    -10,
		IPColocationFactorThreshold: 8,
		IPColocationFactorWhitelist: whitelist,
		// P7: protocol misbehaviour (GRAFT flood, broken IWANT promises).
		BehaviourPenaltyWeight:    -10,
		BehaviourPenaltyThreshold: 6,
		BehaviourPenaltyDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:             pubsub.DefaultDecayInterval,
		DecayToZero:               pubsub.DefaultDecayToZero,
		// Remember scores of peers that disconnect, so that reconnecting
		// does not wipe a penalty.
		RetainScore: time.Hour,
	}
}

func (n *Node) startGossip(whitelist []*net.IPNet) error {
	jobs, providers := JobsTopic(n.cfg.Network), ProvidersTopic(n.cfg.Network)
	psCtx, psCancel := context.WithCancel(context.Background())
	n.psCancel = psCancel
	thresholds := scoreThresholds
	var err error
	n.ps, err = pubsub.NewGossipSub(psCtx, n.host,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerScore(scoreParams(jobs, providers, whitelist, func(p peer.ID) float64 { return -n.WorkPenalty(p) }), &thresholds),
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(n.storeScores), n.cfg.ScoreInspectInterval),
		pubsub.WithPeerOutboundQueueSize(peerOutboundQueue),
		pubsub.WithValidateQueueSize(validateQueue),
		pubsub.WithSeenMessagesTTL(DefaultSeenMessagesTTL),
		// An RPC may batch several messages; one message is bounded by the
		// validators (MaxJobMessageSize).
		pubsub.WithMaxMessageSize(1<<20),
		pubsub.WithLogger(n.log),
	)
	if err != nil {
		return fmt.Errorf("start gossipsub: %w", err)
	}
	if err := n.ps.RegisterTopicValidator(jobs, n.validateJobMsg); err != nil {
		return fmt.Errorf("register jobs validator: %w", err)
	}
	if err := n.ps.RegisterTopicValidator(providers, n.validateAdvertMsg); err != nil {
		return fmt.Errorf("register providers validator: %w", err)
	}
	if n.jobsTopic, err = n.ps.Join(jobs); err != nil {
		return fmt.Errorf("join %s: %w", jobs, err)
	}
	if n.provTopic, err = n.ps.Join(providers); err != nil {
		return fmt.Errorf("join %s: %w", providers, err)
	}
	// Every node subscribes to both topics (subscribers form the mesh and
	// forward messages, whether or not anyone consumes them here), except
	// that one with NoBoard stays off the jobs topic.
	if !n.cfg.NoBoard {
		if n.jobsSub, err = n.jobsTopic.Subscribe(pubsub.WithBufferSize(subscriptionQueue)); err != nil {
			return fmt.Errorf("subscribe %s: %w", jobs, err)
		}
		n.goSafe(func() { readLoop(n, n.jobsSub, &n.jobHandlers) })
	}
	if n.provSub, err = n.provTopic.Subscribe(pubsub.WithBufferSize(subscriptionQueue)); err != nil {
		return fmt.Errorf("subscribe %s: %w", providers, err)
	}
	n.goSafe(func() { readLoop(n, n.provSub, &n.advertHandlers) })
	return nil
}

// account counts and logs the verdict on a message from another peer.
func (n *Node) account(topic string, vd verdict, author, from peer.ID) {
	switch vd.result {
	case pubsub.ValidationReject:
		n.metrics.rejected.WithLabelValues(topic, vd.reason).Inc()
		n.log.Debug("gossip message rejected", "topic", topic, "reason", vd.reason, "author", author, "from", from, "err", vd.err)
	case pubsub.ValidationIgnore:
		n.metrics.ignored.WithLabelValues(topic, vd.reason).Inc()
		n.log.Debug("gossip message ignored", "topic", topic, "reason", vd.reason, "author", author, "from", from, "err", vd.err)
	}
}

func (n *Node) validateJobMsg(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	author := msg.GetFrom()
	ps, vd := n.val.job(author, msg.Data)
	if from != n.self {
		n.metrics.received.WithLabelValues(labelJobs).Inc()
		n.account(labelJobs, vd, author, from)
	}
	if vd.result == pubsub.ValidationAccept {
		msg.ValidatorData = ps
	}
	return vd.result
}

func (n *Node) validateAdvertMsg(_ context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
	author := msg.GetFrom()
	a, vd := n.val.advert(author, msg.Data)
	if from != n.self {
		n.metrics.received.WithLabelValues(labelProviders).Inc()
		n.account(labelProviders, vd, author, from)
	}
	if vd.result == pubsub.ValidationAccept {
		msg.ValidatorData = []ProviderAdvert{a}
	}
	return vd.result
}

// readLoop hands what accepted messages from other peers carry (the
// validator's []T) to the handlers, in order, on this one goroutine.
func readLoop[T any](n *Node, sub *pubsub.Subscription, handlers *[]func(T, peer.ID)) {
	for {
		msg, err := sub.Next(n.ctx)
		if err != nil {
			return
		}
		author := msg.GetFrom()
		if msg.Local || author == n.self {
			continue
		}
		vs, ok := msg.ValidatorData.([]T)
		if !ok {
			continue
		}
		n.handlersMu.RLock()
		hs := *handlers
		n.handlersMu.RUnlock()
		for _, v := range vs {
			for _, h := range hs {
				h(v, author)
			}
		}
	}
}

// OnJobPosting adds a handler for job postings from other peers that passed
// validation; author is the signing coordinator. Handlers run one at a
// time on the node's delivery goroutine: hand work off rather than block,
// or the subscription buffer overflows and messages are dropped.
func (n *Node) OnJobPosting(h func(p JobPosting, author peer.ID)) {
	n.handlersMu.Lock()
	n.jobHandlers = append(n.jobHandlers[:len(n.jobHandlers):len(n.jobHandlers)], h)
	n.handlersMu.Unlock()
}

// OnAdvert adds a handler for provider adverts from other peers that passed
// validation; see OnJobPosting.
func (n *Node) OnAdvert(h func(a ProviderAdvert, author peer.ID)) {
	n.handlersMu.Lock()
	n.advertHandlers = append(n.advertHandlers[:len(n.advertHandlers):len(n.advertHandlers)], h)
	n.handlersMu.Unlock()
}

// nextSeq returns a sequence number above every one this node issued and
// at least issued's Unix nanoseconds, so it keeps rising across restarts.
func (n *Node) nextSeq(issued time.Time) uint64 {
	n.seqMu.Lock()
	defer n.seqMu.Unlock()
	s := uint64(max(issued.UnixNano(), 1))
	if s <= n.lastSeq && n.lastSeq < math.MaxUint64 {
		s = n.lastSeq + 1
	}
	n.lastSeq = s
	return s
}

// PublishJob signs and publishes one posting on the jobs topic. Empty
// fields are filled: Version, Coordinator (this node; another value is an
// error), IssuedAt (Clock), Seq (rising), Status (from Job) and ExpiresAt
// (the job's expiry for a posted job, else DefaultStatusLifetime). Other
// nodes accept it only if they trust this node as a coordinator.
func (n *Node) PublishJob(ctx context.Context, p JobPosting) error {
	if p.Coordinator != "" && p.Coordinator != n.self {
		return node3.Errorf(node3.CodeInvalid, "publish job posting: coordinator %s is not this node", p.Coordinator)
	}
	if err := n.fillPosting(&p); err != nil {
		return fmt.Errorf("publish job posting: %w", err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("publish job posting: encode: %w", err)
	}
	if len(data) > MaxJobMessageSize {
		return node3.Errorf(node3.CodeTooLarge, "publish job posting %s: %d bytes, more than %d", p.JobID, len(data), MaxJobMessageSize)
	}
	if err := n.jobsTopic.Publish(ctx, data); err != nil {
		return fmt.Errorf("publish job posting %s: %w", p.JobID, err)
	}
	n.metrics.published.WithLabelValues(labelJobs).Inc()
	return nil
}

// PublishJobs signs and publishes postings on the jobs topic, as few
// PostingBatch messages as fit MaxJobMessageSize and MaxBatchPostings,
// in order. Fields are filled as PublishJob fills them. It returns how
// many postings went out: on an error, those after them did not.
func (n *Node) PublishJobs(ctx context.Context, ps []JobPosting) (int, error) {
	const envelope = 128 // {"v":1,"coordinator":"…","postings":[…]}
	budget := MaxJobMessageSize - envelope
	// The envelope is written around the postings' own encodings (a
	// PostingBatch through json.Marshal would scan each one again).
	head := fmt.Sprintf(`{"v":%d,"coordinator":%q,"postings":[`, Version, n.self.String())
	var (
		sent  int
		parts [][]byte
		size  int
	)
	flush := func() error {
		if len(parts) == 0 {
			return nil
		}
		data := make([]byte, 0, len(head)+size+2)
		data = append(data, head...)
		for i, b := range parts {
			if i > 0 {
				data = append(data, ',')
			}
			data = append(data, b...)
		}
		data = append(data, "]}"...)
		if err := n.jobsTopic.Publish(ctx, data); err != nil {
			return fmt.Errorf("publish %d postings: %w", len(parts), err)
		}
		n.metrics.published.WithLabelValues(labelJobs).Inc()
		sent += len(parts)
		parts, size = parts[:0], 0
		return nil
	}
	for i := range ps {
		p := ps[i]
		if p.Coordinator != "" && p.Coordinator != n.self {
			return sent, node3.Errorf(node3.CodeInvalid, "publish job posting: coordinator %s is not this node", p.Coordinator)
		}
		if err := n.fillPosting(&p); err != nil {
			return sent, fmt.Errorf("publish job posting: %w", err)
		}
		b, err := json.Marshal(p)
		if err != nil {
			return sent, fmt.Errorf("publish job posting: encode: %w", err)
		}
		if len(b) > budget {
			return sent, node3.Errorf(node3.CodeTooLarge, "publish job posting %s: %d bytes, more than %d", p.JobID, len(b), budget)
		}
		if size+len(b)+1 > budget || len(parts) == MaxBatchPostings {
			if err := flush(); err != nil {
				return sent, err
			}
		}
		parts = append(parts, b)
		size += len(b) + 1
	}
	return sent, flush()
}

// PublishAdvert signs and publishes this node's advert on the providers
// topic. Empty fields are filled: Version, Peer (this node; another value
// is an error), IssuedAt (Clock), Seq (rising) and TTLSecs
// (DefaultAdvertTTL).
func (n *Node) PublishAdvert(ctx context.Context, a ProviderAdvert) error {
	if a.Version == 0 {
		a.Version = Version
	}
	if a.Peer == "" {
		a.Peer = n.self
	}
	if a.Peer != n.self {
		return node3.Errorf(node3.CodeInvalid, "publish advert: peer %s is not this node", a.Peer)
	}
	if a.IssuedAt.IsZero() {
		a.IssuedAt = n.cfg.Clock()
	}
	if a.Seq == 0 {
		a.Seq = n.nextSeq(a.IssuedAt)
	}
	if a.TTLSecs == 0 {
		a.TTLSecs = int(DefaultAdvertTTL / time.Second)
	}
	if err := checkVersion(a.Version, "provider advert"); err != nil {
		return fmt.Errorf("publish advert: %w", err)
	}
	if err := a.check(); err != nil {
		return fmt.Errorf("publish advert: %w", err)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("publish advert: encode: %w", err)
	}
	if len(data) > MaxAdvertMessageSize {
		return node3.Errorf(node3.CodeTooLarge, "publish advert: %d bytes, more than %d", len(data), MaxAdvertMessageSize)
	}
	if err := n.provTopic.Publish(ctx, data); err != nil {
		return fmt.Errorf("publish advert: %w", err)
	}
	n.metrics.published.WithLabelValues(labelProviders).Inc()
	return nil
}
