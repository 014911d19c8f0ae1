package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/node3/node3/httpapi"
)

// limitFlags are `node3 run`'s abuse limits for the marketplace API and
// the Host names the node API answers to.
type limitFlags struct {
	enabled      bool
	limits       httpapi.Limits // the rates and the connection cap, from the defaults
	proxies      []string
	nodeAPIHosts []string
}

// rateValue reads a flag into an httpapi.Rate ("6/m,5", "off").
type rateValue struct{ r *httpapi.Rate }

func (v rateValue) String() string     { return v.r.String() }
func (v rateValue) Set(s string) error { return v.r.UnmarshalText([]byte(s)) }
func (v rateValue) Type() string       { return "rate" }

func addLimitFlags(fs *pflag.FlagSet, f *limitFlags) {
	f.limits = httpapi.DefaultLimits()
	l := &f.limits
	fs.BoolVar(&f.enabled, "rate-limits", true, "coordinator: apply the marketplace API's abuse limits (false: no rate limits and no connection cap)")
	for _, r := range []struct {
		name  string
		rate  *httpapi.Rate
		usage string
	}{
		{"limit-public", &l.Public, "per client address, for health, metrics, the OpenAPI document and the public lists"},
		{"limit-register", &l.Register, "per client address, for agent registrations (each one a durable write)"},
		{"limit-auth-failures", &l.AuthFailure, "per client address, for failed authentications (past it the address is refused any key for a while)"},
		{"limit-agent", &l.Agent, "per agent, for its authenticated calls"},
		{"limit-admin", &l.Admin, "for the admin key"},
	} {
		fs.Var(rateValue{r.rate}, r.name, "coordinator: request rate "+r.usage+": N/s, N/m or N/h, then ,BURST; or off")
	}
	fs.IntVar(&l.MaxConnections, "max-connections", l.MaxConnections, "coordinator: most connections the marketplace API holds open at once (-1: no cap); each long-polling agent holds one")
	fs.IntVar(&l.MaxConnectionsPerClient, "max-connections-per-client", l.MaxConnectionsPerClient, "coordinator: most of those one client address (IPv6: /64) may hold (-1: no cap)")
	fs.StringSliceVar(&f.proxies, "trusted-proxy", nil, "coordinator: address or CIDR of a reverse proxy whose X-Forwarded-For names the client for the limits (repeatable)")
	fs.StringSliceVar(&f.nodeAPIHosts, "node-api-host", nil, "a Host name the node API answers to besides localhost and loopback addresses, e.g. when it sits behind a proxy (repeatable; * for any, which lets web pages in through DNS rebinding)")
	bindEnv(fs, "rate-limits", "NODE3_RATE_LIMITS")
	bindEnv(fs, "max-connections", "NODE3_MAX_CONNECTIONS")
	bindEnv(fs, "node-api-host", "NODE3_NODE_API_HOSTS")
}

// config returns the Limits for node.Config.
func (f limitFlags) config() (httpapi.Limits, error) {
	l := f.limits
	l.Off = !f.enabled
	if l.MaxConnections == 0 || l.MaxConnections < -1 {
		return l, fmt.Errorf("--max-connections %d: want at least 1, or -1 for no cap", l.MaxConnections)
	}
	if l.MaxConnectionsPerClient == 0 || l.MaxConnectionsPerClient < -1 {
		return l, fmt.Errorf("--max-connections-per-client %d: want at least 1, or -1 for no cap", l.MaxConnectionsPerClient)
	}
	for _, s := range f.proxies {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return l, fmt.Errorf("--trusted-proxy %q is not an address or CIDR", s)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		l.TrustedProxies = append(l.TrustedProxies, p.Masked())
	}
	return l, nil
}

// hosts returns the node API's extra Host names, checked.
func (f limitFlags) hosts() ([]string, error) {
	var out []string
	for _, h := range f.nodeAPIHosts {
		h = strings.TrimSpace(h)
		if h == "" || strings.ContainsAny(h, "/ \t@?#") {
			return nil, fmt.Errorf("--node-api-host %q is not a host name", h)
		}
		out = append(out, h)
	}
	return out, nil
}
