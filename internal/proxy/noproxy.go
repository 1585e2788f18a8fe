package proxy

import (
	"time"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// no-proxy (zmq-wire.md §4.2): an inspect answer with no-proxy: true (which
// Pushpin's handler never gives; another inspect service might) means the
// request goes to the handler without a backend request. As pushpin-proxy
// 1.36 does (src/proxy/requestsession.cpp, ReceivingForAccept): the whole
// body is read (more than 100000 bytes: 413), the session is paused, and
// an accept call carries the request as received, with no response; a
// failed call or one answered with neither accepted nor a response gives
// the client 500 "Accept service unavailable.".

const textNoProxyTooLarge = "Body must not exceed 100000 bytes\n"

// noProxyStart takes s to the handler once its body is complete.
func (e *engine) noProxyStart(s *session, now time.Time) {
	s.noProxy = true
	if s.bodyOverflow {
		e.respondError(s, 413, "Request Entity Too Large", textNoProxyTooLarge, "", now)
		return
	}
	if !s.reqMore {
		e.noProxyReady(s, now)
		return
	}
	// Let connmgr send the rest: one byte more than may be kept tells
	// a body that is too large.
	if want := int64(RequestBodyKeep+1-len(s.body)) - s.inOutstanding; want > 0 {
		c := zhttp.New()
		c.Type = zhttp.TypeCredit
		c.Credits = want
		s.inOutstanding += want
		e.sendIn(s, c, now)
	}
}

// noProxyBody takes request body for a no-proxy request.
func (e *engine) noProxyBody(s *session, b []byte, now time.Time) {
	e.statsCount(s, ctrClientContentRecv, len(b))
	e.keepBody(s, b)
	switch {
	case s.bodyOverflow:
		e.respondError(s, 413, "Request Entity Too Large", textNoProxyTooLarge, "", now)
	case !s.reqMore:
		e.noProxyReady(s, now)
	}
}

// noProxyReady pauses the session for its accept call.
func (e *engine) noProxyReady(s *session, now time.Time) {
	if e.toAccept == nil {
		e.respondError(s, 500, "Internal Server Error", textAcceptUnavailable, "", now)
		return
	}
	s.respHead = &zhttp.Packet{} // no response: the handler answers
	e.pauseForHandoff(s, now)
}

// noProxyAccept sends the accept call of a paused no-proxy request.
func (e *engine) noProxyAccept(s *session, now time.Time) {
	args := tnetstring.Dict{
		{Key: "requests", Value: []any{e.acceptRequest(s)}},
		{Key: "request-data", Value: requestData(s.method, s.first.URI, s.first.Headers, s.body)},
		// Pushpin sends its empty original request here.
		{Key: "orig-request-data", Value: requestData("", "", nil, nil)},
		{Key: "inspect", Value: s.inspectDict()},
	}
	if s.route != nil && s.route.ID != "" {
		args = append(args, tnetstring.Field{Key: "route", Value: s.route.ID})
	}
	if s.route != nil && s.route.Prefix != "" {
		args = append(args, tnetstring.Field{Key: "channel-prefix", Value: s.route.Prefix})
	}
	id := newUUID()
	s.acceptID = id
	e.sendAccept(id, &pendingAccept{s: s, deadline: now.Add(AcceptTimeout)}, args, now)
}
