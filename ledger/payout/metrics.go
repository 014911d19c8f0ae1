package payout

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus series. Without a registerer they
// are kept but never exported.
type metrics struct {
	txs      *prometheus.CounterVec // by result: sent, finalized, failed, expired
	payouts  prometheus.Counter     // payouts finalized
	lamports prometheus.Counter     // lamports paid out (finalized)
	fees     prometheus.Counter     // fees of landed transactions
	backlog  prometheus.Gauge       // pending payouts
	inflight prometheus.Gauge       // transactions in flight
	latency  prometheus.Histogram   // signed → finalized, seconds
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		txs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "node3_payout_transactions_total",
			Help: "Payout transactions by outcome: sent (first acknowledged send), finalized, failed (landed with an error), expired (never landed; re-signed).",
		}, []string{"result"}),
		payouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "node3_payouts_finalized_total",
			Help: "Payouts paid in finalized transactions.",
		}),
		lamports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "node3_payout_lamports_total",
			Help: "Lamports paid to providers in finalized transactions.",
		}),
		fees: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "node3_payout_fees_lamports_total",
			Help: "Fees paid for payout transactions that landed.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "node3_payouts_pending",
			Help: "Payouts waiting to be signed.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "node3_payout_transactions_in_flight",
			Help: "Payout transactions signed and not yet finalized, failed or expired.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "node3_payout_finalize_seconds",
			Help:    "Time from signing a payout transaction to seeing it finalized.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 12),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.txs, m.payouts, m.lamports, m.fees, m.backlog, m.inflight, m.latency} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("payout: metrics already registered (one engine per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}
