package routes

import (
	"slices"
	"strings"
)

// WildcardDomain is the condition domain that matches any host without
// rules of its own.
const WildcardDomain = "*"

// Table is an immutable route table built by Parse. It is safe for
// concurrent use; a reload builds a new Table instead of changing one.
type Table struct {
	routes   []*Route            // loaded routes in file order
	byDomain map[string][]*Route // domain (or "*") → its routes in file order
	byID     map[string]*Route   // id → route; nil value when the id is duplicated
}

func (b *builder) table() *Table {
	t := &Table{
		routes:   b.routes,
		byDomain: make(map[string][]*Route),
		byID:     make(map[string]*Route, len(b.routes)),
	}
	for _, r := range b.routes {
		if r.HasDomain {
			t.byDomain[r.Domain] = append(t.byDomain[r.Domain], r)
		}
		if _, dup := t.byID[r.ID]; dup {
			t.byID[r.ID] = nil // a duplicated id selects nothing (grip-reference §7.4)
		} else {
			t.byID[r.ID] = r
		}
	}
	return t
}

// Len returns the number of loaded routes, the n of Pushpin's
// "routes loaded with <n> entries" (id-only routes included).
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// Routes returns the loaded routes in file order. The slice is a copy; the
// routes are shared and must not be modified.
func (t *Table) Routes() []*Route {
	if t == nil {
		return nil
	}
	return slices.Clone(t.routes)
}

// ByID returns the route whose explicit or synthesised id is id, or nil if
// there is none or more than one route has it. Conditions are not checked:
// this is Pushpin-Route and retry selection.
func (t *Table) ByID(id string) *Route {
	if t == nil {
		return nil
	}
	return t.byID[id]
}

// Lookup returns the route for a request, or nil when there is none.
//
// host is the request host as received: Lookup lowercases it and strips a
// port and IPv6 brackets ("Example.COM:8080" → "example.com",
// "[::1]:80" → "::1"); condition domains are compared case-sensitively with
// the result, as in Pushpin. proto is "http" or "ws" (TLS goes in ssl, not
// in proto); path is the encoded request path.
//
// The rule list is the host's own if it has one, else the "*" list; an
// exact-host list without a match does not fall back to "*". Within the
// list the most specific matching rule wins (see moreSpecific).
func (t *Table) Lookup(host, proto string, ssl bool, path string) *Route {
	if t == nil {
		return nil
	}
	list, ok := t.byDomain[normalizeHost(host)]
	if !ok {
		list = t.byDomain[WildcardDomain]
	}
	var best *Route
	for _, r := range list {
		if !r.matches(proto, ssl, path) {
			continue
		}
		if best == nil || r.moreSpecific(best) {
			best = r
		}
	}
	return best
}

func (r *Route) matches(proto string, ssl bool, path string) bool {
	if r.Proto != "" && r.Proto != proto {
		return false
	}
	if r.SSL != nil && *r.SSL != ssl {
		return false
	}
	return strings.HasPrefix(path, r.PathBeg)
}

// moreSpecific reports whether r, a matching rule later in the file,
// replaces best. A rule with proto beats one without; between rules equally
// specific in proto, a strictly longer path_beg wins, and otherwise a rule
// with ssl beats one without, even when its path_beg is shorter
// (grip-reference §13 quirk 7; order of tests verified against 1.36).
func (r *Route) moreSpecific(best *Route) bool {
	rp, bp := r.Proto != "", best.Proto != ""
	if rp != bp {
		return rp
	}
	if len(r.PathBeg) > len(best.PathBeg) {
		return true
	}
	return r.SSL != nil && best.SSL == nil
}

// normalizeHost lowercases host and strips a port and IPv6 brackets. A
// bare IPv6 address (several colons, no brackets) is kept whole.
func normalizeHost(host string) string {
	if rest, ok := strings.CutPrefix(host, "["); ok {
		if h, _, ok := strings.Cut(rest, "]"); ok {
			host = h
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	return strings.ToLower(host)
}
