package proxy

import (
	"bytes"
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/internal/routes"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Auto cross-origin (grip-reference §11.1, §11.2; Pushpin
// src/proxy/requestsession.cpp tryApplyJsonp, makeJsonp*,
// doResponseUpdate). With [proxy] auto_cross_origin or the route's aco,
// every response the proxy sends gets the CORS headers it lacks, unless
// the request asked for JSON-P: a GET with the callback parameter (or the
// route's default callback and body parameter) is rewritten before it is
// proxied, and its response, whatever it is, is wrapped in a JavaScript
// call (200 OK, application/javascript). GRIP responses are wrapped by the
// handler, which learns the settings from the accept call.

// JSON-P texts (Pushpin's, verbatim).
const (
	textBadCallback = "Invalid callback parameter."
	textBadMethod   = "Invalid _method parameter."
	textBadHeaders  = "Invalid _headers parameter."
	textBadBody     = "Invalid body parameter."
	textBadRawBody  = "Invalid _body parameter."
)

// jsonpState is how a session's response is wrapped.
type jsonpState struct {
	callback string
	extended bool
	// carry holds the end of a streamed chunk that splits a UTF-8
	// sequence (extended mode encodes the body as a JSON string).
	carry []byte
	// segs maps the wrapped bytes waiting in respPending to the backend
	// bytes they came from, so the zhttp client is granted what it sent
	// once its wrapped form has gone out.
	segs []jsonpSeg
}

type jsonpSeg struct{ wrapped, raw int }

// validCallback reports whether cb may name the JSON-P function. Pushpin
// 1.36 takes any non-empty value and writes it into the response as it is;
// tack accepts only what a JavaScript function reference needs (letters,
// digits, '_', '$', '.', '[', ']'), so a callback cannot inject markup or
// script into the response. The rest get Pushpin's "Invalid callback
// parameter." answer.
func validCallback(cb string) bool {
	if cb == "" {
		return false
	}
	for i := 0; i < len(cb); i++ {
		c := cb[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_' || c == '$' || c == '.' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

// queryItem is one raw key=value of a query string.
type queryItem struct {
	rawKey, rawValue, key string
	eq                    bool // written with '='
}

func parseQuery(raw string) []queryItem {
	var out []queryItem
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, eq := strings.Cut(part, "=")
		dk, err := url.PathUnescape(k)
		if err != nil {
			dk = k
		}
		out = append(out, queryItem{rawKey: k, rawValue: v, key: dk, eq: eq})
	}
	return out
}

// take removes every item called key and returns the first one's value,
// percent-decoded ('+' stays a plus, as in Pushpin); ok is false when the
// item is absent, bad when its encoding is broken.
func take(items *[]queryItem, key string) (val string, ok, bad bool) {
	kept := (*items)[:0]
	for _, it := range *items {
		if it.key != key {
			kept = append(kept, it)
			continue
		}
		if !ok {
			ok = true
			v, err := url.PathUnescape(it.rawValue)
			val, bad = v, err != nil
		}
	}
	*items = kept
	return val, ok, bad
}

func has(items []queryItem, key string) bool {
	for _, it := range items {
		if it.key == key {
			return true
		}
	}
	return false
}

// jsonpConfig is a route's JSON-P settings (Pushpin's defaults without a route).
func jsonpConfig(r *routes.Route) (cbParam, bodyParam, defCB, defMethod string, extended bool) {
	cbParam, extended = "callback", true
	if r != nil {
		if r.JSONPCallback != "" {
			cbParam = r.JSONPCallback
		}
		bodyParam, defCB, defMethod = r.JSONPBody, r.JSONPDefCallback, r.JSONPDefMethod
		extended = r.JSONPMode != "basic"
	}
	if defMethod == "" {
		defMethod = "GET"
		if !extended {
			defMethod = "POST"
		}
	}
	return
}

// applyJSONP rewrites a JSON-P request in p (method, URI, headers, body)
// and returns its wrapping, nil when the request is not JSON-P, or the
// one-line reason for a 400.
func applyJSONP(p *zhttp.Packet, r *routes.Route) (*jsonpState, string) {
	if p.Method != "GET" {
		return nil, ""
	}
	u, err := url.Parse(p.URI)
	if err != nil {
		return nil, ""
	}
	cbParam, bodyParam, defCB, defMethod, extended := jsonpConfig(r)
	items := parseQuery(u.RawQuery)
	if !has(items, cbParam) && (defCB == "" || bodyParam == "" || !has(items, bodyParam)) {
		return nil, ""
	}
	cb := defCB
	if v, ok, bad := take(&items, cbParam); ok {
		if bad || !validCallback(v) {
			return nil, textBadCallback
		}
		cb = v
	}
	method := defMethod
	if v, ok, bad := take(&items, "_method"); ok {
		if bad || !validMethod(v) {
			return nil, textBadMethod
		}
		method = v
	}
	var headers []zhttp.Header
	if v, ok, bad := take(&items, "_headers"); ok {
		var m map[string]any
		if bad || json.Unmarshal([]byte(v), &m) != nil || m == nil {
			return nil, textBadHeaders
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			sv, isStr := m[k].(string)
			if !isStr {
				return nil, textBadHeaders
			}
			if !strings.EqualFold(k, "Host") && !strings.EqualFold(k, "Accept") {
				headers = append(headers, zhttp.Header{Name: k, Value: sv})
			}
		}
	}
	var body []byte
	if bodyParam != "" {
		if v, ok, bad := take(&items, bodyParam); ok {
			if bad {
				return nil, textBadBody
			}
			body = []byte(v)
			headers = removeHeaders(headers, "Content-Type")
			headers = append(headers, zhttp.Header{Name: "Content-Type", Value: "application/json"})
		}
	} else if v, ok, bad := take(&items, "_body"); ok {
		if bad {
			return nil, textBadRawBody
		}
		body = []byte(v)
	}
	raw := make([]string, len(items))
	for i, it := range items {
		raw[i] = it.rawKey
		if it.eq {
			raw[i] += "=" + it.rawValue
		}
	}
	// The rest of the URI stays byte-exact; a query left empty drops the '?'.
	p.URI, _, _ = strings.Cut(p.URI, "?")
	if len(raw) > 0 {
		p.URI += "?" + strings.Join(raw, "&")
	}
	p.Method = method
	headers = append(headers, zhttp.Header{Name: "Host", Value: u.Host}, zhttp.Header{Name: "Accept", Value: "*/*"})
	for _, h := range p.Headers {
		if !strings.EqualFold(h.Name, "Host") && !strings.EqualFold(h.Name, "Accept") {
			headers = append(headers, h)
		}
	}
	p.Headers = headers
	p.Body = body
	return &jsonpState{callback: cb, extended: extended}, ""
}

// validMethod: Pushpin takes any non-empty printable method.
func validMethod(m string) bool {
	if m == "" || !utf8.ValidString(m) {
		return false
	}
	for _, r := range m {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// jsonString is v as a JSON string without HTML escaping.
func jsonString(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// start is the text before the body.
func (j *jsonpState) start(code int64, reason string, headers []zhttp.Header) []byte {
	out := []byte("/**/" + j.callback + "(")
	if !j.extended {
		return out
	}
	first := map[string]string{}
	for _, h := range headers {
		if _, dup := first[h.Name]; !dup {
			first[h.Name] = h.Value
		}
	}
	out = append(out, `{"code": `+strconv.FormatInt(code, 10)+`, "reason": `...)
	out = append(out, jsonString(reason)...)
	out = append(out, `, "headers": `...)
	out = append(out, jsonString(first)...)
	return append(out, `, "body": "`...)
}

// end is the text after the body.
func (j *jsonpState) end() []byte {
	if j.extended {
		return []byte("\"});\n")
	}
	return []byte(");\n")
}

// encode is body as it appears inside the wrapper; with last unset a
// split UTF-8 sequence at the end waits for the next chunk.
func (j *jsonpState) encode(b []byte, last bool) []byte {
	if !j.extended {
		return b
	}
	b = append(j.carry, b...)
	j.carry = nil
	if !last {
		cut := len(b)
		for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
			if utf8.RuneStart(b[i]) {
				if !utf8.FullRune(b[i:]) {
					cut = i
				}
				break
			}
		}
		j.carry = append([]byte(nil), b[cut:]...)
		b = b[:cut]
	}
	s := jsonString(string(b))
	return s[1 : len(s)-1]
}

// wrapComplete wraps a complete response: 200 OK, application/javascript,
// Content-Length, and the response's Cache-Control.
func (j *jsonpState) wrapComplete(code int64, reason string, headers []zhttp.Header, body []byte) (int64, string, []zhttp.Header, []byte) {
	if !j.extended {
		if bytes.HasSuffix(body, []byte("\r\n")) {
			body = body[:len(body)-2]
		} else if bytes.HasSuffix(body, []byte("\n")) {
			body = body[:len(body)-1]
		}
	}
	out := j.start(code, reason, headers)
	out = append(out, j.encode(body, true)...)
	out = append(out, j.end()...)
	hs := []zhttp.Header{
		{Name: "Content-Type", Value: "application/javascript"},
		{Name: "Content-Length", Value: strconv.Itoa(len(out))},
	}
	for _, h := range headers {
		if strings.EqualFold(h.Name, "Cache-Control") {
			hs = append(hs, h)
		}
	}
	return 200, "OK", hs, out
}

// crossOriginComplete applies CORS or JSON-P to a complete response the
// proxy sends (its own answers and the handler's accept responses).
func (e *engine) crossOriginComplete(s *session, p *zhttp.Packet) {
	switch {
	case s.jsonp != nil:
		p.Code, p.Reason, p.Headers, p.Body = s.jsonp.wrapComplete(p.Code, p.Reason, p.Headers, p.Body)
	case s.aco:
		p.Headers = corsHeaders(s.first.Headers, p.Headers)
	}
}

// crossOriginHead applies CORS or JSON-P to the head of a relayed
// response, and wraps the body that came with it. A response complete in
// its first packet is wrapped whole (with Content-Length); otherwise the
// wrapper is streamed (chunked).
func (e *engine) crossOriginHead(s *session, head *zhttp.Packet, body []byte, more bool) []byte {
	if s.jsonp == nil {
		if s.aco {
			head.Headers = corsHeaders(s.first.Headers, head.Headers)
		}
		return body
	}
	if !more {
		var out []byte
		head.Code, head.Reason, head.Headers, out = s.jsonp.wrapComplete(head.Code, head.Reason, head.Headers, body)
		return out
	}
	out := s.jsonp.start(head.Code, head.Reason, head.Headers)
	out = append(out, s.jsonp.encode(body, false)...)
	head.Code, head.Reason = 200, "OK"
	head.Headers = []zhttp.Header{{Name: "Content-Type", Value: "application/javascript"}}
	s.jsonp.segs = append(s.jsonp.segs, jsonpSeg{wrapped: len(out), raw: len(body)})
	return out
}

// crossOriginBody wraps a later chunk of a streamed JSON-P response.
func (e *engine) crossOriginBody(s *session, body []byte, more bool) []byte {
	if s.jsonp == nil {
		return body
	}
	out := s.jsonp.encode(body, !more)
	if !more {
		out = append(out, s.jsonp.end()...)
	}
	s.jsonp.segs = append(s.jsonp.segs, jsonpSeg{wrapped: len(out), raw: len(body)})
	return out
}

// rawSent converts n bytes sent to connmgr into the backend bytes they
// carried (what the zhttp client may be granted again).
func (s *session) rawSent(n int) int {
	if s.jsonp == nil {
		return n
	}
	raw := 0
	for n > 0 && len(s.jsonp.segs) > 0 {
		sg := &s.jsonp.segs[0]
		if sg.wrapped > n {
			sg.wrapped -= n
			break
		}
		n -= sg.wrapped
		raw += sg.raw
		s.jsonp.segs = s.jsonp.segs[1:]
	}
	return raw
}

func corsHeaders(req, resp []zhttp.Header) []zhttp.Header {
	out := grip.CORSHeaders(toGripHeaders(req), toGripHeaders(resp))
	hs := make([]zhttp.Header, len(out))
	for i, h := range out {
		hs[i] = zhttp.Header{Name: h.Name, Value: h.Value}
	}
	return hs
}

// crossOriginRequest applies auto cross-origin to a client's request once
// its route is known; false when the request was answered (a JSON-P 400).
func (e *engine) crossOriginRequest(s *session, r *routes.Route, now time.Time) bool {
	s.aco = e.cfg.AutoCrossOrigin || (r != nil && r.ACO)
	if !s.aco {
		return true
	}
	js, bad := applyJSONP(s.first, r)
	if bad != "" {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("reason", bad).Msg("bad JSON-P request")
		e.respondError(s, 400, "Bad Request", bad+"\n", "", now)
		return false
	}
	if js == nil {
		return true
	}
	if u, err := url.Parse(s.first.URI); err == nil {
		s.ci.rawURI = u
	}
	s.method = s.first.Method
	s.jsonp = js
	return true
}

// crossOriginFields are the accept-request fields that tell the handler
// to apply CORS or JSON-P to the GRIP response (zmq-wire.md §4.3).
func (s *session) crossOriginFields() tnetstring.Dict {
	if !s.aco {
		return nil
	}
	d := tnetstring.Dict{{Key: "auto-cross-origin", Value: true}}
	if s.jsonp != nil {
		d = append(d, tnetstring.Field{Key: "jsonp-callback", Value: s.jsonp.callback})
		if s.jsonp.extended {
			d = append(d, tnetstring.Field{Key: "jsonp-extended-response", Value: true})
		}
	}
	return d
}

// crossOriginFromRetry restores the settings from a retry request.
func (s *session) crossOriginFromRetry(rq tnetstring.Dict) {
	s.aco = rq.Bool("auto-cross-origin")
	if cb, ok := rq.Bytes("jsonp-callback"); ok && s.aco && len(cb) > 0 {
		s.jsonp = &jsonpState{callback: string(cb), extended: rq.Bool("jsonp-extended-response")}
	}
}
