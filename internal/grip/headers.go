package grip

import "strings"

// Header is one HTTP header field. It has the same shape as zhttp.Header so
// callers convert with a plain loop.
type Header struct {
	Name  string
	Value string
}

// param is one `name=value` part of a header value. The first part of a
// value parsed without parseAll has only a name (the "main value").
type param struct {
	name  string
	value string
}

type params []param

// get returns the value of the first parameter whose name matches key
// case-insensitively, as Pushpin's HttpHeaderParameters::get does.
func (ps params) get(key string) (string, bool) {
	for _, p := range ps {
		if strings.EqualFold(p.name, key) {
			return p.value, true
		}
	}
	return "", false
}

// headerGet returns the value of the first header called name
// (case-insensitive) and whether there was one.
func headerGet(hs []Header, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// headerGetAll returns every value of the headers called name, each split at
// commas outside double quotes, every part trimmed (grip-reference §3.4).
func headerGetAll(hs []Header, name string) []string {
	var out []string
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			out = append(out, splitList(h.Value)...)
		}
	}
	return out
}

// splitList splits a header value at commas that are not inside a quoted
// string. An unterminated quote (or a backslash at the very end inside one)
// makes the rest of the value a single part, as in Pushpin. Empty parts in
// the middle are kept; a trailing comma adds nothing.
func splitList(s string) []string {
	var parts []string
	pos := 0
	for pos < len(s) {
		end := findUnquoted(s, ',', pos)
		if end < 0 {
			parts = append(parts, trimSpace(s[pos:]))
			break
		}
		parts = append(parts, trimSpace(s[pos:end]))
		pos = end + 1
	}
	return parts
}

// findUnquoted returns the index of the first c at or after from that is not
// inside double quotes, len(s) when there is none, or -1 when the quoting is
// broken.
func findUnquoted(s string, c byte, from int) int {
	inQuote := false
	for n := from; n < len(s); n++ {
		ch := s[n]
		if inQuote {
			switch ch {
			case '\\':
				n++
				if n >= len(s) {
					return -1
				}
			case '"':
				inQuote = false
			}
			continue
		}
		if ch == '"' {
			inQuote = true
		} else if ch == c {
			return n
		}
	}
	if inQuote {
		return -1
	}
	return len(s)
}

// parseParams parses `main; a=b; c="d"` into parts. Without parseAll the text
// before the first ';' (quotes not honoured) is the main value; with parseAll
// every part is a name=value pair (Grip-Set-Meta). ok is false when a quoted
// value is unterminated or ends in a lone backslash; Pushpin then ignores the
// whole item.
func parseParams(s string, parseAll bool) (ps params, ok bool) {
	start := 0
	if !parseAll {
		if at := strings.IndexByte(s, ';'); at >= 0 {
			ps = append(ps, param{name: trimSpace(s[:at])})
			start = at + 1
		} else {
			ps = append(ps, param{name: trimSpace(s)})
			start = len(s)
		}
	}
	for start < len(s) {
		at := strings.IndexAny(s[start:], "=;")
		if at < 0 {
			ps = append(ps, param{name: trimSpace(s[start:])})
			break
		}
		at += start
		p := param{name: trimSpace(s[start:at])}
		if s[at] == ';' {
			start = at + 1
			ps = append(ps, p)
			continue
		}
		at++ // past '='
		if at < len(s) && s[at] == '"' {
			var val strings.Builder
			complete := false
			n := at + 1
			for ; n < len(s); n++ {
				if s[n] == '\\' {
					if n+1 >= len(s) {
						return nil, false
					}
					n++
					val.WriteByte(s[n])
				} else if s[n] == '"' {
					complete = true
					break
				} else {
					val.WriteByte(s[n])
				}
			}
			if !complete {
				return nil, false
			}
			p.value = val.String()
			// Anything between the closing quote and the next ';' is dropped.
			if semi := strings.IndexByte(s[n+1:], ';'); semi >= 0 {
				start = n + 1 + semi + 1
			} else {
				start = len(s)
			}
		} else {
			if semi := strings.IndexByte(s[at:], ';'); semi >= 0 {
				p.value = trimSpace(s[at : at+semi])
				start = at + semi + 1
			} else {
				p.value = trimSpace(s[at:])
				start = len(s)
			}
		}
		ps = append(ps, p)
	}
	return ps, true
}

// headerGetAllParams is getAll followed by parseParams on each part, skipping
// parts whose quoting is broken (Pushpin's getAllAsParameters).
func headerGetAllParams(hs []Header, name string, parseAll bool) []params {
	var out []params
	for _, v := range headerGetAll(hs, name) {
		if ps, ok := parseParams(v, parseAll); ok {
			out = append(out, ps)
		}
	}
	return out
}

// headerGetParams parses the first header called name as one parameter list
// (no comma split). It returns nil when the header is absent or empty or its
// quoting is broken (Pushpin's getAsParameters).
func headerGetParams(hs []Header, name string) params {
	v, _ := headerGet(hs, name)
	if v == "" {
		return nil
	}
	ps, ok := parseParams(v, false)
	if !ok {
		return nil
	}
	return ps
}

// trimSpace trims ASCII whitespace the way QByteArray::trimmed does.
func trimSpace(s string) string {
	return strings.Trim(s, " \t\n\v\f\r")
}

// hasPrefixFold reports whether s starts with prefix, ignoring ASCII case.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
