package proxy

import (
	"time"

	"tack/internal/logging"
	"tack/internal/routes"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Request sharing (grip-reference §3.14, PX-29). When the handler's
// inspect answer names a sharing key ([handler] share_all, or auto-share
// on the handler's next-link requests), requests with the same key that
// arrive while one backend request for it is under way join it, as in
// pushpin-proxy 1.36 (src/proxy/engine.cpp doProxy, proxysession.cpp):
//   - only requests whose whole body has arrived can share; the first one
//     (the leader) makes the backend request, the others (followers) wait;
//   - a relayed response goes to every member: each gets its own head
//     (CORS/JSON-P per client) and body under its own connmgr credits. The
//     backend is granted credits so that no member falls more than
//     ResponseBuffer behind what was granted: the slowest client paces
//     the backend beyond that bound (1.36 buffers the first 100000 bytes
//     for everyone, then reads only when every client has written all);
//   - a member may join until the backend response has ended, or once its
//     relayed body passes GripBodyMax (1.36's MAX_INITIAL_BUFFER); a late
//     member gets the head and body so far first;
//   - a GRIP response pauses every member and hands them all to the
//     handler in one accept call with one `requests` entry each
//     (zmq-wire.md §4.3); its reply applies to all of them;
//   - a member that leaves does not disturb the others. When the leader's
//     client leaves, the leader stays as a ghost that only serves the
//     backend request; when every member has left, the backend request is
//     cancelled;
//   - a backend failure before the response is answered to every member
//     alike; after the response started, every member is disconnected;
//   - the sessions of a retry packet whose inspect data names a sharing
//     key share again (1.36's Engine retry → doProxy).
// Not shared (each request its own backend request): test-handler
// routes, members with a different side, route or client trust, requests
// whose body passes RequestBodyKeep (read ahead: prefetch.go), and
// (unlike 1.36) a large GRIP stream hold that the proxy starts itself
// (large.go): its followers are disconnected.

// shareGroup is one shared backend request.
type shareGroup struct {
	key       string
	leader    *session
	followers []*session
	open      bool          // new members may join
	head      *zhttp.Packet // the relayed response head once it came (code, reason, backend headers)
	buf       []byte        // relayed body so far, for late members (while open)
	window    int64         // the leader's initial response credits to the zhttp client
	accepting bool          // the members are being handed to the handler
	acceptID  string
}

// members returns the group's sessions that serve a client.
func (g *shareGroup) members() []*session {
	out := make([]*session, 0, len(g.followers)+1)
	if !g.leader.ghost {
		out = append(out, g.leader)
	}
	return append(out, g.followers...)
}

// shareOrStart proxies s after its inspect answer: alone, as the leader of
// a new group, or as a member of the group already under way for key.
func (e *engine) shareOrStart(s *session, key string, now time.Time) {
	if key != "" {
		s.shareKey = key
		if e.readAhead(s, RequestBodyKeep, prefetchShare, now) {
			return // the whole body first, if it comes within RequestBodyKeep
		}
	}
	if key == "" || s.reqMore || s.bodyOverflow || len(s.targets) == 0 || s.targets[0].Kind != routes.TargetHost {
		e.startTarget(s, now)
		return
	}
	if g := e.shares[key]; g != nil && g.open && !g.leader.sentFirst && compatible(g.leader, s) {
		e.shareJoin(g, s, now)
		return
	}
	g := &shareGroup{key: key, leader: s, open: true}
	e.shares[key] = g
	s.shr = g
	e.startTarget(s, now)
}

// compatible: requests that may share one backend request and its answer.
func compatible(l, s *session) bool {
	return l.side == s.side && sameRoute(l.route, s.route) && l.ci.trusted == s.ci.trusted
}

// sameRoute: the same routes entry, or two direct intreq routes
// (intreq.go builds one per request) to the same target, signed alike.
func sameRoute(a, b *routes.Route) bool {
	if a == b {
		return true
	}
	if a.Source != b.Source || a.ID != b.ID || len(a.Targets) != 1 || len(b.Targets) != 1 ||
		a.SigIss != b.SigIss || a.SigKey != b.SigKey {
		return false
	}
	x, y := &a.Targets[0], &b.Targets[0]
	return x.Kind == y.Kind && x.Host == y.Host && x.Port == y.Port && x.SSL == y.SSL && x.Untrusted == y.Untrusted
}

func (e *engine) shareJoin(g *shareGroup, f *session, now time.Time) {
	f.shr = g
	g.followers = append(g.followers, f)
	e.log.Debug().Str(logging.FieldRID, string(f.in.ID)).Str("leader", string(g.leader.in.ID)).Msg("sharing a backend request")
	l := g.leader
	f.ti = l.ti
	switch {
	case l.grip:
		f.grip = true
	case g.head != nil:
		p := &zhttp.Packet{Code: g.head.Code, Reason: g.head.Reason, Headers: g.head.Headers, Body: g.buf, More: true}
		e.followerRelay(f, p, now)
	}
}

// shareClose stops new members from joining g.
func (e *engine) shareClose(g *shareGroup) {
	g.open = false
	g.buf = nil
	if e.shares[g.key] == g {
		delete(e.shares, g.key)
	}
}

// shareData passes a packet from the zhttp client, about to be handled
// for the leader s, on to the followers. It reports true when s is done
// (a ghost whose group ended).
func (e *engine) shareData(s *session, p *zhttp.Packet, now time.Time) bool {
	g := s.shr
	if s.sentFirst {
		// A large stream hold the proxy sends itself: the leader alone.
		e.shareDisband(g, now)
		return s.ghost
	}
	if s.grip {
		return false // collecting: the hand-off covers everyone
	}
	if !s.respStarted && p.Code >= 0 && e.isGRIPResponse(s, p) {
		for _, f := range g.followers {
			f.grip = true
		}
		return false
	}
	if g.head == nil && p.Code >= 0 {
		g.head = &zhttp.Packet{Code: p.Code, Reason: p.Reason, Headers: p.Headers}
		g.window = s.outGranted
	}
	if g.open {
		g.buf = append(g.buf, p.Body...)
		if len(g.buf) > GripBodyMax || !p.More {
			e.shareClose(g)
		}
	}
	for _, f := range append([]*session(nil), g.followers...) {
		if f.shr == g {
			e.followerRelay(f, p, now)
		}
	}
	return false
}

// followerRelay relays a response packet to a follower, as clientData
// does for the session that made the request.
func (e *engine) followerRelay(f *session, p *zhttp.Packet, now time.Time) {
	out := zhttp.New()
	if !f.respStarted {
		relayHead(f, out, p)
	}
	if !p.More {
		f.respEnd = true
	}
	e.queueResp(f, out, p, now)
}

// shareGrant counts n body bytes that went to member s's client and
// grants the zhttp client what the slowest member's progress allows.
func (e *engine) shareGrant(s *session, n int, now time.Time) {
	s.delivered += int64(s.rawSent(n))
	g := s.shr
	l := g.leader
	if !l.outActive || !l.outAcked || g.head == nil {
		return
	}
	low := int64(-1)
	for _, m := range g.members() {
		if low < 0 || m.delivered < low {
			low = m.delivered
		}
	}
	if low < 0 {
		return
	}
	if want := low + g.window - l.outGranted; want >= creditBatch {
		c := zhttp.New()
		c.Type = zhttp.TypeCredit
		c.Credits = want
		l.outGranted += want
		e.sendClient(l, c, now)
	}
}

// shareRespond gives every follower of the leader s the response the
// proxy is about to send s (a backend failure before any response), and
// ends the group. It reports true when s is a ghost, which is then done.
func (e *engine) shareRespond(s *session, code int, reason, ctype, body string, now time.Time) bool {
	g := s.shr
	if g == nil || g.leader != s {
		return false
	}
	followers := e.shareDissolve(g)
	for _, f := range followers {
		e.respond(f, code, reason, ctype, body, now)
	}
	if s.ghost {
		e.endGhost(s, now)
		return true
	}
	return false
}

// shareDissolve ends g without touching its members, which go on alone.
func (e *engine) shareDissolve(g *shareGroup) []*session {
	e.shareClose(g)
	followers := g.followers
	g.followers = nil
	for _, f := range followers {
		f.shr = nil
	}
	g.leader.shr = nil
	return followers
}

// shareDisband ends g, disconnecting the followers that do not yet have
// their whole response; a ghost leader goes too.
func (e *engine) shareDisband(g *shareGroup, now time.Time) {
	l := g.leader
	followers := e.shareDissolve(g)
	if l.ghost {
		e.endGhost(l, now)
	}
	for _, f := range followers {
		if e.byIn[f.key] != f || f.respEnd {
			continue
		}
		e.log.Warn().Str(logging.FieldRID, string(f.in.ID)).Msg("shared backend request ended early, disconnecting")
		e.cancelIn(f, now)
		e.finish(f, "error")
	}
}

// shareClientLeft is called when the client of s went away (cancel,
// expiry, bad sequence). If s leads a group whose backend request is
// under way, s becomes a ghost that serves only that request, and true is
// returned: the caller must not cancel it.
func (e *engine) shareClientLeft(s *session, outcome string, now time.Time) bool {
	g := s.shr
	if g == nil || g.leader != s || s.ghost || len(g.followers) == 0 || !s.outActive {
		return false
	}
	e.log.Debug().Str(logging.FieldRID, string(s.in.ID)).Msg("client left, its backend request goes on for the others")
	e.statsEnd(s, outcome)
	e.logRequest(s, outcome)
	s.ghost = true
	// Its own share of the response goes nowhere, at once.
	s.in.Credits = 1 << 50
	s.respPending = nil
	delete(e.waitingHandler, s.key)
	delete(e.byIn, s.key)
	s.key = "ghost\x00" + s.key
	e.byIn[s.key] = s
	return true
}

// endGhost removes a ghost leader, cancelling its backend request if it
// is still under way.
func (e *engine) endGhost(s *session, now time.Time) {
	if g := s.shr; g != nil {
		e.shareDissolve(g)
	}
	e.cancelClient(s, now)
	delete(e.byIn, s.key)
}

// shareFinish is called as s finishes. It reports true when finish must
// do nothing more (s is a ghost: its client was logged when it left).
func (e *engine) shareFinish(s *session) bool {
	g := s.shr
	now := e.cfg.Now()
	if s.ghost {
		if g != nil {
			e.shareDisband(g, now)
		} else {
			e.endGhost(s, now)
		}
		return true
	}
	if g == nil {
		return false
	}
	if g.leader == s {
		e.shareDisband(g, now)
		return false
	}
	s.shr = nil
	for i, f := range g.followers {
		if f == s {
			g.followers = append(g.followers[:i:i], g.followers[i+1:]...)
			break
		}
	}
	l := g.leader
	switch {
	case l.ghost && len(g.followers) == 0 && !s.respEnd:
		// (With the whole response, the ghost is finishing on the same
		// last packet.)
		e.log.Debug().Str(logging.FieldRID, string(l.in.ID)).Msg("every client of a shared request left, cancelling it")
		e.endGhost(l, now)
	case g.accepting:
		e.shareAccept(g, now)
	}
	return false
}

// shareHandOff starts the hand-off of every member of the leader's group
// to the handler. It reports false when s is not a group leader (or its
// group has shrunk to s alone), leaving the hand-off to the caller.
func (e *engine) shareHandOff(s *session, now time.Time) bool {
	g := s.shr
	if g == nil || g.leader != s {
		return false
	}
	if s.sentFirst || (len(g.followers) == 0 && !s.ghost) {
		e.shareDisband(g, now)
		return s.ghost
	}
	e.shareClose(g)
	g.accepting = true
	for _, m := range g.members() {
		m.respHead = s.respHead
		e.pauseForHandoff(m, now)
	}
	return true
}

// shareProceed: member s has paused; the accept call goes out once every
// member has.
func (e *engine) shareProceed(s *session, now time.Time) {
	s.proceeded = true
	e.shareAccept(s.shr, now)
}

// shareAccept sends the group's accept call when every member is paused.
func (e *engine) shareAccept(g *shareGroup, now time.Time) {
	if !g.accepting || g.acceptID != "" {
		return
	}
	members := g.members()
	if len(members) == 0 {
		e.endGhost(g.leader, now)
		return
	}
	for _, m := range members {
		if !m.proceeded {
			return
		}
	}
	id := newUUID()
	g.acceptID = id
	for _, m := range members {
		m.acceptID = id
	}
	e.sendAccept(id, &pendingAccept{s: g.leader, group: g, deadline: now.Add(AcceptTimeout)}, e.acceptArgs(g.leader, members), now)
}

// shareAcceptEnd ends the group of an accept call that was answered or
// failed; each member still connected gets reply (the single-request
// handling), and a ghost leader is removed.
func (e *engine) shareAcceptEnd(pa *pendingAccept, reply func(*session), now time.Time) {
	g := pa.group
	l := g.leader
	members := g.members()
	e.shareDissolve(g)
	for _, m := range members {
		if e.byIn[m.key] == m {
			reply(m)
		}
	}
	if l.ghost {
		e.endGhost(l, now)
	}
}

// inspectDict is the accept call's `inspect` field: the handler's inspect
// answer as 1.36 passes it on (zmq-wire.md §4.3), or, without one, the
// retry packet's last ids.
func (s *session) inspectDict() tnetstring.Dict {
	out := tnetstring.Dict{{Key: "no-proxy", Value: s.inspect.Bool("no-proxy")}}
	if k, ok := s.inspect.Bytes("sharing-key"); ok {
		out = append(out, tnetstring.Field{Key: "sharing-key", Value: k})
	}
	if sid, ok := s.inspect.Bytes("sid"); ok {
		out = append(out, tnetstring.Field{Key: "sid", Value: sid})
	}
	if len(s.lastIDs) > 0 {
		out = append(out, tnetstring.Field{Key: "last-ids", Value: s.lastIDs})
	}
	if ud, ok := s.inspect.Get("user-data"); ok {
		out = append(out, tnetstring.Field{Key: "user-data", Value: ud})
	}
	return out
}
