package httpapi

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"

	"github.com/node3/node3"
)

// This file holds the marketplace API's abuse limits, all of them: token
// buckets per client address for the public endpoints, registration and
// failed authentications, per agent and for the admin once a key has
// authenticated, and the cap on open connections. Over a limit the answer
// is 429 with Retry-After; the handler behind it never runs.

// Rate is a token bucket: Limit requests a second on average, Burst at once.
// The zero value takes the default of its class; Off lifts the limit.
type Rate struct {
	Limit float64 // requests per second
	Burst int
	Off   bool
}

// String renders r as ParseRate reads it: "20/s,40", "6/m,5", "off".
func (r Rate) String() string {
	switch {
	case r.Off:
		return "off"
	case r.Limit == 0 && r.Burst == 0:
		return "default"
	}
	per, unit := r.Limit, "s"
	if per < 1 {
		if m := per * 60; m == math.Trunc(m) {
			per, unit = m, "m"
		} else if h := per * 3600; h == math.Trunc(h) {
			per, unit = h, "h"
		}
	}
	return strconv.FormatFloat(per, 'g', -1, 64) + "/" + unit + "," + strconv.Itoa(r.Burst)
}

// ParseRate reads "N/UNIT,BURST" (UNIT s, m or h; N may be a fraction;
// BURST defaults to N rounded up, at least 1) or "off".
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return Rate{Off: true}, nil
	}
	bad := fmt.Errorf("rate %q: want N/s, N/m or N/h, optionally followed by ,BURST (e.g. 6/m,5), or off", s)
	spec, burstS, hasBurst := strings.Cut(s, ",")
	nS, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return Rate{}, bad
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(nS), 64)
	if err != nil || !(n > 0 && n <= 1e9) { // NaN and Inf fail too
		return Rate{}, bad
	}
	var per float64
	switch strings.TrimSpace(unit) {
	case "s":
		per = 1
	case "m":
		per = 60
	case "h":
		per = 3600
	default:
		return Rate{}, bad
	}
	r := Rate{Limit: n / per, Burst: max(1, int(math.Ceil(n)))}
	if hasBurst {
		b, err := strconv.Atoi(strings.TrimSpace(burstS))
		if err != nil || b < 1 || b > 1e6 {
			return Rate{}, bad
		}
		r.Burst = b
	}
	return r, nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseRate.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Limits are the marketplace API's abuse limits. The zero value is the
// defaults (DefaultLimits); Off lifts them all, the connection cap too.
type Limits struct {
	Off bool

	Public      Rate // per client address: health, openapi, metrics, the public lists (default 20/s, burst 40)
	Register    Rate // per client address: registrations, each a durable write (default 6/m, burst 5)
	AuthFailure Rate // per client address: failed authentications (default 1/s, burst 10)
	Agent       Rate // per agent, once its key authenticated (default 50/s, burst 100)
	Admin       Rate // for the admin key (default 50/s, burst 100)

	// MaxConnections caps the connections the listener holds open at once
	// (default 1024: room for many agents in a 30 s long-poll); negative:
	// no cap.
	MaxConnections int
	// MaxConnectionsPerClient caps those of one client address (IPv4
	// address, IPv6 /64; the TCP peer, proxies or not): past it a new
	// connection is closed at once, so one client cannot hold every slot
	// of MaxConnections (default 256; negative: no cap).
	MaxConnectionsPerClient int
	// MaxClients bounds the buckets each class remembers (default 10000):
	// idle buckets are dropped, and past the bound some others are.
	MaxClients int
	// TrustedProxies are the peers whose X-Forwarded-For is believed: a
	// request from one of them counts against the address it forwarded
	// for. Empty: the TCP peer is the client, whatever headers say.
	TrustedProxies []netip.Prefix
}

// DefaultLimits returns the limits the zero Limits stands for.
func DefaultLimits() Limits {
	return Limits{
		Public:                  Rate{Limit: 20, Burst: 40},
		Register:                Rate{Limit: 0.1, Burst: 5},
		AuthFailure:             Rate{Limit: 1, Burst: 10},
		Agent:                   Rate{Limit: 50, Burst: 100},
		Admin:                   Rate{Limit: 50, Burst: 100},
		MaxConnections:          1024,
		MaxConnectionsPerClient: 256,
		MaxClients:              10000,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, p := range []struct{ r, def *Rate }{{&l.Public, &d.Public}, {&l.Register, &d.Register}, {&l.AuthFailure, &d.AuthFailure}, {&l.Agent, &d.Agent}, {&l.Admin, &d.Admin}} {
		if p.r.Off {
			continue
		}
		if p.r.Limit <= 0 {
			p.r.Limit = p.def.Limit
		}
		if p.r.Burst <= 0 {
			p.r.Burst = max(p.def.Burst, int(math.Ceil(p.r.Limit)))
		}
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.MaxConnectionsPerClient == 0 {
		l.MaxConnectionsPerClient = d.MaxConnectionsPerClient
	}
	if l.MaxClients <= 0 {
		l.MaxClients = d.MaxClients
	}
	return l
}

// LimitListener applies l's connection caps to ln: past MaxConnections
// open connections, the next waits in the kernel's backlog until one
// closes; past MaxConnectionsPerClient of one client, its next is closed.
func LimitListener(ln net.Listener, l Limits) net.Listener {
	l = l.withDefaults()
	if l.Off {
		return ln
	}
	if l.MaxConnectionsPerClient > 0 {
		ln = &clientCapListener{Listener: ln, max: l.MaxConnectionsPerClient, open: make(map[string]int)}
	}
	if l.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, l.MaxConnections)
	}
	return ln
}

// clientCapListener closes a new connection whose client already holds
// max open ones. Its map holds only clients with open connections.
type clientCapListener struct {
	net.Listener
	max  int
	mu   sync.Mutex
	open map[string]int
}

func (l *clientCapListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addrKey(c.RemoteAddr())
		l.mu.Lock()
		ok := l.open[key] < l.max
		if ok {
			l.open[key]++
		}
		l.mu.Unlock()
		if ok {
			return &clientConn{Conn: c, l: l, key: key}, nil
		}
		c.Close()
	}
}

type clientConn struct {
	net.Conn
	l    *clientCapListener
	key  string
	once sync.Once
}

func (c *clientConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.key]--; c.l.open[c.key] <= 0 {
			delete(c.l.open, c.key)
		}
		c.l.mu.Unlock()
	})
	return err
}

// addrKey is the client key of a TCP peer (see clientKey).
func addrKey(a net.Addr) string {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return "peer " + a.String()
	}
	return ipKey(ap.Addr().Unmap())
}

func ipKey(ip netip.Addr) string {
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// limitClass names a bucket set; its String is the metric label.
type limitClass int

const (
	classPublic limitClass = iota
	classRegister
	classAuthFailure
	classAgent
	classAdmin
	numClasses
)

var classNames = [numClasses]string{"public", "register", "auth_failure", "agent", "admin"}

func (c limitClass) String() string { return classNames[c] }

// limiter applies Limits to requests.
type limiter struct {
	now     func() time.Time
	sets    [numClasses]*bucketSet // nil: that class is not limited
	trusted []netip.Prefix
	refused *prometheus.CounterVec
}

func newLimiter(l Limits, now func() time.Time, reg prometheus.Registerer, server string) *limiter {
	l = l.withDefaults()
	lim := &limiter{
		now:     now,
		trusted: l.TrustedProxies,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "node3_http_rate_limited_total",
			Help:        "Requests refused with 429 by the abuse limits, by class.",
			ConstLabels: prometheus.Labels{"server": server},
		}, []string{"class"}),
	}
	if reg != nil {
		reg.MustRegister(lim.refused)
	}
	for c, r := range [numClasses]Rate{l.Public, l.Register, l.AuthFailure, l.Agent, l.Admin} {
		lim.refused.WithLabelValues(limitClass(c).String())
		if !l.Off && !r.Off {
			lim.sets[c] = newBucketSet(r, l.MaxClients)
		}
	}
	return lim
}

// perIP limits a route by the client's address.
func (l *limiter) perIP(c limitClass, h http.HandlerFunc) http.HandlerFunc {
	if l.sets[c] == nil {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if l.take(w, c, l.clientKey(r)) {
			h(w, r)
		}
	}
}

// take spends one token of key's bucket in class c; without one it
// answers 429 and returns false.
func (l *limiter) take(w http.ResponseWriter, c limitClass, key string) bool {
	s := l.sets[c]
	if s == nil {
		return true
	}
	wait, ok := s.take(key, l.now())
	if !ok {
		l.refuse(w, c, wait)
	}
	return ok
}

// authAllowed answers 429 and returns false when the client has used up
// its failed authentications, before its key is even looked at: past the
// limit a right guess is refused like a wrong one.
func (l *limiter) authAllowed(w http.ResponseWriter, r *http.Request) bool {
	s := l.sets[classAuthFailure]
	if s == nil {
		return true
	}
	if wait, ok := s.peek(l.clientKey(r), l.now()); !ok {
		l.refuse(w, classAuthFailure, wait)
		return false
	}
	return true
}

// authFailed counts a failed authentication against the client.
func (l *limiter) authFailed(r *http.Request) {
	if s := l.sets[classAuthFailure]; s != nil {
		s.take(l.clientKey(r), l.now())
	}
}

func (l *limiter) refuse(w http.ResponseWriter, c limitClass, wait time.Duration) {
	l.refused.WithLabelValues(c.String()).Inc()
	secs := max(1, int64(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeJSON(w, http.StatusTooManyRequests, errorBody{
		Error: fmt.Sprintf("too many requests (%s limit); retry after %d s", strings.ReplaceAll(c.String(), "_", " "), secs),
		Code:  string(node3.CodeRateLimited),
	})
}

// clientKey is the bucket key of the request's client: its IPv4 address,
// or its IPv6 /64 (one host gets a whole /64 cheaply). The TCP peer is the
// client unless it is a trusted proxy; then the nearest address in
// X-Forwarded-For that is not one is.
func (l *limiter) clientKey(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return "peer " + r.RemoteAddr
	}
	ip := ap.Addr().Unmap()
	if l.isTrusted(ip) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break
			}
			ip = a.Unmap()
			if !l.isTrusted(ip) {
				break
			}
		}
	}
	return ipKey(ip)
}

func (l *limiter) isTrusted(ip netip.Addr) bool {
	for _, p := range l.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// bucketSet is one class's token buckets by key, bounded: a bucket unused
// long enough to be full again is the same as a new one and is dropped by
// a sweep that runs, lazily, at most every sweepEvery or when the set is
// full; a set still full after the sweep drops an eighth of its buckets.
// No goroutine: the work is done by the requests, in amortised O(1).
type bucketSet struct {
	limit      rate.Limit
	burst      int
	max        int
	idle       time.Duration // an unused bucket is full again after this
	sweepEvery time.Duration

	mu        sync.Mutex
	m         map[string]*bucket
	nextSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time // last token taken
}

func newBucketSet(r Rate, maxKeys int) *bucketSet {
	idle := time.Duration(float64(r.Burst) / r.Limit * float64(time.Second))
	return &bucketSet{
		limit: rate.Limit(r.Limit), burst: r.Burst, max: maxKeys,
		idle: idle, sweepEvery: max(idle, 10*time.Second),
		m: make(map[string]*bucket),
	}
}

// take spends a token of key's bucket at now, or says how long until one.
func (s *bucketSet) take(key string, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[key]
	if b == nil {
		s.makeRoom(now)
		b = &bucket{lim: rate.NewLimiter(s.limit, s.burst)}
		s.m[key] = b
	}
	if b.lim.AllowN(now, 1) {
		if now.After(b.last) {
			b.last = now
		}
		return 0, true
	}
	return s.wait(b, now), false
}

// peek says whether key's bucket has a token at now, without taking it.
func (s *bucketSet) peek(key string, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.m[key]
	if b == nil || b.lim.TokensAt(now) >= 1 {
		return 0, true
	}
	return s.wait(b, now), false
}

func (s *bucketSet) wait(b *bucket, now time.Time) time.Duration {
	need := 1 - b.lim.TokensAt(now)
	return time.Duration(need / float64(s.limit) * float64(time.Second))
}

// makeRoom sweeps idle buckets when it is time or the set is full, and
// drops some others if it is still full.
func (s *bucketSet) makeRoom(now time.Time) {
	if len(s.m) < s.max && now.Before(s.nextSweep) {
		return
	}
	for k, b := range s.m {
		if now.Sub(b.last) >= s.idle {
			delete(s.m, k)
		}
	}
	s.nextSweep = now.Add(s.sweepEvery)
	if len(s.m) < s.max {
		return
	}
	drop := max(1, s.max/8)
	for k := range s.m {
		if drop == 0 {
			break
		}
		delete(s.m, k)
		drop--
	}
}

func (s *bucketSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
