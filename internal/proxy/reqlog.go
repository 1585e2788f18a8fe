package proxy

import (
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/internal/routes"
	"tack/pkg/zhttp"
)

// Request log lines (grip-reference §10; Pushpin src/corelib/logutil.cpp
// logRequest): one Info line per finished client request,
//
//	<METHOD> <uri>[ -> <target>][ from=<addr>][ ref=<referer>][ route=<id>] (code=<code> <bytes>|accept|error)[ retry][ ua=<agent>][ #<channel>=<last-id>...]
//
// printed alone in text output (Pushpin's parsers keep working); JSON
// output (--log-format json) carries the same line as its message and the
// parts as fields. A route's log_level (1.41) overrides the process level
// for its lines: below 2 (info) hides them, 2 or more shows them.

// Request outcomes in the log.
const (
	statusResponse = "response"
	statusAccept   = "accept"
	statusError    = "error"
)

// requestLog is what one request line says.
type requestLog struct {
	method, uri string
	target      string // "" when the request never reached a target
	from        string // with log_from
	referer     string
	route       string // explicit route id only
	status      string
	code        int64
	bytes       int64
	retry       bool
	userAgent   string // with log_user_agent
	lastIDs     []grip.LastID
}

// line renders rl as pushpin-proxy 1.36 does.
func (rl *requestLog) line() string {
	var b strings.Builder
	b.WriteString(rl.method)
	b.WriteByte(' ')
	b.WriteString(rl.uri)
	if rl.target != "" {
		b.WriteString(" -> ")
		b.WriteString(rl.target)
	}
	if rl.from != "" {
		b.WriteString(" from=")
		b.WriteString(rl.from)
	}
	if rl.referer != "" {
		b.WriteString(" ref=")
		b.WriteString(rl.referer)
	}
	if rl.route != "" {
		b.WriteString(" route=")
		b.WriteString(rl.route)
	}
	switch rl.status {
	case statusResponse:
		b.WriteString(" code=")
		b.WriteString(strconv.FormatInt(rl.code, 10))
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(rl.bytes, 10))
	case statusAccept:
		b.WriteString(" accept")
	default:
		b.WriteString(" error")
	}
	if rl.retry {
		b.WriteString(" retry")
	}
	if rl.userAgent != "" {
		b.WriteString(" ua=")
		b.WriteString(rl.userAgent)
	}
	for _, l := range rl.lastIDs {
		b.WriteString(" #")
		b.WriteString(l.Channel)
		b.WriteByte('=')
		b.WriteString(l.ID)
	}
	return b.String()
}

// logTarget names a target as Pushpin's targetToString does (no brackets
// around an IPv6 host).
func logTarget(t *routes.Target) string {
	switch t.Kind {
	case routes.TargetTest:
		return "test"
	case routes.TargetZHTTP:
		return "zhttp/" + t.Spec
	case routes.TargetZHTTPReq:
		return "zhttpreq/" + t.Spec
	}
	return t.Host + ":" + strconv.Itoa(t.Port)
}

// requestLogger is the logger for s's request line, or ok=false when its
// route's log_level hides it.
func (e *engine) requestLogger(s *session) (zerolog.Logger, bool) {
	if s.route == nil || s.route.LogLevel == nil {
		return e.log, true
	}
	if *s.route.LogLevel < logging.LevelInfo {
		return e.log, false
	}
	if e.log.GetLevel() > zerolog.InfoLevel {
		return e.log.Level(zerolog.InfoLevel), true
	}
	return e.log, true
}

// logFirst returns a copy of a session's first packet holding only what
// logRequest reads (method, URI and the headers it logs), for a session
// that outlives its request (an open WebSocket): the copy does not keep
// the received frame and the other headers.
func logFirst(p *zhttp.Packet) *zhttp.Packet {
	q := zhttp.New()
	q.Method, q.URI = strings.Clone(p.Method), strings.Clone(p.URI)
	for _, h := range p.Headers {
		if strings.EqualFold(h.Name, "Referer") || strings.EqualFold(h.Name, "User-Agent") || strings.EqualFold(h.Name, "Grip-Last") {
			q.Headers = append(q.Headers, zhttp.Header{Name: strings.Clone(h.Name), Value: strings.Clone(h.Value)})
		}
	}
	return q
}

// logRequest writes the request line of a finished session; outcome is
// finish's ("" = the response went out whole).
func (e *engine) logRequest(s *session, outcome string) {
	if s.side == sideIntreq {
		// Pushpin logs no request line for the handler's own requests.
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Bool("intreq", true).Str(logging.FieldRID, string(s.in.ID)).Str("method", s.method).
				Str("uri", s.first.URI).Str("result", outcome).Int64("code", s.code).Msg("request")
		}
		return
	}
	log, ok := e.requestLogger(s)
	if !ok {
		return
	}
	ev := log.Info()
	if !ev.Enabled() {
		return
	}
	rl := requestLog{method: s.method, uri: s.first.URI, retry: s.isRetry, code: s.code, bytes: s.respBytes}
	if s.route != nil && len(s.targets) > 0 {
		// The request got as far as its targets: name the last one tried.
		rl.target = logTarget(&s.targets[min(s.ti, len(s.targets)-1)])
	}
	switch {
	case outcome == outcomeAccept:
		rl.status = statusAccept
	case outcome == "" && s.code > 0:
		rl.status = statusResponse
	default:
		rl.status = statusError
	}
	if e.cfg.LogFrom {
		rl.from = s.ci.peer
	}
	if ref, ok := s.first.Header("Referer"); ok {
		rl.referer = ref
	}
	if s.route != nil && s.route.IDExplicit {
		rl.route = s.route.ID
	}
	if e.cfg.LogUserAgent {
		rl.userAgent, _ = s.first.Header("User-Agent")
	}
	rl.lastIDs = grip.RequestLastIDs(toGripHeaders(s.first.Headers))
	ev = ev.Str(logging.FieldKind, logging.KindRequest).Str(logging.FieldRID, string(s.in.ID)).
		Str("method", rl.method).Str("uri", rl.uri).Str("status", rl.status)
	if rl.target != "" {
		ev = ev.Str("target", rl.target)
	}
	if rl.route != "" {
		ev = ev.Str(logging.FieldRoute, rl.route)
	}
	if rl.status == statusResponse {
		ev = ev.Int64("code", rl.code).Int64("bytes", rl.bytes)
	}
	if outcome != "" && outcome != outcomeAccept {
		ev = ev.Str("reason", outcome)
	}
	if s.ci.peer != "" {
		ev = ev.Str(logging.FieldPeer, s.ci.peer)
	}
	ev.Bool("retry", rl.retry).Float64("duration_ms", float64(e.cfg.Now().Sub(s.started))/float64(time.Millisecond)).Msg(rl.line())
}
