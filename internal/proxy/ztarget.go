package proxy

import (
	"strconv"
	"time"

	"tack/internal/logging"
	"tack/internal/routes"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// The engine's side of zhttp/ and zhttpreq/ targets (sockets in
// zbackend.go). A zhttp/ session runs exactly like one through zurl, on
// the target's sockets; a zhttpreq/ session sends one request packet when
// the body is complete and ends with the one answer.

// appendGripLast adds the Grip-Last headers of a retried request.
func appendGripLast(hs []zhttp.Header, lastIDs tnetstring.Dict) []zhttp.Header {
	for _, f := range lastIDs {
		if id, ok := f.Value.([]byte); ok {
			hs = append(hs, zhttp.Header{Name: "Grip-Last", Value: f.Key + "; last-id=" + string(id)})
		}
	}
	return hs
}

// syncZBackends binds the zhttp targets of a newly loaded routes table and
// closes those that left it once unused.
func (e *engine) syncZBackends() {
	e.zb.sync(e.routes(), func(l *zlink) bool {
		for _, s := range e.byIn {
			if s.link == l {
				return true
			}
		}
		return false
	})
}

// startZTarget starts s's request on a zhttp/ or zhttpreq/ target.
func (e *engine) startZTarget(s *session, t *routes.Target, now time.Time) {
	l, err := e.zb.get(t)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldRID, string(s.in.ID)).Str("target", targetName(t)).Msg("cannot bind zhttp target")
		e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
		return
	}
	s.link = l
	if !l.req {
		e.startHost(s, t, now)
		return
	}
	e.counter++
	s.out = zhttpsession.Session{ID: []byte(e.cfg.InstanceID + "-" + strconv.FormatUint(e.counter, 16))}
	s.outActive, s.outAcked = true, false
	s.ackDeadline = now.Add(zreqTimeout)
	e.byOut[string(s.out.ID)] = s
	s.req = e.rewriteRequest(s.first, s.ci, s.route, t)
	s.req.headers = appendGripLast(s.req.headers, s.lastIDs)
	s.respPending, s.respEnd, s.grantOwed = nil, false, 0
	// The body so far: all of it when kept (a retry from the handler),
	// else what arrived and was not forwarded.
	s.zbody = s.pendingOut
	if !s.bodyOverflow {
		s.zbody = append([]byte(nil), s.body...)
	}
	s.pendingOut = nil
	if s.reqMore {
		e.zreqCredit(s, now)
		return
	}
	e.zreqSend(s, t, now)
}

// zreqBody collects request body for a zhttpreq/ target.
func (e *engine) zreqBody(s *session, b []byte, more bool, now time.Time) {
	if !s.outActive || s.outAcked {
		return
	}
	e.keepBody(s, b)
	s.zbody = append(s.zbody, b...)
	if len(s.zbody) > zreqBodyMax {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Int("max", zreqBodyMax).Msg("request body too large for a zhttpreq target")
		e.dropOut(s)
		e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
		return
	}
	s.ackDeadline = now.Add(zreqTimeout)
	if more {
		e.zreqCredit(s, now)
		return
	}
	e.zreqSend(s, &s.targets[s.ti], now)
}

// zreqCredit keeps connmgr's request-body window open up to zreqWindow,
// and never beyond one byte over the zhttpreq body limit.
func (e *engine) zreqCredit(s *session, now time.Time) {
	want := min(zreqWindow, zreqBodyMax+1-int64(len(s.zbody))) - s.inOutstanding
	if want < zreqWindow/2 && s.inOutstanding > 0 {
		return // batch grants
	}
	e.grantIn(s, want, now)
}

// grantIn grants connmgr (or the handler) n more bytes of request body.
func (e *engine) grantIn(s *session, n int64, now time.Time) {
	if n <= 0 {
		return
	}
	c := zhttp.New()
	c.Type = zhttp.TypeCredit
	c.Credits = n
	s.inOutstanding += n
	e.sendIn(s, c, now)
}

// zreqSend sends the complete request as one packet: as Pushpin's req-mode
// client, with from, id, method, uri, headers, body and max-size, and no
// seq, credits or stream flag.
func (e *engine) zreqSend(s *session, t *routes.Target, now time.Time) {
	p := zhttp.New()
	p.From = e.id
	p.ID = s.out.ID
	p.Method = s.method
	p.URI = s.req.uri
	p.Headers = s.req.headers
	p.Body = s.zbody
	p.MaxSize = zreqBodyMax
	p.IgnorePolicies = !t.Untrusted
	s.zbody = nil
	e.statsCount(s, ctrServerHeaderSent, requestHeaderBytes(p.Method, p.URI, p.Headers))
	e.statsCount(s, ctrServerContentSent, len(p.Body))
	s.ackDeadline = now.Add(zreqTimeout)
	select {
	case s.link.first <- zsock.Message{[]byte{}, p.Encode()}:
	default:
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("target", targetName(t)).Msg("zhttpreq queue full")
		e.dropOut(s)
		e.respondError(s, 502, "Bad Gateway", textProxyError, "Error: zhttp service for route is unreachable.", now)
	}
}

// zbackendMessage handles a message from a zhttp/ target's SUB or a
// zhttpreq/ target's DEALER.
func (e *engine) zbackendMessage(m zbackendMsg, now time.Time) {
	l := m.link
	if !l.req {
		if len(m.msg) != 1 {
			e.log.Warn().Int("parts", len(m.msg)).Str("target", l.key).Msg("dropping message with parts != 1")
			return
		}
		e.handleClientReply(l, m.msg[0], now)
		return
	}
	if len(m.msg) != 2 || len(m.msg[0]) != 0 {
		e.log.Warn().Int("parts", len(m.msg)).Str("target", l.key).Msg("dropping answer that is not [\"\", packet]")
		return
	}
	p, err := zhttp.Parse(m.msg[1])
	if err != nil {
		e.log.Warn().Err(err).Str("target", l.key).Msg("dropping undecodable answer")
		return
	}
	if p.ID == nil {
		e.log.Warn().Str("target", l.key).Msg("dropping answer without a single id")
		return
	}
	s := e.byOut[string(p.ID)]
	if s == nil || s.link != l || s.outAcked {
		e.log.Warn().Str("target", l.key).Str("id", string(p.ID)).Msg("dropping answer for an unknown request id")
		return
	}
	if p.Type != zhttp.TypeData || p.More || p.Code < 0 {
		// Pushpin: "received invalid req response", then 502.
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("target", l.key).Str("type", p.Type).Bool("more", p.More).
			Msg("invalid zhttpreq answer: not one complete response")
		e.dropOut(s)
		e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
		return
	}
	s.outAcked = true
	e.clientData(s, p, now)
}
