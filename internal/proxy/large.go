package proxy

import (
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// Large GRIP answers (PX-26). A GRIP response whose body passes
// GripBodyMax cannot go to the handler whole. As Pushpin 1.36's
// proxysession does, a stream hold (or a next-link response without
// Grip-Hold) whose channels do not use the build-id filter is sent to the
// client by the proxy itself: Grip-* and Content-Length removed,
// Grip-Status applied, the body relayed under credits. Once the backend's
// body is all out, the session is handed off with response-sent and the
// handler carries on from there. Any other large GRIP response is a 502.

const textGripResponseTooLarge = "GRIP instruct response too large from "

// gripTooLarge handles a collecting GRIP response that has just passed
// GripBodyMax; more says whether the backend has more body.
func (e *engine) gripTooLarge(s *session, more bool, now time.Time) {
	target := "-"
	if s.ti < len(s.targets) {
		target = targetName(&s.targets[s.ti])
	}
	head, ok, err := grip.ProxyLargeHead(int(s.respHead.Code), s.respHead.Reason, toGripHeaders(s.respHead.Headers))
	// A JSON-P request's response cannot be continued by the handler
	// unwrapped, so it is refused like any other large answer.
	if !ok || s.bodyOverflow || s.jsonp != nil {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("target", target).Msg("GRIP response body exceeds 100000 bytes")
		e.cancelClient(s, now)
		e.respondError(s, 502, "Bad Gateway", textProxyError, textGripResponseTooLarge+target, now)
		return
	}
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldRID, string(s.in.ID)).Msg("large GRIP response with bad Grip-Status")
		e.cancelClient(s, now)
		e.respondError(s, 500, "Internal Server Error", textAcceptUnavailable, "", now)
		return
	}
	s.grip = false
	s.sentFirst = true
	s.respStarted = true
	s.code = int64(head.Code)
	out := zhttp.New()
	out.Code = int64(head.Code)
	out.Reason = head.Reason
	out.Headers = make([]zhttp.Header, len(head.Headers))
	for i, h := range head.Headers {
		out.Headers[i] = zhttp.Header{Name: h.Name, Value: h.Value}
	}
	out.Headers = filterResponseHeaders(out.Headers)
	if s.aco {
		out.Headers = corsHeaders(s.first.Headers, out.Headers)
	}
	s.respPending = append(s.respPending[:0], s.respBody...)
	s.respBody = nil
	if !more {
		s.respEnd = true
		e.dropOut(s)
	}
	e.flushResp(s, out, now)
}

// sentFirstDone is called once the whole initial body of a response the
// proxy sent itself has gone to connmgr: the session goes to the handler.
func (e *engine) sentFirstDone(s *session, now time.Time) {
	e.dropOut(s)
	e.handOff(s, now)
}

// sentFirstRefused ends a session whose initial response the proxy sent
// when the handler does not take it: the handler's response body, if any,
// is appended, and the body ends (Pushpin: acceptRequest_finished).
func (e *engine) sentFirstRefused(s *session, body []byte, now time.Time) {
	e.resume(s, now)
	s.respBytes += int64(len(body))
	if len(body) == 0 {
		p := zhttp.New()
		p.Body = []byte{}
		e.sendIn(s, p, now)
		e.finish(s, "")
		return
	}
	s.outBody = append([]byte(nil), body...)
	s.completing = true
	e.flushComplete(s, now)
}

// sentFirstFailed ends a session whose initial response the proxy sent
// when the hand-off failed: in debug mode the reason is appended to the
// body, otherwise the client is disconnected (Pushpin's rejectAll once a
// response has started).
func (e *engine) sentFirstFailed(s *session, debugText string, now time.Time) {
	e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Str("reason", debugText).Msg("hand-off after the initial response failed")
	if e.debug(s) {
		e.sentFirstRefused(s, []byte("\n\n"+debugText+"\n"), now)
		return
	}
	e.resume(s, now)
	e.cancelIn(s, now)
	e.finish(s, "error")
}
