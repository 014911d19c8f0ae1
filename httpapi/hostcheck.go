package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/node3/node3"
)

// hostCheck guards the node API against DNS rebinding: a web page on
// evil.example can point that name at 127.0.0.1 and have the browser read
// the API, but the browser still sends Host: evil.example. Only loopback
// names and addresses, and the names the operator allowed, get an answer.
type hostCheck struct {
	allowed map[string]bool // lower case, no port, no trailing dot
	any     bool            // "*" was allowed: no check
}

func newHostCheck(names []string) hostCheck {
	hc := hostCheck{allowed: make(map[string]bool)}
	for _, n := range names {
		n = normalHost(n)
		if n == "*" {
			hc.any = true
		}
		if n != "" {
			hc.allowed[n] = true
		}
	}
	return hc
}

// normalHost strips the port, the brackets of an IPv6 literal and a
// trailing dot, and lowers the case.
func normalHost(h string) string {
	h = strings.TrimSpace(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// allows reports whether a request's Host may be answered.
func (hc hostCheck) allows(host string) bool {
	if hc.any {
		return true
	}
	h := normalHost(host)
	switch {
	case h == "":
		return false
	case h == "localhost", strings.HasSuffix(h, ".localhost"):
		return true
	case hc.allowed[h]:
		return true
	}
	if ip, err := netip.ParseAddr(h); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	return false
}

// refuse answers a request for a Host not allowed.
func (hc hostCheck) refuse(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMisdirectedRequest, errorBody{
		Error: "the node API answers only to localhost and loopback addresses, not Host " + quoteHost(r.Host) +
			"; to reach it under that name, start the node with --node-api-host " + quoteHost(normalHost(r.Host)),
		Code: string(node3.CodeForbidden),
	})
}

func quoteHost(h string) string {
	h = trunc(h, 100)
	return "\"" + strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, h) + "\""
}
