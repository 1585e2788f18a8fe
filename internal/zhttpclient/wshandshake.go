package zhttpclient

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"tack/pkg/zhttp"
)

// WebSocket handshake limits.
const (
	// WSHandshakeTimeout bounds connecting plus the opening handshake
	// (→ connection-timeout).
	WSHandshakeTimeout = 30 * time.Second
	// MaxHandshakeHead bounds the backend's response head.
	MaxHandshakeHead = 64 << 10
	// MaxHandshakeHeaders bounds the number of response header lines.
	MaxHandshakeHeaders = 256
	// WSReadBuffer is the backend connection's read buffer.
	WSReadBuffer = 8 << 10
)

// ErrRejectionTooLarge reports a rejection body larger than buffer_size.
var ErrRejectionTooLarge = errors.New("websocket rejection body too large")

// ErrBadHandshake reports a backend answer that is not HTTP or a 101 with
// a wrong Sec-WebSocket-Accept.
var ErrBadHandshake = errors.New("bad websocket handshake response")

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Request headers the client side of the hop owns: the handshake's own
// headers are generated here (as zurl generates its own key), hop-by-hop
// headers are dropped, and Host is derived from the URI.
func dropWSRequestHeader(lower string) bool {
	switch lower {
	case "host", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version", "sec-websocket-accept",
		"content-length", "transfer-encoding", "keep-alive", "te", "trailer", "proxy-connection":
		return true
	}
	return false
}

// filterExtensions removes the compression extensions from an offer: their
// frames (RSV1) cannot be relayed as zhttp messages, which carry plain
// payloads. Other extensions (e.g. Pushpin's `grip`) pass.
func filterExtensions(v string) string {
	var keep []string
	for _, e := range strings.Split(v, ",") {
		name, _, _ := strings.Cut(e, ";")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "", "permessage-deflate", "x-webkit-deflate-frame", "deflate-frame":
			continue
		}
		keep = append(keep, strings.TrimSpace(e))
	}
	return strings.Join(keep, ", ")
}

// wsConn is an established backend WebSocket connection.
type wsConn struct {
	conn net.Conn
	in   *wsIn
	head *respHead // the backend's 101, headers as received; nil once sent
}

// wsRejection is a non-101 answer to the opening handshake.
type wsRejection struct {
	head *respHead
	body []byte
}

// wsDial connects to the backend and performs the opening handshake. It
// returns the connection on 101, or the rejection.
func (w *worker) wsDial() (*wsConn, *wsRejection, error) {
	p := w.req
	u := w.u
	secure := isSecure(u.Scheme)
	prof := profileFor(p.ConnectHost, p.ConnectPort, defaultPort(u), p.IgnorePolicies, p.IgnoreTLSErrors, p.TrustConnectHost)
	// The handshake's context is not a child of w.ctx, which would keep a
	// table of children for the session's life: stop cancels it.
	ctx, cancel := context.WithTimeout(context.Background(), WSHandshakeTimeout)
	defer cancel()
	w.dialCancel.Store(&cancel)
	defer w.dialCancel.Store(nil)
	if w.ctx.Err() != nil {
		return nil, nil, context.Cause(w.ctx)
	}
	conn, err := w.svc.ts.dialer(prof)(ctx, "tcp", net.JoinHostPort(u.Hostname(), defaultPort(u)))
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// The handshake below reads and writes the conn directly; the context
	// bounds it through the deadline and an early close.
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if secure {
		cfg := w.svc.ts.tlsConfig(prof).Clone()
		cfg.ServerName = u.Hostname()
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, nil, err
		}
		conn = tc
	}
	var keyRaw [16]byte
	_, _ = rand.Read(keyRaw[:])
	key := base64.StdEncoding.EncodeToString(keyRaw[:])

	var b strings.Builder
	target := u.RequestURI()
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n", target, hostHeader(u), key)
	for _, h := range p.Headers {
		lower := strings.ToLower(h.Name)
		if dropWSRequestHeader(lower) || strings.ContainsAny(h.Name, "\r\n:") || strings.ContainsAny(h.Value, "\r\n") {
			continue
		}
		v := h.Value
		if lower == "sec-websocket-extensions" {
			if v = filterExtensions(v); v == "" {
				continue
			}
		}
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, nil, err
	}

	lr := &io.LimitedReader{R: conn, N: MaxHandshakeHead}
	br := w.svc.getWSReader(lr)
	defer func() {
		if !ok {
			w.svc.putWSReader(br)
		}
	}()
	head, err := readHead(br)
	if err != nil {
		return nil, nil, err
	}
	w.touch()
	if head.code != 101 {
		body, err := w.readRejectBody(br, lr, head)
		if err != nil {
			return nil, nil, err
		}
		return nil, &wsRejection{head: stripFraming(head), body: body}, nil
	}
	if got, _ := headerOf(head.headers, "Sec-WebSocket-Accept"); got != wsAccept(key) {
		return nil, nil, fmt.Errorf("%w: Sec-WebSocket-Accept %q", ErrBadHandshake, got)
	}
	lr.N = math.MaxInt64 // frames from here on
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, nil, err
	}
	stop()
	if ctx.Err() != nil {
		return nil, nil, context.Cause(ctx)
	}
	ok = true
	return &wsConn{conn: conn, in: newWSIn(w.svc, conn, br), head: head}, nil, nil
}

func isSecure(scheme string) bool {
	return strings.EqualFold(scheme, "https") || strings.EqualFold(scheme, "wss")
}

func headerOf(hs []zhttp.Header, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// readHead parses a response status line and header block, keeping header
// names as sent and their order (zurl reports the backend's list as is).
func readHead(br *bufio.Reader) (*respHead, error) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, fmt.Errorf("%w: status line: %w", ErrBadHandshake, err)
	}
	proto, rest, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") {
		return nil, fmt.Errorf("%w: status line %q", ErrBadHandshake, line)
	}
	codeStr, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeStr)
	if err != nil || code < 100 || code > 999 {
		return nil, fmt.Errorf("%w: status line %q", ErrBadHandshake, line)
	}
	head := &respHead{code: int64(code), reason: strings.TrimSpace(reason)}
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return nil, fmt.Errorf("%w: headers: %w", ErrBadHandshake, err)
		}
		if line == "" {
			return head, nil
		}
		if len(head.headers) >= MaxHandshakeHeaders {
			return nil, fmt.Errorf("%w: more than %d headers", ErrBadHandshake, MaxHandshakeHeaders)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: header line %q", ErrBadHandshake, line)
		}
		head.headers = append(head.headers, zhttp.Header{Name: name, Value: strings.TrimSpace(value)})
	}
}

// readRejectBody reads the body of a non-101 answer, framed by its headers,
// up to buffer_size bytes.
func (w *worker) readRejectBody(br *bufio.Reader, lr *io.LimitedReader, head *respHead) ([]byte, error) {
	limit := int64(w.svc.cfg.BufferSize)
	lr.N = limit + MaxHandshakeHead // chunk framing included
	var r io.Reader = br
	te, _ := headerOf(head.headers, "Transfer-Encoding")
	cl, hasCL := headerOf(head.headers, "Content-Length")
	switch {
	case head.code == 204 || head.code == 304 || head.code < 200:
		return nil, nil
	case strings.Contains(strings.ToLower(te), "chunked"):
		r = httputil.NewChunkedReader(br)
	case hasCL:
		n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: Content-Length %q", ErrBadHandshake, cl)
		}
		if n > limit {
			return nil, ErrRejectionTooLarge
		}
		r = io.LimitReader(br, n)
	}
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil && !(errors.Is(err, io.ErrUnexpectedEOF) && !hasCL && te == "") {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, ErrRejectionTooLarge
	}
	return body, nil
}

// stripFraming drops the headers that framed the body on the backend hop:
// the body is relayed decoded.
func stripFraming(h *respHead) *respHead {
	out := h.headers[:0:0]
	for _, hd := range h.headers {
		switch strings.ToLower(hd.Name) {
		case "transfer-encoding", "connection", "keep-alive":
			continue
		}
		out = append(out, hd)
	}
	return &respHead{code: h.code, reason: h.reason, headers: out}
}
