package wscontrol

import (
	"errors"
	"fmt"
	"strconv"

	"tack/pkg/tnetstring"
)

// Item types (both directions unless noted).
const (
	TypeHere           = "here"             // proxy → handler: a connection exists
	TypeKeepAlive      = "keep-alive"       // proxy → handler: refresh ttl
	TypeGone           = "gone"             // proxy → handler: connection ended
	TypeGrip           = "grip"             // proxy → handler: a `c:` control message
	TypeSubscribe      = "subscribe"        // proxy → handler: implicit subscription (sub=)
	TypeNeedKeepAlive  = "need-keep-alive"  // proxy → handler: send the keep-alive now
	TypeCancel         = "cancel"           // both: drop the connection/session
	TypeSend           = "send"             // handler → proxy: deliver a message
	TypeKeepAliveSetup = "keep-alive-setup" // handler → proxy: client keep-alive settings
	TypeRefresh        = "refresh"          // handler → proxy: WebSocket-over-HTTP poll now
	TypeClose          = "close"            // handler → proxy: close the client
	TypeDetach         = "detach"           // handler → proxy: drop the backend, keep the client
	TypeAck            = "ack"              // both: acknowledges an item's req-id
)

// ErrFormat reports a packet that is not valid ws-control.
var ErrFormat = errors.New("wscontrol: bad packet")

// MaxItems bounds the items accepted in one packet (senders batch at most 128
// per peer; this leaves room without letting a peer allocate without bound).
const MaxItems = 1024

// Item is one entry of a packet. Absent integers are -1; absent strings and
// byte slices are empty/nil; HasQueue/HasDebug etc. are folded into the bools
// because Pushpin treats absent as false.
type Item struct {
	CID           []byte
	Type          string
	ReqID         []byte // decimal counter as bytes; nil when absent
	URI           string
	ContentType   string // text, binary, ping, pong
	Message       []byte
	HasMessage    bool // message present (possibly empty)
	Queue         bool
	Code          int64 // close code; -1 absent
	Reason        string
	Debug         bool
	Route         string
	SeparateStats bool
	ChannelPrefix string
	LogLevel      int64 // -1 absent
	Trusted       bool
	Channel       string
	TTL           int64 // seconds; -1 absent
	Timeout       int64 // seconds; -1 absent
	KeepAliveMode string
}

// NewItem returns an item of the given type and connection with every
// integer marked absent.
func NewItem(cid []byte, typ string) Item {
	return Item{CID: cid, Type: typ, Code: -1, LogLevel: -1, TTL: -1, Timeout: -1}
}

// Packet is one ws-control message.
type Packet struct {
	From  []byte // 1.41 requires it; 1.36 leaves it out and ignores it
	Items []Item
}

// Parse decodes a ws-control packet. Unknown keys are ignored (forward
// compatibility, as Pushpin does); a wrong type for a known key, a missing
// cid or type, or an item that is not a dict is an error.
func Parse(b []byte) (*Packet, error) {
	if p := parseFast(b); p != nil {
		return p, nil
	}
	return parseDict(b)
}

// ParseTo is Parse into p, reusing the room of p.Items (a reader of many
// packets keeps one Packet; the items alias b, as Parse's do).
func ParseTo(p *Packet, b []byte) error {
	if p.parseFast(b) {
		return nil
	}
	q, err := parseDict(b)
	if err != nil {
		*p = Packet{Items: p.Items[:0]}
		return err
	}
	*p = *q
	return nil
}

// parseDict is Parse through a decoded Dict: the reference for parseFast,
// and the path of every packet parseFast leaves to it (and of every error).
func parseDict(b []byte) (*Packet, error) {
	d, err := tnetstring.DecodeDict(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	p := &Packet{}
	for _, f := range d {
		switch f.Key {
		case "from":
			v, ok := f.Value.([]byte)
			if !ok {
				return nil, typeErr(f, "bytes")
			}
			p.From = v
		case "items":
			list, ok := f.Value.([]any)
			if !ok {
				return nil, typeErr(f, "list")
			}
			if len(list) > MaxItems {
				return nil, fmt.Errorf("%w: %d items (max %d)", ErrFormat, len(list), MaxItems)
			}
			p.Items = make([]Item, 0, len(list))
			for i, v := range list {
				id, ok := v.(tnetstring.Dict)
				if !ok {
					return nil, fmt.Errorf("%w: item %d is %T, not a dict", ErrFormat, i, v)
				}
				it, err := parseItem(id)
				if err != nil {
					return nil, fmt.Errorf("item %d: %w", i, err)
				}
				p.Items = append(p.Items, it)
			}
		}
	}
	return p, nil
}

func parseItem(d tnetstring.Dict) (Item, error) {
	it := NewItem(nil, "")
	for _, f := range d {
		var err error
		switch f.Key {
		case "cid":
			it.CID, err = asBytes(f)
		case "type":
			var b []byte
			b, err = asBytes(f)
			it.Type = string(b)
		case "req-id":
			// Pushpin sends a decimal byte string; accept an integer too.
			switch v := f.Value.(type) {
			case []byte:
				it.ReqID = v
			case int64:
				it.ReqID = strconv.AppendInt(nil, v, 10)
			default:
				err = typeErr(f, "bytes")
			}
		case "uri":
			it.URI, err = asString(f)
		case "content-type":
			it.ContentType, err = asString(f)
		case "message":
			it.Message, err = asBytes(f)
			it.HasMessage = err == nil
		case "queue":
			it.Queue, err = asBool(f)
		case "code":
			it.Code, err = asInt(f)
		case "reason":
			it.Reason, err = asString(f)
		case "debug":
			it.Debug, err = asBool(f)
		case "route":
			it.Route, err = asString(f)
		case "separate-stats":
			it.SeparateStats, err = asBool(f)
		case "channel-prefix":
			it.ChannelPrefix, err = asString(f)
		case "log-level":
			it.LogLevel, err = asInt(f)
		case "trusted":
			it.Trusted, err = asBool(f)
		case "channel":
			it.Channel, err = asString(f)
		case "ttl":
			it.TTL, err = asInt(f)
		case "timeout":
			it.Timeout, err = asInt(f)
		case "keep-alive-mode":
			it.KeepAliveMode, err = asString(f)
		}
		if err != nil {
			return Item{}, err
		}
	}
	if len(it.CID) == 0 {
		return Item{}, fmt.Errorf("%w: item without cid", ErrFormat)
	}
	if it.Type == "" {
		return Item{}, fmt.Errorf("%w: item without type", ErrFormat)
	}
	return it, nil
}

// Dict returns the packet as a tnetstring dict, fields in a fixed order.
func (p *Packet) Dict() tnetstring.Dict {
	d := make(tnetstring.Dict, 0, 2)
	if p.From != nil {
		d = append(d, tnetstring.Field{Key: "from", Value: p.From})
	}
	items := make([]any, len(p.Items))
	for i := range p.Items {
		items[i] = p.Items[i].Dict()
	}
	return append(d, tnetstring.Field{Key: "items", Value: items})
}

// Encode returns the packet's wire bytes.
func (p *Packet) Encode() []byte { return p.Append(nil) }

// Append appends the packet's wire bytes to dst: the bytes of
// tnetstring.Encode(p.Dict()), written field by field without building the
// Dict (a handler writes one item per delivery).
func (p *Packet) Append(dst []byte) []byte {
	n := 16
	for i := range p.Items {
		n += 64 + len(p.Items[i].CID) + len(p.Items[i].Message)
	}
	if dst == nil {
		dst = make([]byte, 0, n)
	}
	start, d := tnetstring.BeginContainer(dst)
	if p.From != nil {
		d = tnetstring.AppendString(d, "from")
		d = tnetstring.AppendBytes(d, p.From)
	}
	d = tnetstring.AppendString(d, "items")
	ls, d := tnetstring.BeginContainer(d)
	for i := range p.Items {
		d = p.Items[i].appendTo(d)
	}
	return mustEnd(tnetstring.EndDict(mustEnd(tnetstring.EndList(d, ls)), start))
}

// appendTo appends the item as Dict would encode it.
func (it *Item) appendTo(dst []byte) []byte {
	start, d := tnetstring.BeginContainer(dst)
	bytesField := func(k string, v []byte) {
		d = tnetstring.AppendString(d, k)
		d = tnetstring.AppendBytes(d, v)
	}
	str := func(k, v string) {
		if v != "" {
			d = tnetstring.AppendString(d, k)
			d = tnetstring.AppendString(d, v)
		}
	}
	num := func(k string, v int64) {
		if v >= 0 {
			d = tnetstring.AppendString(d, k)
			d = tnetstring.AppendInt(d, v)
		}
	}
	flag := func(k string, v bool) {
		if v {
			d = tnetstring.AppendString(d, k)
			d = tnetstring.AppendBool(d, true)
		}
	}
	bytesField("cid", it.CID)
	str("type", it.Type)
	if it.Type == "" {
		bytesField("type", nil)
	}
	if it.ReqID != nil {
		bytesField("req-id", it.ReqID)
	}
	str("uri", it.URI)
	str("content-type", it.ContentType)
	if it.HasMessage || it.Message != nil {
		bytesField("message", it.Message)
	}
	flag("queue", it.Queue)
	num("code", it.Code)
	str("reason", it.Reason)
	flag("debug", it.Debug)
	str("route", it.Route)
	flag("separate-stats", it.SeparateStats)
	str("channel-prefix", it.ChannelPrefix)
	num("log-level", it.LogLevel)
	flag("trusted", it.Trusted)
	str("channel", it.Channel)
	num("ttl", it.TTL)
	num("timeout", it.Timeout)
	str("keep-alive-mode", it.KeepAliveMode)
	return mustEnd(tnetstring.EndDict(d, start))
}

// mustEnd panics on a container beyond the decoder's size limit (about
// 1 GB), which no packet of a bounded queue reaches.
func mustEnd(b []byte, err error) []byte {
	if err != nil {
		panic(fmt.Sprintf("wscontrol: encode: %v", err))
	}
	return b
}

// Dict returns the item as a tnetstring dict; absent fields are left out.
func (it *Item) Dict() tnetstring.Dict {
	d := make(tnetstring.Dict, 0, 6)
	add := func(k string, v any) { d = append(d, tnetstring.Field{Key: k, Value: v}) }
	add("cid", it.CID)
	add("type", []byte(it.Type))
	if it.ReqID != nil {
		add("req-id", it.ReqID)
	}
	addStr := func(k, v string) {
		if v != "" {
			add(k, []byte(v))
		}
	}
	addInt := func(k string, v int64) {
		if v >= 0 {
			add(k, v)
		}
	}
	addBool := func(k string, v bool) {
		if v {
			add(k, true)
		}
	}
	addStr("uri", it.URI)
	addStr("content-type", it.ContentType)
	if it.HasMessage || it.Message != nil {
		m := it.Message
		if m == nil {
			m = []byte{}
		}
		add("message", m)
	}
	addBool("queue", it.Queue)
	addInt("code", it.Code)
	addStr("reason", it.Reason)
	addBool("debug", it.Debug)
	addStr("route", it.Route)
	addBool("separate-stats", it.SeparateStats)
	addStr("channel-prefix", it.ChannelPrefix)
	addInt("log-level", it.LogLevel)
	addBool("trusted", it.Trusted)
	addStr("channel", it.Channel)
	addInt("ttl", it.TTL)
	addInt("timeout", it.Timeout)
	addStr("keep-alive-mode", it.KeepAliveMode)
	return d
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

func asInt(f tnetstring.Field) (int64, error) {
	switch v := f.Value.(type) {
	case int64:
		return v, nil
	case []byte:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, typeErr(f, "int")
}

func asBool(f tnetstring.Field) (bool, error) {
	b, ok := f.Value.(bool)
	if !ok {
		return false, typeErr(f, "bool")
	}
	return b, nil
}
