package grip

import "strings"

// corsSimpleHeaders are never listed in Access-Control-Expose-Headers.
var corsSimpleHeaders = []string{"Cache-Control", "Content-Language", "Content-Length", "Content-Type", "Expires", "Last-Modified", "Pragma"}

// CORSHeaders returns resp with the Access-Control-* headers it lacks,
// derived from the request headers req (auto cross-origin, grip-reference
// §11.1; Pushpin src/core/cors.cpp). The proxy applies it to relayed and
// proxy-made responses, the handler to GRIP responses.
func CORSHeaders(req, resp []Header) []Header {
	out := append([]Header(nil), resp...)
	if _, ok := headerGet(out, "Access-Control-Allow-Methods"); !ok {
		m, _ := headerGet(req, "Access-Control-Request-Method")
		if m == "" {
			m = "OPTIONS, HEAD, GET, POST, PUT, DELETE"
		}
		out = append(out, Header{Name: "Access-Control-Allow-Methods", Value: m})
	}
	if _, ok := headerGet(out, "Access-Control-Allow-Headers"); !ok {
		var allow []string
		for _, h := range req {
			if strings.EqualFold(h.Name, "Access-Control-Request-Headers") {
				for _, v := range strings.Split(h.Value, ",") {
					if v = strings.TrimSpace(v); v != "" {
						allow = append(allow, v)
					}
				}
			}
		}
		if len(allow) > 0 {
			out = append(out, Header{Name: "Access-Control-Allow-Headers", Value: strings.Join(allow, ", ")})
		}
	}
	if _, ok := headerGet(out, "Access-Control-Expose-Headers"); !ok {
		var expose []string
		for _, h := range out {
			if containsFold(corsSimpleHeaders, h.Name) || hasPrefixFold(h.Name, "Access-Control-") ||
				hasPrefixFold(h.Name, "Grip-") || containsFold(expose, h.Name) {
				continue
			}
			expose = append(expose, h.Name)
		}
		if len(expose) > 0 {
			out = append(out, Header{Name: "Access-Control-Expose-Headers", Value: strings.Join(expose, ", ")})
		}
	}
	if _, ok := headerGet(out, "Access-Control-Allow-Credentials"); !ok {
		out = append(out, Header{Name: "Access-Control-Allow-Credentials", Value: "true"})
	}
	if _, ok := headerGet(out, "Access-Control-Allow-Origin"); !ok {
		o, _ := headerGet(req, "Origin")
		if o == "" {
			o = "*"
		}
		out = append(out, Header{Name: "Access-Control-Allow-Origin", Value: o})
	}
	if _, ok := headerGet(out, "Access-Control-Max-Age"); !ok {
		out = append(out, Header{Name: "Access-Control-Max-Age", Value: "3600"})
	}
	return out
}
