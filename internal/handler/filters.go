package handler

import (
	"encoding/hex"
	"strings"

	"tack/internal/grip"
)

// Filters (grip-reference §3.11, Pushpin src/handler/filter.cpp):
// delivery filters (skip-self, skip-users, require-sub) and content
// filters (build-id, var-subst; build-id also rewrites initial and
// next-link response bodies).

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
	if len(filters) == 0 {
		return false
	}
	return dropByFiltersWith(filters, s.in.Meta, it, func(req string) bool {
		for _, c := range s.in.Channels {
			if c.BackendName == req {
				return true
			}
		}
		return containsString(s.acc.ImplicitChannels, req)
	})
}

// dropByFiltersWith runs the delivery filters with the given subscription
// meta; subscribed tells require-sub whether the session has a channel.
func dropByFiltersWith(filters []string, meta map[string]string, it *grip.Item, subscribed func(string) bool) bool {
	for _, f := range filters {
		switch f {
		case "skip-self":
			user, sender := meta["user"], it.Meta["sender"]
			if user != "" && sender != "" && user == sender {
				return true
			}
		case "skip-users":
			user := meta["user"]
			if user == "" {
				continue
			}
			for _, u := range strings.Split(it.Meta["skip_users"], ",") {
				if strings.TrimSpace(u) == user {
					return true
				}
			}
		case "require-sub":
			if req := it.Meta["require_sub"]; req != "" && !subscribed(req) {
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
func applyContentFilters(filters []string, content []byte, s *hsession) ([]byte, error) {
	for _, f := range filters {
		var err error
		switch f {
		case "var-subst":
			content, err = substVars(content, s.in.Meta)
		case "build-id":
			content, err = buildID(content, s)
		}
		if err != nil {
			return nil, err
		}
	}
	return content, nil
}

// responseFilters applies the response-content filters (build-id, once
// if any channel of s's instructions lists it) to an initial or next-link
// body. Unlike Pushpin, whose response filters see no prev-ids (so %I can
// only fail there), %I renders the channels' prev-ids as in messages.
func (e *engine) responseFilters(s *hsession, body []byte) ([]byte, error) {
	for _, c := range s.in.Channels {
		if containsString(c.Filters, "build-id") {
			out, err := buildID(body, s)
			if err != nil {
				return nil, errFilter("filter error: " + err.Error())
			}
			return out, nil
		}
	}
	return body, nil
}

// prevIDVars are the template variables of id_format: each channel's
// current prev-id, by the name the backend gave it.
func prevIDVars(s *hsession) map[string]string {
	vars := map[string]string{}
	for _, c := range s.in.Channels {
		if sc := s.chans.get(c.Name); sc != nil {
			if sc.hasPrev {
				vars[c.BackendName] = sc.prevID
			}
		} else if c.PrevID != "" {
			vars[c.BackendName] = c.PrevID
		}
	}
	return vars
}

// buildID is the build-id filter: %I becomes the session's id (sub meta
// id_format rendered with the channels' prev-ids, %(channel)s), %(x)I the
// literal x; sub meta id_encoding=hex hex-encodes both.
func buildID(content []byte, s *hsession) ([]byte, error) {
	return buildIDWith(content, s.in.Meta, func() map[string]string { return prevIDVars(s) })
}

// buildIDWith is build-id with the given sub meta and prev-id variables
// (nil: none).
func buildIDWith(content []byte, meta map[string]string, prevIDs func() map[string]string) ([]byte, error) {
	idFormat, ok := meta["id_format"]
	if !ok {
		return nil, errFilter("no sub meta 'id_format'")
	}
	hexIDs := false
	if enc, ok := meta["id_encoding"]; ok {
		if enc != "hex" {
			return nil, errFilter("unsupported encoding: " + enc)
		}
		hexIDs = true
	}
	if !strings.Contains(string(content), "%") {
		return content, nil
	}
	var id []byte
	haveID := false
	var vars map[string]string
	if prevIDs != nil {
		vars = prevIDs()
	}
	if len(vars) > 0 {
		var err error
		id, err = renderFormat([]byte(idFormat), func(typ byte, arg []byte, hasArg bool) ([]byte, error) {
			if typ != 's' {
				return nil, errFilter("unknown directive '" + string(typ) + "'")
			}
			if !hasArg {
				return nil, errFilter("directive 's' needs an argument")
			}
			v, ok := vars[string(arg)]
			if !ok {
				return nil, errFilter("no such variable '" + string(arg) + "'")
			}
			return []byte(v), nil
		})
		if err != nil {
			return nil, errFilter("failed to render ID: " + err.Error())
		}
		haveID = true
	}
	return renderFormat(content, func(typ byte, arg []byte, hasArg bool) ([]byte, error) {
		if typ != 'I' {
			return nil, errFilter("unknown directive '" + string(typ) + "'")
		}
		v := arg
		if !hasArg {
			if !haveID {
				return nil, errFilter("no ID specified and no default ID in context")
			}
			v = id
		}
		if hexIDs {
			return []byte(hex.EncodeToString(v)), nil
		}
		return v, nil
	})
}

// substVars is var-subst: %(name)s becomes sub meta name, %% becomes %.
func substVars(content []byte, meta map[string]string) ([]byte, error) {
	if !strings.Contains(string(content), "%") {
		return content, nil
	}
	return renderFormat(content, func(typ byte, arg []byte, hasArg bool) ([]byte, error) {
		if typ != 's' {
			return nil, errFilter("unknown directive '" + string(typ) + "'")
		}
		if !hasArg {
			return nil, errFilter("directive 's' needs an argument")
		}
		v, ok := meta[string(arg)]
		if !ok {
			return nil, errFilter("no sub meta '" + string(arg) + "'")
		}
		return []byte(v), nil
	})
}

// renderFormat expands the directives of content (Pushpin's format
// syntax): %<letter> or %(<arg>)<letter>, with \ escaping inside the
// parentheses, and %% for a literal %; anything else after % is an error.
// handle renders one directive.
func renderFormat(content []byte, handle func(typ byte, arg []byte, hasArg bool) ([]byte, error)) ([]byte, error) {
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
		v, err := handle(content[i], arg, hasArg)
		if err != nil {
			return nil, err
		}
		out = append(out, v...)
	}
	return out, nil
}

type errFilter string

func (e errFilter) Error() string { return string(e) }
