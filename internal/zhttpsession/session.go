package zhttpsession

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"tack/pkg/zhttp"
)

// Timers shared by every participant (zmq-wire.md §2.8).
const (
	// KeepAliveInterval is how long a session may be idle on our side before
	// we send a keep-alive (Pushpin KEEPALIVE_INTERVAL, 45 s).
	KeepAliveInterval = 45 * time.Second
	// ExpireAfter drops a session that received nothing for this long
	// (Pushpin SESSION_EXPIRE, connmgr ZHTTP_SESSION_TIMEOUT, 60 s).
	ExpireAfter = 60 * time.Second
)

// Errors.
var (
	ErrBadSeq = errors.New("zhttp: bad sequence number")
)

// Session is the sequencing and credit state of one zhttp session.
type Session struct {
	ID        []byte
	Peer      []byte // the other side's `from`
	OutSeq    int64
	InSeq     int64
	Credits   int64
	PeerMulti bool
	UserData  any
	LastIn    time.Time
	LastOut   time.Time
}

// Receive checks p's sequence number and folds its session fields (peer,
// credits, ext.multi, user-data) into s. Cancel and error packets are
// accepted whatever their seq, as Pushpin checks them first (§2.6); an
// out-of-order one leaves InSeq alone (InSeq never goes back).
func (s *Session) Receive(p *zhttp.Packet, now time.Time) error {
	s.LastIn = now
	if p.Seq >= 0 {
		switch {
		case p.Seq == s.InSeq:
			s.InSeq++
		case p.Type != zhttp.TypeCancel && p.Type != zhttp.TypeError:
			return fmt.Errorf("%w (expected %d, got %d)", ErrBadSeq, s.InSeq, p.Seq)
		}
	}
	s.setPeer(p.From)
	if p.Credits > 0 {
		// Saturate: two huge grants must not wrap to a negative balance
		// that would starve the session forever.
		if s.Credits > math.MaxInt64-p.Credits {
			s.Credits = math.MaxInt64
		} else {
			s.Credits += p.Credits
		}
	}
	if p.Multi {
		s.PeerMulti = true
	}
	if p.UserData != nil {
		s.UserData = p.UserData
	}
	return nil
}

// ReceiveSeq is Receive for one entry of a list-form packet.
func (s *Session) ReceiveSeq(seq int64, from []byte, now time.Time) error {
	s.LastIn = now
	if seq >= 0 {
		if seq != s.InSeq {
			return fmt.Errorf("%w (expected %d, got %d)", ErrBadSeq, s.InSeq, seq)
		}
		s.InSeq = seq + 1
	}
	s.setPeer(from)
	return nil
}

// setPeer records a packet's `from`. Decoded bytes alias the whole received
// frame (body included), so Peer keeps a copy rather than pinning the last
// packet's buffer for the life of the session; it is copied only when it
// changes.
func (s *Session) setPeer(from []byte) {
	if len(from) > 0 && !bytes.Equal(s.Peer, from) {
		s.Peer = bytes.Clone(from)
	}
}

// Stamp fills the session fields of an outgoing packet (from, id, seq,
// ext.multi, user-data) and advances OutSeq.
func (s *Session) Stamp(p *zhttp.Packet, from []byte, multi bool, now time.Time) *zhttp.Packet {
	p.From = from
	p.ID = s.ID
	p.Seq = s.OutSeq
	s.OutSeq++
	p.Multi = multi
	if s.UserData != nil {
		p.UserData = s.UserData
	}
	s.LastOut = now
	return p
}

// Spend takes up to n bytes of credit and returns how many were taken.
func (s *Session) Spend(n int) int {
	if int64(n) > s.Credits {
		n = int(s.Credits)
	}
	if n < 0 {
		n = 0
	}
	s.Credits -= int64(n)
	return n
}

// KeepAliveDue reports whether we have been silent towards the peer for
// KeepAliveInterval.
func (s *Session) KeepAliveDue(now time.Time) bool {
	return now.Sub(s.LastOut) >= KeepAliveInterval
}

// Expired reports whether the peer has been silent for ExpireAfter.
func (s *Session) Expired(now time.Time) bool {
	return now.Sub(s.LastIn) >= ExpireAfter
}

// Addressed is a packet and the peer it goes to.
type Addressed struct {
	Peer   []byte
	Packet *zhttp.Packet
}

// KeepAlives builds keep-alive packets for the given sessions: sessions
// whose peer announced ext.multi are grouped per peer into list-form packets
// of at most zhttp.MaxIDs ids (§2.8); the others get one packet each. Every
// listed session's OutSeq advances by one.
func KeepAlives(from []byte, sessions []*Session, now time.Time) []Addressed {
	var out []Addressed
	groups := map[string]*zhttp.Packet{}
	for _, s := range sessions {
		if !s.PeerMulti {
			p := zhttp.New()
			p.Type = zhttp.TypeKeepAlive
			out = append(out, Addressed{Peer: s.Peer, Packet: s.Stamp(p, from, true, now)})
			continue
		}
		key := string(s.Peer)
		p := groups[key]
		if p == nil || len(p.IDs) >= zhttp.MaxIDs {
			p = zhttp.New()
			p.From = from
			p.Type = zhttp.TypeKeepAlive
			p.Multi = true
			p.IDs = make([]zhttp.IDSeq, 0, 8)
			groups[key] = p
			out = append(out, Addressed{Peer: s.Peer, Packet: p})
		}
		p.IDs = append(p.IDs, zhttp.IDSeq{ID: s.ID, Seq: s.OutSeq})
		s.OutSeq++
		s.LastOut = now
	}
	// A one-entry list is sent in the plain form, as condure does.
	for i := range out {
		p := out[i].Packet
		if len(p.IDs) == 1 {
			p.ID, p.Seq, p.IDs = p.IDs[0].ID, p.IDs[0].Seq, nil
		}
	}
	return out
}
