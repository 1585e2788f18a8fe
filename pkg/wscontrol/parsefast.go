package wscontrol

import "tack/pkg/tnetstring"

// parseFast decodes a packet straight into Items, without building Dicts
// of boxed values, when every key is known and every value has the
// expected type. It returns nil for anything else (and for every error),
// which parseDict then decodes or rejects, so both paths give the same
// Packet or the same error (FuzzParse checks it).
func parseFast(b []byte) *Packet {
	p := &Packet{}
	if !p.parseFast(b) {
		return nil
	}
	return p
}

// parseFast is parseFast into p, whose Items' room is reused.
func (p *Packet) parseFast(b []byte) bool {
	d, tag, rest, err := tnetstring.Next(b)
	if err != nil || tag != '}' || len(rest) != 0 {
		return false
	}
	items := p.Items[:0]
	*p = Packet{}
	for len(d) > 0 {
		k, v, tag, r, ok := field(d)
		if !ok {
			return false
		}
		d = r
		switch string(k) {
		case "from":
			if tag != ',' {
				return false
			}
			p.From = v
		case "items":
			if tag != ']' {
				return false
			}
			n := 0
			for l := v; len(l) > 0; n++ {
				if _, _, l, err = tnetstring.Next(l); err != nil || n == MaxItems {
					return false
				}
			}
			if items == nil || cap(items) < n {
				items = make([]Item, 0, n)
			}
			p.Items = items[:0]
			for len(v) > 0 {
				iv, itag, r, err := tnetstring.Next(v)
				if err != nil || itag != '}' {
					return false
				}
				v = r
				it, ok := parseItemFast(iv)
				if !ok {
					return false
				}
				p.Items = append(p.Items, it)
			}
		default:
			return false
		}
	}
	return true
}

// field splits the next key and value of a dict payload.
func field(d []byte) (key, value []byte, tag byte, rest []byte, ok bool) {
	k, ktag, r, err := tnetstring.Next(d)
	if err != nil || ktag != ',' || len(r) == 0 {
		return nil, nil, 0, nil, false
	}
	v, tag, r, err := tnetstring.Next(r)
	if err != nil {
		return nil, nil, 0, nil, false
	}
	return k, v, tag, r, true
}

func parseItemFast(d []byte) (Item, bool) {
	it := NewItem(nil, "")
	for len(d) > 0 {
		k, v, tag, r, ok := field(d)
		if !ok {
			return Item{}, false
		}
		d = r
		str, num, flag := tag == ',', tag == '#', tag == '!'
		switch string(k) {
		case "cid":
			it.CID, ok = v, str
		case "type":
			it.Type, ok = itemType(v), str
		case "req-id":
			it.ReqID, ok = v, str
		case "uri":
			it.URI, ok = string(v), str
		case "content-type":
			it.ContentType, ok = tnetstring.Intern(v, "text", "binary"), str
		case "message":
			it.Message, it.HasMessage, ok = v, str, str
		case "queue":
			it.Queue, ok = boolean(v, flag)
		case "code":
			it.Code, ok = integer(v, num)
		case "reason":
			it.Reason, ok = string(v), str
		case "debug":
			it.Debug, ok = boolean(v, flag)
		case "route":
			it.Route, ok = string(v), str
		case "separate-stats":
			it.SeparateStats, ok = boolean(v, flag)
		case "channel-prefix":
			it.ChannelPrefix, ok = string(v), str
		case "log-level":
			it.LogLevel, ok = integer(v, num)
		case "trusted":
			it.Trusted, ok = boolean(v, flag)
		case "channel":
			it.Channel, ok = string(v), str
		case "ttl":
			it.TTL, ok = integer(v, num)
		case "timeout":
			it.Timeout, ok = integer(v, num)
		case "keep-alive-mode":
			it.KeepAliveMode, ok = string(v), str
		default:
			ok = false
		}
		if !ok {
			return Item{}, false
		}
	}
	return it, len(it.CID) > 0 && it.Type != ""
}

func integer(v []byte, isInt bool) (int64, bool) {
	if !isInt {
		return 0, false
	}
	n, err := tnetstring.ParseInt(v)
	return n, err == nil
}

func boolean(v []byte, isBool bool) (bool, bool) {
	b, err := tnetstring.ParseBool(v)
	return b, isBool && err == nil
}

// itemType returns the type as one of the constants where it is one, so
// that the common types cost no allocation.
func itemType(v []byte) string {
	return tnetstring.Intern(v, TypeSend, TypeAck, TypeKeepAlive, TypeHere, TypeGone, TypeGrip,
		TypeSubscribe, TypeNeedKeepAlive, TypeCancel, TypeKeepAliveSetup, TypeRefresh, TypeClose, TypeDetach)
}
