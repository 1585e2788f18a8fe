package proxy

import (
	"time"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// Inspect (zmq-wire.md §4.2). Before proxying, the proxy asks the handler
// about each request over the inspect DEALER (ZRPC, no envelope prefix):
// the answer may name a sharing key (share.go) and last ids for Grip-Last.
// As pushpin-proxy 1.36 does (src/proxy/requestsession.cpp,
// src/proxy/zrpcchecker.cpp):
//   - a call that fails (timeout after 8 s, no handler connected, a reply
//     that does not parse) lets the request be proxied unshared;
//   - the service is taken as unavailable when a call times out or finds no
//     handler while no other call is outstanding, or when no call has
//     succeeded for 8 s while calls are outstanding. While it is
//     unavailable, requests are proxied at once, each still sending its
//     inspect call in the background; the first reply (of any kind) makes
//     the service available again;
//   - the call waits for the first inspectPrefetch bytes of body (or all
//     of a shorter one) and carries them, with truncated when more
//     follows (prefetch.go);
//   - no-proxy: true hands the request to the handler without a backend
//     request (noproxy.go).

const (
	// inspectPrefetch is the most request body an inspect call carries
	// (Pushpin's inspectPrefetch).
	inspectPrefetch = 10000
	// checkTimeout is how long outstanding inspect calls may go without a
	// reply before the service counts as unavailable (ZrpcChecker's 8 s).
	checkTimeout = 8 * time.Second
)

// inspectChecker tracks whether the inspect service answers (Pushpin's
// ZrpcChecker). The zero value is available.
type inspectChecker struct {
	unavailable bool
	watching    int       // calls outstanding
	deadline    time.Time // zero: clock stopped
}

func (c *inspectChecker) watch(now time.Time) {
	c.watching++
	if c.deadline.IsZero() {
		c.deadline = now.Add(checkTimeout)
	}
}

// done records the end of a watched call: answered is true for any reply
// from the handler (a failure reply too: the service responds), false for
// a local timeout or "no handler connected".
func (c *inspectChecker) done(answered bool, now time.Time) {
	c.watching--
	if answered {
		c.unavailable = false
		c.deadline = time.Time{}
		if c.watching > 0 {
			c.deadline = now.Add(checkTimeout)
		}
		return
	}
	if c.watching == 0 {
		c.deadline = time.Time{}
		c.unavailable = true
	}
}

func (c *inspectChecker) tick(now time.Time) {
	if !c.deadline.IsZero() && now.After(c.deadline) {
		c.deadline = time.Time{}
		c.unavailable = true
	}
}

// pendingInspect is an inspect call waiting for its reply.
type pendingInspect struct {
	s        *session // nil: a background call (the service was unavailable)
	deadline time.Time
}

// inspector is the proxy's inspect client, run by the engine goroutine;
// the DEALER itself has its own owner goroutine (internal/zsock).
type inspector struct {
	send    func(zsock.Message) bool // TrySend on the DEALER
	peers   func() int               // handlers connected to it
	timeout time.Duration
	checker inspectChecker
	pending map[string]*pendingInspect
}

func newInspector(send func(zsock.Message) bool, peers func() int, timeout time.Duration) *inspector {
	if timeout <= 0 {
		timeout = AcceptTimeout // Pushpin's inspectTimeout, 8 s
	}
	return &inspector{send: send, peers: peers, timeout: timeout, pending: map[string]*pendingInspect{}}
}

// inspectArgs builds the inspect call's args from the request as received.
func inspectArgs(s *session) tnetstring.Dict {
	body := s.body
	if s.bodyOverflow {
		body = s.pendingOut // all of it: nothing has gone to a backend yet
	}
	truncated := s.reqMore
	if len(body) > inspectPrefetch {
		body, truncated = body[:inspectPrefetch], true
	}
	args := tnetstring.Dict{
		{Key: "method", Value: s.method},
		{Key: "uri", Value: s.first.URI},
		{Key: "headers", Value: headerList(s.first.Headers)},
		{Key: "body", Value: append([]byte{}, body...)},
	}
	if truncated {
		args = append(args, tnetstring.Field{Key: "truncated", Value: true})
	}
	if s.route != nil && s.route.Session {
		args = append(args, tnetstring.Field{Key: "get-session", Value: true})
	}
	if s.side == sideIntreq {
		if pt, ok := parsePassthrough(s.first.Passthrough); ok && pt.autoShare {
			args = append(args, tnetstring.Field{Key: "auto-share", Value: true})
		}
	}
	return args
}

// proxyRequest starts a routed request: through an inspect call when the
// inspect socket is configured, else (or when inspect is unavailable)
// straight to its targets.
func (e *engine) proxyRequest(s *session, now time.Time) {
	if e.insp == nil {
		e.startTarget(s, now)
		return
	}
	if e.readAhead(s, inspectPrefetch, prefetchInspect, now) {
		return
	}
	e.inspectNow(s, now)
}

// inspectNow sends s's inspect call (or, while inspect is unavailable,
// proxies s at once).
func (e *engine) inspectNow(s *session, now time.Time) {
	in := e.insp
	id := newUUID()
	b, err := tnetstring.Encode(nil, tnetstring.Dict{
		{Key: "id", Value: id},
		{Key: "method", Value: "inspect"},
		{Key: "args", Value: inspectArgs(s)},
	})
	if err != nil {
		e.log.Error().Err(err).Str(logging.FieldRID, string(s.in.ID)).Msg("encode inspect")
		e.startTarget(s, now)
		return
	}
	available := !in.checker.unavailable
	in.checker.watch(now)
	pi := &pendingInspect{deadline: now.Add(in.timeout)}
	in.pending[id] = pi
	if available {
		pi.s = s
		s.inspectID = id
	}
	if in.peers() == 0 || !in.send(zsock.Message{nil, b}) {
		// ZRPC's service-unavailable: nobody to ask.
		e.inspectFailed(id, false, now)
	}
	if !available {
		e.log.Debug().Str(logging.FieldRID, string(s.in.ID)).Msg("inspect not available, proxying")
		e.startTarget(s, now)
	}
}

// inspectFailed ends an inspect call without a usable answer; answered
// says whether the handler replied at all (see inspectChecker.done).
func (e *engine) inspectFailed(id string, answered bool, now time.Time) {
	pi := e.insp.pending[id]
	if pi == nil {
		return
	}
	delete(e.insp.pending, id)
	e.insp.checker.done(answered, now)
	if s := e.inspectWaiter(pi, id); s != nil {
		s.inspectID = ""
		e.startTarget(s, now)
	}
}

// inspectWaiter returns the live session waiting for call id, if any.
func (e *engine) inspectWaiter(pi *pendingInspect, id string) *session {
	s := pi.s
	if s == nil || e.byIn[s.key] != s || s.inspectID != id {
		return nil
	}
	return s
}

// handleInspectReply handles a DEALER message ["", reply].
func (e *engine) handleInspectReply(m zsock.Message, now time.Time) {
	if len(m) != 2 || len(m[0]) != 0 {
		e.log.Warn().Int("parts", len(m)).Str(logging.FieldSocket, "inspect").Msg("dropping reply with bad envelope")
		return
	}
	d, err := tnetstring.DecodeDict(m[1])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "inspect").Msg("dropping undecodable reply")
		return
	}
	idb, _ := d.Bytes("id")
	id := string(idb)
	pi := e.insp.pending[id]
	if pi == nil {
		return // unknown id (timed out already): ignored, as ZRPC clients do
	}
	value, verr := parseInspectValue(d)
	if verr != "" {
		s := e.inspectWaiter(pi, id)
		ev := e.log.Warn().Str(logging.FieldSocket, "inspect").Str("reason", verr)
		if s != nil {
			ev = ev.Str(logging.FieldRID, string(s.in.ID))
		}
		ev.Msg("inspect failed, proxying without sharing")
		e.inspectFailed(id, true, now)
		return
	}
	delete(e.insp.pending, id)
	e.insp.checker.done(true, now)
	s := e.inspectWaiter(pi, id)
	if s == nil {
		return
	}
	s.inspectID = ""
	s.inspect = value
	if ids, ok := value.Dict("last-ids"); ok && len(ids) > 0 {
		s.lastIDs = ids
	}
	if value.Bool("no-proxy") {
		e.noProxyStart(s, now)
		return
	}
	key, _ := value.Bytes("sharing-key")
	e.shareOrStart(s, string(key), now)
}

// parseInspectValue checks a reply as Pushpin's InspectRequest does and
// returns its value, or why it is unusable.
func parseInspectValue(d tnetstring.Dict) (tnetstring.Dict, string) {
	if !d.Bool("success") {
		cond, _ := d.Bytes("condition")
		return nil, "condition " + string(cond)
	}
	v, ok := d.Dict("value")
	if !ok {
		return nil, "value is not a dict"
	}
	if np, ok := v.Get("no-proxy"); !ok {
		return nil, "no no-proxy"
	} else if _, isBool := np.(bool); !isBool {
		return nil, "no-proxy is not a bool"
	}
	for _, k := range []string{"sharing-key", "sid"} {
		if x, ok := v.Get(k); ok {
			if _, isBytes := x.([]byte); !isBytes {
				return nil, k + " is not bytes"
			}
		}
	}
	if x, ok := v.Get("last-ids"); ok {
		ids, isDict := x.(tnetstring.Dict)
		if !isDict {
			return nil, "last-ids is not a dict"
		}
		for _, f := range ids {
			if _, isBytes := f.Value.([]byte); !isBytes {
				return nil, "last-ids value is not bytes"
			}
		}
	}
	return v, ""
}

// inspectTick expires inspect calls and runs the availability clock.
func (e *engine) inspectTick(now time.Time) {
	if e.insp == nil {
		return
	}
	for id, pi := range e.insp.pending {
		if now.After(pi.deadline) {
			if s := e.inspectWaiter(pi, id); s != nil {
				e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Msg("inspect timed out, proxying without sharing")
			}
			e.inspectFailed(id, false, now)
		}
	}
	e.insp.checker.tick(now)
}
