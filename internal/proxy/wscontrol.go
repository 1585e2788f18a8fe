package proxy

// The proxy side of ws-control (zmq-wire.md §4.5): for a GRIP WebSocket
// (or a target with sub= channels) the proxy tells the handler that the
// connection exists (`here`, then `keep-alive` items at least every 45 s,
// `gone` at the end), passes the backend's `c:` control messages as `grip`
// items and implicit subscriptions as `subscribe` items (both acked within
// 8 s, else the connection is dropped), and carries out the handler's
// `send`, `keep-alive-setup`, `close`, `detach` and `cancel` items.
// Pushpin's source: src/proxy/wscontrolsession.cpp, wscontrolmanager.cpp.

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

const (
	// wsControlTTL is the ttl of `here` and `keep-alive` items (s).
	wsControlTTL = 60
	// wsControlKeepAlive is how often a live connection is refreshed.
	wsControlKeepAlive = 45 * time.Second
	// wsControlTimeout bounds the wait for an ack of `grip`/`subscribe`.
	wsControlTimeout = 8 * time.Second
	// wsControlItemsMax is the most items in one packet (PACKET_ITEMS_MAX).
	wsControlItemsMax = 128
	// wsKeepAliveJitter: client keep-alives fire up to 1 s early.
	wsKeepAliveJitter = time.Second
)

// gripControlTypes are the `c:` message types the handler acts on
// (grip-reference §6.2).
var gripControlTypes = map[string]bool{
	"subscribe": true, "unsubscribe": true, "detach": true, "session": true,
	"set-meta": true, "keep-alive": true, "send-delayed": true, "flush-delayed": true,
}

func (e *engine) wsControlOn() bool { return e.toWSControl != nil }

// wsControlWrite sends one packet to the handler.
func (e *engine) wsControlWrite(items ...wscontrol.Item) {
	pkt := wscontrol.Packet{Items: items}
	select {
	case e.toWSControl <- zsock.Message{pkt.Encode()}:
	default:
		e.wsControlDrops++
		if e.wsControlDrops&(e.wsControlDrops-1) == 0 { // 1, 2, 4, ...: a full queue does not flood the log
			e.log.Warn().Str(logging.FieldSocket, "ws-control-out").Str("cid", string(items[0].CID)).
				Int64("dropped", e.wsControlDrops).Msg("queue full, ws-control packet dropped")
		}
	}
}

// wsControlStart creates the connection's control session (`here`).
func (e *engine) wsControlStart(s *session, now time.Time) {
	ws := s.ws
	if ws.cid == "" { // WebSocket-over-HTTP already sent it as Connection-Id
		ws.cid = newUUID()
	}
	ws.control = true
	ws.lastKA = now
	e.wsByCID[ws.cid] = s
	it := wscontrol.NewItem([]byte(ws.cid), wscontrol.TypeHere)
	it.URI = s.first.URI
	it.Route = s.route.ID
	it.ChannelPrefix = s.route.Prefix
	it.TTL = wsControlTTL
	e.wsControlWrite(it)
}

// wsControlRequest sends an item that the handler must ack.
func (e *engine) wsControlRequest(s *session, it wscontrol.Item, now time.Time) {
	ws := s.ws
	id := strconv.FormatInt(ws.reqN, 10)
	ws.reqN++
	ws.pending = append(ws.pending, wsPending{reqID: id, deadline: now.Add(wsControlTimeout)})
	it.CID = []byte(ws.cid)
	it.ReqID = []byte(id)
	e.wsControlWrite(it)
}

// ack ends the pending request reqID; the emptied list is let go.
func (ws *wsSession) ack(reqID string) {
	ws.pending = slices.DeleteFunc(ws.pending, func(p wsPending) bool { return p.reqID == reqID })
	if len(ws.pending) == 0 {
		ws.pending = nil
	}
}

func wsSubscribeItem(channel string) wscontrol.Item {
	it := wscontrol.NewItem(nil, wscontrol.TypeSubscribe)
	it.Channel = channel
	return it
}

// wsGripMessage passes a backend's control message (the JSON after `c:`)
// to the handler. Pushpin's proxy forwards it unread and the handler
// ignores what it cannot use; tack checks it here so that a bad message is
// logged with the connection id and skipped, and nothing else happens to
// the connection.
func (e *engine) wsGripMessage(s *session, msg []byte, now time.Time) {
	ws := s.ws
	var obj struct {
		Type *string `json:"type"`
	}
	if err := json.Unmarshal(msg, &obj); err != nil {
		e.log.Warn().Str("cid", ws.cid).Err(err).Msg("websocket: invalid grip control message skipped")
		return
	}
	if obj.Type == nil {
		e.log.Warn().Str("cid", ws.cid).Msg("websocket: grip control message without 'type' skipped")
		return
	}
	if !gripControlTypes[*obj.Type] {
		e.log.Warn().Str("cid", ws.cid).Str("type", *obj.Type).Msg("websocket: grip control message of unknown type skipped")
		return
	}
	it := wscontrol.NewItem(nil, wscontrol.TypeGrip)
	it.Message = msg
	it.HasMessage = true
	e.wsControlRequest(s, it, now)
}

// handleWSControl handles a packet from the handler (ws-control-in).
func (e *engine) handleWSControl(frame []byte, now time.Time) {
	pkt := &e.wsIn
	err := wscontrol.ParseTo(pkt, frame)
	// The items alias frame: let go of them once handled.
	defer clear(pkt.Items)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "ws-control-in").Msg("dropping undecodable ws-control packet")
		return
	}
	for i := range pkt.Items {
		it := &pkt.Items[i]
		s := e.wsByCID[string(it.CID)]
		if s == nil {
			if it.Type != wscontrol.TypeCancel {
				e.log.Debug().Str("cid", string(it.CID)).Str("type", it.Type).Msg("ws-control item for unknown connection, cancelling")
				e.wsControlWrite(wscontrol.NewItem(it.CID, wscontrol.TypeCancel))
			}
			continue
		}
		e.wsControlItem(s, it, now)
	}
}

func (e *engine) wsControlItem(s *session, it *wscontrol.Item, now time.Time) {
	ws := s.ws
	if it.Type != wscontrol.TypeAck && it.ReqID != nil && it.Type != wscontrol.TypeSend {
		ack := wscontrol.NewItem([]byte(ws.cid), wscontrol.TypeAck)
		ack.ReqID = it.ReqID
		e.wsControlWrite(ack)
	}
	switch it.Type {
	case wscontrol.TypeSend:
		e.wsSend(s, it, now)
	case wscontrol.TypeKeepAliveSetup:
		if it.Timeout > 0 {
			ws.kaMode = "idle"
			if it.KeepAliveMode == "interval" {
				ws.kaMode = "interval"
			}
			ws.kaTimeout = time.Duration(it.Timeout) * time.Second
			ws.kaAt = wsKeepAliveDue(now, ws.kaTimeout)
		} else {
			ws.kaMode = ""
		}
	case wscontrol.TypeClose:
		if !ws.detached && !ws.outDone && !ws.toBackend.closeQueued {
			ws.toBackend.closeQueued, ws.toBackend.closeCode = true, -1
			e.wsFlushBackend(s, now)
		}
		if _, live := e.byIn[s.key]; live {
			e.wsCloseClient(s, it.Code, it.Reason, now)
		}
	case wscontrol.TypeDetach:
		if ws.detached {
			return
		}
		ws.detached = true
		if ws.outDone {
			return
		}
		// Client frames waiting for the backend are dropped from now on.
		ws.toBackend.q, ws.toBackend.bytes = nil, 0
		if !ws.toBackend.closeQueued {
			ws.toBackend.closeQueued, ws.toBackend.closeCode = true, -1
		}
		e.wsFlushBackend(s, now)
	case wscontrol.TypeCancel:
		e.cancelIn(s, now)
		e.cancelClient(s, now)
		e.finish(s, "cancelled by handler")
	case wscontrol.TypeAck:
		ws.ack(string(it.ReqID))
	case wscontrol.TypeRefresh:
		// WebSocket-over-HTTP only: nothing to poll on a plain WebSocket.
		if ws.woh != nil {
			e.wohRefresh(s, now)
		}
	default:
		e.log.Debug().Str("cid", ws.cid).Str("type", it.Type).Msg("ignoring ws-control item")
	}
}

// wsSend delivers a message from the handler to the client. Like Pushpin,
// a message that cannot be written now (no credits left, or a backend
// message in the middle of being relayed) is dropped unless it was queued
// (send-delayed); tack also bounds the queued ones and counts every drop.
func (e *engine) wsSend(s *session, it *wscontrol.Item, now time.Time) {
	ws := s.ws
	f := wsFrame{typ: zhttp.TypeData, ctype: "text", body: it.Message, fromSend: true, reqID: it.ReqID}
	switch it.ContentType {
	case "binary":
		f.ctype = "binary"
	case "ping":
		f.typ, f.ctype = zhttp.TypePing, ""
	case "pong":
		f.typ, f.ctype = zhttp.TypePong, ""
	}
	d := &ws.toClient
	if !ws.connected || d.closeQueued || d.closeSent {
		e.wsSendWritten(s, it.ReqID, now)
		return
	}
	canWrite := s.in.Credits-int64(d.bytes) > 0
	switch {
	case !it.Queue && (!canWrite || ws.inMsg):
		e.wsDrop(s, "client not keeping up", now)
		e.wsSendWritten(s, it.ReqID, now)
		return
	case d.bytes+ws.heldBytes+len(f.body) > wsSendQueueMax+wsWindow:
		e.wsDrop(s, "client queue full", now)
		e.wsSendWritten(s, it.ReqID, now)
		return
	}
	if ws.inMsg {
		ws.held = append(ws.held, f)
		ws.heldBytes += len(f.body)
		return
	}
	e.wsQueue(d, f)
	e.wsIdleKeepAlive(s, now)
	e.wsFlushClient(s, now)
}

// wsDrop counts a dropped message (stats and Prometheus) and warns at most
// every wsDropLogEvery per connection and every wsDropLogAny in all, so
// that a publish to many stalled clients does not flood the log; a
// connection held back shows its drops in its next warning.
func (e *engine) wsDrop(s *session, why string, now time.Time) {
	ws := s.ws
	ws.drops++
	e.wsDrops++
	e.statsWSDropped(s)
	if now.Sub(ws.lastDrop) < wsDropLogEvery {
		return
	}
	suppressed, ok := e.wsDropLog.allow(now)
	if !ok {
		return
	}
	ev := e.log.Warn().Str("cid", ws.cid).Str(logging.FieldRID, string(s.in.ID)).Int64("dropped", ws.drops-ws.dropsLogd).
		Int64("dropped_total", e.wsDrops)
	if suppressed > 0 {
		ev = ev.Int64("suppressed", suppressed)
	}
	ev.Msg("websocket: message to the client dropped: " + why)
	ws.lastDrop = now
	ws.dropsLogd = ws.drops
}

// wsDropLogAny spaces the drop warnings of all connections together.
const wsDropLogAny = time.Second

// wsDropGate lets one drop warning through per wsDropLogAny and counts
// the connections' warnings it holds back (the engine goroutine's).
type wsDropGate struct {
	last       time.Time
	suppressed int64
}

func (g *wsDropGate) allow(now time.Time) (suppressed int64, ok bool) {
	if !g.last.IsZero() && now.Sub(g.last) < wsDropLogAny {
		g.suppressed++
		return 0, false
	}
	n := g.suppressed
	g.last, g.suppressed = now, 0
	return n, true
}

// wsSendWritten acks a `send` item once written (or dropped).
func (e *engine) wsSendWritten(s *session, reqID []byte, now time.Time) {
	if reqID == nil || !s.ws.control {
		return
	}
	ack := wscontrol.NewItem([]byte(s.ws.cid), wscontrol.TypeAck)
	ack.ReqID = reqID
	e.wsControlWrite(ack)
}

// wsIdleKeepAlive restarts an idle-mode client keep-alive.
func (e *engine) wsIdleKeepAlive(s *session, now time.Time) {
	if ws := s.ws; ws.kaMode == "idle" {
		ws.kaAt = wsKeepAliveDue(now, ws.kaTimeout)
	}
}

func wsKeepAliveDue(now time.Time, timeout time.Duration) time.Time {
	return now.Add(max(timeout-time.Duration(rand.Int64N(int64(wsKeepAliveJitter))), 0))
}

// wsControlTick runs the control session's timers; it reports whether
// the connection ended.
func (e *engine) wsControlTick(s *session, now time.Time) bool {
	ws := s.ws
	for _, p := range ws.pending {
		if now.After(p.deadline) {
			// The handler lost the connection or is not there: drop the
			// connection (grip-reference §6.4).
			e.log.Warn().Str("cid", ws.cid).Str(logging.FieldRID, string(s.in.ID)).Msg("websocket: ws-control request not acked in 8 s, dropping the connection")
			e.cancelIn(s, now)
			e.cancelClient(s, now)
			e.finish(s, "control timeout")
			return true
		}
	}
	if now.Sub(ws.lastKA) >= wsControlKeepAlive {
		ws.lastKA = now
		it := wscontrol.NewItem([]byte(ws.cid), wscontrol.TypeKeepAlive)
		it.TTL = wsControlTTL
		e.wsKA = append(e.wsKA, it)
	}
	if ws.kaMode != "" && !ws.kaAt.IsZero() && !now.Before(ws.kaAt) {
		e.wsControlWrite(wscontrol.NewItem([]byte(ws.cid), wscontrol.TypeNeedKeepAlive))
		if ws.kaMode == "interval" {
			ws.kaAt = wsKeepAliveDue(now, ws.kaTimeout)
		} else {
			ws.kaAt = time.Time{}
		}
	}
	return false
}

// wsControlFlushKeepAlives sends the keep-alive items of a tick in packets
// of at most wsControlItemsMax items.
func (e *engine) wsControlFlushKeepAlives() {
	for len(e.wsKA) > 0 {
		n := min(len(e.wsKA), wsControlItemsMax)
		e.wsControlWrite(e.wsKA[:n]...)
		e.wsKA = e.wsKA[n:]
	}
	e.wsKA = nil
}

// wsFinished ends the control session (`gone`) of a finished connection.
func (e *engine) wsFinished(s *session) {
	ws := s.ws
	if !ws.control {
		return
	}
	ws.control = false
	delete(e.wsByCID, ws.cid)
	e.wsControlWrite(wscontrol.NewItem([]byte(ws.cid), wscontrol.TypeGone))
}
