package grip

import "strings"

// LargeHead is the head of a GRIP response that the proxy sends to the
// client itself because its body is too large to hand to the handler
// (Pushpin 1.36 src/proxy/proxysession.cpp, MAX_ACCEPT_RESPONSE_BODY): a
// stream hold, or a response without Grip-Hold that has a rel=next
// Grip-Link. The handler then takes the session over with response-sent.
type LargeHead struct {
	Code    int
	Reason  string
	Headers []Header // Grip-* and Content-Length removed
}

// ProxyLargeHead reports whether a GRIP response head whose body is too
// large for the handler may be sent by the proxy, and the head to send.
// It may not when the hold is a response hold (or the instruct is JSON
// content), or when a channel uses the build-id filter (which must see the
// initial body). ok with err != nil means a bad Grip-Status: Pushpin then
// refuses the response (502).
func ProxyLargeHead(code int, reason string, headers []Header) (h *LargeHead, ok bool, err error) {
	hold, _ := headerGet(headers, "Grip-Hold")
	hasNext := false
	for _, ps := range headerGetAllParams(headers, "Grip-Link", false) {
		if rel, _ := ps.get("rel"); len(ps) >= 2 && rel == RelNext {
			hasNext = true
		}
	}
	if hold != "stream" && (hold != "" || !hasNext) {
		return nil, false, nil
	}
	for _, ps := range headerGetAllParams(headers, "Grip-Channel", false) {
		for _, p := range ps[1:] {
			if p.name == "filter" && p.value == "build-id" {
				return nil, false, nil
			}
		}
	}
	h = &LargeHead{Code: code, Reason: reason}
	if v, _ := headerGet(headers, "Grip-Status"); v != "" {
		codeStr, r, _ := strings.Cut(v, " ")
		n, good := parseHeaderInt(codeStr)
		if !good || n < 0 || n > 999 {
			return nil, true, formatErr("Grip-Status contains invalid status code")
		}
		if r == "" {
			r = ReasonPhrase(n)
		}
		h.Code, h.Reason = n, r
	}
	for _, hd := range headers {
		if hasPrefixFold(hd.Name, "Grip-") || strings.EqualFold(hd.Name, "Content-Length") {
			continue
		}
		h.Headers = append(h.Headers, hd)
	}
	return h, true, nil
}
