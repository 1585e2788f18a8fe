package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// GRIP hand-off bounds (grip-reference §3.1, zmq-wire.md §4.1).
const (
	// GripBodyMax is the largest backend body the proxy buffers for a GRIP
	// response, and the largest client body a GRIP request may have.
	GripBodyMax = 100000
	// AcceptTimeout mirrors Pushpin's inspectTimeout, reused for accept.
	AcceptTimeout = 8 * time.Second
)

const (
	textAcceptUnavailable = "Accept service unavailable.\n"
	textGripTooLarge      = "Request too large to accept GRIP instruct.\n"
)

// pendingAccept is an accept call waiting for the handler's reply.
type pendingAccept struct {
	s        *session
	group    *shareGroup // several requests sharing one backend request (share.go); nil: s alone
	deadline time.Time
}

func toGripHeaders(hs []zhttp.Header) []grip.Header {
	out := make([]grip.Header, len(hs))
	for i, h := range hs {
		out[i] = grip.Header{Name: h.Name, Value: h.Value}
	}
	return out
}

// isGRIPResponse reports whether a backend response head must go to the
// handler instead of the client.
func (e *engine) isGRIPResponse(s *session, p *zhttp.Packet) bool {
	// The handler's own requests are relayed as they are: it reads their
	// Grip-* headers itself (grip-reference §3.1).
	// So are a trusted client's: the GRIP proxy in front interprets them.
	if s.side == sideIntreq || s.ci.trusted || (s.route != nil && s.route.NoGrip) {
		return false
	}
	return grip.IsGRIP(toGripHeaders(p.Headers))
}

// startGRIP switches a session to collecting the backend's GRIP response.
func (e *engine) startGRIP(s *session, p *zhttp.Packet, now time.Time) {
	s.grip = true
	s.respHead = &zhttp.Packet{Code: p.Code, Reason: p.Reason, Headers: p.Headers}
	s.respBody = append(s.respBody[:0], p.Body...)
	// Let the backend send the whole body (up to the limit) regardless of
	// the client's window: the client never sees it.
	if want := int64(GripBodyMax+1) - s.outGranted; want > 0 && p.More && s.outActive {
		c := zhttp.New()
		c.Type = zhttp.TypeCredit
		c.Credits = want
		s.outGranted += want
		e.sendClient(s, c, now)
	}
	e.gripBody(s, nil, p.More, now)
}

// gripBody adds body to a collecting GRIP response.
func (e *engine) gripBody(s *session, b []byte, more bool, now time.Time) {
	s.respBody = append(s.respBody, b...)
	if len(s.respBody) > GripBodyMax {
		e.gripTooLarge(s, more, now)
		return
	}
	if more {
		return
	}
	e.dropOut(s)
	if s.bodyOverflow {
		e.respond(s, 400, "Bad Request", "text/plain", textGripTooLarge, now)
		return
	}
	e.handOff(s, now)
}

// handOff starts the hand-off of a complete GRIP response (or, for one
// the proxy relayed itself, of the session after its initial body).
func (e *engine) handOff(s *session, now time.Time) {
	if s.shr != nil && e.shareHandOff(s, now) {
		return
	}
	e.pauseForHandoff(s, now)
}

// pauseForHandoff pauses one client session for its hand-off.
func (e *engine) pauseForHandoff(s *session, now time.Time) {
	// Pause the client session only once a handler is connected: a long
	// pause is where the real condure goes wrong (see waitingHandler).
	if e.acceptPeers != nil && e.acceptPeers() == 0 {
		s.awaitingSince = now
		e.waitingHandler[s.key] = s
		return
	}
	e.startHandoff(s, now)
}

// startHandoff pauses the client session; the accept call follows
// handoff-proceed (zmq-wire.md §2.10, §4.3).
func (e *engine) startHandoff(s *session, now time.Time) {
	p := zhttp.New()
	p.Type = zhttp.TypeHandoffStart
	s.handoff = true
	s.handoffAt = now
	e.sendIn(s, p, now)
}

// retryWaitingHandler starts the hand-offs that waited for a handler to
// connect (a handler that starts before the proxy reconnects only after
// libzmq's 100 ms interval), or gives up after acceptSendTimeout.
func (e *engine) retryWaitingHandler(now time.Time) {
	ready := e.acceptPeers() > 0
	for k, s := range e.waitingHandler {
		if e.byIn[k] != s {
			delete(e.waitingHandler, k)
			continue
		}
		switch {
		case ready:
			delete(e.waitingHandler, k)
			e.startHandoff(s, now)
		case now.Sub(s.awaitingSince) > acceptSendTimeout:
			delete(e.waitingHandler, k)
			if s.sentFirst {
				e.sentFirstFailed(s, "Accept service unavailable.", now)
				continue
			}
			e.respondError(s, 500, "Internal Server Error", textAcceptUnavailable, "", now)
		}
	}
}

// handoffProceed: connmgr has paused; call accept.
func (e *engine) handoffProceed(s *session, now time.Time) {
	if !s.handoff {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Msg("handoff-proceed without handoff-start")
		return
	}
	s.handoff = false
	if ev := e.log.Debug(); ev.Enabled() {
		ev.Str("rid", string(s.in.ID)).Dur("waited", now.Sub(s.handoffAt)).Msg("handoff-proceed")
	}
	if s.noProxy {
		e.noProxyAccept(s, now)
		return
	}
	if s.shr != nil {
		e.shareProceed(s, now)
		return
	}
	id := newUUID()
	s.acceptID = id
	e.sendAccept(id, &pendingAccept{s: s, deadline: now.Add(AcceptTimeout)}, e.acceptArgs(s, []*session{s}), now)
}

// sendAccept sends accept call id with args.
func (e *engine) sendAccept(id string, pa *pendingAccept, args tnetstring.Dict, now time.Time) {
	req := tnetstring.Dict{
		{Key: "id", Value: id},
		{Key: "method", Value: "accept"},
		{Key: "args", Value: args},
	}
	e.accepts[id] = pa
	b, err := tnetstring.Encode(nil, req)
	if err != nil {
		e.log.Error().Err(err).Msg("encode accept")
		e.acceptFailed(id, now)
		return
	}
	if e.toAccept == nil {
		e.acceptFailed(id, now)
		return
	}
	if !e.toAccept(zsock.Message{nil, b}) {
		e.acceptFailed(id, now)
	}
}

func headerList(hs []zhttp.Header) []any {
	out := make([]any, len(hs))
	for i, h := range hs {
		out[i] = []any{h.Name, h.Value}
	}
	return out
}

func requestData(method, uri string, hs []zhttp.Header, body []byte) tnetstring.Dict {
	if body == nil {
		body = []byte{}
	}
	return tnetstring.Dict{
		{Key: "method", Value: method},
		{Key: "uri", Value: uri},
		{Key: "headers", Value: headerList(hs)},
		{Key: "body", Value: body},
	}
}

// acceptArgs builds the accept arguments exactly as zmq-wire.md §4.3 lists
// them: s made the backend request, members are the client sessions handed
// over (s alone, or every request that shared it).
func (e *engine) acceptArgs(s *session, members []*session) tnetstring.Dict {
	reqs := make([]any, len(members))
	for i, m := range members {
		reqs[i] = e.acceptRequest(m)
	}
	body := s.body
	if s.test != nil {
		body = s.test.body
	}
	args := tnetstring.Dict{
		{Key: "requests", Value: reqs},
		{Key: "request-data", Value: requestData(s.method, s.req.uri, s.req.headers, body)},
		{Key: "orig-request-data", Value: requestData(s.method, s.first.URI, s.first.Headers, body)},
		{Key: "response", Value: tnetstring.Dict{
			{Key: "code", Value: s.respHead.Code},
			{Key: "reason", Value: s.respHead.Reason},
			{Key: "headers", Value: headerList(s.respHead.Headers)},
			{Key: "body", Value: append([]byte{}, s.respBody...)},
		}},
	}
	if s.sentFirst {
		args = append(args, tnetstring.Field{Key: "response-sent", Value: true})
	}
	args = append(args, tnetstring.Field{Key: "inspect", Value: s.inspectDict()})
	if s.route != nil {
		args = append(args, tnetstring.Field{Key: "route", Value: s.route.ID})
		if s.route.IDExplicit {
			args = append(args, tnetstring.Field{Key: "separate-stats", Value: true})
		}
		if s.route.Prefix != "" {
			args = append(args, tnetstring.Field{Key: "channel-prefix", Value: s.route.Prefix})
		}
	}
	trusted := true
	if s.ti < len(s.targets) {
		t := &s.targets[s.ti]
		trusted = !t.Untrusted
		if len(t.Subs) > 0 {
			args = append(args, tnetstring.Field{Key: "channels", Value: t.Subs})
		}
	}
	if trusted {
		args = append(args, tnetstring.Field{Key: "trusted", Value: true})
	}
	return args
}

// acceptRequest is one `requests` entry: the state of client session s.
func (e *engine) acceptRequest(s *session) tnetstring.Dict {
	rq := tnetstring.Dict{
		{Key: "rid", Value: tnetstring.Dict{{Key: "sender", Value: s.in.Peer}, {Key: "id", Value: s.in.ID}}},
		{Key: "in-seq", Value: s.in.InSeq},
		{Key: "out-seq", Value: s.in.OutSeq},
		{Key: "out-credits", Value: max(s.in.Credits, 0)},
	}
	if s.ci.peer != "" {
		rq = append(rq, tnetstring.Field{Key: "peer-address", Value: s.ci.peer},
			tnetstring.Field{Key: "logical-peer-address", Value: e.logicalPeer(s)})
	}
	if s.ci.tls {
		rq = append(rq, tnetstring.Field{Key: "https", Value: true})
	}
	if e.debug(s) {
		rq = append(rq, tnetstring.Field{Key: "debug", Value: true})
	}
	if s.isRetry {
		rq = append(rq, tnetstring.Field{Key: "is-retry", Value: true})
	}
	if s.sentFirst {
		rq = append(rq, tnetstring.Field{Key: "response-code", Value: s.code})
	}
	rq = append(rq, s.crossOriginFields()...)
	if s.in.UserData != nil {
		rq = append(rq, tnetstring.Field{Key: "user-data", Value: s.in.UserData})
	}
	return rq
}

// logicalPeer is the first X-Forwarded-For entry unless the rule is
// truncate:0 (grip-reference §2.1 step 5, quirk 24), else the TCP peer.
func (e *engine) logicalPeer(s *session) string {
	if v, ok := headerValue(s.first.Headers, "X-Forwarded-For"); ok && e0(v) != "" && e.xffRule(s.ci).Truncate != 0 {
		return e0(v)
	}
	return s.ci.peer
}

// e0 returns the first comma-separated element of v, trimmed.
func e0(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] == ',' {
			v = v[:i]
			break
		}
	}
	for len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	for len(v) > 0 && v[len(v)-1] == ' ' {
		v = v[:len(v)-1]
	}
	return v
}

// resume makes the proxy the session owner again after a handoff-start
// (the next packet it sends re-establishes its address at connmgr).
func (e *engine) resume(s *session, now time.Time) {
	ka := zhttp.New()
	ka.Type = zhttp.TypeKeepAlive
	e.sendIn(s, ka, now)
}

// handleAcceptReply handles a DEALER message ["", reply].
func (e *engine) handleAcceptReply(m zsock.Message, now time.Time) {
	if len(m) != 2 || len(m[0]) != 0 {
		e.log.Warn().Int("parts", len(m)).Str(logging.FieldSocket, "accept").Msg("dropping reply with bad envelope")
		return
	}
	d, err := tnetstring.DecodeDict(m[1])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "accept").Msg("dropping undecodable reply")
		return
	}
	idb, _ := d.Bytes("id")
	pa := e.accepts[string(idb)]
	if pa == nil {
		return
	}
	delete(e.accepts, string(idb))
	if pa.group != nil {
		e.shareAcceptEnd(pa, func(m *session) { e.acceptReplyTo(m, d, now) }, now)
		return
	}
	s := pa.s
	if e.byIn[s.key] != s {
		return
	}
	if s.noProxy && !d.Bool("success") {
		e.acceptUnavailable(s, now) // Pushpin's requestsession: any failure is 500
		return
	}
	e.acceptReplyTo(s, d, now)
}

// acceptReplyTo applies an accept reply to one of the sessions handed over.
func (e *engine) acceptReplyTo(s *session, d tnetstring.Dict, now time.Time) {
	if !d.Bool("success") {
		cond, _ := d.Bytes("condition")
		msg, _ := d.Bytes("value")
		if s.sentFirst {
			e.sentFirstFailed(s, fmt.Sprintf("Accept failed: %s %s", cond, msg), now)
			return
		}
		e.resume(s, now)
		if string(cond) == "bad-format" {
			e.respondError(s, 502, "Bad Gateway", textProxyError, "Failed to parse accept instructions: "+string(msg), now)
			return
		}
		e.respondError(s, 502, "Bad Gateway", textProxyError, fmt.Sprintf("Accept failed: %s", cond), now)
		return
	}
	v, _ := d.Dict("value")
	if v.Bool("accepted") {
		// The handler owns the client session now; forget it silently.
		s.code = s.respHead.Code
		e.handedOff[s.key] = now
		e.finish(s, outcomeAccept)
		return
	}
	if s.sentFirst {
		r, _ := v.Dict("response")
		body, _ := r.Bytes("body")
		e.sentFirstRefused(s, body, now)
		return
	}
	if r, ok := v.Dict("response"); ok {
		e.resume(s, now)
		p := zhttp.New()
		p.Code, _ = r.Int("code")
		if p.Code <= 0 {
			p.Code = 200
		}
		reason, _ := r.Bytes("reason")
		p.Reason = string(reason)
		if hl, ok := r.List("headers"); ok {
			for _, h := range hl {
				if pair, ok := h.([]any); ok && len(pair) == 2 {
					n, _ := pair[0].([]byte)
					val, _ := pair[1].([]byte)
					p.Headers = append(p.Headers, zhttp.Header{Name: string(n), Value: string(val)})
				}
			}
		}
		body, _ := r.Bytes("body")
		p.Body = append([]byte{}, body...)
		e.crossOriginComplete(s, p)
		if !hasHeader(p.Headers, "Content-Length") {
			p.Headers = append(p.Headers, zhttp.Header{Name: "Content-Length", Value: fmt.Sprint(len(p.Body))})
		}
		s.code, s.respBytes = p.Code, int64(len(p.Body))
		e.sendComplete(s, p, now)
		return
	}
	e.resume(s, now)
	e.respondError(s, 500, "Internal Server Error", textAcceptUnavailable, "", now)
}

// acceptFailed answers a session whose accept could not be delivered or
// timed out.
func (e *engine) acceptFailed(id string, now time.Time) {
	pa := e.accepts[id]
	if pa == nil {
		return
	}
	delete(e.accepts, id)
	if pa.group != nil {
		e.shareAcceptEnd(pa, func(m *session) { e.acceptUnavailable(m, now) }, now)
		return
	}
	if e.byIn[pa.s.key] != pa.s {
		return
	}
	e.acceptUnavailable(pa.s, now)
}

// acceptUnavailable answers a paused session the handler could not take.
func (e *engine) acceptUnavailable(s *session, now time.Time) {
	if s.sentFirst {
		e.sentFirstFailed(s, "Accept service unavailable.", now)
		return
	}
	e.resume(s, now)
	e.respondError(s, 500, "Internal Server Error", textAcceptUnavailable, "", now)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
