package p2p

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// benchWork starts a coordinator whose handler hands acks to acks, and a
// provider that acks every grant.
func benchWork(b *testing.B) (*WorkConn, chan Ack) {
	coord, prov := workNodes(b, []string{"/ip4/127.0.0.1/tcp/0"}, nil)
	acks := make(chan Ack, 1024)
	conns := make(chan *WorkConn, 1)
	coord.HandleWork(func(c *WorkConn) {
		conns <- c
		for m := range c.Messages() {
			if m.Ack != nil {
				acks <- *m.Ack
			}
		}
	})
	pc := openWork(b, prov, coord.ID())
	go func() {
		for m := range pc.Messages() {
			if m.Grant != nil {
				if err := pc.SendAck(m.Grant.Job.ID, m.Grant.Attempt); err != nil {
					return
				}
			}
		}
	}()
	if err := pc.SendCapacity(testCapacity()); err != nil {
		b.Fatal(err)
	}
	return recv(b, conns, "work stream"), acks
}

// BenchmarkWorkGrantAck measures the grant→ack round trip over one work
// stream on loopback TCP, one grant in flight at a time.
func BenchmarkWorkGrantAck(b *testing.B) {
	cc, acks := benchWork(b)
	grants := make([]Grant, 256)
	for i := range grants {
		grants[i] = testGrant(fmt.Sprintf("job-%d", i), time.Now())
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		t0 := time.Now()
		if err := cc.SendGrant(grants[i%len(grants)]); err != nil {
			b.Fatal(err)
		}
		recv(b, acks, "ack")
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkWorkGrantAckPipelined keeps up to 64 grants in flight and
// reports messages (grants plus acks) per second.
func BenchmarkWorkGrantAckPipelined(b *testing.B) {
	cc, acks := benchWork(b)
	g := testGrant("job-1", time.Now())
	const window = 64
	b.ResetTimer()
	start := time.Now()
	sent, got := 0, 0
	for got < b.N {
		for sent < b.N && sent-got < window {
			if err := cc.SendGrant(g); err != nil {
				b.Fatal(err)
			}
			sent++
		}
		recv(b, acks, "ack")
		got++
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/elapsed.Seconds(), "msgs/s")
}
