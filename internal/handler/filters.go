package handler

import (
	"strings"

	"tack/internal/grip"
)

// Filters (grip-reference §3.11, Pushpin src/handler/filter.cpp). The
// delivery filters and var-subst are applied; build-id is recognised for
// the content-filters check but does not rewrite content yet.

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

// applyContentFilters runs the channel's content filters on content for
// one session, in order. It returns content itself when no filter changes
// anything, so that the common case keeps the shared encoding.
func applyContentFilters(filters []string, content []byte, meta map[string]string) ([]byte, error) {
	for _, f := range filters {
		if f == "var-subst" {
			var err error
			if content, err = substVars(content, meta); err != nil {
				return nil, err
			}
		}
	}
	return content, nil
}

// substVars is var-subst: %(name)s becomes sub meta name, %% becomes %.
// Directive syntax: %<letter> or %(<arg>)<letter>, with \ escaping inside
// the parentheses; anything else after % is an error.
func substVars(content []byte, meta map[string]string) ([]byte, error) {
	if !strings.Contains(string(content), "%") {
		return content, nil
	}
	out := make([]byte, 0, len(content))
	for i := 0; i < len(content); i++ {
		c := content[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(content) {
			return nil, errFilter("unexpected end of format")
		}
		if content[i] == '%' {
			out = append(out, '%')
			continue
		}
		var arg []byte
		hasArg := false
		if content[i] == '(' {
			hasArg = true
			i++
			for ; i < len(content) && content[i] != ')'; i++ {
				if content[i] == '\\' && i+1 < len(content) {
					i++
				}
				arg = append(arg, content[i])
			}
			if i >= len(content) {
				return nil, errFilter("unterminated directive argument")
			}
			i++ // past ')'
			if i >= len(content) {
				return nil, errFilter("unexpected end of format")
			}
		}
		switch content[i] {
		case 's':
			if !hasArg {
				return nil, errFilter("directive 's' needs an argument")
			}
			v, ok := meta[string(arg)]
			if !ok {
				return nil, errFilter("no sub meta '" + string(arg) + "'")
			}
			out = append(out, v...)
		default:
			return nil, errFilter("unknown directive '" + string(content[i]) + "'")
		}
	}
	return out, nil
}

type errFilter string

func (e errFilter) Error() string { return string(e) }
