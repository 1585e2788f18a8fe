package handler

import (
	"strconv"

	"tack/internal/grip"
	"tack/pkg/tnetstring"
)

// Pre-encoded packet parts. A publish is delivered to many sessions with
// the same payload; only from/id/seq (and the session's user-data) differ,
// so the payload fields are encoded once per channel and item (a
// "fragment", the concatenated key/value encodings of a tnetstring dict)
// and each session's frame is its small envelope plus that fragment.

// appendField appends the encoding of one dict entry.
func appendField(dst []byte, key string, v any) []byte {
	dst, _ = tnetstring.Encode(dst, key)
	dst, err := tnetstring.Encode(dst, v)
	if err != nil {
		// Values come from decoded packets or from our own types.
		panic("handler: encode " + key + ": " + err.Error())
	}
	return dst
}

// bodyFragment encodes `body` and, when more, `more: true`.
func bodyFragment(body []byte, more bool) []byte {
	f := make([]byte, 0, len(body)+32)
	f = appendField(f, "body", body)
	if more {
		f = append(f, "4:more,4:true!"...)
	}
	return f
}

// headFragment encodes a response head (code, reason, headers) plus body
// and more, as the C++ encoder writes a data packet with a code.
func headFragment(code int, reason string, headers []grip.Header, body []byte, more bool) []byte {
	f := make([]byte, 0, len(body)+64+len(headers)*32)
	f = appendField(f, "code", int64(code))
	f = appendField(f, "reason", reason)
	hs := make([]any, len(headers))
	for i, h := range headers {
		hs[i] = []any{h.Name, h.Value}
	}
	f = appendField(f, "headers", hs)
	if len(body) > 0 {
		f = appendField(f, "body", body)
	}
	if more {
		f = append(f, "4:more,4:true!"...)
	}
	return f
}

// sessionFrame builds the PUB frame "<dest> T<dict>" whose dict is
// from, id, seq, the session's pre-encoded extra fields and frag.
func sessionFrame(dest, from, id []byte, seq int64, extra, frag []byte) []byte {
	var envBuf [160]byte
	env := envBuf[:0]
	env = appendField(env, "from", from)
	env = appendField(env, "id", id)
	env = appendField(env, "seq", seq)
	n := len(env) + len(extra) + len(frag)
	out := make([]byte, 0, len(dest)+2+12+n+1)
	out = append(out, dest...)
	out = append(out, ' ', 'T')
	out = strconv.AppendInt(out, int64(n), 10)
	out = append(out, ':')
	out = append(out, env...)
	out = append(out, extra...)
	out = append(out, frag...)
	return append(out, '}')
}
