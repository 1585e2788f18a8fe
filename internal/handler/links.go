package handler

import (
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
)

// Grip-Link next and gone links (grip-reference §3.9, Pushpin
// src/handler/httpsession.cpp).
//
// A session with a next link fetches it through the proxy (intreq.go):
// at once and again after each answer while there is no hold; after the
// link's timeout for a stream hold (unless every channel got an item in
// the window); on updates (hint, prev-id gap, recover, first
// subscription). The answer's headers are new instructions and its body is
// appended to the stream. A failed fetch is retried after 1, 2, 4, 8 and
// 16 s (plus 0–999 ms); the sixth failure ends the stream with "Failed to
// retrieve next link.". The gone link of the first instructions is POSTed
// when the held request ends, however it ends.

const (
	nextLinkRetries = 5
	textNextFailed  = "Failed to retrieve next link."
	textNonStream   = "Next link returned non-stream hold."
	textNoIntreq    = "Instruct contained link, but handler not configured for outbound requests."
)

// linkState is a session's Grip-Link state, allocated for the sessions
// that have links.
type linkState struct {
	gone         *grip.Link // from the first instructions only
	outReq       *outReq    // next-link request in flight
	currentURI   string     // the last next link fetched; "" before
	retries      int        // failed next-link fetches in a row
	retryDue     bool       // timerNextLink is a retry, not a window end
	fetchOnFlush bool       // fetch the next link once pending is written
}

// link returns s's link state, allocating it on first use.
func (s *hsession) link() *linkState {
	if s.links == nil {
		s.links = &linkState{}
	}
	return s.links
}

// inFlight reports whether a next-link request of s is out.
func (s *hsession) inFlight() bool { return s.links != nil && s.links.outReq != nil }

// streaming reports whether s writes an open-ended response: a stream
// hold, or no hold with a next link.
func (s *hsession) streaming() bool { return s.mode != grip.HoldResponse }

// baseURI is what s's relative next links resolve against: the last next
// link fetched, or the client's request URI.
func (s *hsession) baseURI() string {
	if s.links != nil && s.links.currentURI != "" {
		return s.links.currentURI
	}
	return s.acc.OrigRequest.URI
}

// fetchNext requests s's next link now, unless one is in flight.
func (e *engine) fetchNext(s *hsession, now time.Time) {
	if s.state != stateHolding || s.in.NextLink == nil || s.inFlight() {
		return
	}
	e.timers.disarm(s, timerNextLink)
	s.link().retryDue = false
	var headers []grip.Header
	for _, c := range s.in.Channels {
		if sc := s.chans.get(c.Name); sc != nil && sc.hasPrev {
			headers = append(headers, grip.Header{Name: "Grip-Last", Value: c.BackendName + "; last-id=" + sc.prevID})
		}
	}
	r, err := e.startOutReq(outNext, s, s.acc, "GET", s.baseURI(), s.in.NextLink.URI, headers, now)
	if errors.Is(err, errNoIntreq) {
		e.fail(s, textNoIntreq, now) // as Pushpin: no retries
		return
	}
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldRID, string(s.z.ID)).Str("link", s.in.NextLink.URI).Msg("next link request not sent")
		e.nextLinkFailed(s, now)
		return
	}
	s.link().outReq = r
}

// nextLinkFailed schedules the next attempt, or ends s after the last.
func (e *engine) nextLinkFailed(s *hsession, now time.Time) {
	if s.state != stateHolding {
		return
	}
	l := s.link()
	if l.retries >= nextLinkRetries {
		e.fail(s, textNextFailed, now)
		return
	}
	d := time.Duration(1<<l.retries)*time.Second + time.Duration(rand.Int64N(int64(time.Second)))
	l.retries++
	l.retryDue = true
	e.timers.arm(s, timerNextLink, now.Add(d))
}

// nextLinkTimer handles timerNextLink: a retry falling due, or the end of
// a stream hold's link window.
func (e *engine) nextLinkTimer(s *hsession, now time.Time) {
	if s.state != stateHolding || s.in.NextLink == nil || s.inFlight() {
		return
	}
	if s.links != nil && s.links.retryDue {
		e.fetchNext(s, now)
		return
	}
	if len(s.pending) > 0 || len(s.queue) > 0 {
		// The client is not reading: the timer pauses.
		e.armNextLink(s, now)
		return
	}
	all := len(s.chans) > 0
	for _, sc := range s.chans {
		all = all && sc.delivered
	}
	if all {
		e.armNextLink(s, now)
		return
	}
	e.queueUpdate(s, now)
}

// armNextLink starts a stream hold's next-link window.
func (e *engine) armNextLink(s *hsession, now time.Time) {
	for _, sc := range s.chans {
		sc.delivered = false
	}
	e.timers.arm(s, timerNextLink, now.Add(s.in.NextLink.Timeout))
}

// nextLinkResponse applies a next link's answer.
func (e *engine) nextLinkResponse(s *hsession, r *outReq, now time.Time) {
	if s.state != stateHolding {
		return
	}
	if r.code < 200 || r.code > 299 {
		e.log.Debug().Str(logging.FieldRID, string(s.z.ID)).Int("code", r.code).Msg("next link failed")
		e.nextLinkFailed(s, now)
		return
	}
	// Only headers carry instructions here; an instruct-typed body is
	// content like any other.
	headers := r.headers[:0:0]
	for _, h := range r.headers {
		if strings.EqualFold(h.Name, "Content-Type") && strings.HasPrefix(strings.TrimSpace(h.Value), grip.ContentTypeInstruct) {
			continue
		}
		headers = append(headers, h)
	}
	in, err := grip.Parse(r.code, r.reason, headers, r.body, grip.ParseOptions{
		ChannelPrefix:             s.acc.ChannelPrefix,
		ConnectionSubscriptionMax: e.cfg.ConnectionSubscriptionMax,
	})
	if err != nil {
		msg := err.Error()
		var fe *grip.FormatError
		if errors.As(err, &fe) {
			msg = fe.Msg
		}
		e.fail(s, msg, now)
		return
	}
	if in.Hold == grip.HoldResponse {
		e.fail(s, textNonStream, now)
		return
	}
	l := s.link()
	l.retries = 0
	l.currentURI = r.uri // later relative links resolve against it
	e.applyNext(s, in, now)
}

// applyNext replaces s's instructions with those of a next response and
// appends its body.
func (e *engine) applyNext(s *hsession, in *grip.Instruct, now time.Time) {
	if in.Hold == grip.HoldStream && in.NextLink == nil {
		for _, c := range in.Channels {
			if c.PrevID != "" {
				e.fail(s, "channel '"+c.BackendName+"' specifies prev-id, but no next link found", now)
				return
			}
		}
	}
	want := map[string]bool{}
	if in.Hold == grip.HoldStream {
		for _, name := range s.acc.ImplicitChannels {
			want[name] = true
		}
		for _, c := range in.Channels {
			want[c.Name] = true
		}
	}
	for _, name := range s.chans.names() {
		if !want[name] {
			e.unsubscribe(s, name, now)
		}
	}
	s.in = in
	s.mode = in.Hold
	if in.Hold == grip.HoldStream {
		for _, name := range s.acc.ImplicitChannels {
			if s.chans.get(name) == nil {
				e.subscribe(s, name, sessChannel{}, now)
			}
		}
		for _, c := range in.Channels {
			e.subscribe(s, c.Name, sessChannel{prevID: c.PrevID, hasPrev: c.PrevID != "", filters: c.Filters}, now)
		}
	}
	body, err := e.responseFilters(s, in.Response.Body)
	if err != nil {
		e.fail(s, err.Error(), now)
		return
	}
	if !e.writeBody(s, body, now) || s.state != stateHolding {
		return
	}
	if len(body) > 0 {
		e.contentWritten(s, now)
	}
	switch {
	case in.Hold == grip.HoldNone && in.NextLink == nil:
		// The chain ends: so does the response.
		e.prepareToClose(s)
		s.finishAfter = true
		e.flush(s, now)
	case in.Hold == grip.HoldNone:
		e.chainNext(s, now)
	default:
		e.timers.disarm(s, timerGripKeepAlive)
		if ka := in.KeepAlive; ka != nil {
			e.timers.arm(s, timerGripKeepAlive, now.Add(gripKeepAliveDelay(ka)))
		}
		if in.NextLink != nil {
			e.armNextLink(s, now)
		} else {
			e.timers.disarm(s, timerNextLink)
		}
	}
}

// chainNext fetches the next link of a no-hold session once the client has
// taken what was written so far, so that a chain never outruns it.
func (e *engine) chainNext(s *hsession, now time.Time) {
	if len(s.pending) > 0 {
		s.link().fetchOnFlush = true
		return
	}
	e.fetchNext(s, now)
}

// sendGone POSTs the session's gone link (its request ended).
func (e *engine) sendGone(s *hsession, now time.Time) {
	if s.links == nil || s.links.gone == nil {
		return
	}
	g := s.links.gone
	if _, err := e.startOutReq(outGone, nil, s.acc, "POST", s.acc.OrigRequest.URI, g.URI, nil, now); err != nil {
		e.log.Warn().Err(err).Str(logging.FieldRID, string(s.z.ID)).Str("link", g.URI).Msg("gone link request not sent")
	}
}
