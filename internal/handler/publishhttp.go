package handler

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/grip"
)

// HTTP publish API budgets (ours; Pushpin's simple server has no timeouts).
const (
	// httpReadHeaderTimeout bounds reading a request's header block.
	httpReadHeaderTimeout = 10 * time.Second
	// httpReadTimeout bounds reading a whole request, body included (a
	// 1 MB body at 35 KB/s).
	httpReadTimeout = 30 * time.Second
	// httpWriteTimeout bounds writing a reply.
	httpWriteTimeout = 30 * time.Second
	// httpIdleTimeout closes keep-alive connections idle this long.
	httpIdleTimeout = 60 * time.Second
	// publishWaitMax bounds how long a POST /publish waits for the engine
	// to take its items (backpressure: a client is behind, engine.go);
	// beyond it the request is refused with 503.
	publishWaitMax = 20 * time.Second
	// httpShutdownGrace is how long Run lets in-flight requests finish
	// once ctx is done before it closes their connections.
	httpShutdownGrace = 2 * time.Second
)

// Reply texts of the HTTP publish API, exactly as Pushpin 1.36 sends them
// (grip-reference §4.2, checked with curl against 1.36).
const (
	textAPI            = "Pushpin API\n"
	textPublished      = "Published\n"
	jsonPublished      = `{"message":"Published"}` + "\n"
	textUpdated        = "Updated\n"
	jsonUpdated        = `{"message":"Updated"}` + "\n"
	textNotFound       = "Not Found\n"
	textNotAcceptable  = "Not Acceptable. Supported formats are text/plain and application/json.\n"
	textHeaderTooLarge = "Request header too large.\n"
	textBodyTooLarge   = "Request body too large.\n"
	textLengthRequired = "Request requires Content-Length.\n"
	// textQueueFull is ours: Pushpin has no bounded publish queue.
	textQueueFull = "Publish queue full, try again later.\n"
	// textInternal is ours, for an engine error other than ErrQueueFull.
	textInternal = "Internal error.\n"

	contentText = "text/plain"
	contentJSON = "application/json"
)

// httpInput is the HTTP publish API (POST /publish, POST /recover) on
// push_in_http_addr:push_in_http_port.
type httpInput struct {
	cfg  InputsConfig
	api  engineAPI
	log  zerolog.Logger
	ln   net.Listener
	srv  *http.Server
	full *rateLog // ErrQueueFull warnings
}

var _ http.Handler = (*httpInput)(nil)

// newHTTPInput listens on cfg.HTTPListenAddr() (port 0 picks one; Addr
// reports it) and returns the API ready to Run. The listener is open when it
// returns, so a busy port is reported here.
func newHTTPInput(cfg InputsConfig, api engineAPI, log zerolog.Logger) (*httpInput, error) {
	if !cfg.HTTPEnabled {
		return nil, errors.New("publish api: push_in_http_port is not set")
	}
	if cfg.MaxHeadersSize <= 0 {
		cfg.MaxHeadersSize = DefaultMaxHeadersSize
	}
	if cfg.MaxBodySize <= 0 {
		cfg.MaxBodySize = DefaultMaxBodySize
	}
	ln, err := net.Listen("tcp", cfg.HTTPListenAddr())
	if err != nil {
		return nil, fmt.Errorf("publish api: listen: %w", err)
	}
	log = log.With().Str("input", "http").Logger()
	h := &httpInput{cfg: cfg, api: api, log: log, ln: ln, full: newRateLog(log, rateLogInterval)}
	h.srv = &http.Server{
		Handler: h,
		// Go reads up to MaxHeaderBytes plus 4 KiB of slack before it
		// answers 431 itself; ServeHTTP applies the exact limit with
		// Pushpin's text.
		MaxHeaderBytes:    cfg.MaxHeadersSize,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		ErrorLog:          stdlog.New(serverErrorLog{log}, "", 0),
	}
	return h, nil
}

// Addr is the address the API listens on.
func (h *httpInput) Addr() net.Addr { return h.ln.Addr() }

// Run serves until ctx is done, then gives in-flight requests
// httpShutdownGrace and closes every connection before returning.
func (h *httpInput) Run(ctx context.Context) error {
	addr := h.ln.Addr().String()
	h.log.Info().Str("addr", addr).Msgf("publish api listening on %s", addr)
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("publish api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), httpShutdownGrace)
	defer cancel()
	if err := h.srv.Shutdown(sctx); err != nil {
		h.log.Warn().Err(err).Msg("publish api: shutdown grace expired, closing connections")
		_ = h.srv.Close() // the error is Shutdown's, already logged
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("publish api: serve: %w", err)
	}
	return nil
}

// serverErrorLog sends net/http's own complaints (accept errors, panics in
// handlers) to the component logger.
type serverErrorLog struct{ log zerolog.Logger }

func (l serverErrorLog) Write(p []byte) (int, error) {
	l.log.Warn().Str("error", strings.TrimSpace(string(p))).Msg("publish api server error")
	return len(p), nil
}

// close releases the listener of an API that was never run.
func (h *httpInput) close() { _ = h.ln.Close() }

// ServeHTTP answers one request the way Pushpin's control server does:
// transport checks first (header size, Content-Length), then Accept
// negotiation, then routing on the raw request target.
func (h *httpInput) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	code, body := h.serve(w, r)
	if e := h.log.Debug(); e.Enabled() {
		e.Str("method", r.Method).Str("uri", r.RequestURI).Int("code", code).Int("bytes", len(body)).
			Str("peer", r.RemoteAddr).Msg("publish api request")
	}
}

// serve writes the reply and returns its status and body for the log.
func (h *httpInput) serve(w http.ResponseWriter, r *http.Request) (int, string) {
	if headerBlockSize(r) > h.cfg.MaxHeadersSize {
		return writeReply(w, http.StatusBadRequest, textHeaderTooLarge, contentText, true)
	}
	_, hasLength := r.Header["Content-Length"]
	if !hasLength && (len(r.TransferEncoding) > 0 || !bodylessMethod(r.Method)) {
		return writeReply(w, http.StatusLengthRequired, textLengthRequired, contentText, true)
	}
	if r.ContentLength > int64(h.cfg.MaxBodySize) {
		return writeReply(w, http.StatusBadRequest, textBodyTooLarge, contentText, true)
	}
	asJSON, ok := negotiate(r.Header.Values("Accept"))
	if !ok {
		return writeReply(w, http.StatusNotAcceptable, textNotAcceptable, contentText, false)
	}
	switch routePath(r.RequestURI) {
	case "/":
		return writeReply(w, http.StatusOK, textAPI, contentText, false)
	case "/publish":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, r.Method)
		}
		return h.publish(w, r, asJSON)
	case "/recover":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, r.Method)
		}
		if err := h.api.Recover(); err != nil {
			return h.engineError(w, err)
		}
		if asJSON {
			return writeReply(w, http.StatusOK, jsonUpdated, contentJSON, false)
		}
		return writeReply(w, http.StatusOK, textUpdated, contentText, false)
	}
	return writeReply(w, http.StatusNotFound, textNotFound, contentText, false)
}

// publish parses a POST /publish body and queues its items. The reply goes
// out before delivery (quirk 21): 200 means queued, not delivered; it waits
// up to publishWaitMax while the engine holds publishes back.
func (h *httpInput) publish(w http.ResponseWriter, r *http.Request, asJSON bool) (int, string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.cfg.MaxBodySize)))
	if err != nil {
		// A short body (client gone or read timeout); nobody is left to
		// read a reply, but answer in case the peer only half-closed.
		return writeReply(w, http.StatusBadRequest, "Failed to read request body.\n", contentText, true)
	}
	items, err := grip.ParseItems(body)
	if err != nil {
		// The error text is Pushpin's reply body without its newline.
		return writeReply(w, http.StatusBadRequest, err.Error()+"\n", contentText, false)
	}
	if len(items) > 0 {
		// Waits while held streams are behind: publishers are paced by
		// the clients instead of items being dropped.
		ctx, cancel := context.WithTimeout(r.Context(), publishWaitMax)
		err := h.api.PublishWait(ctx, items)
		cancel()
		if err != nil {
			return h.engineError(w, err)
		}
	}
	if e := h.log.Debug(); e.Enabled() {
		e.Int("items", len(items)).Msg("published over http")
	}
	if asJSON {
		return writeReply(w, http.StatusOK, jsonPublished, contentJSON, false)
	}
	return writeReply(w, http.StatusOK, textPublished, contentText, false)
}

// engineError answers an error from the engine: 503 when its queue is full.
func (h *httpInput) engineError(w http.ResponseWriter, err error) (int, string) {
	if errors.Is(err, ErrQueueFull) {
		h.full.Warn(time.Now()).Msg("publish queue full, request refused with 503")
		w.Header().Set("Retry-After", "1")
		return writeReply(w, http.StatusServiceUnavailable, textQueueFull, contentText, false)
	}
	h.log.Error().Err(err).Msg("publish api: engine error")
	return writeReply(w, http.StatusInternalServerError, textInternal, contentText, false)
}

func methodNotAllowed(w http.ResponseWriter, method string) (int, string) {
	w.Header().Set("Allow", http.MethodPost)
	return writeReply(w, http.StatusMethodNotAllowed, "Method not allowed: "+method+".\n", contentText, false)
}

// writeReply writes a complete response with an explicit Content-Length.
// closeConn marks replies after which the rest of the request cannot be
// trusted (unread body, bad framing): the connection is closed, as Pushpin
// closes every one.
func writeReply(w http.ResponseWriter, code int, body, ctype string, closeConn bool) (int, string) {
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	if closeConn {
		hd.Set("Connection", "close")
	}
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body) // a write error means the client left
	return code, body
}

// bodylessMethod lists the methods Pushpin lets through without a
// Content-Length (when no Transfer-Encoding is present either).
func bodylessMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

// routePath is the path Pushpin routes on: the raw request target with one
// trailing '/' removed (but "/" kept). A query string, fragment or
// absolute-form target is kept too, so it matches nothing (quirk 14).
func routePath(target string) string {
	if len(target) > 1 && strings.HasSuffix(target, "/") {
		return target[:len(target)-1]
	}
	return target
}

// negotiate picks the reply format from the Accept header(s), as Pushpin
// does: no header means text; otherwise the last listed type it knows wins
// (q-values and other parameters are ignored, matching is case-sensitive)
// and none known means 406.
func negotiate(accept []string) (asJSON, ok bool) {
	if accept == nil {
		return false, true
	}
	for _, h := range accept {
		for _, t := range strings.Split(h, ",") {
			if i := strings.IndexByte(t, ';'); i >= 0 {
				t = t[:i]
			}
			switch strings.TrimSpace(t) {
			case "text/plain", "text/*", "*/*", "*":
				asJSON, ok = false, true
			case "application/json", "application/*":
				asJSON, ok = true, true
			}
		}
	}
	return asJSON, ok
}

// headerBlockSize estimates the size of the request's header block as
// received (request line, header lines, blank line). net/http keeps no raw
// copy, so whitespace around values and a folded or duplicated Host are not
// counted exactly; the estimate is within a few bytes for ordinary clients.
func headerBlockSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + 2
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + 2 + len(v) + 2
		}
	}
	if len(r.TransferEncoding) > 0 {
		n += len("Transfer-Encoding: ") + len(strings.Join(r.TransferEncoding, ", ")) + 2
	}
	return n + 2
}
