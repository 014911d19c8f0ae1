package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/node3/node3/httpapi"
)

// TestLimitFlags: the flags' defaults are httpapi's, and what is given
// reaches the Limits and the node API's hosts.
func TestLimitFlags(t *testing.T) {
	parse := func(args ...string) limitFlags {
		t.Helper()
		var f limitFlags
		fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
		addLimitFlags(fs, &f)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f
	}
	l, err := parse().config()
	if err != nil {
		t.Fatal(err)
	}
	if d := httpapi.DefaultLimits(); l.Off || l.Public != d.Public || l.Register != d.Register || l.AuthFailure != d.AuthFailure ||
		l.Agent != d.Agent || l.Admin != d.Admin || l.MaxConnections != d.MaxConnections || l.MaxConnectionsPerClient != d.MaxConnectionsPerClient || len(l.TrustedProxies) != 0 {
		t.Errorf("defaults %+v, want %+v", l, d)
	}
	f := parse("--rate-limits=false", "--limit-register", "1/h,2", "--limit-admin", "off", "--max-connections", "-1", "--max-connections-per-client", "8",
		"--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "192.0.2.1,2001:db8::1", "--node-api-host", "node.example", "--node-api-host", "dash.lan:8080")
	l, err = f.config()
	if err != nil {
		t.Fatal(err)
	}
	wantProxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::1/128")}
	if !l.Off || l.Register != (httpapi.Rate{Limit: 1.0 / 3600, Burst: 2}) || !l.Admin.Off || l.MaxConnections != -1 || l.MaxConnectionsPerClient != 8 || !slices.Equal(l.TrustedProxies, wantProxies) {
		t.Errorf("parsed %+v", l)
	}
	if hosts, err := f.hosts(); err != nil || !slices.Equal(hosts, []string{"node.example", "dash.lan:8080"}) {
		t.Errorf("hosts %q, %v", hosts, err)
	}
}
