package proxy

// WebSocket-over-HTTP (grip-reference §6.3, route target option
// over_http): the proxy terminates the client's WebSocket and talks to the
// backend with HTTP POSTs of `application/websocket-events`, one in flight
// per connection, events in order. The backend's answers carry events for
// the client (TEXT messages follow the GRIP rules of wsproxy.go when the
// OPEN answer accepted the grip extension), `Set-Meta-*` values sent back
// as `Meta-*`, and `Keep-Alive-Interval`. Pushpin's source:
// src/proxy/websocketoverhttp.cpp, src/proxy/wsproxysession.cpp.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"tack/internal/logging"
	"tack/internal/routes"
	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

const (
	// wohContentType is the media type of event bodies both ways.
	wohContentType = "application/websocket-events"
	// wohResponseMax bounds a backend answer's body (Pushpin: 1 000 000).
	wohResponseMax = 1000000
	// wohPendingMax bounds the client content waiting to be sent
	// (Pushpin: 200 000 bytes).
	wohPendingMax = 200000
	// wohKeepAliveMin is the smallest Keep-Alive-Interval honoured.
	wohKeepAliveMin = 20 * time.Second
	// wohRetries is how often a failed request is retried after OPEN.
	wohRetries = 5
)

// wohEvent is one WebSocket event (grip-reference §6.3).
type wohEvent struct {
	typ     string // OPEN, TEXT, BINARY, PING, PONG, CLOSE, DISCONNECT
	content []byte
	hasBody bool // written with a length (even when empty)
}

// encodeEvents writes events as `TYPE\r\n` or `TYPE <hex len>\r\n<content>\r\n`.
func encodeEvents(evs []wohEvent) []byte {
	var b bytes.Buffer
	for _, ev := range evs {
		b.WriteString(ev.typ)
		if ev.hasBody {
			b.WriteString(" " + strconv.FormatInt(int64(len(ev.content)), 16) + "\r\n")
			b.Write(ev.content)
		}
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// closeEvent is a CLOSE event: 2-byte code and reason, or no content
// without a code.
func closeEvent(code int64, reason []byte) wohEvent {
	ev := wohEvent{typ: "CLOSE"}
	if code >= 0 {
		ev.content = binary.BigEndian.AppendUint16(nil, uint16(code))
		ev.content = append(ev.content, reason...)
		ev.hasBody = true
	}
	return ev
}

var errBadEvents = errors.New("malformed websocket-events body")

// decodeEvents parses an events body; any event may carry content.
func decodeEvents(body []byte) ([]wohEvent, error) {
	var out []wohEvent
	for len(body) > 0 {
		i := bytes.Index(body, []byte("\r\n"))
		if i < 0 {
			return nil, fmt.Errorf("%w: event line without CRLF at offset", errBadEvents)
		}
		line := string(body[:i])
		body = body[i+2:]
		typ, hexLen, hasLen := strings.Cut(line, " ")
		if typ == "" {
			return nil, fmt.Errorf("%w: empty event type", errBadEvents)
		}
		ev := wohEvent{typ: typ}
		if hasLen {
			n, err := strconv.ParseUint(hexLen, 16, 31)
			if err != nil {
				return nil, fmt.Errorf("%w: bad length %q of %s", errBadEvents, hexLen, typ)
			}
			if uint64(len(body)) < n+2 || body[n] != '\r' || body[n+1] != '\n' {
				return nil, fmt.Errorf("%w: %s content truncated", errBadEvents, typ)
			}
			ev.content, ev.hasBody = body[:n:n], true
			body = body[n+2:]
		}
		out = append(out, ev)
	}
	return out, nil
}

// wohState is the WebSocket-over-HTTP state of a session (ws.woh).
type wohState struct {
	target  *routes.Target
	opened  bool // the backend answered OPEN (101 sent to the client)
	pending []wohEvent
	pendLen int    // content bytes in pending
	partial []byte // a client message still arriving in frames
	partTyp string
	// credits connmgr holds: with pendLen+len(partial) they never exceed
	// wohPendingMax, so a message up to that size always completes.
	credits int64

	inFlight  bool
	sent      []wohEvent    // events of the request in flight (resent on retry)
	resp      *zhttp.Packet // head of the answer being received
	respBody  []byte
	retries   int
	retryAt   time.Time // a failed request is sent again then
	refresh   bool      // a poll is due after the request in flight
	closeSent bool      // a CLOSE event went to the backend

	meta      []zhttp.Header // Set-Meta-* values: Name (without prefix), value
	kaEvery   time.Duration  // 0: no keep-alive requests
	lastReqAt time.Time
}

// wohStart begins a WebSocket-over-HTTP connection: the OPEN request.
func (e *engine) wohStart(s *session, t *routes.Target, now time.Time) {
	s.ws.woh = &wohState{target: t}
	s.ws.woh.pending = []wohEvent{{typ: "OPEN"}}
	e.wohSend(s, now)
}

// wohRequest builds the headers of one POST (grip-reference §6.3).
func (e *engine) wohRequest(s *session, body []byte) (string, []zhttp.Header) {
	w := s.ws.woh
	req := e.rewriteRequest(s.first, s.ci, s.route, w.target)
	// Sec-WebSocket-Key and -Version stay, as in Pushpin 1.36.
	hs := removeHeaders(req.headers, "Upgrade", "Connection", "Accept", "Connection-Id", "Content-Length",
		"Content-Type", "Sec-WebSocket-Extensions")
	hs = removePrefixed(hs, "Meta-")
	if !s.route.NoGrip {
		hs = append(hs, zhttp.Header{Name: "Sec-WebSocket-Extensions", Value: "grip"})
	}
	hs = append(hs,
		zhttp.Header{Name: "Accept", Value: wohContentType},
		zhttp.Header{Name: "Connection-Id", Value: s.ws.cid},
		zhttp.Header{Name: "Content-Type", Value: wohContentType},
		zhttp.Header{Name: "Content-Length", Value: strconv.Itoa(len(body))})
	for _, m := range w.meta {
		hs = append(hs, zhttp.Header{Name: "Meta-" + m.Name, Value: m.Value})
	}
	uri := req.uri
	if rest, ok := strings.CutPrefix(uri, "wss:"); ok {
		uri = "https:" + rest
	} else if rest, ok := strings.CutPrefix(uri, "ws:"); ok {
		uri = "http:" + rest
	}
	return uri, hs
}

// wohSend sends the next request if none is in flight and one is due:
// pending events, a refresh, or a keep-alive (forced).
func (e *engine) wohSend(s *session, now time.Time) {
	e.wohSendIf(s, false, now)
}

func (e *engine) wohSendIf(s *session, force bool, now time.Time) {
	ws, w := s.ws, s.ws.woh
	if w.inFlight || !w.retryAt.IsZero() {
		return
	}
	if len(w.pending) == 0 && !w.refresh && !force {
		return
	}
	if ws.cid == "" {
		ws.cid = newUUID()
	}
	n := len(w.pending)
	if w.target.OneEvent && n > 1 {
		n = 1
	}
	w.sent = append([]wohEvent(nil), w.pending[:n]...)
	w.pending = w.pending[n:]
	for _, ev := range w.sent {
		w.pendLen -= len(ev.content)
	}
	w.refresh = false
	e.wohPost(s, now)
	e.wohGrant(s, now)
}

// wohGrant gives connmgr the buffer room its credits do not cover yet
// (batched while content waits).
func (e *engine) wohGrant(s *session, now time.Time) {
	ws, w := s.ws, s.ws.woh
	if !ws.connected || ws.toClient.closeRecv {
		return
	}
	buffered := int64(w.pendLen + len(w.partial))
	room := wohPendingMax - buffered - w.credits
	if room <= 0 || (room < creditBatch && buffered > 0) {
		return
	}
	w.credits += room
	c := zhttp.New()
	c.Type = zhttp.TypeCredit
	c.Credits = room
	e.sendIn(s, c, now)
}

// wohPost sends w.sent as one POST to the zhttp client.
func (e *engine) wohPost(s *session, now time.Time) {
	w := s.ws.woh
	body := encodeEvents(w.sent)
	uri, hs := e.wohRequest(s, body)
	e.openOut(s, now)
	s.ws.outDone = false
	w.inFlight, w.resp, w.respBody = true, nil, nil
	w.lastReqAt = now
	p := zhttp.New()
	p.Method = "POST"
	p.URI = uri
	p.Headers = hs
	p.Body = body
	p.Stream = true
	p.Credits = wohResponseMax + 1
	setConnect(p, w.target)
	s.out.Stamp(p, e.id, true, now)
	select {
	case e.toClient <- zsock.Message{p.Encode()}:
	default:
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("cid", s.ws.cid).Msg("websocket-over-http: zhttp client queue full")
		e.dropOut(s)
		e.wohFailed(s, zhttp.CondRemoteConnectionFailed, now)
	}
}

// wohInPacket handles a frame from connmgr on a connected
// WebSocket-over-HTTP connection (wsInPacket handles the rest).
func (e *engine) wohInPacket(s *session, p *zhttp.Packet, now time.Time) {
	ws, w := s.ws, s.ws.woh
	if p.Credits > 0 {
		e.wsFlushClient(s, now)
	}
	w.credits -= int64(len(p.Body))
	switch p.Type {
	case zhttp.TypeData:
		if w.closeSent || ws.detached {
			e.wohGrant(s, now)
			return
		}
		if w.partial == nil {
			w.partTyp = "TEXT"
			if p.ContentType == "binary" {
				w.partTyp = "BINARY"
			}
			w.partial = []byte{}
		}
		w.partial = append(w.partial, p.Body...)
		if w.pendLen+len(w.partial) > wohPendingMax {
			e.wohFail(s, "connmgr sent beyond its credits", now)
			return
		}
		if p.More {
			if len(w.partial) >= wohPendingMax {
				// RFC 6455 §7.4.1: 1009, a message too big to process.
				e.wohFailCode(s, wsCloseTooBig, "client message does not fit the 200000-byte buffer", now)
				return
			}
			e.wohGrant(s, now)
			return
		}
		e.wohQueue(s, wohEvent{typ: w.partTyp, content: w.partial, hasBody: true})
		w.partial = nil
	case zhttp.TypePing, zhttp.TypePong:
		typ := "PING"
		if p.Type == zhttp.TypePong {
			typ = "PONG"
		}
		if w.closeSent || ws.detached {
			e.wohGrant(s, now)
			return
		}
		e.wohQueue(s, wohEvent{typ: typ, content: p.Body, hasBody: len(p.Body) > 0})
	case zhttp.TypeClose:
		ws.toClient.closeRecv = true
		if ws.toClient.closeSent {
			// Our close (from the backend's CLOSE) is answered: done.
			e.wsMaybeDone(s, now)
			return
		}
		ws.toBackend.closeCode, ws.toBackend.closeReason = p.Code, bytes.Clone(p.Body)
		if w.closeSent || ws.detached {
			e.wsCloseClient(s, p.Code, string(p.Body), now)
			return
		}
		// Partial messages are discarded; the close goes after the rest.
		w.partial = nil
		w.closeSent = true
		e.wohQueue(s, closeEvent(p.Code, p.Body))
	default:
		return
	}
	e.wohSend(s, now)
}

// wohQueue appends a client event and sends it when nothing is in flight.
func (e *engine) wohQueue(s *session, ev wohEvent) {
	w := s.ws.woh
	w.pending = append(w.pending, ev)
	w.pendLen += len(ev.content)
}

// wohDisconnect sends a background DISCONNECT for a client that vanished
// (nothing waits for its answer; an answer finds no session here).
func (e *engine) wohDisconnect(s *session, now time.Time) {
	ws, w := s.ws, s.ws.woh
	if !ws.connected || w.closeSent {
		e.cancelClient(s, now)
		return
	}
	e.cancelClient(s, now)
	w.closeSent = true
	w.sent = []wohEvent{{typ: "DISCONNECT"}}
	e.wohPost(s, now)
	e.dropOut(s)
}

// wohReply handles a packet of the request in flight.
func (e *engine) wohReply(s *session, p *zhttp.Packet, now time.Time) {
	w := s.ws.woh
	switch p.Type {
	case zhttp.TypeKeepAlive, zhttp.TypeCredit:
		return
	case zhttp.TypeError:
		e.dropOut(s)
		e.wohFailed(s, p.Condition, now)
		return
	case zhttp.TypeCancel:
		e.dropOut(s)
		e.wohFailed(s, "cancel", now)
		return
	case zhttp.TypeData:
	default:
		return
	}
	if w.resp == nil {
		if p.Code < 0 {
			e.dropOut(s)
			e.wohFailed(s, "response body before response head", now)
			return
		}
		w.resp = p
	}
	w.respBody = append(w.respBody, p.Body...)
	if len(w.respBody) > wohResponseMax {
		e.cancelClient(s, now)
		e.wohBadResponse(s, "response body over 1000000 bytes", now)
		return
	}
	if p.More {
		return
	}
	e.dropOut(s)
	w.inFlight = false
	w.retries = 0
	e.wohResponse(s, now)
}

// wohResponse applies a complete answer.
func (e *engine) wohResponse(s *session, now time.Time) {
	ws, w := s.ws, s.ws.woh
	resp, body := w.resp, w.respBody
	w.resp, w.respBody = nil, nil
	ctype, _ := headerValue(resp.Headers, "Content-Type")
	if resp.Code != 200 || ctype != wohContentType {
		if !w.opened {
			if len(body) > 100000 {
				body = body[:100000]
			}
			e.wsRejectWith(s, resp.Code, resp.Reason, filterRejectHeaders(resp.Headers), body, now)
			return
		}
		e.wohBadResponse(s, fmt.Sprintf("backend answered %d %q", resp.Code, ctype), now)
		return
	}
	evs, err := decodeEvents(body)
	if err != nil {
		e.wohBadResponse(s, err.Error(), now)
		return
	}
	for _, h := range resp.Headers {
		if len(h.Name) > len("Set-Meta-") && strings.EqualFold(h.Name[:len("Set-Meta-")], "Set-Meta-") {
			e.wohSetMeta(w, h.Name[len("Set-Meta-"):], h.Value)
		}
	}
	if v, ok := headerValue(resp.Headers, "Keep-Alive-Interval"); ok {
		w.kaEvery = 0
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			w.kaEvery = max(time.Duration(n)*time.Second, wohKeepAliveMin)
		}
	}
	if !w.opened {
		if len(evs) == 0 || evs[0].typ != "OPEN" {
			if len(evs) == 0 && w.kaEvery > 0 {
				// The backend enables keep-alives first; OPEN is asked
				// again with the next keep-alive request.
				w.pending = append([]wohEvent{{typ: "OPEN"}}, w.pending...)
				return
			}
			e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("cid", ws.cid).Msg("websocket-over-http: first answer does not start with OPEN")
			e.wsReject(s, 502, "Bad Gateway", textProxyError, "", now)
			return
		}
		evs = evs[1:]
		w.opened = true
		e.wohConnected(s, resp, now)
		if _, live := e.byIn[s.key]; !live {
			return
		}
	}
	closed := false
	for _, ev := range evs {
		switch ev.typ {
		case "TEXT", "BINARY":
			p := zhttp.New()
			p.Type = zhttp.TypeData
			p.ContentType = "text"
			if ev.typ == "BINARY" {
				p.ContentType = "binary"
			}
			p.Body = ev.content
			if p.Body == nil {
				p.Body = []byte{}
			}
			e.wsBackendMessage(s, p, now)
		case "PING", "PONG":
			typ := zhttp.TypePing
			if ev.typ == "PONG" {
				typ = zhttp.TypePong
			}
			if !ws.detached {
				e.wsToClient(s, wsFrame{typ: typ, body: ev.content}, now)
			}
		case "CLOSE":
			// Without content the client gets 1000, as from Pushpin 1.36.
			code, reason := int64(1000), ""
			if len(ev.content) >= 2 {
				code, reason = int64(binary.BigEndian.Uint16(ev.content)), string(ev.content[2:])
			}
			closed = true
			w.closeSent = true
			e.wsCloseClient(s, code, reason, now)
		case "OPEN", "DISCONNECT":
			e.log.Info().Str(logging.FieldRID, string(s.in.ID)).Str("cid", ws.cid).Str("event", ev.typ).Msg("websocket-over-http: backend ended the connection")
			e.cancelIn(s, now)
			e.finish(s, "disconnected by backend")
			return
		default:
			e.log.Debug().Str("cid", ws.cid).Str("event", ev.typ).Msg("websocket-over-http: ignoring unknown event")
		}
		if _, live := e.byIn[s.key]; !live {
			return
		}
	}
	if !closed && ws.toClient.closeRecv && slices.ContainsFunc(w.sent, func(ev wohEvent) bool { return ev.typ == "CLOSE" }) {
		// The backend did not answer our CLOSE: finish the client's close
		// handshake with its own code.
		d := &ws.toBackend
		e.wsCloseClient(s, d.closeCode, string(d.closeReason), now)
		if _, live := e.byIn[s.key]; !live {
			return
		}
	}
	e.wohSend(s, now)
}

// wohSetMeta stores a Set-Meta-* value; an empty value deletes it.
func (e *engine) wohSetMeta(w *wohState, name, value string) {
	for i, m := range w.meta {
		if strings.EqualFold(m.Name, name) {
			w.meta = append(w.meta[:i], w.meta[i+1:]...)
			break
		}
	}
	if value != "" {
		w.meta = append(w.meta, zhttp.Header{Name: name, Value: value})
	}
}

// wohConnected sends the client its 101 from the OPEN answer's headers and
// starts GRIP (as wsConnected does for a WebSocket backend).
func (e *engine) wohConnected(s *session, resp *zhttp.Packet, now time.Time) {
	hs := removeHeaders(append([]zhttp.Header(nil), resp.Headers...), "Content-Type", "Keep-Alive-Interval")
	hs = removePrefixed(hs, "Set-Meta-")
	p := zhttp.New()
	p.Code = 101
	p.Reason = "Switching Protocols"
	p.Headers = hs
	e.wsConnected(s, p, now) // grants connmgr wsWindow
	s.ws.woh.credits = wsWindow
}

// wohBadResponse ends the connection after a bad answer from the backend.
func (e *engine) wohBadResponse(s *session, why string, now time.Time) {
	w := s.ws.woh
	w.inFlight = false
	w.closeSent = true // nothing more goes to this backend
	if !w.opened {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("cid", s.ws.cid).Msg("websocket-over-http: " + why + ", rejecting the handshake")
		e.wsReject(s, 502, "Bad Gateway", textProxyError, "", now)
		return
	}
	e.wohFail(s, why, now)
}

// wohFail closes the client with 1011 after bad input.
func (e *engine) wohFail(s *session, why string, now time.Time) {
	e.wohFailCode(s, wsCloseInternalError, why, now)
}

// wohFailCode closes the client with code after bad input.
func (e *engine) wohFailCode(s *session, code int64, why string, now time.Time) {
	w := s.ws.woh
	w.closeSent = true
	w.pending, w.pendLen, w.partial = nil, 0, nil
	e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("cid", s.ws.cid).Int64("code", code).Msg("websocket-over-http: " + why + ", closing")
	e.cancelClient(s, now)
	e.wsCloseClient(s, code, "", now)
}

// wohFailed handles a request that got no answer: connection errors are
// retried up to wohRetries times after OPEN (1 s doubling plus up to 1 s of
// jitter); during OPEN the next target is tried, as for a WebSocket.
func (e *engine) wohFailed(s *session, cond string, now time.Time) {
	w := s.ws.woh
	w.inFlight = false
	retryable := cond == zhttp.CondRemoteConnectionFailed || cond == zhttp.CondConnectionTimeout || cond == zhttp.CondTLSError
	if !w.opened {
		if retryable {
			s.tried = append(s.tried, targetName(&s.targets[s.ti]))
			s.ti++
			s.ws.woh = nil
			e.wsNextTarget(s, now)
			return
		}
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("condition", cond).Msg("websocket-over-http: OPEN request failed")
		e.wsReject(s, 502, "Bad Gateway", textProxyError, "", now)
		return
	}
	if retryable && w.retries < wohRetries {
		delay := time.Second<<w.retries + time.Duration(rand.Int64N(int64(time.Second)))
		w.retries++
		w.retryAt = now.Add(delay)
		e.log.Info().Str("cid", s.ws.cid).Str("condition", cond).Int("retry", w.retries).Dur("in", delay).Msg("websocket-over-http: request failed, retrying")
		return
	}
	e.wohFail(s, "request failed ("+cond+")", now)
}

// wohRefresh handles the handler's `refresh` item (publish action refresh):
// a request goes out now, or after the one in flight.
func (e *engine) wohRefresh(s *session, now time.Time) {
	if !s.ws.connected {
		return
	}
	s.ws.woh.refresh = true
	e.wohSend(s, now)
}

// wohTick runs a WebSocket-over-HTTP session's request timers (the rest
// of wsTick).
func (e *engine) wohTick(s *session, now time.Time) bool {
	ws, w := s.ws, s.ws.woh
	if s.outActive {
		switch {
		case !s.outAcked && now.After(s.ackDeadline):
			e.dropOut(s)
			e.wohFailed(s, zhttp.CondRemoteConnectionFailed, now)
		case s.outAcked && s.out.Expired(now):
			e.cancelClient(s, now)
			e.wohFailed(s, "expired", now)
		case s.outAcked && s.out.KeepAliveDue(now):
			ka := zhttp.New()
			ka.Type = zhttp.TypeKeepAlive
			e.sendClient(s, ka, now)
		}
		if _, live := e.byIn[s.key]; !live {
			return false
		}
	}
	if !w.retryAt.IsZero() && !now.Before(w.retryAt) {
		w.retryAt = time.Time{}
		e.wohPost(s, now)
	}
	if w.kaEvery > 0 && !w.closeSent && !w.inFlight && w.retryAt.IsZero() && now.Sub(w.lastReqAt) >= w.kaEvery {
		e.wohSendIf(s, true, now)
	}
	if _, live := e.byIn[s.key]; !live {
		return false
	}
	if ws.control && e.wsControlTick(s, now) {
		return false
	}
	return ws.connected && s.in.KeepAliveDue(now)
}

// wohFlush is wsFlushBackend for WebSocket-over-HTTP: a close the handler
// asked for (close or detach item) becomes a CLOSE event.
func (e *engine) wohFlush(s *session, now time.Time) {
	ws, w := s.ws, s.ws.woh
	if !ws.connected {
		return
	}
	if d := &ws.toBackend; d.closeQueued && !w.closeSent {
		w.partial = nil
		w.closeSent = true
		e.wohQueue(s, closeEvent(d.closeCode, d.closeReason))
	}
	e.wohSend(s, now)
}

// setConnect sets the zhttp connect fields of a request to target t.
func setConnect(p *zhttp.Packet, t *routes.Target) {
	p.ConnectHost = t.Host
	p.ConnectPort = int64(t.Port)
	p.IgnorePolicies = !t.Untrusted
	p.TrustConnectHost = t.TrustConnectHost
	p.IgnoreTLSErrors = t.Insecure
}

// textEventsForbidden answers an HTTP request carrying WebSocket events to
// an over_http target (Pushpin 1.36's text, any method).
const textEventsForbidden = "Client not allowed to send WebSocket events directly.\n"

// sentEvents reports whether a client's request has an
// application/websocket-events body (parameters allowed, as in 1.36).
func sentEvents(p *zhttp.Packet) bool {
	v, _ := p.Header("Content-Type")
	mt, _, _ := strings.Cut(v, ";")
	return strings.EqualFold(strings.TrimSpace(mt), wohContentType)
}
