package zhttpsession

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

var t0 = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

// pkt builds a packet; seq < 0 means absent.
type pkt struct {
	typ     string
	seq     int64
	from    string
	credits int64 // 0 = absent
	multi   bool
	ud      any
}

func (p pkt) packet() *zhttp.Packet {
	z := zhttp.New()
	z.ID = []byte("rid")
	z.Type = p.typ
	z.Seq = p.seq
	if p.from != "" {
		z.From = []byte(p.from)
	}
	if p.credits != 0 {
		z.Credits = p.credits
	}
	z.Multi = p.multi
	z.UserData = p.ud
	return z
}

func TestReceive(t *testing.T) {
	tests := []struct {
		name    string
		start   Session
		packets []pkt
		errs    []string // per packet: "" = accepted, else a substring of the error
		want    Session  // compared on InSeq, Peer, Credits, PeerMulti, UserData
	}{
		{
			name:    "in order",
			packets: []pkt{{seq: 0}, {typ: zhttp.TypeCredit, seq: 1}, {typ: zhttp.TypeKeepAlive, seq: 2}, {seq: 3}},
			want:    Session{InSeq: 4},
		},
		{
			name:    "seq ahead is bad",
			packets: []pkt{{seq: 0}, {seq: 2, from: "x", credits: 5, multi: true, ud: []byte("u")}},
			errs:    []string{"", "expected 1, got 2"},
			want:    Session{InSeq: 1}, // nothing of the bad packet is taken
		},
		{
			name:    "repeated seq is bad",
			start:   Session{InSeq: 7},
			packets: []pkt{{seq: 7}, {seq: 7}},
			errs:    []string{"", "expected 8, got 7"},
			want:    Session{InSeq: 8},
		},
		{
			name:    "first packet must be seq 0",
			packets: []pkt{{seq: 1}},
			errs:    []string{"expected 0, got 1"},
			want:    Session{},
		},
		{
			name:    "cancel ahead accepted, InSeq kept",
			start:   Session{InSeq: 2},
			packets: []pkt{{typ: zhttp.TypeCancel, seq: 9, from: "p"}},
			want:    Session{InSeq: 2, Peer: []byte("p")},
		},
		{
			name:    "error behind accepted, InSeq does not go back",
			start:   Session{InSeq: 5},
			packets: []pkt{{typ: zhttp.TypeError, seq: 1}},
			want:    Session{InSeq: 5},
		},
		{
			name:    "in-order cancel advances",
			start:   Session{InSeq: 3},
			packets: []pkt{{typ: zhttp.TypeCancel, seq: 3}},
			want:    Session{InSeq: 4},
		},
		{
			name:    "seq absent accepted without checking",
			start:   Session{InSeq: 4},
			packets: []pkt{{seq: -1}, {typ: zhttp.TypeKeepAlive, seq: -1}, {seq: 4}, {seq: -1}},
			want:    Session{InSeq: 5},
		},
		{
			name:    "peer updated from every packet's from",
			packets: []pkt{{seq: 0, from: "a"}, {seq: 1, from: "b"}, {seq: 2}, {typ: zhttp.TypeCancel, seq: 9, from: "c"}},
			want:    Session{InSeq: 3, Peer: []byte("c")},
		},
		{
			name:    "credits accumulate",
			start:   Session{Credits: 10},
			packets: []pkt{{seq: 0, credits: 100}, {seq: 1}, {typ: zhttp.TypeCredit, seq: 2, credits: 50}},
			want:    Session{InSeq: 3, Credits: 160},
		},
		{
			name:    "credits saturate instead of wrapping",
			packets: []pkt{{seq: 0, credits: math.MaxInt64}, {typ: zhttp.TypeCredit, seq: 1, credits: math.MaxInt64}},
			want:    Session{InSeq: 2, Credits: math.MaxInt64},
		},
		{
			name:    "ext.multi latches",
			packets: []pkt{{seq: 0}, {seq: 1, multi: true}, {seq: 2}, {seq: 3}},
			want:    Session{InSeq: 4, PeerMulti: true},
		},
		{
			name:    "user-data replaced, kept when absent",
			start:   Session{UserData: []byte("old")},
			packets: []pkt{{seq: 0, ud: []byte("first")}, {seq: 1}, {seq: 2, ud: []byte("second")}, {seq: 3}},
			want:    Session{InSeq: 4, UserData: []byte("second")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.start
			for i, p := range tt.packets {
				now := t0.Add(time.Duration(i) * time.Second)
				err := s.Receive(p.packet(), now)
				want := ""
				if i < len(tt.errs) {
					want = tt.errs[i]
				}
				switch {
				case want == "" && err != nil:
					t.Fatalf("packet %d: %v", i, err)
				case want != "" && (!errors.Is(err, ErrBadSeq) || !strings.Contains(err.Error(), want)):
					t.Fatalf("packet %d: error %v, want ErrBadSeq with %q", i, err, want)
				}
				if !s.LastIn.Equal(now) {
					t.Fatalf("packet %d: LastIn %v, want %v", i, s.LastIn, now)
				}
			}
			got := Session{InSeq: s.InSeq, Peer: s.Peer, Credits: s.Credits, PeerMulti: s.PeerMulti, UserData: s.UserData}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("state %+v, want %+v", got, tt.want)
			}
		})
	}
}

// Peer must not alias the received frame (which holds the whole packet).
func TestReceivePeerIsCopied(t *testing.T) {
	frame := []byte("Tpeer-1")
	var s Session
	p := pkt{seq: 0}.packet()
	p.From = frame[1:]
	if err := s.Receive(p, t0); err != nil {
		t.Fatal(err)
	}
	copy(frame[1:], "XXXXXX")
	if string(s.Peer) != "peer-1" {
		t.Fatalf("Peer %q changed with the frame buffer", s.Peer)
	}
	// Same peer again: no new copy.
	before := &s.Peer[0]
	p = pkt{seq: 1, from: "peer-1"}.packet()
	if err := s.Receive(p, t0); err != nil {
		t.Fatal(err)
	}
	if &s.Peer[0] != before {
		t.Error("Peer copied again although unchanged")
	}
}

func TestReceiveSeq(t *testing.T) {
	var s Session
	steps := []struct {
		seq  int64
		from string
		err  string
	}{
		{0, "a", ""},
		{1, "", ""},
		{-1, "b", ""},
		{3, "c", "expected 2, got 3"},
		{2, "", ""},
	}
	for i, st := range steps {
		err := s.ReceiveSeq(st.seq, []byte(st.from), t0.Add(time.Duration(i)))
		if st.err == "" && err != nil || st.err != "" && (!errors.Is(err, ErrBadSeq) || !strings.Contains(err.Error(), st.err)) {
			t.Fatalf("step %d: error %v, want %q", i, err, st.err)
		}
		if !s.LastIn.Equal(t0.Add(time.Duration(i))) {
			t.Fatalf("step %d: LastIn not updated", i)
		}
	}
	if s.InSeq != 3 || string(s.Peer) != "b" {
		t.Errorf("InSeq %d Peer %q, want 3 and b", s.InSeq, s.Peer)
	}
}

func TestStamp(t *testing.T) {
	types := []string{zhttp.TypeData, zhttp.TypeCredit, zhttp.TypeKeepAlive, zhttp.TypeHandoffStart,
		zhttp.TypeHandoffProceed, zhttp.TypePing, zhttp.TypePong, zhttp.TypeClose, zhttp.TypeError, zhttp.TypeCancel}
	for _, multi := range []bool{false, true} {
		for _, ud := range []any{nil, []byte("opaque")} {
			t.Run(fmt.Sprintf("multi=%v user-data=%v", multi, ud != nil), func(t *testing.T) {
				s := Session{ID: []byte("rid-1"), OutSeq: 5, UserData: ud}
				for i, typ := range types {
					now := t0.Add(time.Duration(i) * time.Second)
					p := zhttp.New()
					p.Type = typ
					if typ == zhttp.TypeError {
						p.Condition = zhttp.CondUndefined
					}
					got := s.Stamp(p, []byte("me"), multi, now)
					if got != p {
						t.Fatal("Stamp returned another packet")
					}
					if want := int64(5 + i); p.Seq != want || s.OutSeq != want+1 {
						t.Fatalf("%q: seq %d OutSeq %d, want %d and %d", typ, p.Seq, s.OutSeq, want, want+1)
					}
					if !s.LastOut.Equal(now) {
						t.Fatalf("%q: LastOut not updated", typ)
					}
					// On the wire: from, id, seq, ext.multi, user-data.
					q, err := zhttp.Parse(p.Encode())
					if err != nil {
						t.Fatalf("%q: re-parse: %v", typ, err)
					}
					if string(q.From) != "me" || string(q.ID) != "rid-1" || q.Seq != p.Seq || q.Multi != multi || q.Type != typ {
						t.Fatalf("%q: wire packet %+v", typ, q)
					}
					if !reflect.DeepEqual(q.UserData, ud) {
						t.Fatalf("%q: user-data %v, want %v", typ, q.UserData, ud)
					}
				}
			})
		}
	}
	t.Run("packet's own user-data kept when the session has none", func(t *testing.T) {
		var s Session
		p := zhttp.New()
		p.UserData = []byte("mine")
		s.Stamp(p, nil, false, t0)
		if !reflect.DeepEqual(p.UserData, []byte("mine")) {
			t.Errorf("user-data %v", p.UserData)
		}
	})
}

func TestSpend(t *testing.T) {
	tests := []struct {
		name          string
		credits       int64
		n             int
		taken, remain int64
	}{
		{"within credit", 100, 30, 30, 70},
		{"exactly all", 100, 100, 100, 0},
		{"more than credit", 100, 250, 100, 0},
		{"nothing asked", 100, 0, 0, 100},
		{"negative ask", 100, -5, 0, 100},
		{"no credit", 0, 10, 0, 0},
		{"negative balance", -10, 5, 0, -10},
		{"huge balance", math.MaxInt64, math.MaxInt32, math.MaxInt32, math.MaxInt64 - math.MaxInt32},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Session{Credits: tt.credits}
			if got := s.Spend(tt.n); int64(got) != tt.taken || s.Credits != tt.remain {
				t.Errorf("Spend(%d) of %d = %d leaving %d; want %d leaving %d", tt.n, tt.credits, got, s.Credits, tt.taken, tt.remain)
			}
		})
	}
}

func TestTimers(t *testing.T) {
	s := Session{LastOut: t0, LastIn: t0}
	tests := []struct {
		name  string
		check func(time.Time) bool
		at    time.Duration
	}{
		{"keep-alive", s.KeepAliveDue, KeepAliveInterval},
		{"expiry", s.Expired, ExpireAfter},
	}
	if KeepAliveInterval != 45*time.Second || ExpireAfter != 60*time.Second {
		t.Fatalf("timers %v/%v, want 45s/60s (zmq-wire.md §2.8)", KeepAliveInterval, ExpireAfter)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct {
				after time.Duration
				want  bool
			}{{0, false}, {tt.at - time.Nanosecond, false}, {tt.at, true}, {tt.at + time.Second, true}} {
				if got := tt.check(t0.Add(c.after)); got != c.want {
					t.Errorf("after %v: %v, want %v", c.after, got, c.want)
				}
			}
		})
	}
	// Each is driven by its own direction only.
	s = Session{LastOut: t0, LastIn: t0.Add(-time.Hour)}
	if s.KeepAliveDue(t0.Add(time.Second)) || !s.Expired(t0) {
		t.Error("KeepAliveDue must follow LastOut and Expired LastIn")
	}
}

// wire decodes an encoded packet into its raw dictionary.
func wire(t *testing.T, p *zhttp.Packet) tnetstring.Dict {
	t.Helper()
	b := p.Encode()
	if _, err := zhttp.Parse(b); err != nil {
		t.Fatalf("re-parse %q: %v", b, err)
	}
	d, err := tnetstring.DecodeDict(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestKeepAlives(t *testing.T) {
	type spec struct {
		peer  string
		multi bool
	}
	many := func(n int, peer func(i int) string, multi bool) []spec {
		out := make([]spec, n)
		for i := range out {
			out[i] = spec{peer(i), multi}
		}
		return out
	}
	alternate := func(i int) string { return []string{"p1", "p2"}[i%2] }
	tests := []struct {
		name     string
		sessions []spec
		want     map[string][]int // per peer: ids per packet, in order (1 = plain form)
	}{
		{"no sessions", nil, map[string][]int{}},
		{"non-multi: one packet each", []spec{{"p1", false}, {"p1", false}, {"p2", false}},
			map[string][]int{"p1": {1, 1}, "p2": {1}}},
		{"300 multi on one peer", many(300, func(int) string { return "p1" }, true),
			map[string][]int{"p1": {128, 128, 44}}},
		{"300 multi over 2 peers", many(300, alternate, true),
			map[string][]int{"p1": {128, 22}, "p2": {128, 22}}},
		{"300 multi over 2 peers, uneven", many(300, func(i int) string {
			if i < 257 {
				return "p1"
			}
			return "p2"
		}, true),
			map[string][]int{"p1": {128, 128, 1}, "p2": {43}}},
		{"one multi session alone is sent plain", []spec{{"p1", true}, {"p2", true}, {"p2", true}},
			map[string][]int{"p1": {1}, "p2": {2}}},
		{"mixed", append(many(130, alternate, true), spec{"p1", false}, spec{"p3", false}),
			map[string][]int{"p1": {65, 1}, "p2": {65}, "p3": {1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sessions := make([]*Session, len(tt.sessions))
			oldSeq := map[string]int64{}
			for i, sp := range tt.sessions {
				s := &Session{
					ID: []byte(fmt.Sprintf("id-%d", i)), Peer: []byte(sp.peer), PeerMulti: sp.multi,
					OutSeq: int64(i * 3), UserData: []byte("ud"), LastOut: t0.Add(-time.Minute),
				}
				sessions[i] = s
				oldSeq[string(s.ID)] = s.OutSeq
			}
			now := t0
			out := KeepAlives([]byte("me"), sessions, now)

			got := map[string][]int{}
			seen := map[string]int{}
			for _, a := range out {
				p := a.Packet
				if p.Type != zhttp.TypeKeepAlive || string(p.From) != "me" {
					t.Fatalf("packet type %q from %q", p.Type, p.From)
				}
				d := wire(t, p)
				if ext, ok := d.Dict("ext"); !ok || !ext.Bool("multi") {
					t.Errorf("packet to %s without ext.multi", a.Peer)
				}
				var entries []idSeq
				if p.IDs != nil {
					if len(p.IDs) < 2 || len(p.IDs) > zhttp.MaxIDs {
						t.Fatalf("list-form packet with %d ids", len(p.IDs))
					}
					if _, ok := d.Get("seq"); ok {
						t.Error("list-form packet has a top-level seq")
					}
					list, ok := d.List("id")
					if !ok || len(list) != len(p.IDs) {
						t.Fatalf("wire id is not a list of %d: %v", len(p.IDs), d)
					}
					for _, e := range list {
						ed, ok := e.(tnetstring.Dict)
						if !ok || len(ed) != 2 || ed[0].Key != "id" || ed[1].Key != "seq" {
							t.Fatalf("list entry %v, want {id, seq}", e)
						}
						id, _ := ed.Bytes("id")
						seq, _ := ed.Int("seq")
						entries = append(entries, idSeq{string(id), seq})
					}
				} else {
					id, ok := d.Bytes("id")
					seq, ok2 := d.Int("seq")
					if !ok || !ok2 {
						t.Fatalf("plain packet without id/seq: %v", d)
					}
					entries = append(entries, idSeq{string(id), seq})
				}
				for _, e := range entries {
					if want, ok := oldSeq[e.id]; !ok || e.seq != want {
						t.Errorf("%s: seq %d, want the old OutSeq %d", e.id, e.seq, want)
					}
					seen[e.id]++
				}
				got[string(a.Peer)] = append(got[string(a.Peer)], len(entries))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ids per packet per peer %v, want %v", got, tt.want)
			}
			for i, s := range sessions {
				id := string(s.ID)
				if seen[id] != 1 {
					t.Errorf("%s listed %d times", id, seen[id])
				}
				if s.OutSeq != oldSeq[id]+1 {
					t.Errorf("%s: OutSeq %d, want %d", id, s.OutSeq, oldSeq[id]+1)
				}
				if !s.LastOut.Equal(now) {
					t.Errorf("%s: LastOut not updated", id)
				}
				if want := string(s.Peer); tt.sessions[i].peer != want {
					t.Errorf("%s: peer changed", id)
				}
			}
		})
	}
}

// idSeq is one (id, seq) read back from the wire.
type idSeq struct {
	id  string
	seq int64
}

// FuzzReceive drives a session with random packet sequences: it must never
// panic, InSeq never decreases and moves by at most one per packet, the
// verdict follows §2.6, credits never go negative and PeerMulti latches.
func FuzzReceive(f *testing.F) {
	f.Add(uint32(0), []byte{0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0})
	f.Add(uint32(5), []byte{3, 9, 1, 7, 4, 1, 255, 3, 0, 200, 0, 0})
	f.Add(uint32(math.MaxUint32), []byte{0xff, 0xff, 0xff, 0xff, 0x10, 0x20})
	types := []string{zhttp.TypeData, zhttp.TypeCredit, zhttp.TypeKeepAlive, zhttp.TypeCancel, zhttp.TypeError,
		zhttp.TypeHandoffStart, zhttp.TypeClose, zhttp.TypePing}
	f.Fuzz(func(t *testing.T, start uint32, ops []byte) {
		s := Session{InSeq: int64(start)}
		for i := 0; i+4 <= len(ops); i += 4 {
			op, seqMode, arg, flags := ops[i], ops[i+1], ops[i+2], ops[i+3]
			p := zhttp.New()
			p.ID = []byte("rid")
			p.Type = types[int(op)%len(types)]
			switch seqMode % 4 {
			case 0:
				p.Seq = s.InSeq
			case 1:
				p.Seq = -1
			case 2:
				p.Seq = max(0, s.InSeq+int64(int8(arg)))
			default:
				p.Seq = int64(arg) << (seqMode >> 2 % 56)
			}
			if flags&1 != 0 {
				p.From = []byte{'p', arg}
			}
			if flags&2 != 0 {
				p.Credits = int64(arg) << (flags >> 3 % 64)
				if p.Credits < 0 {
					p.Credits = math.MaxInt64
				}
			}
			p.Multi = flags&4 != 0
			if op&0x80 != 0 {
				p.UserData = []byte{arg}
			}
			// Through the codec, so the packet is one a peer could send.
			q, err := zhttp.Parse(p.Encode())
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			before := s
			err = s.Receive(q, t0)
			ended := q.Type == zhttp.TypeCancel || q.Type == zhttp.TypeError
			wantBad := q.Seq >= 0 && q.Seq != before.InSeq && !ended
			if wantBad != (err != nil) || err != nil && !errors.Is(err, ErrBadSeq) {
				t.Fatalf("seq %d (expected %d) type %q: err %v", q.Seq, before.InSeq, q.Type, err)
			}
			if s.InSeq < before.InSeq || s.InSeq > before.InSeq+1 {
				t.Fatalf("InSeq %d -> %d", before.InSeq, s.InSeq)
			}
			if s.Credits < 0 || s.Credits < before.Credits {
				t.Fatalf("credits %d -> %d", before.Credits, s.Credits)
			}
			if before.PeerMulti && !s.PeerMulti {
				t.Fatal("PeerMulti went back to false")
			}
			if err == nil && len(q.From) > 0 && !bytes.Equal(s.Peer, q.From) {
				t.Fatalf("peer %q, want %q", s.Peer, q.From)
			}
			s.Spend(int(arg))
		}
	})
}
