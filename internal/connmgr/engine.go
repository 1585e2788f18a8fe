package connmgr

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gobwas/ws"
	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Engine bounds.
const (
	// EngineQueue is the capacity of the connections → engine channel;
	// connections block on it (the engine never blocks on a connection).
	EngineQueue = 4096
	// DropQueue holds notices of messages a socket owner had to drop. A
	// notice that does not fit leaves its request to the 10 s ack timeout
	// instead of an immediate 503; 2,000 concurrent opens overflowed 256
	// (208 clients waited the 10 s), so it takes several PUSH queues'
	// worth.
	DropQueue = 8192
	// shutdownDrain bounds the wait for the shutdown cancels to leave the
	// ROUTER's Go queue (libzmq then lingers RouterLinger).
	shutdownDrain = 500 * time.Millisecond
)

// sessState is where a client session is (zmq-wire.md §2.10, §2.11).
type sessState int

const (
	// stWaitAck: first packet pushed, no server has answered yet.
	stWaitAck sessState = iota + 1
	// stActive: the server's address is known; follow-ups go to it.
	stActive
	// stHandoff: we answered handoff-start and forgot the peer; the next
	// packet's sender (the new owner, or the old one resuming) becomes the
	// peer (§2.10).
	stHandoff
	// stOrphan: the client is gone (or was answered 503) before any server
	// spoke; the first server packet gets a cancel, then the session goes.
	stOrphan
)

// session is the engine's record of one request (one zhttp session).
type session struct {
	zs      zhttpsession.Session
	c       *conn
	req     uint64 // the conn's exchange number, to ignore stale messages
	state   sessState
	created time.Time
	oldPeer []byte // the owner that handed off (stHandoff, stOrphan)

	uploading   bool  // request body not fully sent yet
	window      int64 // response body bytes the server may still send
	credit      int64 // bytes written to the client, not yet granted back
	pendingBody []pendingChunk
	started     bool // response head received

	// WebSocket sessions (ws.go, zmq-wire.md §2.12).
	ws           bool
	clientClosed bool // the client's close went to the server
	serverClosed bool // the server's close went to the client
}

// handedOff says whether the session's current owner took it over in a
// handoff: a GRIP hold of the handler, not a response being proxied.
func (s *session) handedOff() bool { return s.oldPeer != nil }

type pendingChunk struct {
	buf   *[]byte
	n     int
	more  bool
	ctype string        // WebSocket message type
	pkt   *zhttp.Packet // a WebSocket control packet instead of a chunk
}

type msgKind int

const (
	msgStart msgKind = iota + 1 // a new request: pkt is the first packet
	msgBody                     // a request body chunk
	msgWrote                    // n response body bytes reached the client
	msgGone                     // the client went away (or the exchange failed)
	msgCtrl                     // a WebSocket ping, pong or close: pkt
)

// connMsg is what connections send to the engine.
type connMsg struct {
	kind  msgKind
	c     *conn
	req   uint64
	id    string
	pkt   *zhttp.Packet
	chunk *[]byte
	n     int
	more  bool
	ws    bool   // msgStart: a WebSocket session
	ctype string // msgBody of a WebSocket: "text" or "binary"
}

// dropNote reports a message that a socket owner could not send.
type dropNote struct {
	stream bool // ROUTER (follow-up); false = PUSH (first packet)
	msg    zsock.Message
}

// engine owns the session table and is the only user of the three zhttp
// sockets' channels. Connections reach it through in; it reaches them
// through their mailboxes (conn.deliver), which never block.
type engine struct {
	cfg      *Config
	log      zerolog.Logger
	from     []byte
	push     *zsock.Socket
	router   *zsock.Socket
	sub      <-chan zsock.Message
	in       chan connMsg
	drops    chan dropNote
	done     chan struct{} // closed when run returns
	now      func() time.Time
	sessions map[string]*session
	s        *Service
	probe    chan chan int // tests: ask for the number of active sessions
	// peerGone is signalled when a peer disconnected from the ROUTER;
	// probes schedules when the next ticks probe every active session.
	peerGone chan struct{}
	probes   zhttpsession.Probes
	// wakes are the connections whose mailbox changed since the engine
	// last ran out of server packets (deliverLater).
	wakes []*conn
}

// maxDeferredWakes bounds how many connections wait for one wake-up pass.
const maxDeferredWakes = 256

// deliverLater fills s's connection mailbox; the wake-up follows in
// flushWakes.
func (e *engine) deliverLater(s *session, f func(*mailbox)) bool {
	ok, first := s.c.deliverLater(s.req, f)
	if first {
		e.wakes = append(e.wakes, s.c)
	}
	return ok
}

// flushWakes wakes the connections deliverLater touched.
func (e *engine) flushWakes() {
	for i, c := range e.wakes {
		c.wakeNow()
		e.wakes[i] = nil
	}
	e.wakes = e.wakes[:0]
}

func newEngine(s *Service) *engine {
	now := s.cfg.Now
	if now == nil {
		now = time.Now
	}
	return &engine{
		cfg:      &s.cfg,
		log:      s.log.With().Str(logging.FieldComponent, "engine").Logger(),
		from:     []byte(s.cfg.ID),
		in:       make(chan connMsg, EngineQueue),
		drops:    make(chan dropNote, DropQueue),
		done:     make(chan struct{}),
		now:      now,
		sessions: map[string]*session{},
		s:        s,
		probe:    make(chan chan int),
		peerGone: make(chan struct{}, 1),
	}
}

// onDisconnect is the ROUTER's OnDisconnect hook (socket goroutine).
func (e *engine) onDisconnect() {
	select {
	case e.peerGone <- struct{}{}:
	default: // a probe is already due
	}
}

// onDrop is the sockets' OnDrop hook; it runs in a socket owner goroutine
// and must not block.
func (e *engine) onDrop(stream bool) func(zsock.Message, error) {
	return func(m zsock.Message, _ error) {
		select {
		case e.drops <- dropNote{stream: stream, msg: m}:
		default: // the ack timeout or expiry will catch the session
		}
	}
}

func (e *engine) run(ctx context.Context) error {
	defer close(e.done)
	t := time.NewTicker(e.cfg.tick())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.shutdown()
			return nil
		case m, ok := <-e.sub:
			if !ok {
				e.shutdown()
				return errors.New("engine: sub socket closed")
			}
			e.handleSub(m)
			// Wake the touched connections once no server packet is
			// waiting (or enough of them wait), so that items arriving
			// together leave together.
			if len(e.sub) == 0 || len(e.wakes) >= maxDeferredWakes {
				e.flushWakes()
			}
		case m := <-e.in:
			e.handleConn(m)
		case d := <-e.drops:
			e.handleDrop(d)
			e.flushWakes() // serverGone may have ended responses
		case <-e.peerGone:
			// Wall time, as the delays are libzmq's (not e.now, which
			// tests drive).
			e.probes.Disconnected(time.Now())
		case <-t.C:
			e.tick()
		case r := <-e.probe:
			n := 0
			for _, s := range e.sessions {
				if s.state == stActive {
					n++
				}
			}
			r <- n
		}
	}
}

// handleSub takes one server → client message from the SUB socket.
func (e *engine) handleSub(m zsock.Message) {
	if len(m) == 0 {
		return
	}
	dest, raw, err := zhttp.SplitPubFrame(m[0])
	if err != nil || !bytes.Equal(dest, e.from) {
		e.log.Warn().Str(logging.FieldSocket, "in").Msg("dropping message with bad address")
		return
	}
	p, err := zhttp.Parse(raw)
	if err != nil {
		e.badPacket(raw, err)
		return
	}
	if p.IDs != nil {
		for _, ent := range p.IDs {
			s := e.sessions[string(ent.ID)]
			if s == nil {
				continue
			}
			cp := *p
			cp.IDs, cp.ID, cp.Seq = nil, ent.ID, ent.Seq
			e.onPacket(s, &cp)
		}
		return
	}
	s := e.sessions[string(p.ID)]
	if s == nil {
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Bytes(logging.FieldRID, p.ID).Str("type", p.Type).Msg("packet for unknown session")
		}
		return
	}
	e.onPacket(s, p)
}

// badPacket handles an undecodable packet. An unknown `type` ends the
// session it names, as condure treats it as a protocol error (§2.5, §A.2);
// anything else is dropped with a warning.
func (e *engine) badPacket(raw []byte, err error) {
	var d tnetstring.Dict
	if len(raw) > 0 && raw[0] == 'T' {
		d, _ = tnetstring.DecodeDict(raw[1:])
	}
	id, _ := d.Bytes("id")
	if typ, hasType := d.Bytes("type"); hasType && id != nil && !knownType(string(typ)) {
		if s := e.sessions[string(id)]; s != nil && s.state != stOrphan {
			e.log.Warn().Err(err).Bytes(logging.FieldRID, id).Msg("unexpected packet type, closing")
			e.cancelAndRemove(s)
			return
		}
	}
	e.log.Warn().Err(err).Str(logging.FieldSocket, "in").Msg("dropping undecodable packet")
}

func knownType(t string) bool {
	switch t {
	case zhttp.TypeData, zhttp.TypeError, zhttp.TypeCredit, zhttp.TypeKeepAlive, zhttp.TypeCancel,
		zhttp.TypeHandoffStart, zhttp.TypeHandoffProceed, zhttp.TypeClose, zhttp.TypePing, zhttp.TypePong:
		return true
	}
	return false
}

// onPacket applies one server packet to its session (§2.6–§2.10).
func (e *engine) onPacket(s *session, p *zhttp.Packet) {
	now := e.now()
	if s.state != stHandoff && s.oldPeer != nil && bytes.Equal(p.From, s.oldPeer) && !bytes.Equal(p.From, s.zs.Peer) {
		// §2.10: once the new owner has spoken, a late packet from the old
		// one (overtaken by the new owner's packets on another PUB link) is
		// dropped rather than failing the seq check. Before that, the old
		// owner may take the session back: Pushpin's proxy resumes with a
		// keep-alive and answers the client itself when the handler
		// refuses the accept (instruct errors, a plain "response"), and
		// condure delivers that answer.
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Bytes(logging.FieldRID, s.zs.ID).Str("type", p.Type).Msg("dropping packet from old owner")
		}
		return
	}
	if s.state == stOrphan {
		// The client is gone; tell whoever took the request.
		if p.Type != zhttp.TypeCancel && p.Type != zhttp.TypeError && len(p.From) > 0 {
			if p.Seq >= 0 {
				s.zs.InSeq = p.Seq + 1
			}
			s.zs.Peer = p.From
			s.state = stActive
			e.sendCancel(s)
		}
		e.remove(s)
		return
	}
	if err := s.zs.Receive(p, now); err != nil {
		// condure: warn and drop the client (§2.6). We also cancel so the
		// server frees the session at once, as Pushpin's C++ peers do.
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Bytes(logging.FieldFrom, p.From).
			Int64("expected", s.zs.InSeq).Int64("got", p.Seq).Msg("bad seq, closing")
		if len(p.From) > 0 {
			s.zs.Peer = p.From
			s.state = stActive
			e.sendCancel(s)
		}
		e.fail(s)
		return
	}
	s.zs.UserData = nil // only servers echo user-data
	if s.zs.Peer == nil {
		// A packet without `from` cannot tell us where to reply.
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Msg("server packet without from, closing")
		e.fail(s)
		return
	}
	if s.state == stWaitAck || s.state == stHandoff {
		s.state = stActive
		if !e.flushPending(s) {
			e.fail(s)
			return
		}
	}
	if p.Credits > 0 && (s.uploading || s.ws) {
		if !e.deliverLater(s, addCredits(int(p.Credits))) {
			e.cancelAndRemove(s)
			return
		}
	}
	if s.ws {
		e.onWS(s, p, now)
		return
	}
	switch p.Type {
	case zhttp.TypeData:
		e.onData(s, p)
	case zhttp.TypeCredit, zhttp.TypeKeepAlive:
	case zhttp.TypeHandoffStart:
		e.onHandoffStart(s, now)
	case zhttp.TypeError, zhttp.TypeCancel:
		// condure closes the client without a response (§2.11 step 6).
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Bytes(logging.FieldRID, s.zs.ID).Str("type", p.Type).Str("condition", p.Condition).Msg("session ended by server")
		}
		e.fail(s)
	default:
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Str("type", p.Type).Msg("unexpected packet type, closing")
		e.cancelAndRemove(s)
	}
}

func (e *engine) onData(s *session, p *zhttp.Packet) {
	n := int64(len(p.Body))
	if n > s.window {
		// condure: BufferExceeded. Credits are what bound our memory.
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Int64("window", s.window).Int64("body", n).Msg("server exceeded credits, closing")
		e.cancelAndRemove(s)
		return
	}
	s.window -= n
	var ok bool
	if !s.started {
		if p.Code < 0 {
			e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Msg("response without code, closing")
			e.cancelAndRemove(s)
			return
		}
		s.started = true
		s.uploading = false // an early response ends the upload
		ok = e.deliverLater(s, addHead(p))
	} else {
		ok = e.deliverLater(s, addBody(p.Body, p.More))
	}
	switch {
	case !ok:
		e.cancelAndRemove(s)
	case !p.More:
		e.remove(s) // the response is complete on the zhttp side
	}
}

// onHandoffStart answers handoff-start (§2.10 step 2).
func (e *engine) onHandoffStart(s *session, now time.Time) {
	p := zhttp.New()
	p.Type = zhttp.TypeHandoffProceed
	if !e.sendStream(s, p, now) {
		e.fail(s)
		return
	}
	s.oldPeer = s.zs.Peer
	s.zs.Peer = nil
	s.state = stHandoff
}

// flushPending sends what waited for a peer: body chunks, then credits.
func (e *engine) flushPending(s *session) bool {
	now := e.now()
	for len(s.pendingBody) > 0 {
		pc := s.pendingBody[0]
		if !e.sendBody(s, pc, now) {
			return false
		}
		s.pendingBody = s.pendingBody[1:]
	}
	s.pendingBody = nil
	e.flushCredit(s, now)
	return true
}

func (e *engine) sendBody(s *session, pc pendingChunk, now time.Time) bool {
	if pc.pkt != nil {
		return e.sendStream(s, pc.pkt, now)
	}
	p := zhttp.New()
	p.ContentType = pc.ctype
	p.Body = (*pc.buf)[:pc.n]
	p.More = pc.more
	ok := e.sendStream(s, p, now)
	e.s.putChunk(pc.buf)
	return ok
}

// flushCredit grants the server what was written to the client (§2.7).
func (e *engine) flushCredit(s *session, now time.Time) {
	if s.credit <= 0 || s.state != stActive {
		return
	}
	p := zhttp.New()
	p.Type = zhttp.TypeCredit
	p.Credits = s.credit
	if e.sendStream(s, p, now) {
		s.window += s.credit
		s.credit = 0
	} // else retried on the next tick
}

// grantCredits grants the sessions what was written to their clients
// since the last tick. A publish writes the same item to every
// subscriber, so most owe the same amount: sessions whose peer announced
// ext.multi and that owe the same amount share one list-form credit
// packet of up to zhttp.MaxIDs ids (Pushpin 1.36's zhttp server applies
// a list-form packet of any type to each listed session: ZhttpManager
// server_in_stream_readyRead in src/corelib/zhttpmanager.cpp). One
// publish to 100,000 streams then costs the handler ~800 credit packets
// instead of 100,000. The others get one packet each (flushCredit).
func (e *engine) grantCredits(ss []*session, now time.Time) {
	type key struct {
		peer   string
		amount int64
	}
	groups := map[key][]*session{}
	for _, s := range ss {
		if !s.zs.PeerMulti || s.zs.Peer == nil {
			e.flushCredit(s, now)
			continue
		}
		k := key{string(s.zs.Peer), s.credit}
		g := append(groups[k], s)
		if len(g) == zhttp.MaxIDs {
			e.sendCredits(g, now)
			g = g[:0]
		}
		groups[k] = g
	}
	for _, g := range groups {
		if len(g) == 1 {
			e.flushCredit(g[0], now)
		} else if len(g) > 1 {
			e.sendCredits(g, now)
		}
	}
}

// sendCredits grants ss (same peer, same amount owed, at most
// zhttp.MaxIDs) in one list-form credit packet. When the ROUTER queue is
// full nothing is stamped and the grants wait for the next tick.
func (e *engine) sendCredits(ss []*session, now time.Time) {
	p := zhttp.New()
	p.From, p.Type, p.Multi, p.Credits = e.from, zhttp.TypeCredit, true, ss[0].credit
	p.IDs = make([]zhttp.IDSeq, len(ss))
	for i, s := range ss {
		p.IDs[i] = zhttp.IDSeq{ID: s.zs.ID, Seq: s.zs.OutSeq}
	}
	frame := p.Append(make([]byte, 0, 64+len(ss)*(32+len(ss[0].zs.ID))))
	if !e.router.TrySend(zsock.Message{ss[0].zs.Peer, nil, frame}) {
		return
	}
	for _, s := range ss {
		s.zs.OutSeq++
		s.zs.LastOut = now
		s.window += s.credit
		s.credit = 0
	}
}

// sendStream stamps p and queues it on the ROUTER for the session's peer.
// When the queue is full the sequence number is taken back and false
// returned, so nothing reaches the peer out of order.
func (e *engine) sendStream(s *session, p *zhttp.Packet, now time.Time) bool {
	if s.zs.Peer == nil {
		return false
	}
	s.zs.Stamp(p, e.from, true, now)
	frame := p.Append(make([]byte, 0, 96+len(s.zs.ID)+len(p.Body)))
	if !e.router.TrySend(zsock.Message{s.zs.Peer, nil, frame}) {
		s.zs.OutSeq--
		return false
	}
	return true
}

func (e *engine) sendCancel(s *session) {
	p := zhttp.New()
	p.Type = zhttp.TypeCancel
	e.sendStream(s, p, e.now()) // best effort
}

// fail closes the client connection without a response and forgets s.
func (e *engine) fail(s *session) {
	s.c.deliverAbort(s.req)
	e.remove(s)
}

func (e *engine) cancelAndRemove(s *session) {
	if s.state == stActive {
		e.sendCancel(s)
	}
	e.fail(s)
}

func (e *engine) remove(s *session) {
	for _, pc := range s.pendingBody {
		if pc.buf != nil {
			e.s.putChunk(pc.buf)
		}
	}
	s.pendingBody = nil
	if cur := e.sessions[string(s.zs.ID)]; cur == s {
		delete(e.sessions, string(s.zs.ID))
	}
}

// handleConn applies one connection message.
func (e *engine) handleConn(m connMsg) {
	now := e.now()
	if m.kind == msgStart {
		e.start(m, now)
		return
	}
	s := e.sessions[m.id]
	if s == nil || s.c != m.c || s.req != m.req {
		if m.chunk != nil {
			e.s.putChunk(m.chunk)
		}
		return
	}
	switch m.kind {
	case msgBody:
		if !s.uploading && !s.ws {
			e.s.putChunk(m.chunk)
			return
		}
		s.zs.Spend(m.n)
		if !m.more {
			s.uploading = false
		}
		pc := pendingChunk{buf: m.chunk, n: m.n, more: m.more, ctype: m.ctype}
		if s.state != stActive {
			s.pendingBody = append(s.pendingBody, pc)
			return
		}
		if !e.sendBody(s, pc, now) {
			e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Msg("stream queue full, closing")
			e.fail(s)
		}
	case msgCtrl:
		e.onClientControl(s, m.pkt, now)
	case msgWrote:
		if s.state == stOrphan {
			return
		}
		s.credit += int64(m.n)
		// Grant at once only when the server is down to half its window;
		// otherwise the next tick (100 ms) grants everything written
		// meanwhile in one packet. A stream of small items then costs one
		// credit packet per tick instead of one per item.
		if s.window < int64(e.cfg.BufferSize)/2 {
			e.flushCredit(s, now)
		}
	case msgGone:
		switch s.state {
		case stActive:
			e.sendCancel(s)
			e.remove(s)
		case stWaitAck, stHandoff:
			s.state = stOrphan
			s.c = nil
		case stOrphan:
		}
	}
}

func (e *engine) start(m connMsg, now time.Time) {
	if _, dup := e.sessions[m.id]; dup {
		e.log.Error().Str(logging.FieldRID, m.id).Msg("duplicate request id")
		m.c.deliverReject(m.req, 503, "Duplicate request id.\n")
		return
	}
	s := &session{
		zs:        zhttpsession.Session{ID: []byte(m.id), LastIn: now, LastOut: now},
		c:         m.c,
		req:       m.req,
		state:     stWaitAck,
		created:   now,
		uploading: m.pkt.More,
		window:    int64(e.cfg.BufferSize),
		ws:        m.ws,
	}
	p := m.pkt
	s.zs.Stamp(p, e.from, true, now)
	if !e.push.TrySend(zsock.Message{p.Encode()}) {
		e.log.Debug().Str(logging.FieldRID, m.id).Msg("request queue full")
		m.c.deliverReject(m.req, 503, msgQueueFull)
		return
	}
	e.sessions[m.id] = s
	if ev := e.log.Debug(); ev.Enabled() {
		ev.Str(logging.FieldRID, m.id).Str("method", p.Method).Str("uri", p.URI).Msg("request")
	}
}

// Texts of the 503 responses we generate instead of blocking (doc.go).
const (
	msgQueueFull = "Request queue is full; no zhttp server is taking requests.\n"
	msgNoServer  = "No zhttp server is available.\n"
	msgNoAck     = "No zhttp server answered the request in time.\n"
)

// handleDrop reacts to a message a socket owner could not deliver.
func (e *engine) handleDrop(d dropNote) {
	var raw []byte
	switch {
	case !d.stream && len(d.msg) >= 1:
		raw = d.msg[0]
	case d.stream && len(d.msg) >= 3:
		raw = d.msg[2]
	default:
		return
	}
	p, err := zhttp.Parse(raw)
	if err != nil {
		return
	}
	ids := p.IDs
	if ids == nil {
		ids = []zhttp.IDSeq{{ID: p.ID, Seq: p.Seq}}
	}
	for _, ent := range ids {
		s := e.sessions[string(ent.ID)]
		if s == nil {
			continue
		}
		if !d.stream {
			if s.state == stWaitAck {
				e.log.Debug().Bytes(logging.FieldRID, s.zs.ID).Msg("no zhttp server for request")
				s.c.deliverReject(s.req, 503, msgNoServer)
				e.remove(s)
			}
			continue
		}
		if p.Type == zhttp.TypeCancel {
			continue
		}
		// A lost follow-up leaves a gap in our sequence: the session is over.
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Bytes(logging.FieldFrom, d.msg[0]).Msg("zhttp server unreachable, closing")
		e.serverGone(s)
	}
}

// msgServerGone answers a request whose zhttp server went away before it
// sent a response head.
const msgServerGone = "The zhttp server handling this request went away.\n"

// serverGone ends a session whose server can no longer be reached (it
// stopped or crashed; doc.go, "A zhttp server that goes away"), so that
// the client learns at once and can reconnect:
//   - no response head yet (a long-poll held by the handler, a request
//     the proxy was working on): 502 with a one-line reason;
//   - a response held by the handler (after a handoff) and started: the
//     body ends as if the server had ended it (a stream gets its final
//     chunk), which for a GRIP stream is an ordinary end;
//   - a proxied response cut short: the connection closes without the
//     final chunk (or short of its Content-Length), so the client sees
//     the body is incomplete instead of taking it for whole.
func (e *engine) serverGone(s *session) {
	switch {
	case s.c == nil:
	case !s.started:
		s.c.deliverReject(s.req, 502, msgServerGone)
	case s.ws:
		// A WebSocket client is told to reconnect: 1012 service restart.
		if !e.deliverLater(s, func(mb *mailbox) { mb.wsEnd = closeServerRestart }) {
			s.c.deliverAbort(s.req)
		}
	case s.handedOff():
		if !e.deliverLater(s, addBody(nil, false)) {
			s.c.deliverAbort(s.req)
		}
	default:
		s.c.deliverAbort(s.req)
	}
	e.remove(s)
}

// tick runs the timers: ack timeout, expiry (60 s without a packet, §2.8),
// keep-alives (45 s of our silence, batched per peer) and credits that
// could not be queued earlier.
func (e *engine) tick() {
	now := e.now()
	e.s.overflows.summary(time.Now()) // wall time: it paces the log
	ackTimeout := e.cfg.ackTimeout()
	// After a peer disconnected, every active session gets a keep-alive
	// now: those of a server that is gone come back as drops (the ROUTER
	// is ROUTER_MANDATORY) and are ended by serverGone; the others cost
	// the live servers one harmless keep-alive (§2.8: any packet may be
	// sent at any time).
	probe := e.probes.Due(time.Now())
	var due []*zhttpsession.Session
	var grants []*session
	for _, s := range e.sessions {
		switch s.state {
		case stWaitAck:
			if now.Sub(s.created) >= ackTimeout {
				e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Msg("no zhttp server answered, sending 503")
				s.c.deliverReject(s.req, 503, msgNoAck)
				s.c = nil
				s.state = stOrphan
			}
		case stOrphan:
			if s.zs.Expired(now) {
				e.remove(s)
			}
		case stActive, stHandoff:
			if s.zs.Expired(now) {
				e.log.Debug().Bytes(logging.FieldRID, s.zs.ID).Msg("session expired")
				e.fail(s)
				continue
			}
			if s.state == stActive {
				if s.credit > 0 {
					grants = append(grants, s)
				}
				if probe || s.zs.KeepAliveDue(now) {
					due = append(due, &s.zs)
				}
			}
		}
	}
	e.grantCredits(grants, now)
	if len(due) == 0 {
		return
	}
	for _, a := range zhttpsession.KeepAlives(e.from, due, now) {
		frame := a.Packet.Append(nil)
		if !e.router.TrySend(zsock.Message{a.Peer, nil, frame}) {
			e.unstamp(a.Packet) // try again next tick
		}
	}
}

// unstamp takes back the sequence numbers of a keep-alive that was not
// queued, and leaves its sessions due, so that the next tick tries again
// (stamping set LastOut: the retry would otherwise wait another 45 s,
// past the peer's 60 s expiry).
func (e *engine) unstamp(p *zhttp.Packet) {
	ids := p.IDs
	if ids == nil {
		ids = []zhttp.IDSeq{{ID: p.ID}}
	}
	for _, ent := range ids {
		if s := e.sessions[string(ent.ID)]; s != nil {
			s.zs.OutSeq--
			s.zs.LastOut = time.Time{}
		}
	}
}

// shutdown cancels every session whose server is known, batched per peer
// with list-form ids where the peer announced ext.multi (§2.8, §2.11 step
// 7), closes the clients, and waits briefly for the ROUTER queue to drain.
func (e *engine) shutdown() {
	now := e.now()
	var live []*zhttpsession.Session
	for _, s := range e.sessions {
		if s.state == stActive {
			live = append(live, &s.zs)
		}
		switch {
		case s.c == nil:
		case s.ws && s.started:
			// An accepted WebSocket is told we are going away (1001).
			if !s.c.deliver(s.req, func(mb *mailbox) { mb.wsEnd = closeGoingAway }) {
				s.c.deliverAbort(s.req)
			}
		default:
			s.c.deliverAbort(s.req)
		}
		e.remove(s)
	}
	for _, a := range batch(e.from, zhttp.TypeCancel, live, now) {
		e.router.TrySend(zsock.Message{a.Peer, nil, a.Packet.Append(nil)})
	}
	if len(live) > 0 {
		e.log.Debug().Int("sessions", len(live)).Msg("cancelled sessions on shutdown")
	}
	deadline := time.Now().Add(shutdownDrain)
	for len(e.router.Send()) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// batch builds one packet of type typ per session, grouping the sessions of
// a peer that announced ext.multi into list-form packets of at most
// zhttp.MaxIDs ids, as zhttpsession.KeepAlives does for keep-alives.
func batch(from []byte, typ string, ss []*zhttpsession.Session, now time.Time) []zhttpsession.Addressed {
	var out []zhttpsession.Addressed
	open := map[string]*zhttp.Packet{}
	for _, s := range ss {
		if !s.PeerMulti {
			p := zhttp.New()
			p.Type = typ
			out = append(out, zhttpsession.Addressed{Peer: s.Peer, Packet: s.Stamp(p, from, true, now)})
			continue
		}
		p := open[string(s.Peer)]
		if p == nil || len(p.IDs) >= zhttp.MaxIDs {
			p = zhttp.New()
			p.From, p.Type, p.Multi = from, typ, true
			open[string(s.Peer)] = p
			out = append(out, zhttpsession.Addressed{Peer: s.Peer, Packet: p})
		}
		p.IDs = append(p.IDs, zhttp.IDSeq{ID: s.ID, Seq: s.OutSeq})
		s.OutSeq++
		s.LastOut = now
	}
	for _, a := range out {
		if p := a.Packet; len(p.IDs) == 1 {
			p.ID, p.Seq, p.IDs = p.IDs[0].ID, p.IDs[0].Seq, nil
		}
	}
	return out
}

// appendID formats a request id: <worker>-<connection>-<request>, hex, as
// condure's <worker>-<slot>-<counter> (§2.2).
func appendID(dst []byte, conn, req uint64) []byte {
	dst = append(dst, "0-"...)
	dst = strconv.AppendUint(dst, conn, 16)
	dst = append(dst, '-')
	return strconv.AppendUint(dst, req, 16)
}

// onWS applies a server packet to a WebSocket session (zmq-wire.md
// §2.12): the accept (a 101 data packet) or a rejection (`error` with
// condition `rejected`), then messages, ping, pong and close.
func (e *engine) onWS(s *session, p *zhttp.Packet, now time.Time) {
	switch p.Type {
	case zhttp.TypeCredit, zhttp.TypeKeepAlive:
		return
	case zhttp.TypeHandoffStart:
		e.onHandoffStart(s, now)
		return
	case zhttp.TypeCancel:
		e.fail(s)
		return
	case zhttp.TypeError:
		if !s.started && p.Condition == "rejected" && p.Code >= 100 {
			r := zhttp.New()
			r.Code, r.Reason, r.Headers, r.Body = p.Code, p.Reason, p.Headers, p.Body
			if r.Code == 101 {
				r.Code = 500
			}
			if !e.deliverLater(s, addHead(r)) {
				e.cancelAndRemove(s)
				return
			}
			e.remove(s)
			return
		}
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Bytes(logging.FieldRID, s.zs.ID).Str("condition", p.Condition).Msg("WebSocket session ended by server")
		}
		e.fail(s)
		return
	}
	if !s.started {
		if p.Type != zhttp.TypeData || p.Code != 101 {
			e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Str("type", p.Type).Int64("code", p.Code).
				Msg("WebSocket session: expected an accept, closing")
			e.cancelAndRemove(s)
			return
		}
		s.started = true
		if !e.deliverLater(s, addHead(p)) {
			e.cancelAndRemove(s)
		}
		return
	}
	f := wsFrame{code: -1, body: p.Body}
	switch p.Type {
	case zhttp.TypeData:
		f.op, f.more = ws.OpText, p.More
		if p.ContentType == "binary" {
			f.op = ws.OpBinary
		}
	case zhttp.TypePing:
		f.op = ws.OpPing
	case zhttp.TypePong:
		f.op = ws.OpPong
	case zhttp.TypeClose:
		f.op, f.code = ws.OpClose, p.Code
	default:
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Str("type", p.Type).Msg("unexpected packet type, closing")
		e.cancelAndRemove(s)
		return
	}
	if f.op.IsControl() && len(f.body) > maxControl-2*boolInt(f.op == ws.OpClose) {
		f.body = f.body[:maxControl-2*boolInt(f.op == ws.OpClose)]
	}
	n := int64(len(f.body))
	if f.op != ws.OpClose {
		if n > s.window+wsOverdraft {
			e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Int64("window", s.window).Int64("body", n).Msg("server exceeded credits, closing")
			e.cancelAndRemove(s)
			return
		}
		s.window -= n
	}
	if !e.deliverLater(s, func(mb *mailbox) {
		if len(mb.frames) >= maxQueuedFrames {
			mb.overflow = true
			return
		}
		mb.frames = append(mb.frames, f)
	}) {
		e.cancelAndRemove(s)
		return
	}
	if f.op == ws.OpClose {
		s.serverClosed = true
		if s.clientClosed {
			e.remove(s) // the close handshake is complete
		}
	}
}

// maxPendingControl bounds the client packets a WebSocket session holds
// while it has no server (data pieces are bounded by credits as well).
const maxPendingControl = 256

// onClientControl sends a client's ping, pong or close to the server.
func (e *engine) onClientControl(s *session, p *zhttp.Packet, now time.Time) {
	if p.Type == zhttp.TypeClose {
		s.clientClosed = true
	}
	if s.state != stActive {
		if len(s.pendingBody) >= maxPendingControl {
			// A client flooding control frames while no server can take
			// them (during a handoff).
			e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Int("pending", len(s.pendingBody)).Msg("too many WebSocket frames waiting for a server, closing")
			e.cancelAndRemove(s)
			return
		}
		s.pendingBody = append(s.pendingBody, pendingChunk{pkt: p})
		return
	}
	if !e.sendStream(s, p, now) {
		e.log.Warn().Bytes(logging.FieldRID, s.zs.ID).Msg("stream queue full, closing")
		e.fail(s)
		return
	}
	if s.clientClosed && s.serverClosed {
		e.remove(s)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
