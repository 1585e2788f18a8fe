package handler

import (
	"container/heap"
	"strconv"
	"time"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/wscontrol"
)

// WebSocket sessions: the handler side of ws-control (zmq-wire.md §4.5;
// Pushpin src/handler/wssession.cpp and the ws-control part of
// src/handler/engine.cpp in 1.36). The proxy keeps the client and backend
// WebSockets; it tells the handler about each connection (`here`,
// `keep-alive`, `gone`) and forwards the backend's `c:` control messages
// (`grip`) and `sub=` channels (`subscribe`). The handler keeps the
// subscriptions and answers with `send`, `close`, `detach`,
// `keep-alive-setup` and `cancel` items. Only the engine goroutine
// touches this state.

// ws-control bounds and timers.
const (
	// wsRequestTimeout is how long a request that wants an ack (a
	// delayed send) waits for it before the session is cancelled
	// (Pushpin WSCONTROL_REQUEST_TIMEOUT, 8 s).
	wsRequestTimeout = 8 * time.Second
	// wsDefaultTTL is used when a `here`/`keep-alive` has no positive
	// ttl (the proxy sends 60).
	wsDefaultTTL = 60 * time.Second
	// wsPacketItems bounds the items of one outgoing packet (the proxy
	// batches at most 128 per packet too).
	wsPacketItems = 128
	// wsCloseRestart is the close code sent to every WebSocket when the
	// handler stops (RFC 6455 1012, service restart): clients reconnect.
	wsCloseRestart = 1012
	// wsCloseError closes a connection whose backend sent a control
	// message the handler cannot use (RFC 6455 1011).
	wsCloseError = 1011
	// wsCongestionPoll is how often the engine looks again at a
	// ws-control queue over half full.
	wsCongestionPoll = 10 * time.Millisecond
)

// wsSession is one WebSocket connection the proxy keeps.
type wsSession struct {
	cid        string
	cidB       []byte // cid, for the items
	uri        string
	route      string
	statsRoute string
	prefix     string // channel-prefix applied to `c:` subscriptions
	debug      bool
	ttl        time.Duration
	expireAt   time.Time

	chans    wsChans           // subscriptions with their filters
	implicit map[string]bool   // sub= channels (not removable)
	meta     map[string]string // set-meta
	sid      string            // `session` id (no state service: kept, unused)

	// keep-alive content sent on need-keep-alive; hasKA false = none
	kaType string
	kaMsg  []byte
	hasKA  bool

	// send-delayed: one message waiting for delayedAt (zero: none)
	delayedType string
	delayedMsg  []byte
	delayedAt   time.Time

	nextReqID int
	requests  map[int]time.Time // req-id → ack deadline

	closed  bool  // a close went to the proxy: nothing more is sent
	removed bool  // out of every table
	armedAt int64 // deadline of the session's current heap entry; 0 = none
}

// wsChan is one subscription of a WebSocket session.
type wsChan struct {
	name    string
	filters []string
}

// wsChans is a session's subscriptions: a few at most
// (connection_subscription_max), so a slice beats a map, and it keeps
// publishing to many sessions cache-friendly.
type wsChans []wsChan

func (l wsChans) get(name string) *wsChan {
	for i := range l {
		if l[i].name == name {
			return &l[i]
		}
	}
	return nil
}

func (l *wsChans) del(name string) {
	for i := range *l {
		if (*l)[i].name == name {
			*l = append((*l)[:i], (*l)[i+1:]...)
			return
		}
	}
}

// wsState is the engine's WebSocket part.
type wsState struct {
	sessions map[string]*wsSession
	in       <-chan zsock.Message // PULL from the proxy; nil without ws-control
	out      chan<- zsock.Message // PUSH to the proxy; nil without ws-control
	pending  []wscontrol.Item     // items of this engine step, sent by wsFlush
	timers   wsTimerHeap
	dropLog  *rateLog
}

func newWSState(e *engine) *wsState {
	return &wsState{sessions: map[string]*wsSession{}, dropLog: newRateLog(e.log, rateLogInterval)}
}

// wsCongested reports whether the queue towards the proxy is over half
// full: the engine then takes no published items (backpressure) until the
// socket has written them out.
func (e *engine) wsCongested() bool {
	return e.ws.out != nil && len(e.ws.out) > cap(e.ws.out)/2
}

// wsQueue adds an item for the proxy; it leaves with the step's others.
//
// A full packet's worth goes out at once: the proxy starts on it while a
// large publish is still being delivered here, and pending stays small.
func (e *engine) wsQueue(it wscontrol.Item) {
	e.ws.pending = append(e.ws.pending, it)
	if len(e.ws.pending) >= wsPacketItems {
		e.wsFlush()
	}
}

// wsFlush sends the items queued during this engine step, batched. A
// `refresh` goes in a packet of its own: a 1.36 proxy does not know the
// type and rejects the whole packet that carries it.
func (e *engine) wsFlush() {
	items := e.ws.pending
	if len(items) == 0 {
		return
	}
	start := 0
	for i := range items {
		if items[i].Type == wscontrol.TypeRefresh {
			e.wsWrite(items[start:i])
			e.wsWrite(items[i : i+1])
			start = i + 1
		}
	}
	e.wsWrite(items[start:])
	clear(items)
	e.ws.pending = items[:0]
}

func (e *engine) wsWrite(items []wscontrol.Item) {
	for len(items) > 0 {
		n := min(len(items), wsPacketItems)
		p := wscontrol.Packet{Items: items[:n]}
		items = items[n:]
		if e.ws.out == nil {
			e.log.Error().Msg("wscontrol: can't write, no socket")
			return
		}
		select {
		case e.ws.out <- zsock.Message{p.Encode()}:
		default:
			e.stats.dropped()
			for range n {
				e.stats.deliveryDropped()
			}
			e.ws.dropLog.Warn(e.clock.Now()).Str(logging.FieldSocket, "ws-control-in").Int("items", n).
				Str(logging.FieldConn, string(p.Items[0].CID)).Msg("ws-control queue full, dropping items")
		}
	}
}

// handleWSControl processes one packet from the proxy (Pushpin 1.36
// wsControlIn_readyRead).
func (e *engine) handleWSControl(m zsock.Message, now time.Time) {
	if len(m) != 1 {
		e.log.Warn().Int("parts", len(m)).Str(logging.FieldSocket, "ws-control-out").Msg("wscontrol: message with parts != 1, skipping")
		return
	}
	p, err := wscontrol.Parse(m[0])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "ws-control-out").Msg("wscontrol: invalid packet, skipping")
		return
	}
	for i := range p.Items {
		e.wsItem(&p.Items[i], now)
	}
}

func (e *engine) wsItem(it *wscontrol.Item, now time.Time) {
	if it.Type != wscontrol.TypeAck && it.ReqID != nil {
		a := wscontrol.NewItem(it.CID, wscontrol.TypeAck)
		a.ReqID = it.ReqID
		e.wsQueue(a)
	}
	cid := string(it.CID)
	if it.Type == wscontrol.TypeHere {
		e.wsHere(cid, it, now)
		return
	}
	s := e.ws.sessions[cid]
	if s == nil {
		// The proxy then closes the connection; the client reconnects.
		// A cancel is not answered (the proxy answers unknown ids with a
		// cancel too).
		if it.Type != wscontrol.TypeCancel {
			if ev := e.log.Debug(); ev.Enabled() {
				ev.Str(logging.FieldConn, cid).Str("type", it.Type).Msg("ws-control item for unknown connection, canceling")
			}
			e.wsQueue(wscontrol.NewItem(it.CID, wscontrol.TypeCancel))
		}
		return
	}
	switch it.Type {
	case wscontrol.TypeKeepAlive:
		s.ttl = wsTTL(it.TTL)
		s.expireAt = now.Add(s.ttl)
		e.wsSchedule(s)
	case wscontrol.TypeGone, wscontrol.TypeCancel:
		e.wsRemove(s, now)
	case wscontrol.TypeGrip:
		e.wsGrip(s, it.Message, now)
	case wscontrol.TypeNeedKeepAlive:
		if s.hasKA && !s.closed {
			e.wsSend(s, s.kaType, s.kaMsg, nil, false)
			e.stats.activity(s.statsRoute, 1)
		}
	case wscontrol.TypeSubscribe:
		if it.Channel == "" {
			e.log.Warn().Str(logging.FieldConn, cid).Msg("ws-control subscribe without channel, ignoring")
			return
		}
		s.implicit[it.Channel] = true
		e.wsSubscribe(s, it.Channel, nil, now)
	case wscontrol.TypeAck:
		if n, err := strconv.Atoi(string(it.ReqID)); err == nil {
			delete(s.requests, n)
		}
	default:
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Str(logging.FieldConn, cid).Str("type", it.Type).Msg("ws-control item of unexpected type, ignoring")
		}
	}
}

func wsTTL(ttl int64) time.Duration {
	if ttl <= 0 {
		return wsDefaultTTL
	}
	return time.Duration(ttl) * time.Second
}

// wsHere creates the session of a new connection, or updates its route
// and prefix (Pushpin keeps the first ttl and uri).
func (e *engine) wsHere(cid string, it *wscontrol.Item, now time.Time) {
	s := e.ws.sessions[cid]
	if s == nil {
		s = &wsSession{
			cid:      cid,
			cidB:     []byte(cid),
			uri:      it.URI,
			ttl:      wsTTL(it.TTL),
			implicit: map[string]bool{},
			meta:     map[string]string{},
			requests: map[int]time.Time{},
		}
		s.expireAt = now.Add(s.ttl)
		e.ws.sessions[cid] = s
		e.live.add(cid)
		e.wsSchedule(s)
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Str(logging.FieldConn, cid).Str("uri", it.URI).Msg("added ws session")
		}
	}
	s.route = it.Route
	s.statsRoute = ""
	if it.SeparateStats {
		s.statsRoute = it.Route
	}
	s.prefix = it.ChannelPrefix
	s.debug = it.Debug
}

// wsRemove forgets s and its subscriptions.
func (e *engine) wsRemove(s *wsSession, now time.Time) {
	if s.removed {
		return
	}
	s.removed = true
	for len(s.chans) > 0 {
		e.wsUnsubscribe(s, s.chans[len(s.chans)-1].name, now)
	}
	delete(e.ws.sessions, s.cid)
	e.live.remove(s.cid)
	if ev := e.log.Debug(); ev.Enabled() {
		ev.Str(logging.FieldConn, s.cid).Msg("removed ws session")
	}
}

// wsSend queues a send item for s. reqID is set for sends that want an
// ack (delayed sends); queue asks the proxy to queue rather than drop it
// when the client is busy.
func (e *engine) wsSend(s *wsSession, contentType string, msg []byte, reqID []byte, queue bool) {
	it := wscontrol.NewItem(s.cidB, wscontrol.TypeSend)
	it.ContentType = contentType
	it.Message = msg
	it.HasMessage = true
	it.ReqID = reqID
	it.Queue = queue
	e.wsQueue(it)
}

// wsClose queues a close for s; nothing else is sent to it afterwards.
func (e *engine) wsClose(s *wsSession, code int, reason string) {
	if s.closed {
		return
	}
	s.closed = true
	it := wscontrol.NewItem(s.cidB, wscontrol.TypeClose)
	it.Code = int64(code)
	it.Reason = reason
	e.wsQueue(it)
}

// wsGrip applies one control message from the backend.
func (e *engine) wsGrip(s *wsSession, msg []byte, now time.Time) {
	cm, err := parseWSControl(msg)
	if err != nil {
		// Pushpin 1.36 stops reading the packet without acking, so the
		// proxy drops the connection after its 8 s ack timeout; tack
		// acks (above) and closes that connection at once with 1011.
		e.log.Warn().Str(logging.FieldConn, s.cid).Str("error", err.Error()).Msg("bad grip control message, closing connection")
		reason := ""
		if s.debug {
			reason = err.Error()
		}
		e.wsClose(s, wsCloseError, reason)
		return
	}
	switch cm.typ {
	case wcSubscribe:
		name := s.prefix + cm.channel
		if s.chans.get(name) == nil && e.cfg.ConnectionSubscriptionMax > 0 && len(s.chans) >= e.cfg.ConnectionSubscriptionMax {
			// 1.36 ignores the subscription (the message was acked).
			e.log.Warn().Str(logging.FieldConn, s.cid).Str("channel", name).Int("max", e.cfg.ConnectionSubscriptionMax).
				Msg("ws session: too many subscriptions, ignoring subscribe")
			return
		}
		e.wsSubscribe(s, name, cm.filters, now)
	case wcUnsubscribe:
		name := s.prefix + cm.channel
		if !s.implicit[name] {
			e.wsUnsubscribe(s, name, now)
		}
	case wcDetach:
		e.wsQueue(wscontrol.NewItem(s.cidB, wscontrol.TypeDetach))
	case wcSession:
		// Only the state service (state_spec, not supported) uses it.
		s.sid = cm.sessionID
	case wcSetMeta:
		if cm.hasValue {
			s.meta[cm.metaName] = cm.metaValue
		} else {
			delete(s.meta, cm.metaName)
		}
	case wcKeepAlive:
		// The proxy runs the timer and asks with need-keep-alive.
		it := wscontrol.NewItem(s.cidB, wscontrol.TypeKeepAliveSetup)
		if cm.hasContent {
			s.kaType, s.kaMsg, s.hasKA = cm.messageType, cm.content, true
			it.KeepAliveMode = "idle"
			if cm.mode == "interval" {
				it.KeepAliveMode = "interval"
			}
			it.Timeout = defaultWSKeepAliveTimeout
			if cm.timeout > 0 {
				it.Timeout = int64(cm.timeout)
			}
		} else {
			s.kaType, s.kaMsg, s.hasKA = "", nil, false
		}
		e.wsQueue(it)
	case wcSendDelayed:
		e.wsFlushDelayed(s, now)
		timeout := defaultWSSendDelayedTimeout
		if cm.timeout > 0 {
			timeout = cm.timeout
		}
		s.delayedType, s.delayedMsg = cm.messageType, cm.content
		s.delayedAt = now.Add(time.Duration(timeout) * time.Second)
		e.wsSchedule(s)
	case wcFlushDelayed:
		e.wsFlushDelayed(s, now)
	}
}

// wsFlushDelayed sends the pending delayed message now, if any.
func (e *engine) wsFlushDelayed(s *wsSession, now time.Time) {
	if s.delayedAt.IsZero() {
		return
	}
	s.delayedAt = time.Time{}
	msg := s.delayedMsg
	s.delayedMsg = nil
	if s.closed {
		return
	}
	id := s.nextReqID
	s.nextReqID++
	s.requests[id] = now.Add(wsRequestTimeout)
	e.wsSend(s, s.delayedType, msg, strconv.AppendInt(nil, int64(id), 10), true)
	e.wsSchedule(s)
}

// wsSubscribe adds s to a channel (or replaces its filters).
func (e *engine) wsSubscribe(s *wsSession, name string, filters []string, now time.Time) {
	if sc := s.chans.get(name); sc != nil {
		sc.filters = filters
		return
	}
	s.chans = append(s.chans, wsChan{name: name, filters: filters})
	c := e.channel(name)
	c.ws[s] = struct{}{}
	e.stats.subscription("ws", name, len(c.ws), now)
	e.channelSubscribed(c, now)
	e.log.Info().Str("uri", s.uri).Str("channel", name).Str(logging.FieldConn, s.cid).Msg("subscribe")
}

// wsUnsubscribe removes s from a channel.
func (e *engine) wsUnsubscribe(s *wsSession, name string, now time.Time) {
	s.chans.del(name)
	c := e.channels[name]
	if c == nil {
		return
	}
	if _, ok := c.ws[s]; !ok {
		return
	}
	delete(c.ws, s)
	if len(c.ws) > 0 {
		e.stats.subscription("ws", name, len(c.ws), now)
		return
	}
	e.stats.unsubscription("ws", name)
	e.maybeRemoveChannel(c)
}

// wsRefresh sends `refresh` to the connection cid, or to the connections
// subscribed to channel (command refresh).
func (e *engine) wsRefresh(cid, channel string) error {
	if cid != "" {
		s := e.ws.sessions[cid]
		if s == nil {
			return errNoSuchConnection
		}
		e.wsQueue(wscontrol.NewItem(s.cidB, wscontrol.TypeRefresh))
		return nil
	}
	if c := e.channels[channel]; c != nil {
		for s := range c.ws {
			e.wsQueue(wscontrol.NewItem(s.cidB, wscontrol.TypeRefresh))
		}
	}
	return nil
}

// wsShutdown closes every WebSocket with 1012 (service restart) when the
// handler stops, so that clients reconnect (to the next handler) at once.
func (e *engine) wsShutdown(now time.Time) {
	for _, s := range e.ws.sessions {
		e.wsClose(s, wsCloseRestart, "")
		e.wsRemove(s, now)
	}
	e.wsFlush()
}

// --- timers ---

// nextDeadline is s's earliest deadline: expiry, delayed send or an ack.
func (s *wsSession) nextDeadline() time.Time {
	at := s.expireAt
	if !s.delayedAt.IsZero() && s.delayedAt.Before(at) {
		at = s.delayedAt
	}
	for _, t := range s.requests {
		if t.Before(at) {
			at = t
		}
	}
	return at
}

// wsSchedule makes sure a heap entry pops no later than s's next
// deadline. Moving a deadline later costs nothing: the entry pops early
// and re-arms.
func (e *engine) wsSchedule(s *wsSession) {
	at := s.nextDeadline().UnixNano()
	if s.armedAt != 0 && s.armedAt <= at {
		return
	}
	s.armedAt = at
	heap.Push(&e.ws.timers, wsTimerEntry{at: at, s: s})
}

// wsRunTimers fires the WebSocket deadlines due at now.
func (e *engine) wsRunTimers(now time.Time) {
	ns := now.UnixNano()
	h := &e.ws.timers
	for len(*h) > 0 && (*h)[0].at <= ns {
		en := heap.Pop(h).(wsTimerEntry)
		s := en.s
		if s.removed || s.armedAt != en.at {
			continue
		}
		s.armedAt = 0
		e.wsFire(s, now)
		if !s.removed {
			e.wsSchedule(s)
		}
	}
}

func (e *engine) wsFire(s *wsSession, now time.Time) {
	if !now.Before(s.expireAt) {
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Str(logging.FieldConn, s.cid).Msg("timing out ws session")
		}
		e.wsRemove(s, now)
		return
	}
	for _, t := range s.requests {
		if !now.Before(t) {
			// No ack: the proxy lost the connection's state.
			e.log.Warn().Str(logging.FieldConn, s.cid).Msg("ws session control error (no ack), canceling")
			e.wsQueue(wscontrol.NewItem(s.cidB, wscontrol.TypeCancel))
			e.wsRemove(s, now)
			return
		}
	}
	if !s.delayedAt.IsZero() && !now.Before(s.delayedAt) {
		e.wsFlushDelayed(s, now)
	}
}

type wsTimerEntry struct {
	at int64
	s  *wsSession
}

// wsTimerHeap is a min-heap of WebSocket session deadlines.
type wsTimerHeap []wsTimerEntry

func (h wsTimerHeap) Len() int           { return len(h) }
func (h wsTimerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h wsTimerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *wsTimerHeap) Push(x any)        { *h = append(*h, x.(wsTimerEntry)) }
func (h *wsTimerHeap) Pop() any {
	old := *h
	en := old[len(old)-1]
	old[len(old)-1] = wsTimerEntry{}
	*h = old[:len(old)-1]
	return en
}

// next returns the earliest deadline.
func (h wsTimerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, h[0].at), true
}
