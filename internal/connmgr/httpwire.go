package connmgr

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"tack/pkg/zhttp"
)

// headEnd returns the length of the request head at the start of b (up to
// and including the blank line), or -1 if b does not hold a whole head yet.
// Scanning starts at from so that a slowly arriving head is not rescanned.
func headEnd(b []byte, from int) int {
	if from < 0 {
		from = 0
	}
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
	return -1
}

// scanHeaders returns the request's header lines in order, names as sent
// (condure forwards them unmodified, zmq-wire.md §6.3), and the first Host
// value. head is the whole request head; net/http validates it afterwards.
func scanHeaders(head string) (hs []zhttp.Header, host string, err error) {
	i := strings.IndexByte(head, '\n')
	if i < 0 {
		return nil, "", nil
	}
	rest := head[i+1:]
	hasHost := false
	for len(rest) > 0 {
		var line string
		if j := strings.IndexByte(rest, '\n'); j >= 0 {
			line, rest = rest[:j], rest[j+1:]
		} else {
			line, rest = rest, ""
		}
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: a continuation of the previous value (RFC 9112 §5.2).
			if len(hs) == 0 {
				return nil, "", fmt.Errorf("malformed continuation line")
			}
			last := &hs[len(hs)-1]
			last.Value = last.Value + " " + strings.Trim(line, " \t")
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			// net/http reports the exact problem.
			continue
		}
		if len(hs) == MaxRequestHeaders {
			return nil, "", errTooManyHeaders
		}
		hs = append(hs, zhttp.Header{Name: name, Value: strings.Trim(value, " \t")})
		if !hasHost && strings.EqualFold(name, "Host") {
			host, hasHost = hs[len(hs)-1].Value, true
		}
	}
	return hs, host, nil
}

// requestURI builds the zhttp uri as condure does: scheme, the Host header
// (or "localhost") and the request target as sent. An absolute-form target
// is used as it stands (condure would prefix it again, producing a uri the
// proxy cannot route).
func requestURI(host, target string, secure bool) string {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		return target
	}
	if host == "" {
		host = "localhost"
	}
	if secure {
		// A TLS listener: the https scheme is how the proxy learns the
		// request was secure (ssl=yes routes, X-Forwarded-Proto).
		return "https://" + host + target
	}
	return "http://" + host + target
}

// hopByHop lists the response headers we never copy from the zhttp server;
// the framing ones are written by us. condure strips only Connection,
// Content-Length and Transfer-Encoding (src/core/http1/protocol.rs); the
// others are hop-by-hop by RFC 9110 §7.6.1 and would be wrong on our hop.
func hopByHop(name string) bool {
	switch len(name) {
	case 2:
		return strings.EqualFold(name, "TE")
	case 7:
		return strings.EqualFold(name, "Trailer") || strings.EqualFold(name, "Upgrade")
	case 10:
		return strings.EqualFold(name, "Connection") || strings.EqualFold(name, "Keep-Alive")
	case 14:
		return strings.EqualFold(name, "Content-Length")
	case 16:
		return strings.EqualFold(name, "Proxy-Connection")
	case 17:
		return strings.EqualFold(name, "Transfer-Encoding")
	}
	return false
}

// validToken reports whether s is an HTTP token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validValue reports whether s can be written as a header value or reason
// phrase without splitting the response.
func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// framing is how a response body is delimited towards the client.
type framing int

const (
	frameNone    framing = iota // no body (HEAD, 1xx, 204, 304)
	frameLength                 // Content-Length
	frameChunked                // HTTP/1.1 chunked
	frameClose                  // HTTP/1.0, delimited by closing the connection
)

// respHead is the client-facing head of a response, derived from the
// server's first data packet.
type respHead struct {
	framing framing
	length  int64 // with frameLength
	// connHeaders are the framing headers condure writes after the server's.
	persistent bool
}

// planResponse decides framing and persistence (grip-reference.md §11.4):
// a Content-Length from the server is kept; without it a single-packet
// response gets the length of its body (as condure does); otherwise
// HTTP/1.1 is chunked and HTTP/1.0 close-delimited. HEAD, 1xx, 204 and 304
// have no body.
func planResponse(p *zhttp.Packet, isHead, proto11, persistent bool) (respHead, error) {
	rh := respHead{length: -1, persistent: persistent}
	for _, h := range p.Headers {
		if len(h.Name) == 14 && strings.EqualFold(h.Name, "Content-Length") {
			n, err := strconv.ParseInt(strings.TrimSpace(h.Value), 10, 64)
			if err != nil || n < 0 {
				return rh, fmt.Errorf("bad Content-Length %q", h.Value)
			}
			rh.length = n
		}
	}
	code := p.Code
	switch {
	case code/100 == 1 || code == 204 || code == 304:
		rh.framing, rh.length = frameNone, -1
	case isHead:
		// The length (if the server gave one) describes the GET response;
		// no body follows either way, so the connection stays usable.
		rh.framing = frameNone
	case rh.length >= 0:
		rh.framing = frameLength
	case !p.More:
		rh.framing, rh.length = frameLength, int64(len(p.Body))
	case proto11:
		rh.framing = frameChunked
	default:
		rh.framing = frameClose
		rh.persistent = false
	}
	return rh, nil
}

// appendHead encodes the status line and headers of a response.
func appendHead(dst []byte, p *zhttp.Packet, rh respHead, proto11 bool) ([]byte, error) {
	code := p.Code
	if code < 100 || code > 999 {
		return dst, fmt.Errorf("bad status code %d", code)
	}
	reason := p.Reason
	if reason == "" {
		reason = http.StatusText(int(code))
	}
	if !validValue(reason) {
		return dst, fmt.Errorf("bad reason phrase")
	}
	// Names listed in the server's Connection header are hop-by-hop too.
	var connTokens []string
	for _, h := range p.Headers {
		if len(h.Name) == 10 && strings.EqualFold(h.Name, "Connection") {
			for _, t := range strings.Split(h.Value, ",") {
				if t = strings.TrimSpace(t); t != "" {
					connTokens = append(connTokens, t)
				}
			}
		}
	}
	dst = appendStatusLine(dst, proto11, int(code), reason)
	for _, h := range p.Headers {
		if hopByHop(h.Name) || listed(connTokens, h.Name) {
			continue
		}
		if !validToken(h.Name) || !validValue(h.Value) {
			return dst, fmt.Errorf("bad response header %q", h.Name)
		}
		dst = append(dst, h.Name...)
		dst = append(dst, ": "...)
		dst = append(dst, h.Value...)
		dst = append(dst, "\r\n"...)
	}
	dst = appendFraming(dst, rh, proto11, code)
	return append(dst, "\r\n"...), nil
}

func listed(tokens []string, name string) bool {
	for _, t := range tokens {
		if strings.EqualFold(t, name) {
			return true
		}
	}
	return false
}

func appendStatusLine(dst []byte, proto11 bool, code int, reason string) []byte {
	if proto11 {
		dst = append(dst, "HTTP/1.1 "...)
	} else {
		dst = append(dst, "HTTP/1.0 "...)
	}
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	return append(dst, "\r\n"...)
}

// appendFraming writes the headers condure adds, in its order: Connection
// (keep-alive for a persistent HTTP/1.0 exchange, close for a closing
// HTTP/1.1 one), `Connection: Transfer-Encoding` with chunked (condure quirk,
// grip-reference.md §11.4), Content-Length, Transfer-Encoding.
func appendFraming(dst []byte, rh respHead, proto11 bool, code int64) []byte {
	switch {
	case rh.persistent && !proto11:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	case !rh.persistent && proto11:
		dst = append(dst, "Connection: close\r\n"...)
	}
	if rh.framing == frameChunked {
		dst = append(dst, "Connection: Transfer-Encoding\r\n"...)
	}
	noBodyCode := code/100 == 1 || code == 204 || code == 304
	if rh.length >= 0 && !noBodyCode {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, rh.length, 10)
		dst = append(dst, "\r\n"...)
	}
	if rh.framing == frameChunked {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return dst
}

// appendError encodes a complete text/plain response generated by us.
func appendError(dst []byte, proto11 bool, code int, body string, persistent bool) []byte {
	dst = appendStatusLine(dst, proto11, code, http.StatusText(code))
	dst = append(dst, "Content-Type: text/plain\r\n"...)
	rh := respHead{framing: frameLength, length: int64(len(body)), persistent: persistent}
	dst = appendFraming(dst, rh, proto11, int64(code))
	dst = append(dst, "\r\n"...)
	return append(dst, body...)
}

// appendChunkHeader writes the size line of one chunk.
func appendChunkHeader(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 16)
	return append(dst, "\r\n"...)
}

var (
	crlf         = []byte("\r\n")
	lastChunk    = []byte("0\r\n\r\n")
	continue100  = []byte("HTTP/1.1 100 Continue\r\n\r\n")
	upgradeValue = []byte("websocket")
)

// isWebSocket reports an `Upgrade: websocket` request (condure's test).
func isWebSocket(hs []zhttp.Header) bool {
	for _, h := range hs {
		if len(h.Name) == 7 && strings.EqualFold(h.Name, "Upgrade") && bytes.EqualFold([]byte(h.Value), upgradeValue) {
			return true
		}
	}
	return false
}
