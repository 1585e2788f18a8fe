package zhttpclient

import (
	"net/netip"
	"strings"
)

// Policy decides which destinations may be contacted (zmq-wire.md §5.3).
// It is immutable after newPolicy and safe for concurrent use.
type Policy struct {
	defAllow bool
	allow    []pattern
	deny     []pattern
}

// pattern is one allow/deny entry: a CIDR (applied to IP literals only), a
// glob with one `*`, or an exact name; all comparisons ignore case.
type pattern struct {
	prefix   netip.Prefix
	isPrefix bool
	glob     bool
	head     string // before the `*` (or the whole exact name)
	tail     string // after the first `*`
}

func newPolicy(defPolicy string, allow, deny []string) *Policy {
	return &Policy{defAllow: defPolicy != PolicyDeny, allow: compile(allow), deny: compile(deny)}
}

func compile(exps []string) []pattern {
	out := make([]pattern, 0, len(exps))
	for _, e := range exps {
		var p pattern
		if strings.Contains(e, "/") {
			if pfx, err := netip.ParsePrefix(e); err == nil {
				p.prefix, p.isPrefix = pfx.Masked(), true
			}
		}
		if h, t, ok := strings.Cut(e, "*"); ok {
			p.glob, p.head, p.tail = true, strings.ToLower(h), strings.ToLower(t)
		} else {
			p.head = strings.ToLower(e)
		}
		out = append(out, p)
	}
	return out
}

// match reports whether subject (a host name or an IP literal) matches p.
// As in zurl, a CIDR pattern decides alone when the subject is an address;
// otherwise the pattern is read as a glob or exact name. Unlike zurl, the
// glob's two halves may not overlap ("a*a" does not match "a"), and an
// IPv4-mapped IPv6 address is matched as IPv4, so ::ffff:127.0.0.1 cannot
// slip past "127.*".
func (p *pattern) match(subject string, addr netip.Addr, isAddr bool) bool {
	if p.isPrefix && isAddr {
		return p.prefix.Contains(addr)
	}
	if p.glob {
		return len(subject) >= len(p.head)+len(p.tail) &&
			strings.HasPrefix(subject, p.head) && strings.HasSuffix(subject, p.tail)
	}
	return subject == p.head
}

func matchAny(ps []pattern, subject string, addr netip.Addr, isAddr bool) bool {
	for i := range ps {
		if ps[i].match(subject, addr, isAddr) {
			return true
		}
	}
	return false
}

// Allowed reports whether subject may be contacted. With defpolicy=allow a
// subject is allowed unless denied and not explicitly allowed; with
// defpolicy=deny it must be allowed and not denied.
func (p *Policy) Allowed(subject string) bool {
	subject = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(subject, "["), "]"))
	addr, err := netip.ParseAddr(subject)
	isAddr := err == nil
	if isAddr {
		addr = addr.Unmap()
		subject = addr.String()
	}
	allow := matchAny(p.allow, subject, addr, isAddr)
	deny := matchAny(p.deny, subject, addr, isAddr)
	if p.defAllow {
		return !deny || allow
	}
	return allow && !deny
}

// AllowedAddr is Allowed for a resolved address.
func (p *Policy) AllowedAddr(a netip.Addr) bool {
	return p.Allowed(a.Unmap().String())
}
