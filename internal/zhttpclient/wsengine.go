package zhttpclient

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/gobwas/ws"

	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// followWS applies a client packet to a WebSocket session (zmq-wire.md
// §2.12): messages, pings, pongs and the close go to the worker's writer
// as frames; the bytes it writes are credited back.
func (e *engine) followWS(ctx context.Context, s *session, p *zhttp.Packet, id []byte, now time.Time) {
	s.w.touch() // any packet from the client refreshes the activity timeout, as in zurl
	var it wsItem
	switch p.Type {
	case zhttp.TypeData:
		it.op = ws.OpText
		switch {
		case s.wsInMsg:
			it.op = ws.OpContinuation
		case p.ContentType == "binary":
			it.op = ws.OpBinary
		}
		it.fin = !p.More
		s.wsInMsg = p.More
		it.payload = p.Body
	case zhttp.TypePing, zhttp.TypePong:
		it.op, it.fin, it.payload = ws.OpPing, true, p.Body
		if p.Type == zhttp.TypePong {
			it.op = ws.OpPong
		}
		if len(it.payload) > ws.MaxControlFramePayloadSize {
			e.log.Warn().Str(logging.FieldRID, string(id)).Int("size", len(it.payload)).Msg("client control frame payload over 125 bytes, truncated")
			it.payload = it.payload[:ws.MaxControlFramePayloadSize]
		}
	case zhttp.TypeClose:
		it.op, it.fin = ws.OpClose, true
		switch p.Code {
		case -1, int64(ws.StatusNoStatusRcvd), int64(ws.StatusAbnormalClosure), int64(ws.StatusTLSHandshake):
			// No code on the wire (1005/1006/1015 are never sent, RFC 6455 §7.4.1).
		default:
			reason := p.Body
			if len(reason) > ws.MaxControlFramePayloadSize-2 {
				reason = reason[:ws.MaxControlFramePayloadSize-2]
			}
			it.payload = make([]byte, 2+len(reason))
			binary.BigEndian.PutUint16(it.payload, uint16(p.Code))
			copy(it.payload[2:], reason)
		}
	default:
		return // keep-alive, credit: already applied
	}
	if it.op != ws.OpClose { // nothing follows a close: no credit for it
		it.credit = int64(len(p.Body))
	}
	queued := s.w.wsq.push(it)
	if it.op == ws.OpClose {
		s.w.wsq.clientClosed()
	}
	if queued > BodyOverflowFactor*e.s.cfg.BufferSize {
		e.log.Warn().Str(logging.FieldRID, string(id)).Int("queued", queued).Msg("client exceeded websocket credits")
		e.sendError(ctx, s, zhttp.CondBadRequest, now)
		e.finish(s)
	}
}

// sendWS writes a worker's WebSocket packet to the client.
func (e *engine) sendWS(ctx context.Context, s *session, ev *event, now time.Time) {
	r := newReply(ev.ws.typ)
	if ev.head != nil {
		r.code, r.reason, r.headers = ev.head.code, ev.head.reason, ev.head.headers
		r.credits = ev.credits
		r.multi = s.wsMulti // the accept echoes ext.multi, as zurl's does
		if le := e.log.Debug(); le.Enabled() {
			le.Str(logging.FieldRID, string(s.zs.ID)).Int64("code", ev.head.code).Msg("OUT websocket accepted")
		}
		e.send(ctx, s, r, now)
		return
	}
	switch ev.ws.typ {
	case zhttp.TypeData:
		if ev.ws.binary {
			r.ctype = "binary" // text goes without content-type, as from zurl
		}
		r.body = ev.body
		if r.body == nil {
			r.body = []byte{}
		}
		r.more = ev.more
	case zhttp.TypeClose:
		r.code = ev.ws.code
		if len(ev.body) > 0 {
			r.body = ev.body
		}
	default: // ping, pong
		if len(ev.body) > 0 {
			r.body = ev.body
		}
	}
	e.send(ctx, s, r, now)
}
