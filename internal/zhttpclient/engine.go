package zhttpclient

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Session timers (zmq-wire.md §2.8, §5.2).
const (
	// KeepAliveInterval: a stream session we have not written to for this
	// long gets a keep-alive (zurl: every 30 s; C++ peers use 45 s).
	KeepAliveInterval = 30 * time.Second
	// SessionExpire: a stream session that received nothing from its client
	// for this long is dropped silently (zurl SESSION_EXPIRE).
	SessionExpire = zhttpsession.ExpireAfter
	// TickInterval is how often the engine checks keep-alives and expiry.
	TickInterval = time.Second
	// BodyOverflowFactor: a client may have at most this many times
	// buffer_size of request body queued before it is told bad-request
	// (it was granted buffer_size; C++ clients also send up to 200000
	// bytes unasked in their first packet).
	BodyOverflowFactor = 3
)

type sessionMode uint8

const (
	modeStream sessionMode = iota // replies on PUB to the client's `from`
	modeReq                       // one reply on the ROUTER envelope
	modeQuiet                     // fire and forget: no id or no from, no replies
)

// session is the engine's view of one request. Only the engine goroutine
// touches it; the worker sees its own copies of what it needs.
type session struct {
	h        uint64
	key      string // byKey entry; "" when not addressable by follow-ups
	mode     sessionMode
	json     bool     // the request came as `J`: replies are `J` too
	to       []byte   // client `from`: PUB topic
	env      [][]byte // ROUTER envelope (req mode), delimiter included
	zs       zhttpsession.Session
	inSeqOK  bool // the first packet had a seq, so follow-ups can be checked
	ws       bool // a WebSocket session (zmq-wire.md §2.12)
	wsInMsg  bool // the client is in the middle of a fragmented message
	wsMulti  bool // the WebSocket request had ext.multi
	bodyDone bool // the client has sent its whole request body
	done     bool // the zhttp exchange is over; waiting for the worker to exit
	w        *worker
}

type evKind uint8

const (
	evData     evKind = iota // response head and/or body
	evError                  // the exchange failed with cond ("" = no packet)
	evConsumed               // the request body pipe was read: grant credits
	evWS                     // WebSocket: the 101, a message part or a control frame
)

// event is a worker → engine message. Every worker sends exactly one event
// with final set, as its last.
type event struct {
	h       uint64
	kind    evKind
	head    *respHead
	body    []byte
	buf     *[]byte // pooled buffer holding body, returned after encoding
	more    bool
	cond    string
	final   bool
	ws      wsMsg // evWS
	credits int64 // evWS accept: credits granted to the client
}

type respHead struct {
	code    int64
	reason  string
	headers []zhttp.Header
}

// engine owns the session table. It reads the input sockets' channels and
// the workers' events, and writes every reply; nothing else touches
// sessions, so no lock is needed.
type engine struct {
	s      *Service
	log    zerolog.Logger
	ss     *sockets
	events chan event

	sessions map[uint64]*session // every session with a live worker
	byKey    map[string]*session // stream sessions still open to follow-ups
	open     int                 // live workers (max_open_requests)
	nextH    uint64
	wg       sync.WaitGroup // workers
}

func newEngine(s *Service, ss *sockets) *engine {
	return &engine{
		s:        s,
		log:      s.log.With().Str(logging.FieldComponent, "engine").Logger(),
		ss:       ss,
		events:   make(chan event, EventQueue),
		sessions: make(map[uint64]*session),
		byKey:    make(map[string]*session),
	}
}

func recvOf(s *zsock.Socket) <-chan zsock.Message {
	if s == nil {
		return nil
	}
	return s.Recv()
}

func (e *engine) run(ctx context.Context) error {
	tick := time.NewTicker(e.s.timers.tick)
	defer tick.Stop()
	defer e.shutdown()
	in, inStream, inReq := recvOf(e.ss.in), recvOf(e.ss.inStream), recvOf(e.ss.inReq)
	max := e.s.cfg.MaxOpenRequests
	for {
		// Back-pressure: at max_open_requests stop taking new requests
		// (zurl closes its input valves); follow-ups and events still flow.
		var initCh, reqCh <-chan zsock.Message
		if max == Unlimited || e.open < max {
			initCh, reqCh = in, inReq
		}
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-initCh:
			if !ok {
				return nil
			}
			e.onInit(ctx, m)
		case m, ok := <-reqCh:
			if !ok {
				return nil
			}
			e.onReq(ctx, m)
		case m, ok := <-inStream:
			if !ok {
				return nil
			}
			e.onStream(ctx, m)
		case ev := <-e.events:
			e.onEvent(ctx, ev)
		case now := <-tick.C:
			e.onTick(ctx, now)
		}
	}
}

// shutdown cancels every worker and waits for them; their final events
// are not needed any more.
func (e *engine) shutdown() {
	for _, s := range e.sessions {
		s.w.stop(ErrCanceled)
	}
	e.wg.Wait()
	for {
		select {
		case ev := <-e.events:
			e.s.pool.put(ev.buf)
		default:
			return
		}
	}
}

// decode parses a `T` or `J` payload. On a packet-level error it still
// returns the dict when there is one, so that the caller can answer.
func decode(b []byte) (*zhttp.Packet, bool, tnetstring.Dict, error) {
	if len(b) == 0 {
		return nil, false, nil, errors.New("empty message")
	}
	var d tnetstring.Dict
	var err error
	isJSON := false
	switch b[0] {
	case 'T':
		d, err = tnetstring.DecodeDict(b[1:])
	case 'J':
		isJSON = true
		d, err = decodeJSON(b[1:])
	default:
		return nil, false, nil, errors.New("unsupported type prefix")
	}
	if err != nil {
		return nil, isJSON, nil, err
	}
	p, err := zhttp.FromDict(d)
	return p, isJSON, d, err
}

// answerBadPacket mirrors zurl: a packet that parses as a dict but not as
// zhttp gets a bare bad-request error when it names a sender and an id.
func (e *engine) answerBadPacket(ctx context.Context, d tnetstring.Dict, isJSON bool, env [][]byte) {
	if d == nil {
		return
	}
	from, _ := d.Bytes("from")
	id, _ := d.Bytes("id")
	typ, _ := d.Bytes("type")
	if len(id) == 0 || string(typ) == zhttp.TypeError || string(typ) == zhttp.TypeCancel {
		return
	}
	r := newReply(zhttp.TypeError)
	r.id, r.cond = id, zhttp.CondBadRequest
	if env != nil {
		e.reply(ctx, env, r.encode(nil, isJSON))
	} else if len(from) > 0 {
		e.publish(ctx, r.encode(from, isJSON))
	}
}

func (e *engine) onInit(ctx context.Context, m zsock.Message) {
	if len(m) != 1 {
		e.log.Warn().Int("parts", len(m)).Msg("received message with parts != 1, skipping")
		return
	}
	p, isJSON, d, err := decode(m[0])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "in_spec").Msg("received message with invalid format, skipping")
		e.answerBadPacket(ctx, d, isJSON, nil)
		return
	}
	e.start(ctx, p, isJSON, nil, time.Now())
}

func (e *engine) onReq(ctx context.Context, m zsock.Message) {
	// [routing ids..., "", payload]: the envelope is everything up to and
	// including the empty delimiter (a REQ peer or a DEALER sending ["", x]).
	i := 0
	for i < len(m) && len(m[i]) > 0 {
		i++
	}
	if i >= len(m)-1 || i+2 != len(m) {
		e.log.Warn().Int("parts", len(m)).Msg("received message with parts != 1, skipping")
		return
	}
	env := m[:i+1]
	p, isJSON, d, err := decode(m[i+1])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "in_req_spec").Msg("received message with invalid format, skipping")
		e.answerBadPacket(ctx, d, isJSON, env)
		return
	}
	e.start(ctx, p, isJSON, env, time.Now())
}

func sessionKey(from, id []byte) string {
	return string(from) + "\x00" + string(id)
}

// start handles a first packet (zmq-wire.md §5.2; zurl Worker::start).
func (e *engine) start(ctx context.Context, p *zhttp.Packet, isJSON bool, env [][]byte, now time.Time) {
	if p.IDs != nil {
		e.log.Warn().Msg("received initial message with multiple ids, skipping")
		return
	}
	if p.Type != zhttp.TypeData {
		// A cancel or credit for a session we never saw: nothing to do.
		e.log.Debug().Str(logging.FieldRID, string(p.ID)).Str("type", p.Type).Msg("non-data first packet, skipping")
		return
	}
	s := &session{json: isJSON}
	switch {
	case env != nil:
		s.mode, s.env = modeReq, env
	case len(p.ID) == 0 || len(p.From) == 0:
		s.mode = modeQuiet
	default:
		s.mode, s.to = modeStream, p.From
		s.key = sessionKey(p.From, p.ID)
		if _, dup := e.byKey[s.key]; dup {
			e.log.Warn().Str(logging.FieldRID, string(p.ID)).Str(logging.FieldFrom, string(p.From)).Msg("received request for id already in use, skipping")
			return
		}
	}
	s.zs = zhttpsession.Session{ID: p.ID, UserData: p.UserData, LastIn: now, LastOut: now}
	if p.Seq >= 0 {
		s.inSeqOK = true
		s.zs.InSeq = p.Seq + 1
	}
	u, cond := e.check(s, p)
	if cond != "" {
		if s.mode != modeQuiet {
			e.sendError(ctx, s, cond, now)
		}
		return
	}
	if s.ws {
		// What the session keeps must not hold the first packet's frame
		// (headers and all) for the WebSocket's life.
		s.to, s.zs.ID = bytes.Clone(s.to), bytes.Clone(s.zs.ID)
		if b, ok := s.zs.UserData.([]byte); ok {
			s.zs.UserData = bytes.Clone(b)
		}
	}
	if s.mode == modeQuiet && p.More {
		e.log.Warn().Msg("fire-and-forget request with streamed body, skipping")
		return
	}
	e.nextH++
	s.h = e.nextH
	w := newWorker(e, s, p, u)
	s.w = w
	e.sessions[s.h] = s
	if s.key != "" {
		e.byKey[s.key] = s
	}
	e.open++
	if p.More {
		// The first packet's body goes through the pipe too, so that its
		// bytes are credited back once the backend has taken them.
		w.pipe.write(p.Body, false)
	} else {
		s.bodyDone = true
	}
	if s.mode == modeStream && !s.ws { // a WebSocket is answered by its 101
		ack := newReply(zhttp.TypeKeepAlive)
		if p.More {
			// Clear to send: the whole buffer (zurl sends buffer_size).
			ack.typ = zhttp.TypeCredit
			ack.credits = int64(e.s.cfg.BufferSize)
		}
		ack.multi = p.Multi // only the ack echoes ext.multi (zurl)
		e.send(ctx, s, ack, now)
	}
	if le := e.log.Debug(); le.Enabled() {
		le.Str(logging.FieldRID, string(p.ID)).Str(logging.FieldFrom, string(p.From)).
			Str("method", p.Method).Str("uri", p.URI).Msg("IN")
	}
	e.wg.Add(1)
	go w.run(ctx)
}

// check validates a first packet in zurl's order and returns the parsed URI
// or the error condition to answer with.
func (e *engine) check(s *session, p *zhttp.Packet) (*url.URL, string) {
	rid := string(p.ID)
	if p.URI == "" {
		e.log.Warn().Str(logging.FieldRID, rid).Msg("missing request uri")
		return nil, zhttp.CondBadRequest
	}
	u, err := url.Parse(p.URI)
	if err != nil || u.Host == "" {
		e.log.Warn().Str(logging.FieldRID, rid).Str("uri", p.URI).Msg("invalid request uri")
		return nil, zhttp.CondBadRequest
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "ws", "wss":
		if s.mode != modeStream {
			e.log.Warn().Str(logging.FieldRID, rid).Msg("websocket must be used from stream interface")
			return nil, zhttp.CondBadRequest
		}
		if p.Seq != 0 || p.More {
			e.log.Warn().Str(logging.FieldRID, rid).Msg("websocket request must have seq 0 and no more")
			return nil, zhttp.CondBadRequest
		}
		s.ws, s.wsMulti = true, p.Multi
	default:
		e.log.Warn().Str(logging.FieldRID, rid).Str("uri", p.URI).Msg("unsupported scheme")
		return nil, zhttp.CondBadRequest
	}
	if p.Method == "" && !s.ws {
		e.log.Warn().Str(logging.FieldRID, rid).Msg("missing request method")
		return nil, zhttp.CondBadRequest
	}
	if s.mode != modeReq && p.More && p.Seq != 0 {
		e.log.Warn().Str(logging.FieldRID, rid).Msg("streamed input must start with seq 0")
		return nil, zhttp.CondBadRequest
	}
	if s.mode == modeReq && p.More {
		e.log.Warn().Str(logging.FieldRID, rid).Msg("cannot use streamed input on router interface")
		return nil, zhttp.CondBadRequest
	}
	if !p.IgnorePolicies {
		if !e.s.policy.Allowed(u.Hostname()) || (p.ConnectHost != "" && !e.s.policy.Allowed(p.ConnectHost)) {
			return nil, zhttp.CondPolicyViolation
		}
	}
	return u, ""
}

// onStream handles a follow-up packet from the DEALER: ["", payload].
func (e *engine) onStream(ctx context.Context, m zsock.Message) {
	if len(m) != 2 {
		e.log.Warn().Int("parts", len(m)).Msg("received message with parts != 2, skipping")
		return
	}
	if len(m[0]) != 0 {
		e.log.Warn().Msg("received message with non-empty first part, skipping")
		return
	}
	p, isJSON, d, err := decode(m[1])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "in_stream_spec").Msg("received message with invalid format, skipping")
		e.answerBadPacket(ctx, d, isJSON, nil)
		return
	}
	now := time.Now()
	if p.IDs == nil {
		e.follow(ctx, p, p.ID, p.Seq, isJSON, now)
		return
	}
	for _, is := range p.IDs {
		e.follow(ctx, p, is.ID, is.Seq, isJSON, now)
	}
}

// follow applies one follow-up packet to its session (zurl Worker::write).
func (e *engine) follow(ctx context.Context, p *zhttp.Packet, id []byte, seq int64, isJSON bool, now time.Time) {
	s := e.byKey[sessionKey(p.From, id)]
	if s == nil {
		// Unknown session: a bare cancel without from or seq (Captured §A.9).
		if p.Type != zhttp.TypeError && p.Type != zhttp.TypeCancel && len(p.From) > 0 {
			c := newReply(zhttp.TypeCancel)
			c.id = id
			e.publish(ctx, c.encode(p.From, isJSON))
		}
		return
	}
	if p.Type == zhttp.TypeCancel || p.Type == zhttp.TypeError {
		e.finish(s)
		return
	}
	if !s.inSeqOK || seq < 0 || seq != s.zs.InSeq {
		if le := e.log.Debug(); le.Enabled() {
			le.Str(logging.FieldRID, string(id)).Int64("expected", s.zs.InSeq).Int64("got", seq).Msg("bad seq, canceling")
		}
		e.send(ctx, s, newReply(zhttp.TypeCancel), now)
		e.finish(s)
		return
	}
	s.zs.InSeq = seq + 1
	s.zs.LastIn = now
	if p.UserData != nil {
		s.zs.UserData = p.UserData
	}
	if p.Credits > 0 {
		s.w.win.add(p.Credits)
	}
	if s.ws {
		e.followWS(ctx, s, p, id, now)
		return
	}
	if p.Type != zhttp.TypeData {
		return
	}
	if s.bodyDone {
		e.sendError(ctx, s, zhttp.CondBadRequest, now)
		e.finish(s)
		return
	}
	s.w.touch()
	queued := s.w.pipe.write(p.Body, !p.More)
	if !p.More {
		s.bodyDone = true
	}
	if queued > BodyOverflowFactor*e.s.cfg.BufferSize {
		e.log.Warn().Str(logging.FieldRID, string(id)).Int("queued", queued).Msg("client exceeded request body credits")
		e.sendError(ctx, s, zhttp.CondBadRequest, now)
		e.finish(s)
	}
}

// finish ends the zhttp side of a session and stops its worker; the
// session stays counted until the worker's final event.
func (e *engine) finish(s *session) {
	if s.done {
		return
	}
	s.done = true
	if s.key != "" {
		delete(e.byKey, s.key)
	}
	s.w.stop(ErrCanceled)
}

func (e *engine) onEvent(ctx context.Context, ev event) {
	s := e.sessions[ev.h]
	if s == nil {
		e.s.pool.put(ev.buf)
		return
	}
	now := time.Now()
	switch ev.kind {
	case evConsumed:
		if s.w.wsq != nil {
			if n := s.w.wsq.takeConsumed(); n > 0 && !s.done {
				c := newReply(zhttp.TypeCredit)
				c.credits = n
				e.send(ctx, s, c, now)
			}
			break
		}
		n := s.w.pipe.takeConsumed()
		if n > 0 && !s.done && !s.bodyDone && s.mode == modeStream {
			c := newReply(zhttp.TypeCredit)
			c.credits = n
			e.send(ctx, s, c, now)
		}
	case evData:
		if !s.done {
			r := newReply(zhttp.TypeData)
			if ev.head != nil {
				r.code, r.reason, r.headers = ev.head.code, ev.head.reason, ev.head.headers
				if le := e.log.Debug(); le.Enabled() {
					le.Str(logging.FieldRID, string(s.zs.ID)).Int64("code", ev.head.code).Msg("OUT")
				}
			}
			r.body = ev.body
			r.more = ev.more
			e.send(ctx, s, r, now)
			if !ev.more {
				s.done = true
				if s.key != "" {
					delete(e.byKey, s.key)
				}
			}
		}
		e.s.pool.put(ev.buf)
	case evWS:
		if !s.done {
			e.sendWS(ctx, s, &ev, now)
		}
		e.s.pool.put(ev.buf)
	case evError:
		if !s.done {
			if ev.head != nil {
				r := newReply(zhttp.TypeError)
				r.cond, r.code, r.reason, r.headers, r.body = ev.cond, ev.head.code, ev.head.reason, ev.head.headers, ev.body
				if r.body == nil {
					r.body = []byte{}
				}
				e.send(ctx, s, r, now)
			} else if ev.cond != "" {
				e.sendError(ctx, s, ev.cond, now)
			}
			s.done = true
			if s.key != "" {
				delete(e.byKey, s.key)
			}
		}
	}
	if ev.final {
		delete(e.sessions, ev.h)
		e.open--
	}
}

// onTick sends keep-alives, expires silent sessions (zmq-wire.md §2.8)
// and applies the activity timeout (zurl's `timeout`, §5.2).
func (e *engine) onTick(ctx context.Context, now time.Time) {
	for _, s := range e.sessions {
		if !s.done && s.w.idleFor(now) >= e.s.cfg.Timeout {
			s.w.stop(ErrSessionTimeout) // the worker reports session-timeout
		}
	}
	for _, s := range e.byKey {
		if now.Sub(s.zs.LastIn) >= e.s.timers.expire {
			if le := e.log.Debug(); le.Enabled() {
				le.Str(logging.FieldRID, string(s.zs.ID)).Msg("session expired")
			}
			e.finish(s)
			continue
		}
		if now.Sub(s.zs.LastOut) >= e.s.timers.keepAlive {
			e.send(ctx, s, newReply(zhttp.TypeKeepAlive), now)
		}
	}
}

func (e *engine) sendError(ctx context.Context, s *session, cond string, now time.Time) {
	if le := e.log.Debug(); le.Enabled() {
		le.Str(logging.FieldRID, string(s.zs.ID)).Str("condition", cond).Msg("OUT ERR")
	}
	r := newReply(zhttp.TypeError)
	r.cond = cond
	e.send(ctx, s, r, now)
}

// send stamps r with the session's id, seq and user-data and writes it.
// Stream replies carry our `from`; req-mode replies carry none (zurl).
func (e *engine) send(ctx context.Context, s *session, r *reply, now time.Time) {
	if s.mode == modeQuiet {
		return
	}
	r.id, r.seq, r.userData = s.zs.ID, s.zs.OutSeq, s.zs.UserData
	s.zs.OutSeq++
	s.zs.LastOut = now
	if s.mode == modeStream {
		r.from = e.s.from
		e.publish(ctx, r.encode(s.to, s.json))
		return
	}
	e.reply(ctx, s.env, r.encode(nil, s.json))
}

// publish writes one PUB frame. The out owner waits at most
// OutSendTimeout for a reply's room, so waiting for room in its queue is
// bounded.
func (e *engine) publish(ctx context.Context, frame []byte) {
	if e.ss.out == nil {
		return
	}
	select {
	case e.ss.out.Send() <- zsock.Message{frame}:
	case <-ctx.Done():
	}
}

// reply writes a req-mode response on the ROUTER, waiting for room: the
// ROUTER owner keeps writing while it waits for us to take its input
// (zsock deliver), so this cannot deadlock.
func (e *engine) reply(ctx context.Context, env [][]byte, payload []byte) {
	if e.ss.inReq == nil {
		return
	}
	m := make(zsock.Message, 0, len(env)+1)
	m = append(m, env...)
	m = append(m, payload)
	e.ss.inReq.SendWait(ctx, m)
}
