package proxy

// Batching of WebSocket messages to connmgr. A ws-control packet from the
// handler carries up to 128 `send` items, usually one published message
// for many connections; each becomes a zhttp data packet to the
// connection's connmgr. While the engine works through the ws-control
// packets that are already queued (never waiting for more), those packets
// are held per connmgr, and equal messages to connections whose connmgr
// announced ext.multi go out as one packet with a list-form id (at most
// zhttp.MaxIDs entries, each with its own seq; zmq-wire.md §2.2, §2.8).
// condure and tack-connmgr hand such a packet to every listed connection
// (condure: server.rs dispatches a packet to each id of its list). Each
// connmgr's packets keep their order: a message joins only the last held
// packet of its connmgr, and a connection appears once per packet.

import (
	"bytes"
	"time"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

// wsBatchDrain bounds the queued ws-control packets handled before the
// held packets are sent.
const wsBatchDrain = 16

// wsFreeMax bounds the free list of WebSocket packets.
const wsFreeMax = 256

// pubHold holds connmgr-bound packets while on.
type pubHold struct {
	on     bool
	dests  []heldDest
	serial int64 // numbers the batch packets (wsSession.batch)
	// free holds WebSocket packets for reuse (wsPacket): one is built
	// per message relayed, and most of a batch's are dropped at once.
	free []*zhttp.Packet
}

// wsPacket returns a fresh packet (zhttp.New) for wsFlush.
func (e *engine) wsPacket() *zhttp.Packet {
	if n := len(e.hold.free); n > 0 {
		p := e.hold.free[n-1]
		e.hold.free[n-1] = nil
		e.hold.free = e.hold.free[:n-1]
		return p
	}
	return zhttp.New()
}

// wsPacketDone takes back a packet of wsPacket once it has been encoded.
func (e *engine) wsPacketDone(p *zhttp.Packet) {
	if len(e.hold.free) < wsFreeMax {
		p.Reset()
		p.IDs, p.Headers = nil, nil
		e.hold.free = append(e.hold.free, p)
	}
}

// heldDest is one connmgr's held packets, in order.
type heldDest struct {
	dest    []byte
	entries []heldEntry
}

// heldEntry is an encoded frame, or a batch packet still taking ids.
type heldEntry struct {
	frame  []byte
	batch  *zhttp.Packet
	serial int64
}

// holdPubs starts holding connmgr-bound packets.
func (e *engine) holdPubs() { e.hold.on = true }

// heldFor returns dest's held packets, adding dest if new.
func (h *pubHold) heldFor(dest []byte) *heldDest {
	for i := range h.dests {
		if bytes.Equal(h.dests[i].dest, dest) {
			return &h.dests[i]
		}
	}
	h.dests = append(h.dests, heldDest{dest: dest})
	return &h.dests[len(h.dests)-1]
}

// holdFrame holds an encoded frame for dest.
func (e *engine) holdFrame(dest []byte, p *zhttp.Packet) {
	d := e.hold.heldFor(dest)
	d.entries = append(d.entries, heldEntry{frame: zhttp.PubFrame(dest, p)})
}

// sendInWS sends a packet p of a WebSocket's queue (from e.wsPacket; a
// batch keeps it, else it is taken back) to the session's connmgr;
// messages are batched while holding, anything else is held as it is.
func (e *engine) sendInWS(s *session, p *zhttp.Packet, now time.Time) {
	message := (p.Type == zhttp.TypeData || p.Type == zhttp.TypePing || p.Type == zhttp.TypePong) && p.Code < 0 && p.Credits < 0
	if !message || !e.hold.on || s.side != sideConnmgr || s.ghost || !s.in.PeerMulti || s.in.UserData != nil {
		e.sendIn(s, p, now)
		e.wsPacketDone(p)
		return
	}
	s.in.Stamp(p, e.id, true, now)
	d := e.hold.heldFor(s.in.Peer)
	if n := len(d.entries); n > 0 {
		last := &d.entries[n-1]
		if b := last.batch; b != nil && len(b.IDs) < zhttp.MaxIDs && s.ws.batch != last.serial &&
			b.Type == p.Type && b.ContentType == p.ContentType && b.More == p.More && bytes.Equal(b.Body, p.Body) {
			b.IDs = append(b.IDs, zhttp.IDSeq{ID: p.ID, Seq: p.Seq})
			s.ws.batch = last.serial
			e.wsPacketDone(p)
			return
		}
	}
	e.hold.serial++
	p.IDs = append(make([]zhttp.IDSeq, 0, 8), zhttp.IDSeq{ID: p.ID, Seq: p.Seq})
	p.ID, p.Seq = nil, -1
	d.entries = append(d.entries, heldEntry{batch: p, serial: e.hold.serial})
	s.ws.batch = e.hold.serial
}

// flushPubs sends the held packets and stops holding. A batch of one id
// goes out in the plain form, as condure sends its own.
func (e *engine) flushPubs() {
	e.hold.on = false
	for i := range e.hold.dests {
		d := &e.hold.dests[i]
		for j := range d.entries {
			en := &d.entries[j]
			frame := en.frame
			if p := en.batch; p != nil {
				if len(p.IDs) == 1 {
					p.ID, p.Seq, p.IDs = p.IDs[0].ID, p.IDs[0].Seq, nil
				}
				frame = zhttp.PubFrame(d.dest, p)
				e.wsPacketDone(p)
			}
			*en = heldEntry{}
			select {
			case e.toConnmgr <- zsock.Message{frame}:
			default:
				e.log.Warn().Str(logging.FieldSocket, "condure-in").Bytes("to", d.dest).Msg("queue full, packet dropped")
			}
		}
		d.entries = d.entries[:0]
	}
	e.hold.dests = e.hold.dests[:0]
}
