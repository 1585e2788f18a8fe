package tnetstring

import (
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Limits applied by the decoder.
const (
	// MaxDepth is the most containers a decoded value may nest (a value
	// inside MaxDepth lists is fine, one more list is ErrTooDeep). Pushpin's
	// packets nest at most ~5 deep.
	MaxDepth = 64
	// maxSizeDigits bounds the length prefix (a 9-digit size is ~1 GB).
	maxSizeDigits = 9
)

// Errors returned by the decoder; callers match them with errors.Is.
var (
	ErrTruncated = errors.New("tnetstring: truncated input")
	ErrSyntax    = errors.New("tnetstring: syntax error")
	ErrTooDeep   = errors.New("tnetstring: nesting too deep")
	ErrKeyType   = errors.New("tnetstring: dictionary key is not a byte string")
)

// Field is one entry of a Dict.
type Field struct {
	Key   string
	Value any
}

// Dict is a tnetstring dictionary. Order is kept as decoded (or as built) so
// that encodings are deterministic; lookups return the last occurrence of a
// key, as Pushpin's decoders do.
type Dict []Field

// Get returns the value stored under key and whether it was present.
func (d Dict) Get(key string) (any, bool) {
	for i := len(d) - 1; i >= 0; i-- {
		if d[i].Key == key {
			return d[i].Value, true
		}
	}
	return nil, false
}

// Bytes returns the byte string under key, if present with that type.
func (d Dict) Bytes(key string) ([]byte, bool) {
	v, _ := d.Get(key)
	b, ok := v.([]byte)
	return b, ok
}

// Int returns the integer under key, if present with that type.
func (d Dict) Int(key string) (int64, bool) {
	v, _ := d.Get(key)
	n, ok := v.(int64)
	return n, ok
}

// Bool returns the boolean under key; absent or non-boolean reads as false.
func (d Dict) Bool(key string) bool {
	v, _ := d.Get(key)
	b, _ := v.(bool)
	return b
}

// Dict returns the dictionary under key, if present with that type.
func (d Dict) Dict(key string) (Dict, bool) {
	v, _ := d.Get(key)
	m, ok := v.(Dict)
	return m, ok
}

// List returns the list under key, if present with that type.
func (d Dict) List(key string) ([]any, bool) {
	v, _ := d.Get(key)
	l, ok := v.([]any)
	return l, ok
}

// Decode parses exactly one value from b; trailing bytes are an error.
func Decode(b []byte) (any, error) {
	v, rest, err := DecodePrefix(b)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrSyntax, len(rest))
	}
	return v, nil
}

// DecodeDict parses exactly one value from b and requires it to be a Dict.
func DecodeDict(b []byte) (Dict, error) {
	v, err := Decode(b)
	if err != nil {
		return nil, err
	}
	d, ok := v.(Dict)
	if !ok {
		return nil, fmt.Errorf("%w: top-level value is not a dictionary", ErrSyntax)
	}
	return d, nil
}

// DecodePrefix parses one value from the start of b and returns the rest.
func DecodePrefix(b []byte) (any, []byte, error) {
	return decode(b, 0)
}

// split reads the size prefix and tag of the value at the start of b.
func split(b []byte) (payload []byte, tag byte, rest []byte, err error) {
	// The size prefix is scanned byte by byte (not with IndexByte) so that
	// junk is reported as a syntax error and a long run of digits is refused
	// after maxSizeDigits bytes instead of after a scan of the whole input.
	size, n := 0, 0
	for ; ; n++ {
		if n == len(b) {
			return nil, 0, nil, ErrTruncated
		}
		c := b[n]
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return nil, 0, nil, fmt.Errorf("%w: bad size prefix", ErrSyntax)
		}
		if n == maxSizeDigits {
			return nil, 0, nil, fmt.Errorf("%w: size prefix longer than %d digits", ErrSyntax, maxSizeDigits)
		}
		size = size*10 + int(c-'0')
	}
	if n == 0 {
		return nil, 0, nil, fmt.Errorf("%w: empty size prefix", ErrSyntax)
	}
	body := b[n+1:]
	if size >= len(body) { // need size bytes plus the tag byte
		return nil, 0, nil, ErrTruncated
	}
	return body[:size:size], body[size], body[size+1:], nil
}

// decode parses one value; depth is the number of containers enclosing it.
func decode(b []byte, depth int) (any, []byte, error) {
	payload, tag, rest, err := split(b)
	if err != nil {
		return nil, nil, err
	}
	switch tag {
	case ',':
		return payload, rest, nil
	case '#':
		n, err := parseInt(payload)
		if err != nil {
			return nil, nil, err
		}
		return n, rest, nil
	case '^':
		f, err := strconv.ParseFloat(string(payload), 64)
		if err != nil || math.IsNaN(f) {
			return nil, nil, fmt.Errorf("%w: bad float %q", ErrSyntax, payload)
		}
		return f, rest, nil
	case '!':
		switch string(payload) {
		case "true":
			return true, rest, nil
		case "false":
			return false, rest, nil
		}
		return nil, nil, fmt.Errorf("%w: bad boolean %q", ErrSyntax, payload)
	case '~':
		if len(payload) != 0 {
			return nil, nil, fmt.Errorf("%w: null with payload", ErrSyntax)
		}
		return nil, rest, nil
	case ']':
		if depth >= MaxDepth {
			return nil, nil, ErrTooDeep
		}
		list := []any{}
		for len(payload) > 0 {
			v, r, err := decode(payload, depth+1)
			if err != nil {
				return nil, nil, err
			}
			list = append(list, v)
			payload = r
		}
		return list, rest, nil
	case '}':
		if depth >= MaxDepth {
			return nil, nil, ErrTooDeep
		}
		d := Dict{}
		for len(payload) > 0 {
			kb, ktag, r, err := split(payload)
			if err != nil {
				return nil, nil, err
			}
			if ktag != ',' {
				return nil, nil, ErrKeyType
			}
			if len(r) == 0 {
				return nil, nil, fmt.Errorf("%w: dictionary key %q without value", ErrSyntax, kb)
			}
			v, r, err := decode(r, depth+1)
			if err != nil {
				return nil, nil, err
			}
			d = append(d, Field{Key: internKey(kb), Value: v})
			payload = r
		}
		return d, rest, nil
	}
	return nil, nil, fmt.Errorf("%w: unknown type tag %q", ErrSyntax, tag)
}

// knownKeys holds the dictionary keys Pushpin's packets use most (zhttp,
// ZRPC, ws-control), so that decoding them does not allocate a string each.
var knownKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"from", "id", "seq", "type", "condition", "credits", "more", "stream", "router-resp",
		"ext", "multi", "quiet", "user-data", "method", "uri", "headers", "body", "content-type",
		"code", "reason", "max-size", "timeout", "peer-address", "peer-port", "connect-host",
		"connect-port", "ignore-policies", "trust-connect-host", "ignore-tls-errors",
		"follow-redirects", "passthrough", "args", "success", "value", "items", "cid", "req-id",
	} {
		m[k] = k
	}
	return m
}()

func internKey(b []byte) string {
	if s, ok := knownKeys[string(b)]; ok { // this lookup does not allocate
		return s
	}
	return string(b)
}

func parseInt(p []byte) (int64, error) {
	if len(p) == 0 || len(p) > 20 {
		return 0, fmt.Errorf("%w: bad integer %q", ErrSyntax, p)
	}
	n, err := strconv.ParseInt(string(p), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: bad integer %q", ErrSyntax, p)
	}
	return n, nil
}

// Encode appends the encoding of v to dst. Supported types: []byte, string
// (encoded as a byte string), int, int64, int32, uint16, float64, bool, nil,
// []any, [][]byte, []string, Dict, and map[string]any (keys sorted for a
// stable encoding). Other types return an error.
func Encode(dst []byte, v any) ([]byte, error) {
	var err error
	dst, err = appendValue(dst, v)
	return dst, err
}

// MustEncode is Encode for values built by the caller from supported types.
// It panics on an unsupported type, which is a programming error.
func MustEncode(v any) []byte {
	b, err := Encode(nil, v)
	if err != nil {
		panic(err)
	}
	return b
}

func appendValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return appendBytes(dst, x, ','), nil
	case string:
		return appendString(dst, x), nil
	case int:
		return appendInt(dst, int64(x)), nil
	case int64:
		return appendInt(dst, x), nil
	case int32:
		return appendInt(dst, int64(x)), nil
	case uint16:
		return appendInt(dst, int64(x)), nil
	case float64:
		if math.IsNaN(x) {
			// The decoder refuses NaN, so never produce it.
			return nil, fmt.Errorf("tnetstring: cannot encode NaN")
		}
		var tmp [32]byte
		return appendBytes(dst, strconv.AppendFloat(tmp[:0], x, 'g', -1, 64), '^'), nil
	case bool:
		if x {
			return append(dst, "4:true!"...), nil
		}
		return append(dst, "5:false!"...), nil
	case nil:
		return append(dst, "0:~"...), nil
	case []any:
		start, d := beginContainer(dst)
		var err error
		for _, e := range x {
			if d, err = appendValue(d, e); err != nil {
				return nil, err
			}
		}
		return endContainer(d, start, ']')
	case [][]byte:
		start, d := beginContainer(dst)
		for _, e := range x {
			d = appendBytes(d, e, ',')
		}
		return endContainer(d, start, ']')
	case []string:
		start, d := beginContainer(dst)
		for _, e := range x {
			d = appendString(d, e)
		}
		return endContainer(d, start, ']')
	case Dict:
		start, d := beginContainer(dst)
		var err error
		for _, f := range x {
			d = appendString(d, f.Key)
			if d, err = appendValue(d, f.Value); err != nil {
				return nil, err
			}
		}
		return endContainer(d, start, '}')
	case map[string]any:
		return appendValue(dst, SortedDict(x))
	}
	return nil, fmt.Errorf("tnetstring: cannot encode %T", v)
}

// SortedDict converts a map to a Dict with keys in byte order.
func SortedDict(m map[string]any) Dict {
	d := make(Dict, 0, len(m))
	for k, v := range m {
		d = append(d, Field{k, v})
	}
	// insertion sort: maps here are small
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && d[j].Key < d[j-1].Key; j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
	return d
}

func appendBytes(dst, b []byte, tag byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, ':')
	dst = append(dst, b...)
	return append(dst, tag)
}

func appendInt(dst []byte, n int64) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], n, 10)
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, '#')
}

// containerReserve is the room left for a container's size prefix: a
// 9-digit size (the decoder's limit) and ':'.
const containerReserve = maxSizeDigits + 1

// beginContainer reserves room for a size prefix; the caller appends the
// children after it and calls endContainer, which writes the prefix once the
// size is known and moves the children back over the unused room. This
// keeps encoding to one pass over one buffer.
func beginContainer(dst []byte) (start int, out []byte) {
	start = len(dst)
	return start, append(dst, make([]byte, containerReserve)...)
}

func endContainer(out []byte, start int, tag byte) ([]byte, error) {
	size := len(out) - start - containerReserve
	var pre [containerReserve + 8]byte
	p := strconv.AppendInt(pre[:0], int64(size), 10)
	p = append(p, ':')
	shift := containerReserve - len(p)
	if shift < 0 {
		return nil, fmt.Errorf("tnetstring: container too large (%d bytes)", size)
	}
	copy(out[start+shift:], p)
	if shift > 0 {
		copy(out[start:], out[start+shift:])
		out = out[:len(out)-shift]
	}
	return append(out, tag), nil
}

func appendString(dst []byte, s string) []byte {
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	dst = append(dst, s...)
	return append(dst, ',')
}

// Append-style encoding for callers that write a known structure field by
// field (the zhttp and ws-control packet encoders), without building a Dict
// of boxed values. A container is written as BeginContainer, its children,
// then EndDict or EndList.

// AppendBytes appends b as a byte string.
func AppendBytes(dst, b []byte) []byte { return appendBytes(dst, b, ',') }

// AppendString appends s as a byte string.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

// AppendInt appends n as an integer.
func AppendInt(dst []byte, n int64) []byte { return appendInt(dst, n) }

// AppendBool appends v as a boolean.
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, "4:true!"...)
	}
	return append(dst, "5:false!"...)
}

// BeginContainer reserves room for a container's size prefix and returns
// the offset to pass to EndDict or EndList.
func BeginContainer(dst []byte) (start int, out []byte) { return beginContainer(dst) }

// EndDict closes a dictionary begun at start. Like Encode, it fails only
// on a container larger than the decoder accepts.
func EndDict(out []byte, start int) ([]byte, error) { return endContainer(out, start, '}') }

// EndList closes a list begun at start.
func EndList(out []byte, start int) ([]byte, error) { return endContainer(out, start, ']') }

// Next splits the value at the start of b into its payload, its type tag
// (',' '#' '^' '!' '~' ']' '}') and the rest of b, checking only the size
// prefix; a reader walking a dictionary's payload uses it for keys and
// values and decodes each payload as its tag says (ParseInt for '#',
// DecodePrefix of the whole value for containers it does not walk itself).
func Next(b []byte) (payload []byte, tag byte, rest []byte, err error) { return split(b) }

// ParseInt parses the payload of an integer ('#') value.
func ParseInt(payload []byte) (int64, error) { return parseInt(payload) }

// ParseBool parses the payload of a boolean ('!') value.
func ParseBool(payload []byte) (bool, error) {
	switch string(payload) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: bad boolean %q", ErrSyntax, payload)
}

// Intern returns b as a string, as the element of known equal to it if
// there is one (without allocating), else as a new string.
func Intern(b []byte, known ...string) string {
	for _, k := range known {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}
