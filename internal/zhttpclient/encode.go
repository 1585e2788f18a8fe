package zhttpclient

import (
	"strconv"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// reply is a server → client packet as this service writes it. It is
// encoded straight to bytes: the generic zhttp.Packet → Dict → tnetstring
// path boxes every field and header and was the largest allocation per
// request. The output is byte-identical to zhttp.PubFrame of the same
// packet (same field order), which encode_test.go checks.
type reply struct {
	from     []byte // nil: omitted (req mode, bare cancel)
	id       []byte
	seq      int64 // -1: omitted
	multi    bool
	typ      string
	cond     string
	code     int64 // -1: no response head
	reason   string
	headers  []zhttp.Header
	ctype    string // WebSocket content-type; "": omitted
	body     []byte // nil: omitted
	credits  int64  // -1: omitted
	more     bool
	userData any
}

func newReply(typ string) *reply {
	return &reply{typ: typ, seq: -1, code: -1, credits: -1}
}

// packet converts r for the generic encoders (the `J` format).
func (r *reply) packet() *zhttp.Packet {
	p := zhttp.New()
	p.From, p.ID, p.Seq, p.Multi = r.from, r.id, r.seq, r.multi
	p.Type, p.Condition, p.Code, p.Reason = r.typ, r.cond, r.code, r.reason
	p.Headers, p.HasHeaders = r.headers, r.hasHead()
	p.ContentType = r.ctype
	p.Body, p.Credits, p.More, p.UserData = r.body, r.credits, r.more, r.userData
	return p
}

func digits(n int) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

// hasHead reports whether r carries a response head: a data packet with a
// code, or a `rejected` error (the refused handshake's response).
func (r *reply) hasHead() bool {
	return r.code >= 0 && (r.typ == zhttp.TypeData || r.typ == zhttp.TypeError)
}

// tsize is the encoded size of a tnetstring value whose payload is n bytes.
func tsize(n int) int { return digits(n) + 1 + n + 1 }

func intLen(n int64) int {
	if n < 0 {
		return tsize(digits(int(-n)) + 1)
	}
	return tsize(digits(int(n)))
}

func appendT(dst []byte, payload []byte, tag byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(payload)), 10)
	dst = append(dst, ':')
	dst = append(dst, payload...)
	return append(dst, tag)
}

func appendTS(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, ',')
}

func appendTInt(dst []byte, n int64) []byte {
	var tmp [20]byte
	return appendT(dst, strconv.AppendInt(tmp[:0], n, 10), '#')
}

const (
	trueT  = "4:true!"
	multiT = "5:multi,4:true!"
)

// appendPub appends "<to> T<dict>" (or "T<dict>" when to is nil).
func (r *reply) appendPub(dst []byte, to []byte) []byte {
	var ud []byte
	if r.userData != nil {
		var err error
		if ud, err = tnetstring.Encode(nil, r.userData); err != nil {
			ud = nil // only decoded values are stored; they always encode
		}
	}
	hasHead := r.hasHead()
	hdrInner := 0
	if hasHead {
		for _, h := range r.headers {
			hdrInner += tsize(tsize(len(h.Name)) + tsize(len(h.Value)))
		}
	}
	// Payload size of the dict, field by field in zhttp.Packet.Dict order.
	n := 0
	if r.from != nil {
		n += tsize(4) + tsize(len(r.from))
	}
	n += tsize(2) + tsize(len(r.id))
	if r.seq >= 0 {
		n += tsize(3) + intLen(r.seq)
	}
	if r.multi {
		n += tsize(3) + tsize(len(multiT))
	}
	if r.typ != "" {
		n += tsize(4) + tsize(len(r.typ))
	}
	if r.cond != "" {
		n += tsize(9) + tsize(len(r.cond))
	}
	if r.code >= 0 {
		n += tsize(4) + intLen(r.code)
	}
	if (hasHead && r.typ == zhttp.TypeData) || r.reason != "" {
		n += tsize(6) + tsize(len(r.reason))
	}
	if hasHead {
		n += tsize(7) + tsize(hdrInner)
	}
	if r.ctype != "" {
		n += tsize(12) + tsize(len(r.ctype))
	}
	if r.body != nil {
		n += tsize(4) + tsize(len(r.body))
	}
	if r.credits >= 0 {
		n += tsize(7) + intLen(r.credits)
	}
	if r.more {
		n += tsize(4) + len(trueT)
	}
	if ud != nil {
		n += tsize(9) + len(ud)
	}

	need := len(to) + 2 + tsize(n)
	if cap(dst)-len(dst) < need {
		nd := make([]byte, len(dst), len(dst)+need)
		copy(nd, dst)
		dst = nd
	}
	if to != nil {
		dst = append(dst, to...)
		dst = append(dst, ' ')
	}
	dst = append(dst, 'T')
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, ':')
	if r.from != nil {
		dst = append(dst, "4:from,"...)
		dst = appendT(dst, r.from, ',')
	}
	dst = append(dst, "2:id,"...)
	dst = appendT(dst, r.id, ',')
	if r.seq >= 0 {
		dst = append(dst, "3:seq,"...)
		dst = appendTInt(dst, r.seq)
	}
	if r.multi {
		dst = append(dst, "3:ext,"...)
		dst = strconv.AppendInt(dst, int64(len(multiT)), 10)
		dst = append(dst, ':')
		dst = append(dst, multiT...)
		dst = append(dst, '}')
	}
	if r.typ != "" {
		dst = append(dst, "4:type,"...)
		dst = appendTS(dst, r.typ)
	}
	if r.cond != "" {
		dst = append(dst, "9:condition,"...)
		dst = appendTS(dst, r.cond)
	}
	if r.code >= 0 {
		dst = append(dst, "4:code,"...)
		dst = appendTInt(dst, r.code)
	}
	if (hasHead && r.typ == zhttp.TypeData) || r.reason != "" {
		dst = append(dst, "6:reason,"...)
		dst = appendTS(dst, r.reason)
	}
	if hasHead {
		dst = append(dst, "7:headers,"...)
		dst = strconv.AppendInt(dst, int64(hdrInner), 10)
		dst = append(dst, ':')
		for _, h := range r.headers {
			dst = strconv.AppendInt(dst, int64(tsize(len(h.Name))+tsize(len(h.Value))), 10)
			dst = append(dst, ':')
			dst = appendTS(dst, h.Name)
			dst = appendTS(dst, h.Value)
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	if r.ctype != "" {
		dst = append(dst, "12:content-type,"...)
		dst = appendTS(dst, r.ctype)
	}
	if r.body != nil {
		dst = append(dst, "4:body,"...)
		dst = appendT(dst, r.body, ',')
	}
	if r.credits >= 0 {
		dst = append(dst, "7:credits,"...)
		dst = appendTInt(dst, r.credits)
	}
	if r.more {
		dst = append(dst, "4:more,"...)
		dst = append(dst, trueT...)
	}
	if ud != nil {
		dst = append(dst, "9:user-data,"...)
		dst = append(dst, ud...)
	}
	return append(dst, '}')
}

// encode renders r for PUB ("<to> T…", "<to> J…") or, with to nil, as a
// bare payload for the ROUTER.
func (r *reply) encode(to []byte, isJSON bool) []byte {
	if !isJSON {
		return r.appendPub(nil, to)
	}
	d := r.packet().Dict()
	b := make([]byte, 0, len(to)+2+256+len(r.body)*2)
	if to != nil {
		b = append(b, to...)
		b = append(b, ' ')
	}
	b = append(b, 'J')
	return appendJSON(b, d)
}
