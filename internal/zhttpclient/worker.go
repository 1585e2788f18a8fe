package zhttpclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// Request limits.
const (
	// MaxRedirects is how many redirects follow-redirects follows (zurl: 8).
	MaxRedirects = 8
	// MaxBufferedBody bounds a response collected into one packet (stream
	// off or req mode) when the request sets no smaller max-size; zurl has
	// no bound.
	MaxBufferedBody = 64 << 20
)

// worker performs one outbound HTTP exchange in its own goroutine and
// reports to the engine through events. It shares with the engine only the
// goroutine-safe window, pipe and cancel func.
type worker struct {
	h      uint64
	svc    *Service
	events chan<- event
	wg     *sync.WaitGroup
	log    *zerolog.Logger // the engine's: a copy would cost every session

	req    *zhttp.Packet // nil once a WebSocket is open (wsOpen)
	rid    []byte        // the request's id, for logs
	u      *url.URL      // nil once a WebSocket is open
	stream bool          // stream the response over several packets
	quiet  bool          // fire and forget: read and discard

	win    *window   // response credits (stream only)
	pipe   *bodyPipe // streamed request body; nil when the body came whole
	wsq    *wsQueue  // WebSocket session: the client's frames; nil for HTTP
	wsRead wsReadState
	ctx    context.Context
	cancel context.CancelCauseFunc // stop also closes an open WebSocket
	wsc    atomic.Pointer[wsConn]  // the open WebSocket connection; nil otherwise
	// dialCancel cancels the WebSocket handshake in progress; nil otherwise.
	dialCancel atomic.Pointer[context.CancelFunc]
	last       atomic.Int64 // unix nanos of the last HTTP activity
}

func newWorker(e *engine, s *session, p *zhttp.Packet, u *url.URL) *worker {
	w := &worker{
		h: s.h, svc: e.s, events: e.events, wg: &e.wg, log: &e.log,
		req: p, rid: p.ID, u: u,
		stream: s.mode == modeStream && p.Stream,
		quiet:  s.mode == modeQuiet,
	}
	credits := max(p.Credits, 0)
	w.win = newWindow(credits)
	switch {
	case s.ws:
		w.wsq = newWSQueue(w.consumed)
	case p.More:
		w.pipe = newBodyPipe(w.consumed, w.touch)
	}
	// The parent is a context that is never cancelled by itself: the engine
	// cancels each worker explicitly (and all of them on shutdown), so that
	// the final event can still be delivered after the cancel.
	w.ctx, w.cancel = context.WithCancelCause(context.Background())
	w.touch() // before the engine's next tick can look at it
	return w
}

// stop cancels the worker with cause, and its WebSocket handshake or
// closes its open WebSocket connection, which ends a read or wakes a
// parked connection.
func (w *worker) stop(cause error) {
	w.cancel(cause)
	if cancel := w.dialCancel.Load(); cancel != nil {
		(*cancel)()
	}
	if c := w.wsc.Load(); c != nil {
		c.close()
	}
}

// touch records HTTP activity for the activity timeout.
func (w *worker) touch() { w.last.Store(time.Now().UnixNano()) }

// consumed tells the engine that the pipe was read (called from net/http's
// write loop goroutine).
func (w *worker) consumed() {
	select {
	case w.events <- event{h: w.h, kind: evConsumed}:
	case <-w.ctx.Done():
	}
}

// run is the worker goroutine; runCtx is the service's context.
func (w *worker) run(runCtx context.Context) {
	stopTimers := w.armTimers()
	if w.wsq != nil {
		c, ev := w.wsOpen()
		if c == nil {
			w.end(runCtx, ev, stopTimers)
			return
		}
		// The session goes on in a fresh goroutine and this one exits, so
		// that the stack grown by dialing and the handshake is not held
		// for the WebSocket's life; an idle session holds no goroutine
		// (wsparker.go).
		serve := func() { w.wsServe(runCtx, c, stopTimers) }
		if c.in.park != nil {
			c.in.park.resume = func() { go serve() }
		}
		go serve()
		return
	}
	var stopPipe func() bool
	if w.pipe != nil {
		pipe := w.pipe
		stopPipe = context.AfterFunc(w.ctx, func() { pipe.abort(context.Cause(w.ctx)) })
	}
	ev := w.exchange()
	if stopPipe != nil {
		stopPipe()
	}
	w.end(runCtx, ev, stopTimers)
}

// end sends the worker's final event and releases the worker.
func (w *worker) end(runCtx context.Context, ev event, stopTimers func()) {
	defer w.wg.Done()
	defer w.cancel(ErrCanceled)
	defer stopTimers()
	ev.h, ev.final = w.h, true
	select {
	case w.events <- ev:
	case <-runCtx.Done():
		w.svc.pool.put(ev.buf)
	}
}

// armTimers starts the request timeout (`timeout`, ms), which cancels
// with ErrSessionTimeout. The activity timeout (config `timeout`) is checked
// by the engine's tick against last, which saves a timer per request.
func (w *worker) armTimers() func() {
	if w.req.Timeout <= 0 {
		return func() {}
	}
	t := time.AfterFunc(time.Duration(w.req.Timeout)*time.Millisecond, func() { w.stop(ErrSessionTimeout) })
	return func() { t.Stop() }
}

// idleFor reports how long the exchange has seen no HTTP activity.
func (w *worker) idleFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, w.last.Load()))
}

// emit sends a non-final event; false when the worker was cancelled.
func (w *worker) emit(ev event) bool {
	ev.h = w.h
	select {
	case w.events <- ev:
		return true
	case <-w.ctx.Done():
		w.svc.pool.put(ev.buf)
		return false
	}
}

func (w *worker) fail(err error) event {
	cond := w.classify(err)
	// An open WebSocket (w.req and w.u nil) has no TLS handshake left to
	// fail.
	if cond == zhttp.CondTLSError && w.req != nil {
		// A certificate the backend's clients cannot verify is a setup
		// problem worth seeing at the default level (the client only
		// gets Pushpin's generic 502).
		host := w.u.Host
		if w.req.ConnectHost != "" {
			port := defaultPort(w.u)
			if w.req.ConnectPort > 0 {
				port = strconv.FormatInt(w.req.ConnectPort, 10)
			}
			host = net.JoinHostPort(w.req.ConnectHost, port)
		}
		w.log.Warn().Err(err).Str(logging.FieldRID, string(w.rid)).Str("connect", host).
			Str("condition", cond).Msg("TLS to the backend failed (target option insecure skips verification)")
	} else if cond != "" {
		if le := w.log.Debug(); le.Enabled() {
			le.Err(err).Str(logging.FieldRID, string(w.rid)).Str("condition", cond).Msg("request failed")
		}
	}
	return event{kind: evError, cond: cond}
}

// exchange does the request and returns the final event.
func (w *worker) exchange() event {
	ctx := w.ctx
	req, deferBody := w.build(ctx)
	if deferBody {
		// zurl starts GET/HEAD/OPTIONS/DELETE with a streamed body only once
		// it knows whether a body really follows, to avoid a needless
		// chunked body; a HEAD with a body is refused.
		has, err := w.pipe.waitFirst(ctx)
		if err != nil {
			return w.fail(err)
		}
		if has && req.Method == http.MethodHead {
			return w.fail(ErrBodyNotAllowed)
		}
		if !has {
			req.Body, req.ContentLength = nil, 0
		}
	}
	resp, err := w.roundTrip(req)
	if err != nil {
		return w.fail(err)
	}
	defer resp.Body.Close()
	w.touch()
	head := makeHead(resp)
	noBody := req.Method == http.MethodHead || resp.Body == http.NoBody || resp.ContentLength == 0
	maxSize := w.req.MaxSize
	if maxSize >= 0 && resp.ContentLength > maxSize {
		return event{kind: evError, cond: zhttp.CondMaxSizeExceeded}
	}
	switch {
	case w.quiet:
		_, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return w.fail(err)
		}
		return event{kind: evData}
	case noBody:
		return event{kind: evData, head: head}
	case !w.stream:
		return w.readWhole(resp, head)
	}
	return w.streamBody(resp, head)
}

// readWhole collects the body for a single-packet response.
func (w *worker) readWhole(resp *http.Response, head *respHead) event {
	limit := int64(MaxBufferedBody)
	if w.req.MaxSize >= 0 && w.req.MaxSize < limit {
		limit = w.req.MaxSize
	}
	if resp.ContentLength > limit {
		return event{kind: evError, cond: zhttp.CondMaxSizeExceeded}
	}
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	n, err := buf.ReadFrom(&activityReader{r: io.LimitReader(resp.Body, limit+1), w: w})
	if err != nil {
		return w.fail(err)
	}
	if n > limit {
		return event{kind: evError, cond: zhttp.CondMaxSizeExceeded}
	}
	return event{kind: evData, head: head, body: buf.Bytes()}
}

type activityReader struct {
	r io.Reader
	w *worker
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.w.touch()
	}
	return n, err
}

// streamBody sends the head and then the body as credits allow, never more
// than granted (zmq-wire.md §2.7).
func (w *worker) streamBody(resp *http.Response, head *respHead) event {
	ctx := w.ctx
	bufSize := int64(w.svc.cfg.BufferSize)
	maxSize := w.req.MaxSize
	cl := resp.ContentLength
	// A small body of known length that the credits already cover is sent
	// with the head in one packet: the usual proxied response.
	if cl > 0 && cl <= bufSize && cl <= w.win.available() {
		n, err := w.win.take(ctx, cl)
		if err != nil {
			return w.fail(err)
		}
		buf := w.svc.pool.get(int(n))
		if _, err := io.ReadFull(resp.Body, *buf); err != nil {
			w.svc.pool.put(buf)
			return w.fail(err)
		}
		return event{kind: evData, head: head, body: *buf, buf: buf}
	}
	if !w.emit(event{kind: evData, head: head, more: true}) {
		return w.fail(context.Cause(ctx))
	}
	readSize := min(int64(InitialReadSize), bufSize)
	var total int64
	for {
		n, err := w.win.take(ctx, readSize)
		if err != nil {
			return w.fail(err)
		}
		buf := w.svc.pool.get(int(n))
		k, rerr := resp.Body.Read(*buf)
		w.win.giveBack(n - int64(k))
		*buf = (*buf)[:k]
		if k > 0 {
			w.touch()
			total += int64(k)
			if maxSize >= 0 && total > maxSize {
				w.svc.pool.put(buf)
				return event{kind: evError, cond: zhttp.CondMaxSizeExceeded}
			}
		}
		// Grow reads while they fill the buffer, shrink when they are small.
		switch {
		case int64(k) == readSize && readSize < bufSize:
			readSize = min(readSize*2, bufSize)
		case int64(k) < readSize/4 && readSize > InitialReadSize:
			readSize /= 2
		}
		if rerr == io.EOF {
			return event{kind: evData, body: *buf, buf: buf}
		}
		if rerr != nil {
			w.svc.pool.put(buf)
			return w.fail(rerr)
		}
		if k == 0 {
			w.svc.pool.put(buf)
			continue
		}
		if !w.emit(event{kind: evData, body: *buf, buf: buf, more: true}) {
			return w.fail(context.Cause(ctx))
		}
	}
}

func makeHead(resp *http.Response) *respHead {
	code := strconv.Itoa(resp.StatusCode)
	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, code))
	keys := make([]string, 0, len(resp.Header))
	n := 0
	for k, vs := range resp.Header {
		keys = append(keys, k)
		n += len(vs)
	}
	sort.Strings(keys)
	hs := make([]zhttp.Header, 0, n)
	for _, k := range keys {
		for _, v := range resp.Header[k] {
			hs = append(hs, zhttp.Header{Name: k, Value: v})
		}
	}
	return &respHead{code: int64(resp.StatusCode), reason: reason, headers: hs}
}

// Request headers that only concern the hop to the backend: zurl drops
// them (net/http frames the body itself) and so do we. Unlike zurl we keep
// a request Content-Encoding, which describes the body we forward.
func dropRequestHeader(lower string) bool {
	switch lower {
	case "host", "connection", "keep-alive", "accept-encoding", "transfer-encoding", "expect", "content-length":
		return true
	}
	return false
}

// build turns the zhttp request into an http.Request. deferBody reports a
// bodyless-method request whose streamed body may turn out empty.
func (w *worker) build(ctx context.Context) (*http.Request, bool) {
	p := w.req
	h := make(http.Header, len(p.Headers)+1)
	contentLength := int64(-1)
	for _, hd := range p.Headers {
		lower := strings.ToLower(hd.Name)
		if dropRequestHeader(lower) {
			if lower == "content-length" {
				if n, err := strconv.ParseInt(strings.TrimSpace(hd.Value), 10, 64); err == nil && n >= 0 {
					contentLength = n
				}
			}
			continue
		}
		name := hd.Name // sent with the client's spelling
		if lower == "user-agent" {
			name = "User-Agent" // net/http looks it up canonically
		}
		h[name] = append(h[name], hd.Value)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // net/http would add its own; curl adds none
	}
	u := *w.u
	req := (&http.Request{
		Method:     p.Method,
		URL:        &u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       hostHeader(w.u),
	}).WithContext(ctx)
	deferBody := false
	switch {
	case p.More:
		req.Body = w.pipe
		req.ContentLength = contentLength
		if contentLength == 0 {
			req.Body = http.NoBody
		}
		switch p.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete:
			deferBody = len(p.Body) == 0 && (contentLength < 0 || p.Method == http.MethodHead)
		}
	case len(p.Body) > 0:
		body := p.Body
		if contentLength < 0 {
			contentLength = int64(len(body)) // zurl adds Content-Length
		}
		req.ContentLength = contentLength
		req.Body = io.NopCloser(bytes.NewReader(body))
		// GetBody lets net/http retry on a pooled connection the backend
		// closed before reading anything.
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		if p.Method == http.MethodHead {
			req.Body, req.GetBody, req.ContentLength = nil, nil, 0
		}
	default:
		req.ContentLength = 0
	}
	return req, deferBody
}

// hostHeader derives Host from the URI as zurl does: the port only when it
// is not the scheme's default.
func hostHeader(u *url.URL) string {
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	port := u.Port()
	def := "80"
	if isSecure(u.Scheme) {
		def = "443"
	}
	if port != "" && port != def {
		return host + ":" + port
	}
	return host
}

func defaultPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if isSecure(u.Scheme) {
		return "443"
	}
	return "80"
}

func (w *worker) roundTrip(req *http.Request) (*http.Response, error) {
	p := w.req
	prof := profileFor(p.ConnectHost, p.ConnectPort, defaultPort(w.u), p.IgnorePolicies, p.IgnoreTLSErrors, p.TrustConnectHost)
	tr := w.svc.ts.get(prof, time.Now())
	if !p.FollowRedirects {
		return tr.RoundTrip(req)
	}
	c := &http.Client{Transport: tr, CheckRedirect: func(next *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return ErrTooManyRedirects
		}
		if !p.IgnorePolicies && !w.svc.policy.Allowed(next.URL.Hostname()) {
			return ErrPolicy
		}
		return nil
	}}
	return c.Do(req)
}

// classify maps an exchange error to a zhttp condition (zmq-wire.md §2.13,
// zurl's req_error). "" means the engine ended the session itself and no
// packet is due.
func (w *worker) classify(err error) string {
	if cause := context.Cause(w.ctx); cause != nil {
		if errors.Is(cause, ErrSessionTimeout) {
			return zhttp.CondSessionTimeout
		}
		return ""
	}
	var de *dialError
	var ne net.Error
	var cve *tls.CertificateVerificationError
	var rhe tls.RecordHeaderError
	var ae tls.AlertError
	var uae x509.UnknownAuthorityError
	var he x509.HostnameError
	var ie x509.CertificateInvalidError
	switch {
	case errors.Is(err, ErrPolicy):
		return zhttp.CondPolicyViolation
	case errors.Is(err, ErrTooManyRedirects):
		return "too-many-redirects"
	case errors.Is(err, ErrBodyNotAllowed):
		return "content-not-allowed"
	case errors.As(err, &de):
		if errors.As(de.err, &ne) && ne.Timeout() {
			return zhttp.CondConnectionTimeout
		}
		return zhttp.CondRemoteConnectionFailed
	case errors.As(err, &cve), errors.As(err, &rhe), errors.As(err, &ae),
		errors.As(err, &uae), errors.As(err, &he), errors.As(err, &ie):
		return zhttp.CondTLSError
	case errors.As(err, &ne) && ne.Timeout():
		return zhttp.CondConnectionTimeout // includes the TLS handshake timeout
	case strings.Contains(err.Error(), "tls: "):
		return zhttp.CondTLSError
	}
	return zhttp.CondUndefined
}
