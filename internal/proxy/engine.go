package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/routes"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

// Client-visible texts (grip-reference §2.4, §11.5).
const (
	textProxyError     = "Error while proxying to origin.\n"
	textLengthRequired = "Must provide Content-Length header.\n"
	textNoRoute        = "No route for host: %s\n"
	textUnavailable    = "Service unavailable: too many open requests.\n"
	textCheck          = "Pushpin-compatible GRIP proxy (tack).\n"
)

// clientSide names the zhttp client a session serves: connmgr (a client's
// request) or the handler (its own outbound request over intreq,
// zmq-wire.md §4.8). The "in" half of a session talks to that side only.
type clientSide uint8

const (
	sideConnmgr clientSide = iota
	sideIntreq
	numSides
)

// sockets names the side's first-packet and follow-up sockets for logs.
func (sd clientSide) sockets() (first, stream string) {
	if sd == sideIntreq {
		return "intreq-in", "intreq-in-stream"
	}
	return "connmgr-in", "connmgr-in-stream"
}

// session is one client request (server role towards connmgr or, for
// intreq, the handler) and the request the proxy makes for it (client role
// towards the zhttp client). Flags sit together where they can: padding
// would cost every connection, idle WebSockets included.
type session struct {
	key  string
	side clientSide
	in   zhttpsession.Session // towards connmgr/handler: ID = its id, Peer = its from
	out  zhttpsession.Session // towards zurl: ID = ours, Peer = zurl's from once known

	method  string
	ci      clientInfo
	route   *routes.Route
	targets []routes.Target
	ti      int
	tried   []string
	req     outboundRequest
	first   *zhttp.Packet // the client's first packet (headers, uri)

	outActive   bool
	outAcked    bool
	ackDeadline time.Time

	body          []byte // kept request body for failover (≤ RequestBodyKeep)
	pendingOut    []byte // body received but not yet forwarded (bounded by the window)
	inOutstanding int64  // request-body credits granted to connmgr and unused
	respPending   []byte // response body received, not yet covered by connmgr's credits
	grantOwed     int64  // body sent to connmgr, not yet granted back to the zhttp client
	reqMore       bool   // client body still arriving
	bodyOverflow  bool
	outMore       bool // the outbound request body is still open
	respEnd       bool // the zhttp client sent the last body packet
	respEndSent   bool

	respStarted bool
	code        int64
	respBytes   int64
	started     time.Time

	test *testRequest // built-in test handler state

	// Auto cross-origin (crossorigin.go): CORS on every response, or the
	// JSON-P wrapping the request asked for.
	aco   bool
	jsonp *jsonpState

	outBody    []byte // body of a locally generated response not yet covered by credits
	completing bool   // such a response is being sent
	// sentFirst: the proxy sent the initial response of a large GRIP
	// stream hold itself (large.go); the hand-off follows its body.
	sentFirst bool

	// GRIP hand-off (handoff.go).
	grip       bool          // the response is GRIP: collect it, do not relay
	handoff    bool          // handoff-start sent, waiting for handoff-proceed
	isRetry    bool          // session came back from the handler in a retry packet
	respHead   *zhttp.Packet // code, reason, headers of the GRIP response
	respBody   []byte
	outGranted int64 // response credits granted to the zhttp client so far
	handoffAt  time.Time
	// awaitingSince: the GRIP response is complete but no handler is
	// connected yet.
	awaitingSince time.Time
	acceptID      string // accept call in flight
	lastIDs       tnetstring.Dict

	statsRegistered bool       // its connection is in the stats table (stats.go)
	ws              *wsSession // a WebSocket (wsproxy.go); nil for HTTP

	link  *zlink // zhttp/ or zhttpreq/ target's sockets (zbackend.go); nil: zurl's
	zbody []byte // zhttpreq/: request body collected until complete

	// Inspect and request sharing (inspect.go, share.go).
	inspectID string          // inspect call in flight
	inspect   tnetstring.Dict // the handler's inspect answer (nil: none)
	shr       *shareGroup     // the shared backend request it leads or follows
	delivered int64           // response body delivered to its client (raw bytes), while shared
	ghost     bool            // a leader whose client left: serves the group's backend request only
	proceeded bool            // paused for a shared hand-off, waiting for the other members
	noProxy   bool            // inspect said no-proxy: to the handler without a backend request (noproxy.go)
	// Body read ahead before inspect or sharing (prefetch.go).
	prefetch      prefetchStage
	prefetchLimit int
	shareKey      string
}

// engine owns the session table. Exactly one goroutine runs it.
type engine struct {
	cfg    Config
	log    zerolog.Logger
	id     []byte
	routes func() *routes.Table

	toConnmgr      chan<- zsock.Message // PUB
	toIntreq       chan<- zsock.Message // PUB to the handler (nil: no intreq)
	toClient       chan<- zsock.Message // PUSH
	toClientStream chan<- zsock.Message // ROUTER

	toAccept    func(zsock.Message) bool // DEALER to the handler's accept service (nil: none)
	acceptPeers func() int               // handlers connected to it (nil: unknown)
	// waitingHandler holds GRIP sessions waiting for a handler to connect
	// before their hand-off starts.
	waitingHandler map[string]*session

	byIn    map[string]*session
	byOut   map[string]*session
	accepts map[string]*pendingAccept
	// handedOff remembers sessions given to the handler (key → when), so
	// that a packet connmgr still addresses to us is ignored rather than
	// answered with a cancel that would end the handler's session.
	handedOff map[string]time.Time
	counter   uint64
	sig       *signer
	stats     *proxyStats // nil: neither stats_spec nor prometheus_port
	wsDropLog wsDropGate  // spaces the WebSocket drop warnings (wscontrol.go)

	// WebSockets (wsproxy.go, wscontrol.go).
	toWSControl    chan<- zsock.Message // PUSH to the handler (nil: not configured)
	wsByCID        map[string]*session
	wsKA           []wscontrol.Item // keep-alive items of the current tick
	wsDrops        int64            // messages to clients dropped
	wsControlDrops int64            // ws-control packets dropped
	hold           pubHold          // connmgr packets held while ws-control is drained (wsbatch.go)
	wsIn           wscontrol.Packet // the ws-control packet being handled (its Items' room is reused)

	zb *zbackends // zhttp/ and zhttpreq/ targets (zbackend.go)

	insp   *inspector             // nil: no inspect socket (inspect.go)
	shares map[string]*shareGroup // open groups by sharing key (share.go)
}

func newEngine(cfg Config, log zerolog.Logger, rt func() *routes.Table) *engine {
	return &engine{
		cfg:            cfg,
		log:            log,
		id:             []byte(cfg.InstanceID),
		routes:         rt,
		byIn:           map[string]*session{},
		byOut:          map[string]*session{},
		accepts:        map[string]*pendingAccept{},
		handedOff:      map[string]time.Time{},
		waitingHandler: map[string]*session{},
		shares:         map[string]*shareGroup{},
		sig:            newSigner(),
		wsByCID:        map[string]*session{},
	}
}

// inKey keys a session by its client's side, from and id: the same
// (from, id) pair on the two sides names two sessions.
func inKey(sd clientSide, from, id []byte) string {
	return string([]byte{'0' + byte(sd)}) + string(from) + "\x00" + string(id)
}

// --- sending ---

// sendIn sends p to the session's client (connmgr or the handler).
func (e *engine) sendIn(s *session, p *zhttp.Packet, now time.Time) {
	if s.ghost {
		return
	}
	s.in.Stamp(p, e.id, true, now)
	e.pub(s.side, s.in.Peer, p)
}

// pub publishes p to dest on the side's PUB socket ("<dest> T…" on both).
func (e *engine) pub(sd clientSide, dest []byte, p *zhttp.Packet) {
	out, name := e.toConnmgr, "condure-in"
	if sd == sideIntreq {
		out, name = e.toIntreq, "intreq-out"
	} else if e.hold.on {
		e.holdFrame(dest, p)
		return
	}
	frame := zhttp.PubFrame(dest, p)
	select {
	case out <- zsock.Message{frame}:
	default:
		e.log.Warn().Str(logging.FieldRID, string(p.ID)).Str(logging.FieldSocket, name).Msg("queue full, packet dropped")
	}
}

func (e *engine) sendClient(s *session, p *zhttp.Packet, now time.Time) {
	s.out.Stamp(p, e.id, false, now)
	if len(s.out.Peer) == 0 {
		e.log.Error().Str(logging.FieldRID, string(s.out.ID)).Msg("follow-up before the zhttp client address is known")
		return
	}
	msg := zsock.Message{s.out.Peer, nil, p.Encode()}
	out := e.toClientStream
	if s.link != nil {
		if out = s.link.stream; out == nil {
			return // zhttpreq/: nothing follows the request (Pushpin sends no cancel either)
		}
	}
	select {
	case out <- msg:
	default:
		e.log.Warn().Str(logging.FieldRID, string(p.ID)).Msg("zhttp client stream queue full, packet dropped")
	}
}

// respond sends a complete response generated by the proxy itself.
func (e *engine) respond(s *session, code int, reason, ctype, body string, now time.Time) {
	if s.shr != nil && e.shareRespond(s, code, reason, ctype, body, now) {
		return
	}
	p := zhttp.New()
	p.Code = int64(code)
	p.Reason = reason
	p.Headers = []zhttp.Header{
		{Name: "Content-Type", Value: ctype},
		{Name: "Content-Length", Value: strconv.Itoa(len(body))},
	}
	p.Body = []byte(body)
	s.code = int64(code)
	e.crossOriginComplete(s, p)
	s.respBytes = int64(len(p.Body))
	e.sendComplete(s, p, now)
}

// sendComplete sends a response generated here (or by the handler's accept
// reply) within connmgr's credits: what does not fit waits in s.outBody for
// credit packets (zmq-wire.md §2.7), and the session ends with the last byte.
func (e *engine) sendComplete(s *session, p *zhttp.Packet, now time.Time) {
	body := p.Body
	n := s.in.Spend(len(body))
	e.statsCount(s, ctrClientHeaderSent, responseHeaderBytes(p.Code, p.Reason, p.Headers))
	e.statsCount(s, ctrClientContentSent, n)
	p.Body = body[:n]
	if n < len(body) {
		p.More = true
		s.outBody = body[n:]
		s.completing = true
		e.sendIn(s, p, now)
		return
	}
	e.sendIn(s, p, now)
	e.finish(s, "")
}

// flushComplete continues a response that was waiting for credits.
func (e *engine) flushComplete(s *session, now time.Time) {
	n := s.in.Spend(len(s.outBody))
	if n == 0 {
		return
	}
	p := zhttp.New()
	p.Body = s.outBody[:n]
	s.outBody = s.outBody[n:]
	e.statsCount(s, ctrClientContentSent, n)
	p.More = len(s.outBody) > 0
	e.sendIn(s, p, now)
	if !p.More {
		e.finish(s, "")
	}
}

func (e *engine) respondError(s *session, code int, reason, text, debugText string, now time.Time) {
	body := text
	if debugText != "" && e.debug(s) {
		// Pushpin 1.36 sends the debug message instead of the text.
		body = debugText + "\n"
	}
	e.respond(s, code, reason, "text/plain", body, now)
}

func (e *engine) debug(s *session) bool {
	return e.cfg.Debug || (s.route != nil && s.route.Debug)
}

func (e *engine) cancelIn(s *session, now time.Time) {
	p := zhttp.New()
	p.Type = zhttp.TypeCancel
	e.sendIn(s, p, now)
}

func (e *engine) cancelClient(s *session, now time.Time) {
	if s.outActive && s.outAcked {
		p := zhttp.New()
		p.Type = zhttp.TypeCancel
		e.sendClient(s, p, now)
	}
	e.dropOut(s)
}

func (e *engine) dropOut(s *session) {
	if s.outActive {
		delete(e.byOut, string(s.out.ID))
		s.outActive = false
	}
}

// finish removes the session and logs the request line.
func (e *engine) finish(s *session, outcome string) {
	if s.ws != nil {
		e.wsFinished(s)
	}
	if (s.shr != nil || s.ghost) && e.shareFinish(s) {
		return
	}
	e.dropOut(s)
	e.statsEnd(s, outcome)
	delete(e.byIn, s.key)
	e.logRequest(s, outcome)
}

// --- packets from connmgr (and from the handler over intreq) ---

// handleFirst handles a packet from a side's PULL socket: connmgr's
// (condure-out) or the handler's (intreq-in).
func (e *engine) handleFirst(sd clientSide, frame []byte, now time.Time) {
	sock, _ := sd.sockets()
	p, err := zhttp.Parse(frame)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, sock).Msg("dropping undecodable packet")
		return
	}
	if len(p.From) == 0 || p.ID == nil {
		e.log.Warn().Str(logging.FieldSocket, sock).Msg("dropping first packet without from or id")
		return
	}
	key := inKey(sd, p.From, p.ID)
	if _, dup := e.byIn[key]; dup {
		e.log.Warn().Str(logging.FieldRID, string(p.ID)).Str(logging.FieldSocket, sock).Msg("duplicate first packet dropped")
		return
	}
	s := &session{key: key, side: sd, first: p, method: p.Method, started: now}
	s.in.ID = p.ID
	s.in.Peer = p.From
	if err := s.in.Receive(p, now); err != nil || p.Seq > 0 {
		e.log.Warn().Str(logging.FieldRID, string(p.ID)).Str(logging.FieldSocket, sock).Msg("first packet with non-zero seq, cancelling")
		e.byIn[key] = s
		e.cancelIn(s, now)
		delete(e.byIn, key)
		return
	}
	e.byIn[key] = s
	s.reqMore = p.More
	if p.Type != zhttp.TypeData || p.URI == "" {
		e.cancelIn(s, now)
		delete(e.byIn, key)
		return
	}
	if sd == sideConnmgr && isWebSocket(p) {
		e.startWS(s, now)
		return
	}
	// Acknowledge at once so that the client learns our address (§2.7).
	ack := zhttp.New()
	ack.Type = zhttp.TypeKeepAlive
	e.sendIn(s, ack, now)

	if len(e.byIn) > e.cfg.MaxOpenRequests {
		e.respondError(s, 503, "Service Unavailable", textUnavailable, "", now)
		return
	}
	if isWebSocket(p) {
		e.respondError(s, 501, "Not Implemented", "WebSockets are not supported on intreq.\n", "", now)
		return
	}
	// The handler's own requests are routed by their URI alone: Pushpin
	// applies neither X-Forwarded-Proto nor Pushpin-Route to them.
	ci, err := parseClient(p, e.cfg.AcceptXForwardedProtocol && sd == sideConnmgr)
	if err != nil {
		e.respondError(s, 400, "Bad Request", "Bad request URI.\n", "", now)
		return
	}
	if sd == sideIntreq {
		ci.internal = true
		ci.peer = "" // no client behind it: no X-Forwarded-For append, no peer in logs
	} else {
		ci.trusted = e.trustedClient(p, now)
	}
	s.ci = ci
	var r *routes.Route
	if sd == sideIntreq {
		if r, err = e.intreqRoute(p, ci); err != nil {
			e.respondError(s, 400, "Bad Request", "Bad request URI.\n", "", now)
			return
		}
	} else {
		r = e.clientRoute(p, ci)
		if !e.crossOriginRequest(s, r, now) {
			return
		}
	}
	if _, ok := p.Header("Pushpin-Check"); ok {
		e.respond(s, 200, "OK", "text/plain", textCheck, now)
		return
	}
	if r == nil || len(r.Targets) == 0 {
		e.respondError(s, 502, "Bad Gateway", fmt.Sprintf(textNoRoute, ci.host), "", now)
		return
	}
	s.route = r
	s.targets = r.Targets
	e.statsStart(s, now)
	if len(s.first.Body) > 0 {
		e.keepBody(s, s.first.Body)
		s.pendingOut = append(s.pendingOut, s.first.Body...)
	}
	e.proxyRequest(s, now)
}

// clientRoute picks the route for a client's request: by Pushpin-Route
// when accepted, else by host, TLS and path (grip-reference §2.1 step 3).
func (e *engine) clientRoute(p *zhttp.Packet, ci clientInfo) *routes.Route {
	t := e.routes()
	if t == nil {
		return nil
	}
	// A non-empty Pushpin-Route names the route outright: an unknown id
	// is "No route", not a host lookup (as Pushpin 1.36 does).
	if id, _ := p.Header("Pushpin-Route"); e.cfg.AcceptPushpinRoute && strings.TrimSpace(id) != "" {
		return t.ByID(strings.TrimSpace(id))
	}
	return t.Lookup(ci.host, "http", ci.tls, ci.path)
}

// handleStream handles a ROUTER message [identity, "", payload] from a
// side's follow-up socket (condure-out-stream or intreq-in-stream).
func (e *engine) handleStream(sd clientSide, msg zsock.Message, now time.Time) {
	if len(msg) < 2 {
		return
	}
	payload := msg[len(msg)-1]
	if len(payload) == 0 { // 1.41 probe [id, ""]
		return
	}
	p, err := zhttp.Parse(payload)
	if err != nil {
		_, sock := sd.sockets()
		e.log.Warn().Err(err).Str(logging.FieldSocket, sock).Msg("dropping undecodable packet")
		return
	}
	if p.IDs != nil {
		for _, is := range p.IDs {
			s := e.byIn[inKey(sd, p.From, is.ID)]
			if s == nil {
				continue
			}
			if err := s.in.ReceiveSeq(is.Seq, p.From, now); err != nil {
				e.badSeq(s, err, now)
				continue
			}
			e.inPacket(s, p, now)
		}
		return
	}
	key := inKey(sd, p.From, p.ID)
	s := e.byIn[key]
	if s == nil {
		if _, gone := e.handedOff[key]; gone {
			return
		}
		if p.Type != zhttp.TypeCancel && p.Type != zhttp.TypeError && len(p.From) > 0 {
			c := zhttp.New()
			c.From, c.ID, c.Type = e.id, p.ID, zhttp.TypeCancel
			e.pub(sd, p.From, c)
		}
		return
	}
	if err := s.in.Receive(p, now); err != nil {
		e.badSeq(s, err, now)
		return
	}
	e.inPacket(s, p, now)
}

func (e *engine) badSeq(s *session, err error, now time.Time) {
	_, sock := s.side.sockets()
	e.log.Warn().Err(err).Str(logging.FieldRID, string(s.in.ID)).Str(logging.FieldSocket, sock).Msg("bad seq from client, cancelling")
	e.cancelIn(s, now)
	if s.shr != nil && e.shareClientLeft(s, "error", now) {
		return
	}
	e.cancelClient(s, now)
	e.finish(s, "error")
}

func (e *engine) inPacket(s *session, p *zhttp.Packet, now time.Time) {
	if s.ws != nil {
		e.wsInPacket(s, p, now)
		return
	}
	switch p.Type {
	case zhttp.TypeCancel, zhttp.TypeError:
		if s.shr != nil && e.shareClientLeft(s, "cancelled", now) {
			return
		}
		e.cancelClient(s, now)
		e.finish(s, "cancelled")
	case zhttp.TypeKeepAlive:
	case zhttp.TypeCredit:
		if s.completing {
			e.flushComplete(s, now)
			return
		}
		e.forwardCredit(s, p.Credits, now)
	case zhttp.TypeData:
		if s.completing {
			if p.Credits > 0 {
				e.flushComplete(s, now)
			}
			return
		}
		if p.Credits > 0 {
			e.forwardCredit(s, p.Credits, now)
		}
		if len(p.Body) > 0 || !p.More {
			e.requestBody(s, p.Body, p.More, now)
		}
	case zhttp.TypeHandoffProceed:
		e.handoffProceed(s, now)
	case zhttp.TypeHandoffStart:
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("type", p.Type).Msg("unexpected handoff packet from connmgr")
	default:
		e.log.Debug().Str("type", p.Type).Msg("ignoring packet")
	}
}

// forwardCredit handles response-body credit from connmgr: it lets
// buffered body go out (flushResp grants the zhttp client in turn).
func (e *engine) forwardCredit(s *session, n int64, now time.Time) {
	if n <= 0 || s.test != nil || s.grip || !s.respStarted {
		return
	}
	e.flushResp(s, nil, now)
}

func (e *engine) keepBody(s *session, b []byte) {
	if s.bodyOverflow {
		return
	}
	if len(s.body)+len(b) > RequestBodyKeep {
		s.bodyOverflow = true
		s.body = nil
		return
	}
	s.body = append(s.body, b...)
}

// requestBody handles request body bytes from connmgr.
func (e *engine) requestBody(s *session, b []byte, more bool, now time.Time) {
	s.inOutstanding -= int64(len(b))
	if s.inOutstanding < 0 {
		s.inOutstanding = 0
	}
	s.reqMore = more
	if s.test != nil {
		e.testBody(s, b, more, now)
		return
	}
	if s.noProxy {
		e.noProxyBody(s, b, now)
		return
	}
	if s.prefetch != prefetchNone {
		e.prefetchBody(s, b, now)
		return
	}
	e.statsCount(s, ctrClientContentRecv, len(b))
	if s.link != nil && s.link.req {
		e.zreqBody(s, b, more, now)
		return
	}
	e.keepBody(s, b)
	s.pendingOut = append(s.pendingOut, b...)
	e.flushBody(s, now)
}

// flushBody forwards pending request body within zurl's credits and, once
// the client's body has ended, the final packet without `more`.
func (e *engine) flushBody(s *session, now time.Time) {
	if !s.outActive || !s.outAcked {
		return
	}
	for len(s.pendingOut) > 0 && s.outMore {
		n := s.out.Spend(len(s.pendingOut))
		if n == 0 {
			break
		}
		p := zhttp.New()
		p.Body = append([]byte(nil), s.pendingOut[:n]...)
		s.pendingOut = s.pendingOut[n:]
		p.More = len(s.pendingOut) > 0 || s.reqMore
		s.outMore = p.More
		e.statsCount(s, ctrServerContentSent, n)
		e.sendClient(s, p, now)
	}
	if len(s.pendingOut) == 0 {
		s.pendingOut = nil
		if s.outMore && !s.reqMore {
			p := zhttp.New()
			p.Body = []byte{}
			s.outMore = false
			e.sendClient(s, p, now)
		}
	}
	e.grantRequestCredit(s, now)
}

// grantRequestCredit keeps connmgr's request-body window no larger than
// what zurl can take, so nothing queues here beyond one window.
func (e *engine) grantRequestCredit(s *session, now time.Time) {
	if !s.reqMore {
		return
	}
	e.grantIn(s, s.out.Credits-int64(len(s.pendingOut))-s.inOutstanding, now)
}

// --- targets ---

func (e *engine) startTarget(s *session, now time.Time) {
	for s.ti < len(s.targets) {
		t := &s.targets[s.ti]
		s.link = nil
		switch t.Kind {
		case routes.TargetTest:
			e.startTest(s, now)
			return
		case routes.TargetHost:
			if t.OverHTTP && sentEvents(s.first) {
				e.respondError(s, 403, "Forbidden", textEventsForbidden, "", now)
				return
			}
			e.startHost(s, t, now)
			return
		case routes.TargetZHTTP, routes.TargetZHTTPReq:
			e.startZTarget(s, t, now)
			return
		default:
			e.log.Warn().Str("target", targetName(t)).Msg("zhttp targets are not supported yet, skipping target")
			s.tried = append(s.tried, targetName(t))
			s.ti++
		}
	}
	e.respondError(s, 502, "Bad Gateway", textProxyError, "Unable to connect to any targets. Tried: "+strings.Join(s.tried, ", "), now)
}

// openOut starts a new outbound session for s (fresh id, ack deadline).
func (e *engine) openOut(s *session, now time.Time) {
	e.counter++
	s.out = zhttpsession.Session{ID: []byte(e.cfg.InstanceID + "-" + strconv.FormatUint(e.counter, 16))}
	s.outActive, s.outAcked = true, false
	s.ackDeadline = now.Add(e.cfg.ServiceTimeout)
	s.out.LastIn = now
	e.byOut[string(s.out.ID)] = s
}

func (e *engine) startHost(s *session, t *routes.Target, now time.Time) {
	e.openOut(s, now)
	s.req = e.rewriteRequest(s.first, s.ci, s.route, t)
	s.req.headers = appendGripLast(s.req.headers, s.lastIDs)
	p := zhttp.New()
	p.Method = s.method
	p.URI = s.req.uri
	p.Headers = s.req.headers
	p.Stream = true
	p.Credits = max(s.in.Credits, 0) + ResponseBuffer
	s.outGranted = p.Credits
	s.respPending, s.respEnd, s.grantOwed = nil, false, 0
	if t.Kind == routes.TargetHost { // a zhttp/ backend gets the URI only
		p.ConnectHost = t.Host
		p.ConnectPort = int64(t.Port)
	}
	p.IgnorePolicies = !t.Untrusted
	p.TrustConnectHost = t.TrustConnectHost
	p.IgnoreTLSErrors = t.Insecure
	if !s.bodyOverflow && len(s.body) > 0 {
		p.Body = append([]byte(nil), s.body...)
		s.pendingOut = nil
	}
	p.More = s.reqMore || len(s.pendingOut) > 0
	s.outMore = p.More
	e.statsCount(s, ctrServerHeaderSent, requestHeaderBytes(p.Method, p.URI, p.Headers))
	e.statsCount(s, ctrServerContentSent, len(p.Body))
	s.out.Stamp(p, e.id, true, now)
	first := e.toClient
	if s.link != nil {
		first = s.link.first
	}
	select {
	case first <- zsock.Message{p.Encode()}:
	default:
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Msg("zhttp client queue full")
		e.respondError(s, 502, "Bad Gateway", textProxyError, "Error: zhttp service for route is unreachable.", now)
	}
}

// --- packets from the zhttp client (zurl) ---

// handleClientReply handles a packet from zurl's PUB, or from a zhttp/
// target's when l is set.
func (e *engine) handleClientReply(l *zlink, frame []byte, now time.Time) {
	_, payload, err := zhttp.SplitPubFrame(frame)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "zurl-out").Msg("dropping bad frame")
		return
	}
	p, err := zhttp.Parse(payload)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "zurl-out").Msg("dropping undecodable packet")
		return
	}
	if p.IDs != nil {
		for _, is := range p.IDs {
			if s := e.byOut[string(is.ID)]; s != nil {
				if err := s.out.ReceiveSeq(is.Seq, p.From, now); err != nil {
					e.clientBadSeq(s, err, now)
				}
			}
		}
		return
	}
	s := e.byOut[string(p.ID)]
	if s == nil {
		// Unknown session (its client left): tell the zhttp client to stop,
		// as Pushpin's zhttp client does.
		if p.Type != zhttp.TypeCancel && p.Type != zhttp.TypeError && len(p.From) > 0 {
			c := zhttp.New()
			c.From, c.ID, c.Type = e.id, p.ID, zhttp.TypeCancel
			out := e.toClientStream
			if l != nil {
				out = l.stream
			}
			select {
			case out <- zsock.Message{p.From, nil, c.Encode()}:
			default:
			}
		}
		return
	}
	if err := s.out.Receive(p, now); err != nil {
		e.clientBadSeq(s, err, now)
		return
	}
	if !s.outAcked {
		s.outAcked = true
	}
	if s.ws != nil {
		e.wsClientReply(s, p, now)
		return
	}
	switch p.Type {
	case zhttp.TypeKeepAlive:
		e.flushBody(s, now)
	case zhttp.TypeCredit:
		e.flushBody(s, now)
	case zhttp.TypeData:
		if p.Credits > 0 {
			e.flushBody(s, now)
		}
		e.clientData(s, p, now)
	case zhttp.TypeError:
		e.clientError(s, p.Condition, now)
	case zhttp.TypeCancel:
		e.clientError(s, "cancel", now)
	default:
		e.log.Debug().Str("type", p.Type).Msg("ignoring packet from zhttp client")
	}
}

func (e *engine) clientBadSeq(s *session, err error, now time.Time) {
	e.log.Warn().Err(err).Str(logging.FieldRID, string(s.out.ID)).Msg("bad seq from zhttp client")
	e.cancelClient(s, now)
	if s.ws != nil {
		p := zhttp.New()
		p.Condition = "bad-seq"
		e.wsOutError(s, p, now)
		return
	}
	if s.respStarted {
		e.cancelIn(s, now)
		e.finish(s, "error")
		return
	}
	e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
}

func (e *engine) clientData(s *session, p *zhttp.Packet, now time.Time) {
	if p.Code >= 0 && !s.respStarted && !s.grip {
		e.statsCount(s, ctrServerHeaderRecv, responseHeaderBytes(p.Code, p.Reason, p.Headers))
	}
	e.statsCount(s, ctrServerContentRecv, len(p.Body))
	if s.shr != nil && e.shareData(s, p, now) {
		return
	}
	if s.grip {
		e.gripBody(s, p.Body, p.More, now)
		return
	}
	out := zhttp.New()
	if !s.respStarted && p.Code >= 0 && e.isGRIPResponse(s, p) {
		e.startGRIP(s, p, now)
		return
	}
	if !s.respStarted {
		if p.Code < 0 {
			e.log.Warn().Str(logging.FieldRID, string(s.out.ID)).Msg("response body before response head")
			e.cancelClient(s, now)
			e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
			return
		}
		relayHead(s, out, p)
	}
	if !p.More {
		// The zhttp client is done with this session: it must hear
		// nothing more (a credit would draw a cancel), and the rest of
		// the body waits here for connmgr's credits.
		s.respEnd = true
		e.dropOut(s)
	}
	e.queueResp(s, out, p, now)
}

// relayHead starts s's response with p's head, filtered, in out.
func relayHead(s *session, out, p *zhttp.Packet) {
	s.respStarted = true
	s.code = p.Code
	out.Code = p.Code
	out.Reason = p.Reason
	out.Headers = filterResponseHeaders(p.Headers)
}

// queueResp queues a response packet's body (with CORS/JSON-P applied)
// for s's client and sends what its credits allow; out carries the head
// when this packet starts the response (Code ≥ 0).
func (e *engine) queueResp(s *session, out, p *zhttp.Packet, now time.Time) {
	if out.Code >= 0 {
		s.respPending = append(s.respPending, e.crossOriginHead(s, out, p.Body, p.More)...)
		e.flushResp(s, out, now)
		return
	}
	s.respPending = append(s.respPending, e.crossOriginBody(s, p.Body, p.More)...)
	e.flushResp(s, nil, now)
}

// flushResp sends buffered response body to connmgr within its credits
// (head, if given, goes first whatever the credits: heads are free), and
// grants the zhttp client what left the buffer. The zhttp client was
// granted connmgr's window plus ResponseBuffer, so respPending never holds
// more than that: the backend keeps streaming while connmgr's credits
// make their round trip.
func (e *engine) flushResp(s *session, head *zhttp.Packet, now time.Time) {
	n := s.in.Spend(len(s.respPending))
	last := s.respEnd && n == len(s.respPending)
	if head == nil && n == 0 && !last {
		return
	}
	if last && head == nil && n == 0 && s.respEndSent {
		return
	}
	if last && s.sentFirst {
		// The initial response of a large stream hold: the handler
		// continues the body (large.go).
		if head != nil || n > 0 {
			p := head
			if p == nil {
				p = zhttp.New()
			}
			p.Body = append([]byte(nil), s.respPending[:n]...)
			p.More = true
			s.respBytes += int64(n)
			e.sendIn(s, p, now)
		}
		s.respPending = nil
		s.respEndSent = true
		e.sentFirstDone(s, now)
		return
	}
	p := head
	if p == nil {
		p = zhttp.New()
	}
	p.Body = append([]byte(nil), s.respPending[:n]...)
	s.respPending = s.respPending[n:]
	if len(s.respPending) == 0 {
		s.respPending = s.respPending[:0:0]
	}
	p.More = !last
	s.respBytes += int64(n)
	if head != nil {
		e.statsCount(s, ctrClientHeaderSent, responseHeaderBytes(p.Code, p.Reason, p.Headers))
	}
	e.statsCount(s, ctrClientContentSent, n)
	e.sendIn(s, p, now)
	if last {
		s.respEndSent = true
		e.dropOut(s)
		e.finish(s, "")
		return
	}
	if s.shr != nil && !s.sentFirst {
		e.shareGrant(s, n, now)
		return
	}
	// Grants are batched: the zhttp client still has at least
	// ResponseBuffer-creditBatch of room, so it never waits on them, and
	// short responses cost no credit packet at all.
	s.grantOwed += int64(s.rawSent(n))
	if s.grantOwed >= creditBatch && s.outActive && s.outAcked {
		c := zhttp.New()
		c.Type = zhttp.TypeCredit
		c.Credits = s.grantOwed
		s.outGranted += s.grantOwed
		s.grantOwed = 0
		e.sendClient(s, c, now)
	}
}

// creditBatch is how much relayed body is granted back to the zhttp client
// in one credit packet.
const creditBatch = ResponseBuffer / 4

func (e *engine) clientError(s *session, cond string, now time.Time) {
	if s.ws != nil {
		p := zhttp.New()
		p.Condition = cond
		e.wsOutError(s, p, now)
		return
	}
	e.dropOut(s)
	if s.respStarted {
		e.cancelIn(s, now)
		e.finish(s, "error "+cond)
		return
	}
	switch cond {
	case zhttp.CondRemoteConnectionFailed, zhttp.CondConnectionTimeout, zhttp.CondTLSError:
		s.tried = append(s.tried, targetName(&s.targets[s.ti]))
		if !s.bodyOverflow && s.ti+1 < len(s.targets) {
			s.ti++
			e.startTarget(s, now)
			return
		}
		e.respondError(s, 502, "Bad Gateway", textProxyError, "Unable to connect to any targets. Tried: "+strings.Join(s.tried, ", "), now)
	case zhttp.CondLengthRequired:
		e.respondError(s, 411, "Length Required", textLengthRequired, "", now)
	case zhttp.CondPolicyViolation:
		e.respondError(s, 502, "Bad Gateway", textProxyError, "Error: Origin host/IP blocked.", now)
	default:
		e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
	}
}

// clientDropped is called when the first packet to the zhttp client could
// not be sent (no zhttp client connected, or its queue stayed full).
func (e *engine) clientDropped(outID string, now time.Time) {
	s := e.byOut[outID]
	if s == nil || s.outAcked {
		return
	}
	if s.ti < len(s.targets) {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("target", targetName(&s.targets[s.ti])).Msg("zhttp service unreachable or silent")
	}
	e.dropOut(s)
	if s.ws != nil && s.ws.woh != nil {
		e.wohFailed(s, zhttp.CondRemoteConnectionFailed, now)
		return
	}
	if s.ws != nil {
		e.wsReject(s, 502, "Bad Gateway", textProxyError, "Error: zhttp service for route is unreachable.", now)
		return
	}
	e.respondError(s, 502, "Bad Gateway", textProxyError, "Error: zhttp service for route is unreachable.", now)
}

// --- timers ---

// tick sends due keep-alives and expires silent sessions.
func (e *engine) tick(now time.Time) {
	var due [numSides][]*zhttpsession.Session
	for _, s := range e.byIn {
		if s.ws != nil {
			if e.wsTick(s, now) {
				due[s.side] = append(due[s.side], &s.in)
			}
			continue
		}
		if s.in.Expired(now) && s.acceptID == "" && !s.ghost {
			e.log.Debug().Str(logging.FieldRID, string(s.in.ID)).Msg("client session expired")
			if s.shr != nil && e.shareClientLeft(s, "expired", now) {
				continue
			}
			e.cancelClient(s, now)
			e.finish(s, "expired")
			continue
		}
		if s.outActive {
			if !s.outAcked && now.After(s.ackDeadline) {
				e.clientDropped(string(s.out.ID), now)
				continue
			}
			if s.outAcked && s.out.Expired(now) {
				e.clientError(s, "expired", now)
				continue
			}
			if s.outAcked && s.out.KeepAliveDue(now) {
				ka := zhttp.New()
				ka.Type = zhttp.TypeKeepAlive
				e.sendClient(s, ka, now)
			}
		}
		if s.in.KeepAliveDue(now) && !s.handoff && s.acceptID == "" && !s.ghost {
			due[s.side] = append(due[s.side], &s.in)
		}
	}
	for k, at := range e.handedOff {
		if now.Sub(at) > zhttpsession.ExpireAfter {
			delete(e.handedOff, k)
		}
	}
	for id, pa := range e.accepts {
		if now.After(pa.deadline) {
			e.log.Warn().Str(logging.FieldRID, string(pa.s.in.ID)).Msg("accept timed out")
			e.acceptFailed(id, now)
		}
	}
	e.wsControlFlushKeepAlives()
	for sd := range due {
		for _, a := range zhttpsession.KeepAlives(e.id, due[sd], now) {
			e.pub(clientSide(sd), a.Peer, a.Packet)
		}
	}
	e.inspectTick(now)
	if e.stats != nil {
		e.stats.tick(now)
	}
}

// shutdown cancels every live session on both sides.
func (e *engine) shutdown(now time.Time) {
	for _, s := range e.byIn {
		e.cancelClient(s, now)
		e.cancelIn(s, now)
		e.finish(s, "shutdown")
	}
}
