package zhttpclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"tack/pkg/tnetstring"
)

// The `J` format (zmq-wire.md §5.2) is zurl's own: a JSON object with the
// same keys as the tnetstring dict. JSON strings become byte strings and
// byte strings are written back as UTF-8 strings, so binary bodies only
// survive the `T` format (invalid UTF-8 is replaced by U+FFFD, as Qt's
// QString::fromUtf8 does in zurl).

var errJSONTop = errors.New("json packet is not an object")

// decodeJSON parses a `J` payload (without the prefix) into the dict form
// that zhttp.FromDict takes. Integral numbers become int64, others float64.
func decodeJSON(b []byte) (tnetstring.Dict, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	if dec.More() {
		return nil, errors.New("json: trailing data")
	}
	d, ok := fromJSON(v).(tnetstring.Dict)
	if !ok {
		return nil, errJSONTop
	}
	return d, nil
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := make(tnetstring.Dict, 0, len(x))
		for _, k := range keys {
			d = append(d, tnetstring.Field{Key: k, Value: fromJSON(x[k])})
		}
		return d
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromJSON(e)
		}
		return out
	case string:
		return []byte(x)
	case json.Number:
		if n, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return n
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return string(x)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f)
		}
		return f
	default: // bool, nil
		return x
	}
}

// appendJSON appends v (a decoded tnetstring value) as JSON.
func appendJSON(dst []byte, v any) []byte {
	switch x := v.(type) {
	case tnetstring.Dict:
		dst = append(dst, '{')
		for i, f := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, f.Key)
			dst = append(dst, ':')
			dst = appendJSON(dst, f.Value)
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, e)
		}
		return append(dst, ']')
	case []byte:
		return appendJSONString(dst, string(x))
	case string:
		return appendJSONString(dst, x)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case int:
		return strconv.AppendInt(dst, int64(x), 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return append(dst, "null"...)
		}
		return strconv.AppendFloat(dst, x, 'g', -1, 64)
	case bool:
		return strconv.AppendBool(dst, x)
	case map[string]any:
		return appendJSON(dst, tnetstring.SortedDict(x))
	default: // nil and anything unexpected
		return append(dst, "null"...)
	}
}

const hexDigits = "0123456789abcdef"

func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\ufffd"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
