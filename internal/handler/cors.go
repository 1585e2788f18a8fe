package handler

import (
	"bytes"
	"encoding/json"
	"strings"

	"tack/internal/grip"
)

// CORS and JSON-P for GRIP responses when the route asks for
// auto-cross-origin (grip-reference §11.1, §11.2; Pushpin
// src/corelib/cors.cpp and HttpSession::respond [1.36]).

func getHeader(hs []grip.Header, name string) string {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// applyCORS adds the Access-Control-* headers the response lacks.
func applyCORS(req, resp []grip.Header) []grip.Header { return grip.CORSHeaders(req, resp) }

// crossOrigin applies CORS or JSON-P to a complete response of s.
func crossOrigin(s *hsession, code int, reason string, headers []grip.Header, body []byte) (int, string, []grip.Header, []byte) {
	if !s.rs.AutoCrossOrigin {
		return code, reason, headers, body
	}
	if s.rs.JSONPCallback == "" {
		return code, reason, applyCORS(s.acc.Request.Headers, headers), body
	}
	cb := s.rs.JSONPCallback
	if s.rs.JSONPExtended {
		hm := map[string]string{}
		var order []string
		for _, h := range headers {
			key := ""
			for _, k := range order {
				if strings.EqualFold(k, h.Name) {
					key = k
				}
			}
			if key == "" {
				order = append(order, h.Name)
				hm[h.Name] = h.Value
			} else {
				hm[key] += ", " + h.Value
			}
		}
		var res bytes.Buffer
		enc := json.NewEncoder(&res)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(map[string]any{"code": code, "reason": reason, "headers": hm, "body": string(body)})
		body = []byte("/**/" + cb + "(" + strings.TrimSuffix(res.String(), "\n") + ");\n")
	} else {
		b := string(body)
		if strings.HasSuffix(b, "\r\n") {
			b = b[:len(b)-2]
		} else if strings.HasSuffix(b, "\n") {
			b = b[:len(b)-1]
		}
		body = []byte("/**/" + cb + "(" + b + ");\n")
	}
	out := make([]grip.Header, 0, len(headers)+1)
	for _, h := range headers {
		if !strings.EqualFold(h.Name, "Content-Type") {
			out = append(out, h)
		}
	}
	out = append(out, grip.Header{Name: "Content-Type", Value: "application/javascript"})
	return 200, "OK", out, body
}
