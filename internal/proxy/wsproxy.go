package proxy

// WebSocket proxying (grip-reference §6.1, zmq-wire.md §2.12): a client
// WebSocket arriving from connmgr is routed like an HTTP request, a zhttp
// WebSocket session is opened to the zhttp client towards the backend, the
// backend's 101 or rejection is relayed, and then frames relay both ways
// under zhttp credits. Pushpin's source: src/proxy/wsproxysession.cpp.
//
// Memory per direction is bounded by the credits the proxy grants the
// sending side (wsWindow): a frame is granted back to its sender only once
// it has been passed on within the receiver's credits (split into
// continuation packets where the receiver's window is smaller, as Pushpin's
// ZWebSocket does), so no message size limit exists.

import (
	"bytes"
	"net/http"
	"strings"
	"time"

	"tack/internal/logging"
	"tack/internal/routes"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

const (
	// wsWindow is the credit window the proxy grants each side of a
	// WebSocket: at most this much payload waits here per direction.
	wsWindow = 131072
	// wsSendQueueMax bounds the messages from the handler (`send` items)
	// waiting for the client's credits on one connection; beyond it a
	// message is dropped, logged and counted.
	wsSendQueueMax = 1 << 20
	// wsCloseWait bounds how long a close handshake may wait for the peer's
	// close before the session is cancelled.
	wsCloseWait = 10 * time.Second
	// wsDropLogEvery rate-limits the drop warnings of one connection.
	wsDropLogEvery = 10 * time.Second
	// wsQueueKeep: an emptied queue of at most this room keeps it.
	wsQueueKeep = 4
	// wsGripPrefix is the default message prefix of a GRIP WebSocket.
	wsGripPrefix = "m:"
)

// Close codes (RFC 6455 §7.4.1).
const (
	wsCloseTooBig        = 1009
	wsCloseInternalError = 1011
)

// wsFrame is one zhttp WebSocket packet waiting for the receiver's credits.
type wsFrame struct {
	typ      string // zhttp.TypeData, TypePing or TypePong
	ctype    string // text or binary (data)
	body     []byte
	more     bool
	fromSend bool   // a `send` item from the handler: acked once written
	reqID    []byte // its req-id (nil: no ack)
	owed     int    // payload bytes to grant back to the sender once written
}

// wsDir is one direction of a WebSocket relay.
type wsDir struct {
	q     []wsFrame
	bytes int   // payload queued
	owed  int64 // credits to grant back to the sending side

	closeCode   int64
	closeReason []byte
	closeAt     time.Time
	closeQueued bool // a close goes out once q is empty
	closeSent   bool
	closeRecv   bool // the receiving side's own close arrived
}

// wsSession is the WebSocket state of a session (session.ws). Its flags
// come first, together: padding would cost every connection.
type wsSession struct {
	connected bool // 101 relayed to the client
	outDone   bool // the backend session is over (closed, failed or detached)
	// test: the built-in test handler answers instead of a backend
	// (testhandler.go); outDone is set from the start.
	test bool

	// GRIP (grip-reference §6.1).
	grip     bool
	control  bool // a ws-control session with the handler exists
	detached bool
	// Backend message state (Pushpin's outReadInProgress): inMsg while a
	// fragmented message is being relayed, skip while one is dropped.
	inMsg, skip bool
	prefix      []byte
	cid         string    // its connection id (control)
	woh         *wohState // WebSocket-over-HTTP (wsoverhttp.go); nil otherwise
	held        []wsFrame // `send` items waiting for the backend message to end
	heldBytes   int

	toClient  wsDir // backend and handler → client (connmgr)
	toBackend wsDir // client → backend (zhttp client)

	reqN      int64
	pending   []wsPending // requests awaiting the handler's ack; nil when none
	lastKA    time.Time   // last ws-control keep-alive item
	kaMode    string      // keep-alive-setup mode; "" = off
	kaTimeout time.Duration
	kaAt      time.Time // need-keep-alive due

	drops     int64
	lastDrop  time.Time
	dropsLogd int64

	batch int64 // the held batch packet it is in (wsbatch.go)
}

// wsPending is a ws-control request awaiting the handler's ack. A
// connection rarely has more than one in flight, and an idle one has none:
// a slice emptied to nil holds nothing (a map would keep its table).
type wsPending struct {
	reqID    string
	deadline time.Time
}

// isWebSocket reports whether a first packet opens a WebSocket.
func isWebSocket(p *zhttp.Packet) bool {
	i := strings.Index(p.URI, ":")
	if i < 0 {
		return false
	}
	scheme := strings.ToLower(p.URI[:i])
	return scheme == "ws" || scheme == "wss"
}

// startWS handles a client's WebSocket handshake (first packet from
// connmgr). Unlike an HTTP request it is not acked: the 101 or the
// rejection is the proxy's first packet, as in Pushpin (capture §A.7).
func (e *engine) startWS(s *session, now time.Time) {
	p := s.first
	s.ws = &wsSession{}
	s.method = "GET"
	if len(e.byIn) > e.cfg.MaxOpenRequests {
		e.wsReject(s, 503, "Service Unavailable", textUnavailable, "", now)
		return
	}
	ci, err := parseClient(p, e.cfg.AcceptXForwardedProtocol)
	if err != nil {
		e.wsReject(s, 400, "Bad Request", "Bad request URI.\n", "", now)
		return
	}
	ci.trusted = e.trustedClient(p, now)
	s.ci = ci
	r := e.wsRoute(p, ci)
	if r == nil || len(r.Targets) == 0 {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("host", ci.host).Msg("websocket: no route")
		e.wsReject(s, 502, "Bad Gateway", textNoRoute, ci.host, now)
		return
	}
	s.route = r
	s.targets = r.Targets
	e.wsNextTarget(s, now)
}

// wsRoute picks the route with protocol ws (grip-reference §6.1).
func (e *engine) wsRoute(p *zhttp.Packet, ci clientInfo) *routes.Route {
	t := e.routes()
	if t == nil {
		return nil
	}
	if id, _ := p.Header("Pushpin-Route"); e.cfg.AcceptPushpinRoute && strings.TrimSpace(id) != "" {
		return t.ByID(strings.TrimSpace(id))
	}
	return t.Lookup(ci.host, "ws", ci.tls, ci.path)
}

// wsReject answers the handshake with an HTTP response (zmq-wire.md §2.12:
// an error packet with condition rejected) and ends the session. For the
// proxy's own errors text is the body (with %s filled from arg) and
// debugText replaces it on debug routes.
func (e *engine) wsReject(s *session, code int, reason, text, arg string, now time.Time) {
	body := text
	if strings.Contains(text, "%s") {
		body = strings.Replace(text, "%s", arg, 1)
	} else if arg != "" && e.debug(s) {
		body = arg + "\n"
	}
	e.wsRejectWith(s, int64(code), reason, []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}, []byte(body), now)
}

func (e *engine) wsRejectWith(s *session, code int64, reason string, headers []zhttp.Header, body []byte, now time.Time) {
	p := zhttp.New()
	p.Type = zhttp.TypeError
	p.Condition = zhttp.CondRejected
	p.Code = code
	if reason == "" {
		reason = http.StatusText(int(code))
	}
	p.Reason = reason
	p.Headers = headers
	p.HasHeaders = true
	p.Body = body
	if p.Body == nil {
		p.Body = []byte{}
	}
	s.code = code
	s.respBytes = int64(len(body))
	e.sendIn(s, p, now)
	e.finish(s, "")
}

// wsNextTarget tries the session's next target (failover as for HTTP).
func (e *engine) wsNextTarget(s *session, now time.Time) {
	for s.ti < len(s.targets) {
		t := &s.targets[s.ti]
		s.link = nil
		switch {
		case t.Kind == routes.TargetZHTTP:
			// A zhttp/ backend gets the session in zhttp WebSocket mode on
			// its own sockets, as pushpin-proxy does.
			l, err := e.zb.get(t)
			if err != nil {
				e.log.Warn().Err(err).Str(logging.FieldRID, string(s.in.ID)).Str("target", targetName(t)).Msg("cannot bind zhttp target")
				e.wsReject(s, 502, "Bad Gateway", textProxyError, "", now)
				return
			}
			s.link = l
			e.wsStartHost(s, t, now)
			return
		case t.Kind == routes.TargetZHTTPReq:
			e.wsReject(s, 502, "Bad Gateway", textProxyError, "WebSockets cannot be used with zhttpreq target", now)
			return
		case t.OverHTTP && (t.Kind == routes.TargetHost):
			e.wohStart(s, t, now)
			return
		case t.Kind == routes.TargetHost:
			e.wsStartHost(s, t, now)
			return
		case t.Kind == routes.TargetTest:
			e.wsStartTest(s, now)
			return
		default:
			e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("target", targetName(t)).Msg("websocket: target kind not supported for WebSockets, skipping target")
			s.tried = append(s.tried, targetName(t))
			s.ti++
		}
	}
	e.wsReject(s, 502, "Bad Gateway", textProxyError, "Unable to connect to any targets. Tried: "+strings.Join(s.tried, ", "), now)
}

// wsStartHost opens the zhttp WebSocket session to the zhttp client.
func (e *engine) wsStartHost(s *session, t *routes.Target, now time.Time) {
	e.openOut(s, now)
	s.ws.outDone = false
	req := e.rewriteRequest(s.first, s.ci, s.route, t)
	// Extensions are not proxied (Pushpin does not know how to handle
	// them); GRIP routes offer the grip extension instead.
	hs := removeHeaders(req.headers, "Sec-WebSocket-Extensions")
	if !s.route.NoGrip {
		hs = append(hs, zhttp.Header{Name: "Sec-WebSocket-Extensions", Value: "grip"})
	}
	uri := req.uri
	if rest, ok := strings.CutPrefix(uri, "https:"); ok {
		uri = "wss:" + rest
	} else if rest, ok := strings.CutPrefix(uri, "http:"); ok {
		uri = "ws:" + rest
	}
	p := zhttp.New()
	p.URI = uri
	p.Headers = hs
	p.Credits = wsWindow
	setConnect(p, t)
	first := e.toClient
	if s.link != nil { // a zhttp/ backend gets the URI only
		p.ConnectHost, p.ConnectPort, first = "", -1, s.link.first
	}
	s.out.Stamp(p, e.id, true, now)
	select {
	case first <- zsock.Message{p.Encode()}:
	default:
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Msg("zhttp client queue full")
		e.dropOut(s)
		e.wsReject(s, 502, "Bad Gateway", textProxyError, "Error: zhttp service for route is unreachable.", now)
	}
}

// --- packets from connmgr ---

func (e *engine) wsInPacket(s *session, p *zhttp.Packet, now time.Time) {
	ws := s.ws
	switch p.Type {
	case zhttp.TypeCancel, zhttp.TypeError:
		if ws.woh != nil {
			// The client vanished without a close: tell the backend.
			e.wohDisconnect(s, now)
		} else {
			e.cancelClient(s, now)
		}
		e.finish(s, "cancelled")
		return
	case zhttp.TypeKeepAlive:
		return
	case zhttp.TypeCredit:
		e.wsFlushClient(s, now)
		return
	}
	if !ws.connected {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("type", p.Type).Msg("websocket: packet from connmgr before the handshake ended, cancelling")
		e.cancelIn(s, now)
		e.cancelClient(s, now)
		e.finish(s, "error")
		return
	}
	if ws.woh != nil {
		e.wohInPacket(s, p, now)
		return
	}
	switch p.Type {
	case zhttp.TypeData, zhttp.TypePing, zhttp.TypePong:
		if p.Credits > 0 {
			e.wsFlushClient(s, now)
		}
		if ws.test {
			e.wsTestFrame(s, p, now)
			return
		}
		d := &ws.toBackend
		if ws.detached || ws.outDone || d.closeQueued || d.closeSent {
			// Nothing takes client frames any more: they are granted
			// back at once (Pushpin discards them once detached).
			d.owed += int64(len(p.Body))
			e.wsGrantIn(s, now)
			return
		}
		e.wsQueue(d, wsFrame{typ: p.Type, ctype: p.ContentType, body: p.Body, more: p.More, owed: len(p.Body)})
		if d.bytes > 2*wsWindow {
			e.wsFail(s, "connmgr sent beyond its credits", now)
			return
		}
		e.wsFlushBackend(s, now)
	case zhttp.TypeClose:
		e.wsPeerClose(s, &ws.toClient, &ws.toBackend, p, now)
	default:
		e.log.Debug().Str("type", p.Type).Msg("websocket: ignoring packet from connmgr")
	}
}

// --- packets from the zhttp client ---

// wsClientReply handles a packet of the backend session.
func (e *engine) wsClientReply(s *session, p *zhttp.Packet, now time.Time) {
	ws := s.ws
	if ws.woh != nil {
		e.wohReply(s, p, now)
		return
	}
	switch p.Type {
	case zhttp.TypeKeepAlive:
		return
	case zhttp.TypeError:
		e.wsOutError(s, p, now)
		return
	case zhttp.TypeCancel:
		p.Condition = "cancel"
		e.wsOutError(s, p, now)
		return
	case zhttp.TypeCredit:
		e.wsFlushBackend(s, now)
		return
	}
	if !ws.connected {
		if p.Type != zhttp.TypeData || p.Code < 0 {
			e.log.Warn().Str(logging.FieldRID, string(s.out.ID)).Str("type", p.Type).Msg("websocket: backend packet before the handshake, failing")
			e.cancelClient(s, now)
			e.wsReject(s, 502, "Bad Gateway", textProxyError, "", now)
			return
		}
		e.wsConnected(s, p, now)
		return
	}
	switch p.Type {
	case zhttp.TypeData:
		if p.Credits > 0 {
			e.wsFlushBackend(s, now)
		}
		e.wsBackendMessage(s, p, now)
	case zhttp.TypePing, zhttp.TypePong:
		// Control frames are always relayed (grip-reference §6.1).
		if ws.detached {
			ws.toClient.owed += int64(len(p.Body))
			e.wsGrantOut(s, now)
			return
		}
		e.wsToClient(s, wsFrame{typ: p.Type, body: p.Body, owed: len(p.Body)}, now)
	case zhttp.TypeClose:
		if ws.detached {
			ws.toBackend.closeRecv = true
			e.wsOutOver(s, now)
			return
		}
		e.wsPeerClose(s, &ws.toBackend, &ws.toClient, p, now)
	}
}

// wsConnected relays the backend's 101 (grip-reference §6.1).
func (e *engine) wsConnected(s *session, p *zhttp.Packet, now time.Time) {
	ws := s.ws
	if p.Code != 101 {
		// zurl reports rejections as errors; a data packet with another
		// code is relayed as a rejection too.
		e.dropOut(s)
		e.wsRejectWith(s, p.Code, p.Reason, filterRejectHeaders(p.Headers), p.Body, now)
		return
	}
	ws.connected = true
	hs := make([]zhttp.Header, 0, len(p.Headers))
	var gripExt string
	for _, h := range p.Headers {
		switch {
		case strings.EqualFold(h.Name, "Sec-WebSocket-Extensions"):
			for _, ext := range splitExtensions(h.Value) {
				if name, _, _ := strings.Cut(ext, ";"); strings.EqualFold(strings.TrimSpace(name), "grip") && gripExt == "" {
					gripExt = ext
				}
			}
		case isHandshakeHeader(h.Name):
		default:
			hs = append(hs, h)
		}
	}
	passOn := s.ci.trusted || s.route.NoGrip
	if gripExt != "" {
		if passOn {
			// The proxy in front handles GRIP (grip-reference §6.1).
			hs = append(hs, zhttp.Header{Name: "Sec-WebSocket-Extensions", Value: gripExt})
		} else if !e.wsControlOn() {
			e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Msg("websocket: backend accepted grip but no ws-control sockets are configured: messages relayed as they are")
		} else {
			ws.grip = true
			ws.prefix = []byte(wsGripPrefix)
			if v, ok := extensionParam(gripExt, "message-prefix"); ok {
				ws.prefix = []byte(v)
			}
		}
	}
	t := &s.targets[s.ti]
	if (ws.grip || len(t.Subs) > 0) && e.wsControlOn() {
		e.wsControlStart(s, now)
		for _, ch := range t.Subs {
			e.wsControlRequest(s, wsSubscribeItem(ch), now)
		}
	}
	e.wsAccept(s, p.Reason, hs, now)
	e.log.Info().Str(logging.FieldRID, string(s.in.ID)).Str("uri", s.first.URI).Str("target", targetName(t)).
		Bool("grip", ws.grip).Str("cid", ws.cid).Msg("websocket connected")
	if ws.woh == nil {
		// The request is done with (WebSocket-over-HTTP goes on building
		// requests from it): for the connection's life, keep only what its
		// request log line reads, not the client's whole handshake.
		s.first = logFirst(s.first)
		s.ci.rawURI = nil
	}
	e.wsFlushBackend(s, now)
}

// wsAccept sends the client its 101 with the proxy's credit window.
func (e *engine) wsAccept(s *session, reason string, hs []zhttp.Header, now time.Time) {
	out := zhttp.New()
	out.Code = 101
	out.Reason = reason
	if out.Reason == "" {
		out.Reason = "Switching Protocols"
	}
	out.Headers = hs
	out.HasHeaders = true
	out.Credits = wsWindow
	s.code = 101
	e.sendIn(s, out, now)
}

// wsBackendMessage applies the GRIP message rules to a backend data packet
// (grip-reference §6.1; Pushpin's wsproxysession tryReadOut).
func (e *engine) wsBackendMessage(s *session, p *zhttp.Packet, now time.Time) {
	ws := s.ws
	n := len(p.Body)
	cont := ws.inMsg || ws.skip
	consume := func() {
		ws.toClient.owed += int64(n)
		e.wsGrantOut(s, now)
	}
	if ws.detached && !ws.inMsg {
		consume()
		ws.skip = p.More
		return
	}
	if cont && ws.skip {
		ws.skip = p.More
		consume()
		return
	}
	f := wsFrame{typ: zhttp.TypeData, ctype: p.ContentType, body: p.Body, more: p.More, owed: n}
	if ws.grip && !cont {
		switch {
		case p.ContentType != "binary" && bytes.HasPrefix(p.Body, []byte("c:")):
			consume()
			if p.More {
				// Control messages must be one frame; the rest is ignored.
				ws.skip = true
				e.log.Debug().Str("cid", ws.cid).Msg("websocket: fragmented control message ignored")
				return
			}
			e.wsGripMessage(s, p.Body[2:], now)
			return
		case bytes.HasPrefix(p.Body, ws.prefix):
			f.body = p.Body[len(ws.prefix):]
		default:
			e.log.Debug().Str("cid", ws.cid).Msg("websocket: dropping unprefixed message")
			consume()
			ws.skip = p.More
			return
		}
	}
	ws.inMsg = p.More
	e.wsToClient(s, f, now)
	if !ws.inMsg && len(ws.held) > 0 {
		for _, h := range ws.held {
			e.wsQueue(&ws.toClient, h)
		}
		ws.held, ws.heldBytes = nil, 0
		e.wsFlushClient(s, now)
	}
}

// wsToClient queues a frame for the client and restarts an idle keep-alive.
func (e *engine) wsToClient(s *session, f wsFrame, now time.Time) {
	d := &s.ws.toClient
	if d.closeQueued || d.closeSent {
		// The client is closing: nothing more goes to it.
		s.ws.toClient.owed += int64(f.owed)
		e.wsGrantOut(s, now)
		return
	}
	e.wsQueue(d, f)
	if d.bytes > wsSendQueueMax+2*wsWindow {
		// Only a zhttp client that ignores its credits gets here.
		e.wsFail(s, "zhttp client sent beyond its credits", now)
		return
	}
	e.wsIdleKeepAlive(s, now)
	e.wsFlushClient(s, now)
}

func (e *engine) wsQueue(d *wsDir, f wsFrame) {
	d.q = append(d.q, f)
	d.bytes += len(f.body)
}

// wsFlushClient sends what the client's credits allow.
func (e *engine) wsFlushClient(s *session, now time.Time) {
	e.wsFlush(s, &s.ws.toClient, &s.in, func(p *zhttp.Packet) { e.sendInWS(s, p, now) }, now)
	e.wsGrantOut(s, now)
	if s.ws.toClient.closeSent {
		e.wsMaybeDone(s, now)
	}
}

// wsFlushBackend sends what the backend's credits allow.
func (e *engine) wsFlushBackend(s *session, now time.Time) {
	if s.ws.woh != nil {
		e.wohFlush(s, now)
		return
	}
	if !s.ws.connected || !s.outActive || !s.outAcked {
		return
	}
	e.wsFlush(s, &s.ws.toBackend, &s.out, func(p *zhttp.Packet) { e.sendClient(s, p, now); e.wsPacketDone(p) }, now)
	e.wsGrantIn(s, now)
	if s.ws.toBackend.closeSent && s.ws.toBackend.closeRecv {
		e.wsOutOver(s, now)
	}
}

// wsFlush writes queued frames of d within the receiver's credits (zs),
// splitting a data frame into continuation packets when the window is
// smaller, then the queued close once the queue is empty. Its packets
// come from e.wsPacket; send owns them.
func (e *engine) wsFlush(s *session, d *wsDir, zs *zhttpsession.Session, send func(*zhttp.Packet), now time.Time) {
	base := d.q[:0]
	for len(d.q) > 0 {
		f := &d.q[0]
		var n int
		if f.typ == zhttp.TypeData {
			if len(f.body) > 0 && zs.Credits <= 0 {
				break
			}
			n = zs.Spend(len(f.body))
		} else {
			if int64(len(f.body)) > zs.Credits {
				break
			}
			n = zs.Spend(len(f.body))
		}
		p := e.wsPacket()
		p.Type = f.typ
		p.Body = f.body[:n:n]
		if f.typ == zhttp.TypeData {
			p.ContentType = f.ctype
			if p.ContentType == "" {
				p.ContentType = "text"
			}
			p.More = f.more || n < len(f.body)
		}
		send(p)
		d.bytes -= n
		if n < len(f.body) {
			f.body = f.body[n:]
			// owed counts what the sender spent; grant it as it leaves.
			give := min(n, f.owed)
			f.owed -= give
			d.owed += int64(give)
			continue
		}
		d.owed += int64(f.owed)
		done := *f
		d.q[0] = wsFrame{}
		d.q = d.q[1:]
		if done.fromSend {
			e.wsSendWritten(s, done.reqID, now)
		}
	}
	if len(d.q) == 0 {
		// A small queue's room is kept for the next message (sent
		// entries were cleared); a grown one is let go.
		d.q = nil
		if cap(base) <= wsQueueKeep {
			d.q = base
		}
		if d.closeQueued && !d.closeSent {
			p := e.wsPacket()
			p.Type = zhttp.TypeClose
			if d.closeCode >= 0 {
				p.Code = d.closeCode
			}
			if len(d.closeReason) > 0 {
				p.Body = d.closeReason
			}
			send(p)
			d.closeSent = true
			d.closeAt = now
		}
	}
}

// wsGrantIn grants connmgr the client payload that left the proxy.
func (e *engine) wsGrantIn(s *session, now time.Time) {
	if s.ws.toClient.closeRecv {
		return
	}
	if c := wsGrant(&s.ws.toBackend); c != nil {
		e.sendIn(s, c, now)
	}
}

// wsGrantOut grants the zhttp client the backend payload that left the
// proxy. For the test handler that payload is the client's own echo: its
// credits go back to connmgr.
func (e *engine) wsGrantOut(s *session, now time.Time) {
	if ws := s.ws; ws.test {
		ws.toBackend.owed += ws.toClient.owed
		ws.toClient.owed = 0
		e.wsGrantIn(s, now)
		return
	}
	if s.ws.woh != nil {
		s.ws.toClient.owed = 0 // each answer is read whole: nothing to grant
		return
	}
	if !s.outActive || !s.outAcked || s.ws.outDone {
		return
	}
	if c := wsGrant(&s.ws.toClient); c != nil {
		e.sendClient(s, c, now)
	}
}

// wsGrant returns the credit packet owed to d's sender, batched while
// frames still wait, or nil.
func wsGrant(d *wsDir) *zhttp.Packet {
	if d.owed <= 0 || (d.owed < creditBatch && len(d.q) > 0) {
		return nil
	}
	c := zhttp.New()
	c.Type = zhttp.TypeCredit
	c.Credits = d.owed
	d.owed = 0
	return c
}

// wsPeerClose handles a close from one side: from is the direction towards
// that side (whose closeRecv is set), to the direction towards the other
// side, which gets the close relayed after its queued frames.
func (e *engine) wsPeerClose(s *session, from, to *wsDir, p *zhttp.Packet, now time.Time) {
	ws := s.ws
	from.closeRecv = true
	fromClient := from == &ws.toClient
	if fromClient && (ws.detached || ws.outDone) {
		// No backend: answer the client's close ourselves.
		if !from.closeQueued {
			from.closeQueued, from.closeCode, from.closeReason = true, p.Code, bytes.Clone(p.Body)
		}
		e.wsFlushClient(s, now)
		return
	}
	if !to.closeQueued {
		to.closeQueued, to.closeCode, to.closeReason = true, p.Code, bytes.Clone(p.Body)
	}
	if fromClient {
		e.wsFlushBackend(s, now)
		e.wsMaybeDone(s, now)
	} else {
		if from.closeSent {
			e.wsOutOver(s, now)
		}
		e.wsFlushClient(s, now)
	}
}

// wsOutOver ends the backend session (its close handshake is over).
func (e *engine) wsOutOver(s *session, now time.Time) {
	if s.ws.outDone {
		return
	}
	s.ws.outDone = true
	e.dropOut(s)
	e.wsMaybeDone(s, now)
}

// wsMaybeDone finishes the session once the client's close handshake is over.
func (e *engine) wsMaybeDone(s *session, now time.Time) {
	d := &s.ws.toClient
	if !d.closeSent || !d.closeRecv {
		return
	}
	if s.outActive && !s.ws.outDone {
		d2 := &s.ws.toBackend
		if !d2.closeSent || !d2.closeRecv {
			e.cancelClient(s, now)
		}
	}
	e.finish(s, "")
}

// wsOutError handles an error or cancel from the backend session.
func (e *engine) wsOutError(s *session, p *zhttp.Packet, now time.Time) {
	ws := s.ws
	if ws.woh != nil {
		e.dropOut(s)
		e.wohFailed(s, p.Condition, now)
		return
	}
	e.dropOut(s)
	ws.outDone = true
	if !ws.connected {
		switch p.Condition {
		case zhttp.CondRejected:
			e.wsRejectWith(s, p.Code, p.Reason, filterRejectHeaders(p.Headers), p.Body, now)
		case zhttp.CondRemoteConnectionFailed, zhttp.CondConnectionTimeout, zhttp.CondTLSError:
			s.tried = append(s.tried, targetName(&s.targets[s.ti]))
			s.ti++
			e.wsNextTarget(s, now)
		case zhttp.CondPolicyViolation:
			e.wsReject(s, 502, "Bad Gateway", textProxyError, "Error: Origin host/IP blocked.", now)
		default:
			e.wsReject(s, 502, "Bad Gateway", textProxyError, "", now)
		}
		return
	}
	if ws.detached {
		return
	}
	// Pushpin drops the client abruptly here; a close with 1011 tells the
	// client why, and the handshake still ends the session.
	e.log.Info().Str(logging.FieldRID, string(s.in.ID)).Str("condition", p.Condition).Msg("websocket: backend session failed, closing the client with 1011")
	e.wsCloseClient(s, wsCloseInternalError, "", now)
}

// wsCloseClient closes the client with code and reason (queued frames first).
func (e *engine) wsCloseClient(s *session, code int64, reason string, now time.Time) {
	d := &s.ws.toClient
	if !d.closeQueued {
		d.closeQueued, d.closeCode, d.closeReason = true, code, []byte(reason)
	}
	e.wsFlushClient(s, now)
}

// wsFail ends a connection after bad input from a peer: the backend
// session is cancelled and the client closed with 1011.
func (e *engine) wsFail(s *session, why string, now time.Time) {
	e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("cid", s.ws.cid).Msg("websocket: " + why + ", closing with 1011")
	e.cancelClient(s, now)
	s.ws.outDone = true
	s.ws.toClient.q, s.ws.toClient.bytes = nil, 0
	e.wsCloseClient(s, wsCloseInternalError, "", now)
}

// wsTick runs a WebSocket session's timers; it reports whether connmgr
// is due a keep-alive.
func (e *engine) wsTick(s *session, now time.Time) bool {
	ws := s.ws
	if s.in.Expired(now) {
		e.log.Debug().Str(logging.FieldRID, string(s.in.ID)).Msg("websocket: client session expired")
		e.cancelClient(s, now)
		e.finish(s, "expired")
		return false
	}
	if d := &ws.toClient; d.closeSent && !d.closeRecv && now.Sub(d.closeAt) > wsCloseWait {
		e.cancelIn(s, now)
		e.cancelClient(s, now)
		e.finish(s, "close timeout")
		return false
	}
	if ws.woh != nil {
		return e.wohTick(s, now)
	}
	if s.outActive {
		switch {
		case !s.outAcked && now.After(s.ackDeadline):
			e.dropOut(s)
			if !ws.connected {
				e.wsReject(s, 502, "Bad Gateway", textProxyError, "Error: zhttp service for route is unreachable.", now)
				return false
			}
		case s.outAcked && s.out.Expired(now):
			p := zhttp.New()
			p.Condition = "expired"
			e.wsOutError(s, p, now)
			if _, live := e.byIn[s.key]; !live {
				return false
			}
		case s.outAcked && s.out.KeepAliveDue(now):
			ka := zhttp.New()
			ka.Type = zhttp.TypeKeepAlive
			e.sendClient(s, ka, now)
		}
		if d := &ws.toBackend; d.closeSent && !d.closeRecv && now.Sub(d.closeAt) > wsCloseWait {
			e.cancelClient(s, now)
			e.wsOutOver(s, now)
			if _, live := e.byIn[s.key]; !live {
				return false
			}
		}
	}
	if ws.control {
		if e.wsControlTick(s, now) {
			return false
		}
	}
	return ws.connected && s.in.KeepAliveDue(now)
}

// filterRejectHeaders keeps a rejection's headers minus framing ones
// (connmgr frames the response itself).
func filterRejectHeaders(hs []zhttp.Header) []zhttp.Header {
	out := make([]zhttp.Header, 0, len(hs))
	out = append(out, hs...)
	return removeHeaders(out, "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length")
}

// isHandshakeHeader names the 101 headers connmgr writes itself.
func isHandshakeHeader(name string) bool {
	for _, n := range []string{"Upgrade", "Connection", "Sec-WebSocket-Accept", "Content-Length", "Transfer-Encoding", "Keep-Alive"} {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// splitExtensions splits a Sec-WebSocket-Extensions value at the commas
// between extensions (commas inside quoted parameters are kept).
func splitExtensions(v string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	if last := strings.TrimSpace(v[start:]); last != "" {
		out = append(out, last)
	}
	return out
}

// extensionParam returns a parameter of one extension ("grip;
// message-prefix=\"x\""), unquoted.
func extensionParam(ext, name string) (string, bool) {
	parts := strings.Split(ext, ";")
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		if !ok {
			return "", true
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`)
		}
		return v, true
	}
	return "", false
}
