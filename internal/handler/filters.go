package handler

import (
	"strings"

	"tack/internal/grip"
)

// Filters (grip-reference §3.11, Pushpin src/handler/filter.cpp). The
// delivery filters are applied; the content filters (build-id, var-subst)
// are recognised for the content-filters check but do not rewrite content
// yet.

// contentFilterNames act on message content.
var contentFilterNames = map[string]bool{"build-id": true, "var-subst": true}

// contentFilters returns the channel's filters that act on message
// content, in order.
func contentFilters(filters []string) []string {
	out := []string{}
	for _, f := range filters {
		if contentFilterNames[f] {
			out = append(out, f)
		}
	}
	return out
}

func contentFilterMismatch(sub, msg []string) string {
	return "content filter mismatch: subscription=" + strings.Join(contentFilters(sub), ",") +
		" message=" + strings.Join(msg, ",")
}

// dropByFilters runs the channel's delivery filters in order; the first
// drop wins.
func dropByFilters(filters []string, s *hsession, it *grip.Item) bool {
	for _, f := range filters {
		switch f {
		case "skip-self":
			user, sender := s.in.Meta["user"], it.Meta["sender"]
			if user != "" && sender != "" && user == sender {
				return true
			}
		case "skip-users":
			user := s.in.Meta["user"]
			if user == "" {
				continue
			}
			for _, u := range strings.Split(it.Meta["skip_users"], ",") {
				if strings.TrimSpace(u) == user {
					return true
				}
			}
		case "require-sub":
			req := it.Meta["require_sub"]
			if req == "" {
				continue
			}
			found := false
			for _, c := range s.in.Channels {
				if c.BackendName == req {
					found = true
					break
				}
			}
			if !found && !containsString(s.acc.ImplicitChannels, req) {
				return true
			}
		}
	}
	return false
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
