package grip

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"tack/pkg/tnetstring"
)

// This file adapts decoded JSON values (map[string]any, string, float64,
// bool, nil, []any) and decoded tnetstring values (tnetstring.Dict, []byte,
// int64, float64, bool, nil, []any) to the handful of conversions Pushpin's
// QVariant-based parsers perform, so that one parser serves both inputs.
//
// Two differences between the inputs matter to Pushpin and so to us:
//   - A JSON null is a value of the wrong type for every field, while a
//     tnetstring null decodes to an invalid QVariant, which optional string,
//     list and object fields treat as absent.
//   - Some error texts name JSON-only fields (`body-bin`, `content-bin`), and
//     `-bin` fields are only read from JSON input.

// errJSON is returned by decodeJSON for input Qt's JSON parser rejects.
var errJSON = errors.New("invalid JSON")

// decodeJSON parses b the way QJsonDocument::fromJson does for our purposes:
// the top level must be an object or an array, the text must be valid UTF-8
// and nothing but whitespace may follow the value.
func decodeJSON(b []byte) (any, error) {
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return nil, errJSON
	}
	if !utf8.Valid(b) {
		return nil, errJSON
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, errJSON
	}
	return v, nil
}

// obj is a JSON object or a tnetstring dictionary.
type obj struct {
	json bool // true for JSON input (Pushpin: QVariant::Map)
	m    map[string]any
	d    tnetstring.Dict
}

// asObj returns v as an object if it is one.
func asObj(v any) (obj, bool) {
	switch x := v.(type) {
	case map[string]any:
		return obj{json: true, m: x}, true
	case tnetstring.Dict:
		return obj{d: x}, true
	}
	return obj{}, false
}

// get returns the value under key and whether the key is present.
func (o obj) get(key string) (any, bool) {
	if o.json {
		v, ok := o.m[key]
		return v, ok
	}
	return o.d.Get(key)
}

// empty reports whether the object has no keys.
func (o obj) empty() bool {
	if o.json {
		return len(o.m) == 0
	}
	return len(o.d) == 0
}

// keys returns the keys in a stable order: sorted for JSON (Pushpin iterates
// a QVariantMap), decode order for tnetstring (a QVariantHash, whose order is
// arbitrary in Pushpin), last occurrence winning.
func (o obj) keys() []string {
	if o.json {
		ks := make([]string, 0, len(o.m))
		for k := range o.m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	seen := make(map[string]bool, len(o.d))
	ks := make([]string, 0, len(o.d))
	for i := len(o.d) - 1; i >= 0; i-- {
		if k := o.d[i].Key; !seen[k] {
			seen[k] = true
			ks = append(ks, k)
		}
	}
	for i, j := 0, len(ks)-1; i < j; i, j = i+1, j-1 {
		ks[i], ks[j] = ks[j], ks[i]
	}
	return ks
}

// absent reports whether v, found under a present key, counts as absent for
// optional fields: only a tnetstring null does (an invalid QVariant).
func (o obj) absent(v any) bool {
	return !o.json && v == nil
}

// toString converts a string or byte-string value (Pushpin getString).
func toString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// toBytes converts a string or byte-string value to bytes.
func toBytes(v any) ([]byte, bool) {
	switch x := v.(type) {
	case string:
		return []byte(x), true
	case []byte:
		return append([]byte(nil), x...), true
	}
	return nil, false
}

// toInt mirrors QVariant::canConvert(Int) followed by toInt(): numbers,
// booleans and strings convert (a string that is not an integer gives 0,
// quirk 3); the result is truncated to 32 bits as a C++ int cast does.
// Null, lists and objects do not convert.
func toInt(v any) (int, bool) {
	var n int64
	switch x := v.(type) {
	case float64:
		n = roundQt(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	case json.Number:
		f, _ := x.Float64()
		n = roundQt(f)
	case bool:
		if x {
			n = 1
		}
	case string:
		n, _ = strconv.ParseInt(trimSpace(x), 10, 64)
	case []byte:
		n, _ = strconv.ParseInt(trimSpace(string(x)), 10, 64)
	default:
		return 0, false
	}
	return int(int32(n)), true
}

// roundQt is qRound64: round half up, with out-of-range values mapped to the
// minimum int64 (which truncates to 0) instead of undefined behaviour.
func roundQt(f float64) int64 {
	r := math.Floor(f + 0.5)
	if math.IsNaN(r) || r >= math.MaxInt64 || r < math.MinInt64 {
		return math.MinInt64
	}
	return int64(r)
}

// parseHeaderInt mirrors QByteArray::toInt(&ok) on a header value: base 10,
// optional sign, surrounding whitespace allowed, must fit in 32 bits.
func parseHeaderInt(s string) (int, bool) {
	n, err := strconv.ParseInt(trimSpace(s), 10, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// decodeBase64Lenient decodes like QByteArray::fromBase64 in its default
// (non-strict) mode: characters outside the standard alphabet, including
// '=', are skipped and a dangling final character is ignored. Pushpin 1.36
// uses it for Grip-Keep-Alive and the JSON instruct; we keep it there.
func decodeBase64Lenient(s string) []byte {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' {
			b.WriteByte(c)
		}
	}
	t := b.String()
	if len(t)%4 == 1 {
		t = t[:len(t)-1]
	}
	out, err := base64.RawStdEncoding.DecodeString(t)
	if err != nil {
		return nil
	}
	return out
}

// decodeBase64Strict decodes standard base64, padded or not (line breaks are
// ignored). It backs the publish `-bin` fields, where, unlike 1.36, invalid
// input is an error.
func decodeBase64Strict(s string) ([]byte, bool) {
	s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out, err := enc.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return out, true
}
