package proxy

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"tack/internal/routes"
	"tack/pkg/zhttp"
)

// requestHopHeaders are removed from every request before it goes to a
// backend (grip-reference §2.2, "Always removed").
var requestHopHeaders = []string{
	"Connection", "Keep-Alive", "Accept-Encoding", "Content-Encoding", "Transfer-Encoding", "Expect",
}

// responseHopHeaders are removed from a backend response before it is
// relayed, exactly as Pushpin does: connmgr frames the response itself
// (§11.4), and the outbound client has already decoded any
// Content-Encoding it asked for (quirk 19).
var responseHopHeaders = []string{
	"Connection", "Keep-Alive", "Content-Encoding", "Transfer-Encoding",
}

// clientInfo is what the proxy knows about the requesting client.
type clientInfo struct {
	peer    string // TCP peer address from connmgr
	tls     bool   // request arrived over TLS (or accepted X-Forwarded-Proto)
	scheme  string // http, https, ws, wss
	host    string // lowercased, without port
	path    string // encoded path (no query)
	rawURI  *url.URL
	trusted bool // signed by an upstream GRIP proxy (upstream_key)
	// internal: the handler's own request over intreq (next and gone
	// links): its Grip-* headers (Grip-Last) go to the backend, and the
	// response is never GRIP (grip-reference §2.2, §3.1).
	internal bool
}

// parseClient extracts routing facts from a first request packet.
func parseClient(p *zhttp.Packet, acceptXFP bool) (clientInfo, error) {
	u, err := url.Parse(p.URI)
	if err != nil {
		return clientInfo{}, err
	}
	ci := clientInfo{peer: p.PeerAddress, scheme: strings.ToLower(u.Scheme), rawURI: u}
	ci.tls = ci.scheme == "https" || ci.scheme == "wss"
	if acceptXFP && !ci.tls {
		v, ok := p.Header("X-Forwarded-Proto")
		if !ok {
			v, ok = p.Header("X-Forwarded-Protocol")
		}
		if ok {
			v = strings.ToLower(strings.TrimSpace(v))
			ci.tls = v == "https" || v == "wss"
		}
	}
	ci.host = strings.ToLower(hostOnly(u.Host))
	ci.path = u.EscapedPath()
	if ci.path == "" {
		ci.path = "/"
	}
	return ci, nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.Trim(h, "[]")
	}
	return strings.Trim(hostport, "[]")
}

func hasHeader(hs []zhttp.Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

func removeHeaders(hs []zhttp.Header, names ...string) []zhttp.Header {
	out := hs[:0]
	for _, h := range hs {
		drop := false
		for _, n := range names {
			if strings.EqualFold(h.Name, n) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, h)
		}
	}
	return out
}

func removePrefixed(hs []zhttp.Header, prefix string) []zhttp.Header {
	out := hs[:0]
	for _, h := range hs {
		if len(h.Name) >= len(prefix) && strings.EqualFold(h.Name[:len(prefix)], prefix) {
			continue
		}
		out = append(out, h)
	}
	return out
}

// outboundRequest describes the request sent to a target.
type outboundRequest struct {
	uri     string
	headers []zhttp.Header
}

// rewriteRequest applies the route's rewriting and Pushpin's header rules
// (grip-reference §2.2) to the client's request for target t.
func (e *engine) rewriteRequest(p *zhttp.Packet, ci clientInfo, r *routes.Route, t *routes.Target) outboundRequest {
	u := *ci.rawURI
	// Scheme follows the target.
	if t.SSL {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	if r.AsHost != "" {
		u.Host = r.AsHost
	}
	if t.HostOverride != "" {
		u.Host = t.HostOverride
	}
	// Path rewriting operates on the encoded path.
	path := u.EscapedPath()
	if r.HasReplaceBeg {
		n := len(r.PathBeg)
		if n <= len(path) {
			path = r.ReplaceBeg + path[n:]
		}
	} else if r.PathRem > 0 {
		if r.PathRem <= len(path) {
			path = path[r.PathRem:]
		} else {
			path = ""
		}
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if dec, err := url.PathUnescape(path); err == nil {
		u.Path = dec
		u.RawPath = path
	}
	if u.Port() == defaultPort(u.Scheme) {
		u.Host = u.Hostname()
	}
	// Keep the client's query byte-exact.
	uri := u.Scheme + "://" + u.Host + u.EscapedPath()
	if ci.rawURI.RawQuery != "" || ci.rawURI.ForceQuery {
		uri += "?" + ci.rawURI.RawQuery
	}

	hs := make([]zhttp.Header, 0, len(p.Headers)+4)
	hs = append(hs, p.Headers...)
	for _, h := range r.Headers {
		hs = removeHeaders(hs, h.Name)
		if v := strings.TrimLeft(h.Value, " "); v != "" {
			hs = append(hs, zhttp.Header{Name: h.Name, Value: v})
		}
	}
	hs = e.origHeaders(hs, r.OrigHeaders, ci.trusted)
	hs = removeHeaders(hs, requestHopHeaders...)
	if e.cfg.AcceptPushpinRoute {
		hs = removeHeaders(hs, "Pushpin-Route")
	}
	hs = applyCDNLoop(hs, e.cfg.CDNLoop)
	if !ci.trusted && !ci.internal {
		hs = removePrefixed(hs, "Grip-")
	}
	if e.cfg.AcceptXForwardedProtocol || e.cfg.SetXForwardedProtocol != "" {
		hs = removeHeaders(hs, "X-Forwarded-Proto", "X-Forwarded-Protocol")
	}
	if ci.tls && e.cfg.SetXForwardedProtocol != "" {
		scheme := "https"
		if ci.scheme == "wss" || ci.scheme == "ws" {
			scheme = "wss"
		}
		hs = append(hs, zhttp.Header{Name: "X-Forwarded-Proto", Value: scheme})
		if e.cfg.SetXForwardedProtocol == "true" {
			hs = append(hs, zhttp.Header{Name: "X-Forwarded-Protocol", Value: scheme})
		}
	}
	hs = applyXFF(hs, e.xffRule(ci), ci.peer)
	if !r.NoGrip && !ci.trusted {
		iss, key := e.cfg.SigIss, e.cfg.SigKey
		if r.HasSigIss {
			iss = r.SigIss
		}
		if r.HasSigKey {
			key = r.SigKey
		}
		tok, err := e.sig.token(iss, key, e.cfg.ConfigDir, e.cfg.Now())
		if err != nil {
			e.log.Warn().Err(err).Str("route", r.Source).Msg("cannot sign Grip-Sig")
		} else if tok != "" {
			// Only an internal request can still carry Grip-* headers here;
			// ours replace its signature and feature list, as in Pushpin.
			hs = removeHeaders(hs, "Grip-Sig")
			hs = append(hs, zhttp.Header{Name: "Grip-Sig", Value: tok})
		}
		hs = removeHeaders(hs, "Grip-Feature")
		hs = append(hs, zhttp.Header{Name: "Grip-Feature", Value: gripFeatures})
	}
	// Host follows the URI host only when it differs (client Host kept by default).
	want := u.Host
	if cur, ok := headerValue(hs, "Host"); !ok || !strings.EqualFold(cur, want) {
		if r.AsHost != "" || t.HostOverride != "" || !ok {
			hs = removeHeaders(hs, "Host")
			hs = append([]zhttp.Header{{Name: "Host", Value: want}}, hs...)
		}
	}
	return outboundRequest{uri: uri, headers: hs}
}

func headerValue(hs []zhttp.Header, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

func defaultPort(scheme string) string {
	switch scheme {
	case "https", "wss":
		return "443"
	}
	return "80"
}

// applyXFF takes every X-Forwarded-For value out, applies the rule and
// re-emits what is left as one header (§2.2). The empty rule changes nothing.
func applyXFF(hs []zhttp.Header, rule XFFRule, peer string) []zhttp.Header {
	if rule.Truncate < 0 && !rule.Append {
		return hs
	}
	vals, hs := takeList(hs, "X-Forwarded-For")
	if rule.Truncate >= 0 && len(vals) > rule.Truncate {
		vals = vals[len(vals)-rule.Truncate:]
	}
	if rule.Append && peer != "" {
		vals = append(vals, peer)
	}
	if len(vals) > 0 {
		hs = append(hs, zhttp.Header{Name: "X-Forwarded-For", Value: strings.Join(vals, ", ")})
	}
	return hs
}

// takeList removes every header called name and returns their values,
// split at commas and trimmed, empty items dropped.
func takeList(hs []zhttp.Header, name string) ([]string, []zhttp.Header) {
	var vals []string
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			for _, v := range strings.Split(h.Value, ",") {
				if v = strings.TrimSpace(v); v != "" {
					vals = append(vals, v)
				}
			}
		}
	}
	return vals, removeHeaders(hs, name)
}

// filterResponseHeaders drops hop-by-hop headers from a backend response.
func filterResponseHeaders(hs []zhttp.Header) []zhttp.Header {
	out := make([]zhttp.Header, 0, len(hs))
	out = append(out, hs...)
	return removeHeaders(out, responseHopHeaders...)
}

// targetName is how a target appears in logs and debug errors.
func targetName(t *routes.Target) string {
	switch t.Kind {
	case routes.TargetTest:
		return "test"
	case routes.TargetZHTTP, routes.TargetZHTTPReq:
		return t.Spec
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}
