package node3_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/node3/node3"
)

func TestRedactURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://api.devnet.solana.com", "https://api.devnet.solana.com"},
		{"http://127.0.0.1:8899/", "http://127.0.0.1:8899/"},
		{"https://mainnet.helius-rpc.com/?api-key=3f1c2a9e-55b0-4a43-9e1f-8d2c1b7a6e00", "https://mainnet.helius-rpc.com/?api-key=REDACTED"},
		{"https://x.solana-mainnet.quiknode.pro/0123456789abcdef0123456789abcdef01234567/", "https://x.solana-mainnet.quiknode.pro/REDACTED/"},
		{"https://solana-mainnet.g.alchemy.com/v2/AbCdEfGh12345678", "https://solana-mainnet.g.alchemy.com/v2/REDACTED"},
		{"https://user:pass@host.example/rpc", "https://REDACTED@host.example/rpc"},
		{"https://tok3n123@host.example/", "https://REDACTED@host.example/"},
		{"https://h/?a=1&b&=c&", "https://h/?a=REDACTED&REDACTED&REDACTED&"},
		{"https://h/p#frag", "https://h/p"},
		{"mailto:someone@example.com", "mailto:REDACTED"},
		{"http://h/%zz", "REDACTED"},
		{"", ""},
	} {
		if got := node3.RedactURL(c.in); got != c.want {
			t.Errorf("RedactURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRedactURLText(t *testing.T) {
	raw := "https://user:hunter22@x.quiknode.pro/0123456789abcdef0123/?api-key=SECRETVALUE"
	text := `rpc call getBalance() on https://user:hunter22@x.quiknode.pro/0123456789abcdef0123/?api-key=SECRETVALUE: ` +
		`Post "https://user:***@x.quiknode.pro/0123456789abcdef0123/?api-key=SECRETVALUE": dial tcp: refused`
	got := node3.RedactURLText(text, raw)
	for _, s := range []string{"hunter22", "0123456789abcdef0123", "SECRETVALUE"} {
		if strings.Contains(got, s) {
			t.Errorf("%q survives in %q", s, got)
		}
	}
	if !strings.Contains(got, "https://REDACTED@x.quiknode.pro/REDACTED/?api-key=REDACTED") || !strings.Contains(got, "dial tcp: refused") {
		t.Errorf("RedactURLText = %q: the redacted URL and the rest of the text should stay", got)
	}
}

// secretsOf lists the parts of raw that RedactURL promises to remove.
func secretsOf(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return nil
	}
	var s []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			s = append(s, p, url.PathEscape(p))
		}
		s = append(s, u.User.Username())
	}
	for _, vs := range u.Query() {
		s = append(s, vs...)
	}
	for _, p := range strings.Split(u.RawQuery, "&") {
		if _, v, ok := strings.Cut(p, "="); ok {
			s = append(s, v)
		}
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if len(seg) >= 16 {
			s = append(s, seg)
		}
	}
	s = append(s, u.Fragment)
	return s
}

func FuzzRedactURL(f *testing.F) {
	for _, s := range []string{
		"https://mainnet.helius-rpc.com/?api-key=3f1c2a9e-55b0-4a43-9e1f-8d2c1b7a6e00",
		"https://x.solana-mainnet.quiknode.pro/0123456789abcdef0123456789abcdef01234567/",
		"https://user:pass@host/",
		"http://127.0.0.1:8899",
		"https://h/a/b?x=1&y=2;z=3#f",
		"//host/path?k",
		"host:8899/path",
		"https://h/%2F%2Fsecretsecretsecret?%61pi-key=v%20v",
		"https://[::1]:80/?a=b=c",
		"REDACTED",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := node3.RedactURL(raw)
		if again := node3.RedactURL(out); again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q", raw, out, again)
		}
		// What RedactURL keeps on purpose (scheme, host, short path words,
		// plain query keys): a secret that happens to be part of one of
		// them cannot be told apart from it.
		var keep []string
		if u, err := url.Parse(raw); err == nil {
			keep = append(keep, u.Scheme, u.Host, node3.Redacted)
			for _, seg := range strings.Split(u.EscapedPath(), "/") {
				if len(seg) < 16 {
					keep = append(keep, seg)
				}
			}
			for _, p := range strings.Split(u.RawQuery, "&") {
				k, _, _ := strings.Cut(p, "=")
				keep = append(keep, k)
			}
		}
		kept := func(s string) bool {
			for _, k := range keep {
				if strings.Contains(k, s) {
					return true
				}
			}
			return false
		}
		for _, s := range secretsOf(raw) {
			if len(s) >= 4 && strings.Contains(out, s) && !kept(s) {
				t.Fatalf("RedactURL(%q) = %q keeps the secret %q", raw, out, s)
			}
		}
		// The text rule removes them too, wherever the URL is quoted.
		text := "error on " + raw + ": " + raw
		if red := node3.RedactURLText(text, raw); raw != "" && strings.Contains(red, raw) && !strings.Contains(out, raw) {
			t.Fatalf("RedactURLText keeps the URL %q in %q", raw, red)
		}
	})
}
