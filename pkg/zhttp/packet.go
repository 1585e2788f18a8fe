package zhttp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"tack/pkg/tnetstring"
)

// Packet types (zmq-wire.md §2.5). The empty type is a data packet.
const (
	TypeData           = ""
	TypeError          = "error"
	TypeCredit         = "credit"
	TypeKeepAlive      = "keep-alive"
	TypeCancel         = "cancel"
	TypeHandoffStart   = "handoff-start"
	TypeHandoffProceed = "handoff-proceed"
	TypeClose          = "close"
	TypePing           = "ping"
	TypePong           = "pong"
)

// Error conditions (zmq-wire.md §2.13).
const (
	CondBadRequest             = "bad-request"
	CondPolicyViolation        = "policy-violation"
	CondRemoteConnectionFailed = "remote-connection-failed"
	CondConnectionTimeout      = "connection-timeout"
	CondTLSError               = "tls-error"
	CondMaxSizeExceeded        = "max-size-exceeded"
	CondSessionTimeout         = "session-timeout"
	CondUndefined              = "undefined-condition"
	CondRejected               = "rejected"
	CondLengthRequired         = "length-required"
	CondDisconnected           = "disconnected"
)

// Limits shared with connmgr/condure (zmq-wire.md §1.1, §2.2).
const (
	// MaxIDs is the most ids a list-form packet may carry (IDS_MAX, ZHTTP_IDS_MAX).
	MaxIDs = 128
	// MaxHeadersToConnmgr is the most headers condure/connmgr accept in a packet.
	MaxHeadersToConnmgr = 64
	// MaxFrom is the longest `from` connmgr accepts (FROM_MAX).
	MaxFrom = 64
	// MaxID is the longest request id connmgr accepts (REQ_ID_MAX).
	MaxID = 64
)

// ErrFormat reports a packet that is not valid zhttp.
var ErrFormat = errors.New("zhttp: bad packet")

// Header is one HTTP header line; order and duplicates are significant.
type Header struct {
	Name  string
	Value string
}

// IDSeq is one entry of a list-form id (ext.multi batches, §2.2).
type IDSeq struct {
	ID  []byte
	Seq int64
}

// Packet is one zhttp packet. Integer fields use -1 for "absent" where the
// distinction matters on the wire (Seq, Credits, Code).
type Packet struct {
	From []byte
	ID   []byte
	IDs  []IDSeq // list-form id; when set, ID is nil and Seq is -1
	Seq  int64

	Type      string
	Condition string
	Credits   int64
	More      bool
	Multi     bool // ext.multi
	ExtQuiet  bool // ext.quiet (1.41)
	UserData  any  // opaque, echoed by servers

	// Request fields.
	Method           string
	URI              string
	Stream           bool
	RouterResp       bool
	MaxSize          int64
	Timeout          int64
	PeerAddress      string
	PeerPort         int64
	ConnectHost      string
	ConnectPort      int64
	IgnorePolicies   bool
	TrustConnectHost bool
	IgnoreTLSErrors  bool
	FollowRedirects  bool
	Passthrough      any

	// Request and response fields.
	Code        int64 // response status, or WebSocket close code
	Reason      string
	Headers     []Header
	HasHeaders  bool // headers present on the wire (even if empty); always set on a parsed data packet with a Code
	Body        []byte
	ContentType string // WebSocket: "text" or "binary"
}

// New returns a packet with every "absent" marker set.
func New() *Packet {
	return &Packet{Seq: -1, Credits: -1, Code: -1, MaxSize: -1, Timeout: -1, PeerPort: -1, ConnectPort: -1}
}

// Reset clears p for reuse, keeping allocated slices.
func (p *Packet) Reset() {
	h := p.Headers[:0]
	ids := p.IDs[:0]
	*p = Packet{Seq: -1, Credits: -1, Code: -1, MaxSize: -1, Timeout: -1, PeerPort: -1, ConnectPort: -1}
	p.Headers = h
	p.IDs = ids
}

// IsRequestStart reports whether p looks like the first packet of a session.
func (p *Packet) IsRequestStart() bool {
	return p.Type == TypeData && p.URI != ""
}

// Header returns the first value of the named header (case-insensitive).
func (p *Packet) Header(name string) (string, bool) {
	for _, h := range p.Headers {
		if equalFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Parse decodes a `T`-prefixed packet.
func Parse(b []byte) (*Packet, error) {
	if len(b) == 0 || b[0] != 'T' {
		return nil, fmt.Errorf("%w: missing T prefix", ErrFormat)
	}
	if p := parseFast(b[1:]); p != nil {
		return p, nil
	}
	return parseDict(b)
}

// parseDict is Parse through a decoded Dict: the reference for parseFast,
// and the path of every packet parseFast leaves to it (and of every error).
func parseDict(b []byte) (*Packet, error) {
	d, err := tnetstring.DecodeDict(b[1:])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return FromDict(d)
}

// FromDict builds a packet from a decoded dictionary.
func FromDict(d tnetstring.Dict) (*Packet, error) {
	p := New()
	topSeq := int64(-1)
	for _, f := range d {
		var err error
		switch f.Key {
		case "from":
			p.From, err = asBytes(f)
		case "id":
			switch v := f.Value.(type) {
			case []byte:
				// On a duplicate key the last occurrence wins, whichever form.
				p.ID, p.IDs = v, nil
			case []any:
				p.ID = nil
				p.IDs, err = parseIDs(v)
			default:
				err = typeErr(f, "bytes or list")
			}
		case "seq":
			topSeq, err = asCount(f)
		case "type":
			var s []byte
			s, err = asBytes(f)
			p.Type = string(s)
		case "condition":
			p.Condition, err = asString(f)
		case "credits":
			p.Credits, err = asCount(f)
		case "more":
			p.More, err = asBool(f)
		case "stream":
			p.Stream, err = asBool(f)
		case "router-resp":
			p.RouterResp, err = asBool(f)
		case "ext":
			ext, ok := f.Value.(tnetstring.Dict)
			if !ok {
				err = typeErr(f, "dict")
				break
			}
			p.Multi = ext.Bool("multi")
			p.ExtQuiet = ext.Bool("quiet")
		case "user-data":
			p.UserData = f.Value
		case "method":
			p.Method, err = asString(f)
		case "uri":
			p.URI, err = asString(f)
		case "max-size":
			p.MaxSize, err = asCount(f)
		case "timeout":
			p.Timeout, err = asCount(f)
		case "peer-address":
			p.PeerAddress, err = asString(f)
		case "peer-port":
			p.PeerPort, err = asCount(f)
		case "connect-host":
			p.ConnectHost, err = asString(f)
		case "connect-port":
			p.ConnectPort, err = asCount(f)
		case "ignore-policies":
			p.IgnorePolicies, err = asBool(f)
		case "trust-connect-host":
			p.TrustConnectHost, err = asBool(f)
		case "ignore-tls-errors":
			p.IgnoreTLSErrors, err = asBool(f)
		case "follow-redirects":
			p.FollowRedirects, err = asBool(f)
		case "passthrough":
			p.Passthrough = f.Value
		case "code":
			p.Code, err = asCount(f)
		case "reason":
			p.Reason, err = asString(f)
		case "headers":
			p.HasHeaders = true
			p.Headers, err = parseHeaders(f.Value)
		case "body":
			p.Body, err = asBytes(f)
		case "content-type":
			p.ContentType, err = asString(f)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := p.finish(topSeq); err != nil {
		return nil, err
	}
	return p, nil
}

// finish checks a decoded packet's type and id and places the top-level
// seq.
func (p *Packet) finish(topSeq int64) error {
	switch p.Type {
	case TypeData, TypeError, TypeCredit, TypeKeepAlive, TypeCancel, TypeHandoffStart,
		TypeHandoffProceed, TypeClose, TypePing, TypePong:
	default:
		return fmt.Errorf("%w: unknown type %q", ErrFormat, p.Type)
	}
	if p.ID == nil && p.IDs == nil {
		return fmt.Errorf("%w: missing id", ErrFormat)
	}
	if p.IDs != nil {
		// Like the C++ decoder, a top-level seq beside a list-form id
		// belongs to the first entry; Packet keeps Seq at -1 in that form.
		if topSeq >= 0 {
			p.IDs[0].Seq = topSeq
		}
	} else {
		p.Seq = topSeq
	}
	if p.Type == TypeData && p.Code >= 0 {
		// The encoder always writes headers beside a data packet's code
		// (§2.5), so a decoded one reads as having them too; otherwise a
		// decode/encode/decode round trip would not be stable.
		p.HasHeaders = true
	}
	return nil
}

func typeErr(f tnetstring.Field, want string) error {
	return fmt.Errorf("%w: field %q must be %s, got %T", ErrFormat, f.Key, want, f.Value)
}

func asBytes(f tnetstring.Field) ([]byte, error) {
	b, ok := f.Value.([]byte)
	if !ok {
		return nil, typeErr(f, "bytes")
	}
	return b, nil
}

func asString(f tnetstring.Field) (string, error) {
	b, err := asBytes(f)
	return string(b), err
}

// asInt accepts a tnetstring integer or, like the C++ decoder, a byte string
// of digits (the C++ encoder writes peer-port that way).
func asInt(f tnetstring.Field) (int64, error) {
	switch v := f.Value.(type) {
	case int64:
		return v, nil
	case []byte:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err == nil {
			return n, nil
		}
	}
	return 0, typeErr(f, "int")
}

// asCount is asInt for fields that cannot be negative (seq, credits, code,
// ports, sizes): connmgr rejects negatives, and Packet uses -1 for absent.
func asCount(f tnetstring.Field) (int64, error) {
	n, err := asInt(f)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: field %q must not be negative, got %d", ErrFormat, f.Key, n)
	}
	return n, nil
}

func asBool(f tnetstring.Field) (bool, error) {
	b, ok := f.Value.(bool)
	if !ok {
		return false, typeErr(f, "bool")
	}
	return b, nil
}

func parseIDs(list []any) ([]IDSeq, error) {
	if len(list) == 0 || len(list) > MaxIDs {
		return nil, fmt.Errorf("%w: list-form id with %d entries", ErrFormat, len(list))
	}
	out := make([]IDSeq, 0, len(list))
	for _, e := range list {
		d, ok := e.(tnetstring.Dict)
		if !ok {
			return nil, fmt.Errorf("%w: list-form id entry is %T", ErrFormat, e)
		}
		id, ok := d.Bytes("id")
		if !ok {
			return nil, fmt.Errorf("%w: list-form id entry without id", ErrFormat)
		}
		seq := int64(-1)
		if v, ok := d.Get("seq"); ok {
			n, err := asCount(tnetstring.Field{Key: "seq", Value: v})
			if err != nil {
				return nil, err
			}
			seq = n
		}
		out = append(out, IDSeq{ID: id, Seq: seq})
	}
	return out, nil
}

func parseHeaders(v any) ([]Header, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: headers must be a list", ErrFormat)
	}
	if len(list) == 0 {
		return nil, nil // an empty list reads as nil; HasHeaders records it
	}
	out := make([]Header, 0, len(list))
	for _, e := range list {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("%w: header must be a [name, value] pair", ErrFormat)
		}
		n, ok1 := pair[0].([]byte)
		val, ok2 := pair[1].([]byte)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: header name and value must be bytes", ErrFormat)
		}
		out = append(out, Header{Name: string(n), Value: string(val)})
	}
	return out, nil
}

// Dict returns p as a tnetstring dictionary in connmgr's field order.
func (p *Packet) Dict() tnetstring.Dict {
	d := make(tnetstring.Dict, 0, 16)
	add := func(k string, v any) { d = append(d, tnetstring.Field{Key: k, Value: v}) }
	if p.From != nil {
		add("from", p.From)
	}
	if p.IDs != nil {
		ids := make([]any, len(p.IDs))
		for i, e := range p.IDs {
			entry := tnetstring.Dict{{Key: "id", Value: e.ID}}
			if e.Seq >= 0 {
				entry = append(entry, tnetstring.Field{Key: "seq", Value: e.Seq})
			}
			ids[i] = entry
		}
		add("id", ids)
	} else {
		add("id", p.ID)
	}
	if p.Seq >= 0 && p.IDs == nil {
		add("seq", p.Seq)
	}
	if p.Multi || p.ExtQuiet {
		ext := tnetstring.Dict{}
		if p.Multi {
			ext = append(ext, tnetstring.Field{Key: "multi", Value: true})
		}
		if p.ExtQuiet {
			ext = append(ext, tnetstring.Field{Key: "quiet", Value: true})
		}
		add("ext", ext)
	}
	if p.Type != "" {
		add("type", p.Type)
	}
	if p.Condition != "" {
		add("condition", p.Condition)
	}
	if p.Method != "" {
		add("method", p.Method)
	}
	if p.URI != "" {
		add("uri", p.URI)
	}
	if p.Code >= 0 {
		add("code", p.Code)
	}
	if p.Reason != "" || (p.Code >= 0 && p.Type == TypeData) {
		add("reason", p.Reason)
	}
	if len(p.Headers) > 0 || p.HasHeaders || (p.Code >= 0 && p.Type == TypeData) {
		hs := make([]any, len(p.Headers))
		for i, h := range p.Headers {
			hs[i] = []any{h.Name, h.Value}
		}
		add("headers", hs)
	}
	if p.ContentType != "" {
		add("content-type", p.ContentType)
	}
	if p.Body != nil {
		add("body", p.Body)
	}
	if p.Credits >= 0 {
		add("credits", p.Credits)
	}
	if p.More {
		add("more", true)
	}
	if p.Stream {
		add("stream", true)
	}
	if p.RouterResp {
		add("router-resp", true)
	}
	if p.MaxSize >= 0 {
		add("max-size", p.MaxSize)
	}
	if p.Timeout >= 0 {
		add("timeout", p.Timeout)
	}
	if p.PeerAddress != "" {
		add("peer-address", p.PeerAddress)
	}
	if p.PeerPort >= 0 {
		// Written as an integer, as connmgr does; the C++ encoder's byte
		// string form is accepted on decode (§1.1).
		add("peer-port", p.PeerPort)
	}
	if p.ConnectHost != "" {
		add("connect-host", p.ConnectHost)
	}
	if p.ConnectPort >= 0 {
		add("connect-port", p.ConnectPort)
	}
	if p.IgnorePolicies {
		add("ignore-policies", true)
	}
	if p.TrustConnectHost {
		add("trust-connect-host", true)
	}
	if p.IgnoreTLSErrors {
		add("ignore-tls-errors", true)
	}
	if p.FollowRedirects {
		add("follow-redirects", true)
	}
	if p.Passthrough != nil {
		add("passthrough", p.Passthrough)
	}
	if p.UserData != nil {
		add("user-data", p.UserData)
	}
	return d
}

// Append appends the `T`-prefixed encoding of p to dst: the bytes of
// tnetstring.Encode(p.Dict()), written field by field without building the
// Dict (no boxed values; this runs for every packet a process sends).
func (p *Packet) Append(dst []byte) []byte {
	dst = append(dst, 'T')
	start, d := tnetstring.BeginContainer(dst)
	var err error
	key := tnetstring.AppendString
	str := func(k, v string) {
		d = key(d, k)
		d = tnetstring.AppendString(d, v)
	}
	num := func(k string, v int64) {
		d = key(d, k)
		d = tnetstring.AppendInt(d, v)
	}
	flag := func(k string) {
		d = key(d, k)
		d = tnetstring.AppendBool(d, true)
	}
	if p.From != nil {
		d = key(d, "from")
		d = tnetstring.AppendBytes(d, p.From)
	}
	d = key(d, "id")
	if p.IDs != nil {
		ls, l := tnetstring.BeginContainer(d)
		for _, e := range p.IDs {
			es, ed := tnetstring.BeginContainer(l)
			ed = key(ed, "id")
			ed = tnetstring.AppendBytes(ed, e.ID)
			if e.Seq >= 0 {
				ed = key(ed, "seq")
				ed = tnetstring.AppendInt(ed, e.Seq)
			}
			l = mustEnd(tnetstring.EndDict(ed, es))
		}
		d = mustEnd(tnetstring.EndList(l, ls))
	} else {
		d = tnetstring.AppendBytes(d, p.ID)
	}
	if p.Seq >= 0 && p.IDs == nil {
		num("seq", p.Seq)
	}
	if p.Multi || p.ExtQuiet {
		d = key(d, "ext")
		es, ed := tnetstring.BeginContainer(d)
		if p.Multi {
			ed = key(ed, "multi")
			ed = tnetstring.AppendBool(ed, true)
		}
		if p.ExtQuiet {
			ed = key(ed, "quiet")
			ed = tnetstring.AppendBool(ed, true)
		}
		d = mustEnd(tnetstring.EndDict(ed, es))
	}
	if p.Type != "" {
		str("type", p.Type)
	}
	if p.Condition != "" {
		str("condition", p.Condition)
	}
	if p.Method != "" {
		str("method", p.Method)
	}
	if p.URI != "" {
		str("uri", p.URI)
	}
	if p.Code >= 0 {
		num("code", p.Code)
	}
	if p.Reason != "" || (p.Code >= 0 && p.Type == TypeData) {
		str("reason", p.Reason)
	}
	if len(p.Headers) > 0 || p.HasHeaders || (p.Code >= 0 && p.Type == TypeData) {
		d = key(d, "headers")
		ls, l := tnetstring.BeginContainer(d)
		for _, h := range p.Headers {
			hs, hd := tnetstring.BeginContainer(l)
			hd = tnetstring.AppendString(hd, h.Name)
			hd = tnetstring.AppendString(hd, h.Value)
			l = mustEnd(tnetstring.EndList(hd, hs))
		}
		d = mustEnd(tnetstring.EndList(l, ls))
	}
	if p.ContentType != "" {
		str("content-type", p.ContentType)
	}
	if p.Body != nil {
		d = key(d, "body")
		d = tnetstring.AppendBytes(d, p.Body)
	}
	if p.Credits >= 0 {
		num("credits", p.Credits)
	}
	if p.More {
		flag("more")
	}
	if p.Stream {
		flag("stream")
	}
	if p.RouterResp {
		flag("router-resp")
	}
	if p.MaxSize >= 0 {
		num("max-size", p.MaxSize)
	}
	if p.Timeout >= 0 {
		num("timeout", p.Timeout)
	}
	if p.PeerAddress != "" {
		str("peer-address", p.PeerAddress)
	}
	if p.PeerPort >= 0 {
		// Written as an integer, as connmgr does; the C++ encoder's byte
		// string form is accepted on decode (§1.1).
		num("peer-port", p.PeerPort)
	}
	if p.ConnectHost != "" {
		str("connect-host", p.ConnectHost)
	}
	if p.ConnectPort >= 0 {
		num("connect-port", p.ConnectPort)
	}
	if p.IgnorePolicies {
		flag("ignore-policies")
	}
	if p.TrustConnectHost {
		flag("trust-connect-host")
	}
	if p.IgnoreTLSErrors {
		flag("ignore-tls-errors")
	}
	if p.FollowRedirects {
		flag("follow-redirects")
	}
	// Only UserData and Passthrough hold caller-supplied values; they come
	// from decoded packets, whose types always encode.
	if p.Passthrough != nil {
		d = key(d, "passthrough")
		d = mustEnd(tnetstring.Encode(d, p.Passthrough))
	}
	if p.UserData != nil {
		d = key(d, "user-data")
		d = mustEnd(tnetstring.Encode(d, p.UserData))
	}
	if d, err = tnetstring.EndDict(d, start); err != nil {
		panic(fmt.Sprintf("zhttp: encode: %v", err))
	}
	return d
}

// mustEnd panics on an encoding error, which only a value of a type the
// decoder never produces (or a container beyond the decoder's size limit)
// can cause.
func mustEnd(b []byte, err error) []byte {
	if err != nil {
		panic(fmt.Sprintf("zhttp: encode: %v", err))
	}
	return b
}

// Encode returns the `T`-prefixed encoding of p.
func (p *Packet) Encode() []byte { return p.Append(make([]byte, 0, 256+len(p.Body))) }

// PubFrame returns the single PUB frame "<dest> T<packet>" (§1.2).
func PubFrame(dest []byte, p *Packet) []byte {
	b := make([]byte, 0, len(dest)+1+256+len(p.Body))
	b = append(b, dest...)
	b = append(b, ' ')
	return p.Append(b)
}

// SplitPubFrame splits a PUB frame into its destination and packet bytes.
func SplitPubFrame(frame []byte) (dest, packet []byte, err error) {
	i := bytes.IndexByte(frame, ' ')
	if i == 0 {
		return nil, nil, fmt.Errorf("%w: PUB frame with empty address", ErrFormat)
	}
	if i > 0 {
		return frame[:i], frame[i+1:], nil
	}
	return nil, nil, fmt.Errorf("%w: PUB frame without address", ErrFormat)
}
