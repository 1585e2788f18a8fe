package proxy

import (
	"fmt"
	"strings"
	"time"

	"tack/internal/config"
	"tack/internal/grip"
	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// Upstream trust and the request-header options that go with it
// (grip-reference §2.1 step 4, §2.2, §3.2; Pushpin src/proxy/proxyutil.cpp
// checkTrustedClient and manipulateRequestHeaders). A client whose Grip-Sig
// verifies with upstream_key is another GRIP proxy: its Grip-* headers
// (its own Grip-Sig included) reach the backend, x_forwarded_for_trusted
// applies, and the backend's GRIP answers go back to it uninterpreted. A
// Grip-Sig that does not verify makes an ordinary, untrusted client.

// origHeaderMark prefixes the copies orig_headers makes of request headers.
const origHeaderMark = "eb9bf0f5-"

// trustFromFile reads upstream_key, x_forwarded_for_trusted,
// orig_headers_need_mark, cdn_loop and auto_cross_origin from [proxy].
func (c *Config) trustFromFile(f *config.File) error {
	var err error
	if c.UpstreamKey, err = grip.ParseKey(f.String("proxy", "upstream_key", ""), f.Dir(), nil); err != nil {
		return fmt.Errorf("%s: [proxy] upstream_key: %w", f.Pos("proxy", "upstream_key"), err)
	}
	if c.XForwardedForTrusted, err = parseXFF(f.List("proxy", "x_forwarded_for_trusted")); err != nil {
		return fmt.Errorf("%s: [proxy] x_forwarded_for_trusted: %w", f.Pos("proxy", "x_forwarded_for_trusted"), err)
	}
	for _, h := range f.List("proxy", "orig_headers_need_mark") {
		if h = strings.TrimSpace(h); h != "" {
			c.OrigHeadersNeedMark = append(c.OrigHeadersNeedMark, h)
		}
	}
	c.CDNLoop = strings.TrimSpace(f.String("proxy", "cdn_loop", ""))
	if c.AutoCrossOrigin, err = f.Bool("proxy", "auto_cross_origin", false); err != nil {
		return err
	}
	return nil
}

// trustedClient reports whether the client's Grip-Sig verifies with
// upstream_key (signature, and exp in the future).
func (e *engine) trustedClient(p *zhttp.Packet, now time.Time) bool {
	if e.cfg.UpstreamKey == nil {
		return false
	}
	tok, _ := p.Header("Grip-Sig")
	if tok == "" {
		return false
	}
	if grip.ValidateToken(tok, e.cfg.UpstreamKey, now) {
		return true
	}
	e.log.Warn().Str(logging.FieldRID, string(p.ID)).Str(logging.FieldPeer, p.PeerAddress).
		Msg("Grip-Sig does not verify with upstream_key: client not trusted")
	return false
}

// xffRule is the X-Forwarded-For rule for the client.
func (e *engine) xffRule(ci clientInfo) XFFRule {
	if ci.trusted {
		return e.cfg.XForwardedForTrusted
	}
	return e.cfg.XForwardedFor
}

// origHeaders applies the route's orig_headers option: without it, marked
// copies are removed; with it, an untrusted client's headers are copied
// with the mark (headers in orig_headers_need_mark only when they already
// came marked) and all marked headers move to the end. A trusted client's
// marked headers were made by the proxy in front and are kept as they are.
func (e *engine) origHeaders(hs []zhttp.Header, on, trusted bool) []zhttp.Header {
	if !on {
		return removePrefixed(hs, origHeaderMark)
	}
	if trusted {
		return hs
	}
	var plain, marked []zhttp.Header
	for _, h := range hs {
		if isMarked(h.Name) {
			marked = append(marked, h)
			continue
		}
		plain = append(plain, h)
		if !e.cfg.needsMark(h.Name) {
			marked = append(marked, zhttp.Header{Name: origHeaderMark + h.Name, Value: h.Value})
		}
	}
	return append(plain, marked...)
}

// applyCDNLoop joins every CDN-Loop value and ours into one header
// (cdn_loop, Pushpin 1.37+; 1.36 has no such key).
func applyCDNLoop(hs []zhttp.Header, value string) []zhttp.Header {
	if value == "" {
		return hs
	}
	vals, hs := takeList(hs, "CDN-Loop")
	return append(hs, zhttp.Header{Name: "CDN-Loop", Value: strings.Join(append(vals, value), ", ")})
}

// isMarked reports whether a header name carries the orig_headers mark.
func isMarked(name string) bool {
	return len(name) >= len(origHeaderMark) && strings.EqualFold(name[:len(origHeaderMark)], origHeaderMark)
}

// needsMark reports whether orig_headers_need_mark lists the header.
func (c *Config) needsMark(name string) bool {
	for _, x := range c.OrigHeadersNeedMark {
		if strings.EqualFold(x, name) {
			return true
		}
	}
	return false
}
