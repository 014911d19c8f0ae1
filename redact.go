package node3

import (
	"net/url"
	"slices"
	"strings"
)

// Redacted is what RedactURL and RedactURLText put in place of a secret.
const Redacted = "REDACTED"

// RedactURL returns raw with the parts that may hold a credential replaced
// by "REDACTED", so that the URL can be logged, shown in an API answer or
// put in an error. It is the one rule for RPC endpoint URLs, which
// providers such as Helius, QuickNode or Alchemy make secret by a token in
// the query (?api-key=…), in the path (/<token>/) or in the userinfo:
//
//   - userinfo: replaced as a whole (https://REDACTED@host/);
//   - query: every value is replaced and keys are kept, except a key
//     without a value or one that looks like a token (?REDACTED);
//   - path: a segment that looks like a token (16 characters or more, or
//     8 or more mixing letters and digits) is replaced; short words such
//     as "v2" or "rpc" stay, so the endpoint remains recognisable;
//   - fragment: dropped; an opaque part (scheme:opaque) is replaced.
//
// Scheme and host are kept. A string that does not parse as a URL is
// replaced as a whole. RedactURL is idempotent.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redacted
	}
	var b strings.Builder
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteByte(':')
	}
	if u.Opaque != "" {
		b.WriteString(Redacted)
	} else {
		if u.Scheme != "" || u.Host != "" || u.User != nil {
			b.WriteString("//")
		}
		if u.User != nil {
			b.WriteString(Redacted + "@")
		}
		b.WriteString(u.Host)
		segs := strings.Split(u.EscapedPath(), "/")
		for i, s := range segs {
			if tokenLike(s) {
				segs[i] = Redacted
			}
		}
		b.WriteString(strings.Join(segs, "/"))
	}
	if u.ForceQuery || u.RawQuery != "" {
		b.WriteByte('?')
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, _, hasValue := strings.Cut(p, "=")
			switch {
			case p == "":
			case !hasValue || tokenLike(k) || !plainKey(k):
				parts[i] = Redacted
			default:
				parts[i] = k + "=" + Redacted
			}
		}
		b.WriteString(strings.Join(parts, "&"))
	}
	out := b.String()
	if _, err := url.Parse(out); err != nil {
		return Redacted
	}
	return out
}

// RedactURLText returns text with every occurrence of the URL raw, and of
// each secret part of it (as RedactURL defines them, escaped or not),
// replaced: for error messages of a library that quotes the URL it was
// given. Parts shorter than 3 characters are left alone (they are no
// secret worth the damage to the text); the URL as a whole is always
// replaced.
func RedactURLText(text, raw string) string {
	if raw == "" || text == "" {
		return text
	}
	olds := []string{raw}
	add := func(s string) {
		if len(s) >= 3 && s != Redacted {
			olds = append(olds, s)
		}
		if un, err := url.PathUnescape(s); err == nil && un != s && len(un) >= 3 {
			olds = append(olds, un)
		}
		if un, err := url.QueryUnescape(s); err == nil && un != s && len(un) >= 3 {
			olds = append(olds, un)
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Nothing to go by but the string itself: every word of it.
		for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return strings.ContainsRune("/?&=:@#", r) }) {
			add(f)
		}
	} else {
		if u.User != nil {
			add(u.User.Username())
			if p, ok := u.User.Password(); ok {
				add(p)
			}
			add(u.User.String())
		}
		add(u.Opaque)
		add(u.Fragment)
		add(u.RawFragment)
		for _, s := range strings.Split(u.EscapedPath(), "/") {
			if tokenLike(s) {
				add(s)
			}
		}
		for _, p := range strings.Split(u.RawQuery, "&") {
			k, v, hasValue := strings.Cut(p, "=")
			if !hasValue || tokenLike(k) || !plainKey(k) {
				add(p)
			} else {
				add(v)
			}
		}
	}
	// Longest first, so that a secret containing another goes whole.
	slices.SortStableFunc(olds[1:], func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(olds))
	pairs = append(pairs, raw, RedactURL(raw))
	for _, o := range olds[1:] {
		pairs = append(pairs, o, Redacted)
	}
	return strings.NewReplacer(pairs...).Replace(text)
}

// tokenLike says whether a path segment or query key looks like a
// credential rather than a word of the API's address.
func tokenLike(s string) bool {
	if len(s) >= 16 {
		return true
	}
	if len(s) < 8 {
		return false
	}
	letter := strings.ContainsFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
	digit := strings.ContainsFunc(s, func(r rune) bool { return r >= '0' && r <= '9' })
	return letter && digit
}

// plainKey says whether a query key is a plain name (api-key, token), as
// opposed to escaped or odd text that could hide a value.
func plainKey(k string) bool {
	return k != "" && !strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
}
