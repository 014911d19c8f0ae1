package p2p

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered with the injected Registerer, never the global
// one. Nodes sharing a Registerer share (and sum into) the same series; wrap
// the Registerer with prometheus.WrapRegistererWith to tell them apart.
type metrics struct {
	peers     prometheus.Gauge
	received  *prometheus.CounterVec // topic
	rejected  *prometheus.CounterVec // topic, reason
	ignored   *prometheus.CounterVec // topic, reason
	published *prometheus.CounterVec // topic
	requests  *prometheus.CounterVec // protocol, side, result

	workStreams   prometheus.Gauge
	workMessages  *prometheus.CounterVec // type, direction (in|out)
	workDropped   *prometheus.CounterVec // reason
	workOverflows prometheus.Counter
	workClosed    *prometheus.CounterVec // reason
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "peers",
			Help: "Connected libp2p peers.",
		}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "messages_received_total",
			Help: "Gossip messages from other peers that reached validation, by topic.",
		}, []string{"topic"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "messages_rejected_total",
			Help: "Gossip messages rejected (sender penalised), by topic and reason.",
		}, []string{"topic", "reason"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "messages_ignored_total",
			Help: "Gossip messages dropped without penalty (replays, stale, newer version), by topic and reason.",
		}, []string{"topic", "reason"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "messages_published_total",
			Help: "Gossip messages published by this node, by topic.",
		}, []string{"topic"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "stream_requests_total",
			Help: "Stream requests by protocol, side (client|server) and result (ok|error).",
		}, []string{"protocol", "side", "result"}),
		workStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "work_streams",
			Help: "Open work streams (both directions).",
		}),
		workMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "work_messages_total",
			Help: "Work stream messages by type and direction (in|out).",
		}, []string{"type", "direction"}),
		workDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "work_dropped_total",
			Help: "Work stream frames dropped as protocol violations (stream closed, sender penalised), by reason.",
		}, []string{"reason"}),
		workOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "work_send_overflows_total",
			Help: "Work streams dropped because their send queue was full.",
		}),
		workClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "node3", Subsystem: "p2p", Name: "work_closed_total",
			Help: "Work streams closed, by reason.",
		}, []string{"reason"}),
	}
	var err error
	m.peers = register(reg, m.peers, &err)
	m.received = register(reg, m.received, &err)
	m.rejected = register(reg, m.rejected, &err)
	m.ignored = register(reg, m.ignored, &err)
	m.published = register(reg, m.published, &err)
	m.requests = register(reg, m.requests, &err)
	m.workStreams = register(reg, m.workStreams, &err)
	m.workMessages = register(reg, m.workMessages, &err)
	m.workDropped = register(reg, m.workDropped, &err)
	m.workOverflows = register(reg, m.workOverflows, &err)
	m.workClosed = register(reg, m.workClosed, &err)
	return m, err
}

// register registers c, or returns the identical collector already there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		if *errp == nil {
			*errp = err
		}
	}
	return c
}
