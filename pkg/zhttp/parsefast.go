package zhttp

import "tack/pkg/tnetstring"

// parseFast decodes the dictionary b (a packet after its `T`) straight into
// a Packet, without building a Dict of boxed values, for packets made of
// the fields and value types peers actually send. It returns nil for
// anything else (a list-form id, user-data, passthrough, an unknown key, a
// value of an unexpected type, bad syntax), which parseDict then decodes or rejects, so both
// paths give the same Packet or the same error (FuzzParse checks it).
func parseFast(b []byte) *Packet {
	d, tag, rest, err := tnetstring.Next(b)
	if err != nil || tag != '}' || len(rest) != 0 {
		return nil
	}
	p := New()
	topSeq := int64(-1)
	for len(d) > 0 {
		k, ktag, r, err := tnetstring.Next(d)
		if err != nil || ktag != ',' || len(r) == 0 {
			return nil
		}
		v, tag, r, err := tnetstring.Next(r)
		if err != nil {
			return nil
		}
		d = r
		ok := true
		switch string(k) {
		case "from":
			p.From, ok = v, tag == ','
		case "id":
			p.ID, p.IDs, ok = v, nil, tag == ','
		case "seq":
			topSeq, ok = count(v, tag)
		case "type":
			p.Type, ok = packetType(v), tag == ','
		case "condition":
			p.Condition, ok = string(v), tag == ','
		case "credits":
			p.Credits, ok = count(v, tag)
		case "more":
			p.More, ok = boolean(v, tag)
		case "stream":
			p.Stream, ok = boolean(v, tag)
		case "router-resp":
			p.RouterResp, ok = boolean(v, tag)
		case "ext":
			ok = tag == '}' && p.parseExt(v)
		case "method":
			p.Method, ok = string(v), tag == ','
		case "uri":
			p.URI, ok = string(v), tag == ','
		case "max-size":
			p.MaxSize, ok = count(v, tag)
		case "timeout":
			p.Timeout, ok = count(v, tag)
		case "peer-address":
			p.PeerAddress, ok = string(v), tag == ','
		case "peer-port":
			p.PeerPort, ok = count(v, tag)
		case "connect-host":
			p.ConnectHost, ok = string(v), tag == ','
		case "connect-port":
			p.ConnectPort, ok = count(v, tag)
		case "ignore-policies":
			p.IgnorePolicies, ok = boolean(v, tag)
		case "trust-connect-host":
			p.TrustConnectHost, ok = boolean(v, tag)
		case "ignore-tls-errors":
			p.IgnoreTLSErrors, ok = boolean(v, tag)
		case "follow-redirects":
			p.FollowRedirects, ok = boolean(v, tag)
		case "code":
			p.Code, ok = count(v, tag)
		case "reason":
			p.Reason, ok = string(v), tag == ','
		case "headers":
			p.HasHeaders = true
			p.Headers, ok = headers(v, tag)
		case "body":
			p.Body, ok = v, tag == ','
		case "content-type":
			p.ContentType, ok = contentType(v), tag == ','
		default:
			ok = false
		}
		if !ok {
			return nil
		}
	}
	if p.finish(topSeq) != nil {
		return nil
	}
	return p
}

// parseExt reads an ext dict of boolean multi/quiet entries (the last
// occurrence of a key wins, as Dict.Bool reads it).
func (p *Packet) parseExt(d []byte) bool {
	p.Multi, p.ExtQuiet = false, false
	for len(d) > 0 {
		k, ktag, r, err := tnetstring.Next(d)
		if err != nil || ktag != ',' || len(r) == 0 {
			return false
		}
		v, tag, r, err := tnetstring.Next(r)
		if err != nil {
			return false
		}
		d = r
		b, ok := boolean(v, tag)
		if !ok {
			return false
		}
		switch string(k) {
		case "multi":
			p.Multi = b
		case "quiet":
			p.ExtQuiet = b
		default:
			return false
		}
	}
	return true
}

// headers reads a list of [name, value] byte string pairs; an empty list
// reads as nil, as parseHeaders does.
func headers(l []byte, tag byte) ([]Header, bool) {
	if tag != ']' {
		return nil, false
	}
	var out []Header
	for len(l) > 0 {
		pair, ptag, r, err := tnetstring.Next(l)
		if err != nil || ptag != ']' {
			return nil, false
		}
		l = r
		n, ntag, r, err := tnetstring.Next(pair)
		if err != nil || ntag != ',' {
			return nil, false
		}
		v, vtag, r, err := tnetstring.Next(r)
		if err != nil || vtag != ',' || len(r) != 0 {
			return nil, false
		}
		if out == nil {
			out = make([]Header, 0, 8)
		}
		out = append(out, Header{Name: string(n), Value: string(v)})
	}
	return out, true
}

// count reads a non-negative integer.
func count(v []byte, tag byte) (int64, bool) {
	if tag != '#' {
		return 0, false
	}
	n, err := tnetstring.ParseInt(v)
	return n, err == nil && n >= 0
}

func boolean(v []byte, tag byte) (bool, bool) {
	b, err := tnetstring.ParseBool(v)
	return b, tag == '!' && err == nil
}

// packetType returns the type as one of the constants where it is one, so
// that the common types cost no allocation.
func packetType(v []byte) string {
	return tnetstring.Intern(v, TypeCredit, TypeKeepAlive, TypeCancel, TypeError, TypeClose, TypePing, TypePong)
}

func contentType(v []byte) string { return tnetstring.Intern(v, "text", "binary") }
