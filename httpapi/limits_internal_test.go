package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestBucketSetBounded: however many distinct clients come, a set holds
// at most its bound; a client over its limit stays limited while the set
// has room; idle buckets (full again) are dropped by the lazy sweep.
func TestBucketSetBounded(t *testing.T) {
	const bound = 100
	s := newBucketSet(Rate{Limit: 1, Burst: 2}, bound)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for range 2 {
		if _, ok := s.take("hog", now); !ok {
			t.Fatal("hog refused within its burst")
		}
	}
	for i := range 50 {
		if _, ok := s.take("c"+strconv.Itoa(i), now); !ok {
			t.Fatalf("client %d refused", i)
		}
	}
	if wait, ok := s.take("hog", now); ok || wait != time.Second {
		t.Fatalf("hog over its limit: ok=%v wait %v, want refused for 1s", ok, wait)
	}
	for i := range 100_000 {
		s.take("ip"+strconv.Itoa(i), now.Add(time.Duration(i)*time.Microsecond))
		if n := s.len(); n > bound {
			t.Fatalf("after %d clients the set holds %d buckets, bound %d", i+1, n, bound)
		}
	}
	// Later than the idle time (burst/limit = 2 s) and the sweep period
	// (10 s), one new client sweeps away everything idle.
	later := now.Add(time.Minute)
	if _, ok := s.take("new", later); !ok {
		t.Fatal("new client refused")
	}
	if n := s.len(); n != 1 {
		t.Fatalf("after the sweep %d buckets, want 1", n)
	}
	// peek never adds a bucket.
	if _, ok := s.peek("unknown", later); !ok || s.len() != 1 {
		t.Fatalf("peek of an unknown client: ok=%v, %d buckets", ok, s.len())
	}
}

// TestBucketSetSweepKeepsBusy: the periodic sweep keeps buckets that are
// not yet full again, so a limited client is not let off by it.
func TestBucketSetSweepKeepsBusy(t *testing.T) {
	s := newBucketSet(Rate{Limit: 0.1, Burst: 1}, 1000) // idle 10 s, sweep every 10 s
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s.take("a", now)
	s.take("b", now.Add(5*time.Second))
	// At 11 s a new client triggers the sweep: a is full again, b is not.
	s.take("c", now.Add(11*time.Second))
	if n := s.len(); n != 2 {
		t.Fatalf("%d buckets after the sweep, want 2 (b and c)", n)
	}
	if wait, ok := s.take("b", now.Add(11*time.Second)); ok || wait.Round(time.Millisecond) != 4*time.Second {
		t.Fatalf("b at 11 s: ok=%v wait %v, want refused for 4 s", ok, wait)
	}
}

func TestParseRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Rate
		out  string
	}{
		{"20/s,40", Rate{Limit: 20, Burst: 40}, "20/s,40"},
		{"6/m,5", Rate{Limit: 0.1, Burst: 5}, "6/m,5"},
		{"6/m", Rate{Limit: 0.1, Burst: 6}, "6/m,6"},
		{" 1 / h , 3 ", Rate{Limit: 1.0 / 3600, Burst: 3}, "1/h,3"},
		{"0.5/s", Rate{Limit: 0.5, Burst: 1}, "30/m,1"},
		{"OFF", Rate{Off: true}, "off"},
	} {
		got, err := ParseRate(c.in)
		if err != nil || got != c.want || got.String() != c.out {
			t.Errorf("ParseRate(%q) = %+v (%q), %v; want %+v (%q)", c.in, got, got.String(), err, c.want, c.out)
		}
		if back, err := ParseRate(got.String()); err != nil || back != got {
			t.Errorf("%q does not read back: %+v %v", got.String(), back, err)
		}
	}
	for _, in := range []string{"", "5", "5/d", "0/s", "-1/s", "x/s", "5/s,0", "5/s,x", "Inf/s", "NaN/s", "1e10/s", "5/s,2000000"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", in, r)
		}
	}
	if s := DefaultLimits().Register.String(); s != "6/m,5" {
		t.Errorf("default register rate %q", s)
	}
}

// TestClientKey: the TCP peer is the client, whatever X-Forwarded-For
// says, unless the peer is a trusted proxy; IPv6 clients are their /64.
func TestClientKey(t *testing.T) {
	l := newLimiter(Limits{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, time.Now, nil, "test")
	for _, c := range []struct {
		peer, xff, want string
	}{
		{"203.0.113.1:5000", "", "203.0.113.1"},
		{"203.0.113.1:5000", "198.51.100.1", "203.0.113.1"},
		{"10.1.2.3:5000", "198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:5000", "198.51.100.9, 198.51.100.1, 10.0.0.7", "198.51.100.1"},
		{"10.1.2.3:5000", "junk, 198.51.100.1", "198.51.100.1"},
		{"10.1.2.3:5000", "", "10.1.2.3"},
		{"10.1.2.3:5000", "10.0.0.9, junk", "10.1.2.3"},
		{"[2001:db8:1:2:3:4:5:6]:5000", "", "2001:db8:1:2::/64"},
		{"[::ffff:203.0.113.5]:5000", "", "203.0.113.5"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := l.clientKey(r); got != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: key %q, want %q", c.peer, c.xff, got, c.want)
		}
	}
}

func TestHostCheck(t *testing.T) {
	hc := newHostCheck([]string{"Node.Example.", "[fd00::1]:8080"})
	for host, ok := range map[string]bool{
		"localhost": true, "localhost:8080": true, "LOCALHOST.:1": true, "dash.localhost:8080": true,
		"127.0.0.1": true, "127.0.0.1:8080": true, "127.8.9.10:1": true, "[::1]:8080": true, "[::1]": true,
		"[::ffff:127.0.0.1]:80": true, "node.example": true, "node.example:9999": true, "[fd00::1]:1": true,
		"": false, "evil.example": false, "evil.example:8080": false, "localhost.evil.example": false,
		"127.0.0.1.evil.example": false, "evillocalhost": false, "10.0.0.1:8080": false, "[::2]:80": false,
		"0.0.0.0:8080": false, "[fd00::2]": false,
	} {
		if got := hc.allows(host); got != ok {
			t.Errorf("Host %q: allowed %v, want %v", host, got, ok)
		}
	}
	if !newHostCheck([]string{"*"}).allows("evil.example") {
		t.Error(`"*" does not allow any Host`)
	}
}
