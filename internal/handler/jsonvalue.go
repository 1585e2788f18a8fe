package handler

import "tack/pkg/tnetstring"

// jsonValue converts a decoded tnetstring (or JSON) value to its JSON
// form: byte strings become strings, integers float64 (as encoding/json
// decodes them). Used for body-patch operations and JSON stats output.
func jsonValue(v any) any {
	switch x := v.(type) {
	case tnetstring.Dict:
		m := make(map[string]any, len(x))
		for _, f := range x {
			m[f.Key] = jsonValue(f.Value)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = jsonValue(e)
		}
		return l
	case []byte:
		return string(x)
	case int64:
		return float64(x)
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonValue(e)
		}
		return m
	}
	return v
}
