package handler

import (
	"errors"
	"sort"
	"strings"

	"tack/pkg/tnetstring"
)

// Inspect (zmq-wire.md §4.2; Pushpin src/handler/engine.cpp InspectWorker
// [1.36]): the handler always lets the proxy proxy (`no-proxy: false`) and
// names a sharing key when identical requests may share one backend
// request: `auto|<uri without query>|<sorted Grip-Last values>` for a GET
// with auto-share (the handler's own next-link requests), else, with
// [handler] share_all, `<METHOD>|<uri>`. Sessions (get-session) need a
// state service, which tack does not have; the flag is checked and ignored.

var errBadInspect = errors.New("bad inspect request")

// inspectValue checks an inspect call's args as Pushpin does (any missing
// or mistyped field is bad-request) and returns the reply value.
func inspectValue(args tnetstring.Dict, shareAll bool) (tnetstring.Dict, error) {
	method, ok := args.Bytes("method")
	if !ok {
		return nil, errBadInspect
	}
	rawURI, ok := args.Bytes("uri")
	if !ok {
		return nil, errBadInspect
	}
	uri, ok := encodedURI(string(rawURI))
	if !ok {
		return nil, errBadInspect
	}
	hl, ok := args.List("headers")
	if !ok {
		return nil, errBadInspect
	}
	var gripLast []string
	for _, hv := range hl {
		pair, ok := hv.([]any)
		if !ok || len(pair) != 2 {
			return nil, errBadInspect
		}
		name, ok1 := pair[0].([]byte)
		value, ok2 := pair[1].([]byte)
		if !ok1 || !ok2 {
			return nil, errBadInspect
		}
		if strings.EqualFold(string(name), "Grip-Last") {
			for _, part := range strings.Split(string(value), ",") {
				gripLast = append(gripLast, strings.TrimSpace(part))
			}
		}
	}
	if _, ok := args.Bytes("body"); !ok {
		return nil, errBadInspect
	}
	var autoShare bool
	for _, key := range []string{"truncated", "get-session", "auto-share"} {
		v, present := args.Get(key)
		if !present {
			continue
		}
		b, isBool := v.(bool)
		if !isBool {
			return nil, errBadInspect
		}
		if key == "auto-share" {
			autoShare = b
		}
	}
	value := tnetstring.Dict{{Key: "no-proxy", Value: false}}
	switch {
	case autoShare && string(method) == "GET":
		// The query is left out: it may differ per client, and Grip-Last
		// supersedes it.
		key := "auto|" + withoutQuery(uri)
		sort.Strings(gripLast)
		for _, h := range gripLast {
			key += "|" + h
		}
		value = append(value, tnetstring.Field{Key: "sharing-key", Value: []byte(key)})
	case shareAll:
		value = append(value, tnetstring.Field{Key: "sharing-key", Value: []byte(string(method) + "|" + uri)})
	}
	return value, nil
}

// encodedURI checks uri as QUrl's strict mode does (no spaces, controls or
// characters that must be escaped; well-formed %XX) and returns it in
// QUrl's encoded form: scheme and host lower case, escapes of unreserved
// characters decoded.
func encodedURI(uri string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(uri); i++ {
		c := uri[i]
		switch {
		case c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0:
			return "", false
		case c == '%':
			if i+2 >= len(uri) || !isHex(uri[i+1]) || !isHex(uri[i+2]) {
				return "", false
			}
			d := unhex(uri[i+1])<<4 | unhex(uri[i+2])
			if isUnreserved(d) {
				b.WriteByte(d)
			} else {
				b.WriteString(strings.ToUpper(uri[i : i+3]))
			}
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	out := b.String()
	// Scheme and host are case-insensitive: QUrl lowers them.
	if colon := strings.Index(out, "://"); colon > 0 && !strings.ContainsAny(out[:colon], "/?#") {
		rest := out[colon+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		auth := rest[:end]
		hostStart := strings.LastIndexByte(auth, '@') + 1
		out = strings.ToLower(out[:colon]) + "://" + auth[:hostStart] + strings.ToLower(auth[hostStart:]) + rest[end:]
	}
	return out, true
}

// withoutQuery drops the query of an encoded URI, keeping any fragment.
func withoutQuery(uri string) string {
	q := strings.IndexByte(uri, '?')
	if q < 0 {
		return uri
	}
	if f := strings.IndexByte(uri[q:], '#'); f >= 0 {
		return uri[:q] + uri[q+f:]
	}
	return uri[:q]
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
