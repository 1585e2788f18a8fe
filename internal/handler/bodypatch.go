package handler

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// applyBodyPatch applies an http-response `body-patch` (RFC 6902 JSON
// patch) to a hold's timeout body (grip-reference §3.7): the body is parsed
// as a JSON object or array, patched, re-encoded compactly and given the
// original's trailing "\r\n" or "\n". A body that is not JSON, or a patch
// that fails, gives an empty body, as in Pushpin.
func applyBodyPatch(in []byte, patch []any) []byte {
	trimmed := bytes.TrimRight(in, " \t\r\n")
	var doc any
	if err := json.Unmarshal(trimmed, &doc); err != nil {
		return []byte{}
	}
	switch doc.(type) {
	case map[string]any, []any:
	default:
		return []byte{}
	}
	for _, op := range patch {
		var ok bool
		if doc, ok = patchOp(doc, jsonValue(op)); !ok {
			return []byte{}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return []byte{}
	}
	out := bytes.TrimRight(buf.Bytes(), "\n")
	switch {
	case bytes.HasSuffix(in, []byte("\r\n")):
		out = append(out, '\r', '\n')
	case bytes.HasSuffix(in, []byte("\n")):
		out = append(out, '\n')
	}
	return out
}

func patchOp(doc any, opv any) (any, bool) {
	op, ok := opv.(map[string]any)
	if !ok {
		return nil, false
	}
	name, _ := op["op"].(string)
	path, ok := op["path"].(string)
	if !ok {
		return nil, false
	}
	switch name {
	case "add", "replace", "test":
		val, ok := op["value"]
		if !ok {
			return nil, false
		}
		switch name {
		case "add":
			return pointerSet(doc, path, val, true)
		case "replace":
			if _, ok := pointerGet(doc, path); !ok {
				return nil, false
			}
			return pointerSet(doc, path, val, false)
		default:
			cur, ok := pointerGet(doc, path)
			if !ok || !jsonEqual(cur, val) {
				return nil, false
			}
			return doc, true
		}
	case "remove":
		return pointerRemove(doc, path)
	case "move", "copy":
		from, ok := op["from"].(string)
		if !ok {
			return nil, false
		}
		val, ok := pointerGet(doc, from)
		if !ok {
			return nil, false
		}
		if name == "move" {
			if strings.HasPrefix(path, from+"/") {
				return nil, false
			}
			if doc, ok = pointerRemove(doc, from); !ok {
				return nil, false
			}
		} else {
			val = deepCopy(val)
		}
		return pointerSet(doc, path, val, true)
	}
	return nil, false
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func deepCopy(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// splitPointer parses an RFC 6901 pointer; "" is the whole document.
func splitPointer(p string) ([]string, bool) {
	if p == "" {
		return nil, true
	}
	if p[0] != '/' {
		return nil, false
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, true
}

func arrayIndex(tok string, n int, allowEnd bool) (int, bool) {
	if allowEnd && tok == "-" {
		return n, true
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i > n || (!allowEnd && i == n) {
		return 0, false
	}
	return i, true
}

func pointerGet(doc any, p string) (any, bool) {
	toks, ok := splitPointer(p)
	if !ok {
		return nil, false
	}
	cur := doc
	for _, t := range toks {
		switch c := cur.(type) {
		case map[string]any:
			if cur, ok = c[t]; !ok {
				return nil, false
			}
		case []any:
			i, ok := arrayIndex(t, len(c), false)
			if !ok {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// pointerSet sets (insert: adds, inserting into arrays) the value at p and
// returns the possibly new document.
func pointerSet(doc any, p string, val any, insert bool) (any, bool) {
	toks, ok := splitPointer(p)
	if !ok {
		return nil, false
	}
	if len(toks) == 0 {
		return val, true
	}
	parent, ok := pointerGet(doc, "/"+joinPointer(toks[:len(toks)-1]))
	if len(toks) == 1 {
		parent, ok = doc, true
	}
	if !ok {
		return nil, false
	}
	last := toks[len(toks)-1]
	switch c := parent.(type) {
	case map[string]any:
		c[last] = val
		return doc, true
	case []any:
		i, ok := arrayIndex(last, len(c), insert)
		if !ok {
			return nil, false
		}
		var nl []any
		if insert {
			nl = append(append(append([]any{}, c[:i]...), val), c[i:]...)
		} else {
			c[i] = val
			return doc, true
		}
		return replaceAt(doc, toks[:len(toks)-1], nl)
	}
	return nil, false
}

func pointerRemove(doc any, p string) (any, bool) {
	toks, ok := splitPointer(p)
	if !ok || len(toks) == 0 {
		return nil, false
	}
	parent := doc
	if len(toks) > 1 {
		if parent, ok = pointerGet(doc, "/"+joinPointer(toks[:len(toks)-1])); !ok {
			return nil, false
		}
	}
	last := toks[len(toks)-1]
	switch c := parent.(type) {
	case map[string]any:
		if _, ok := c[last]; !ok {
			return nil, false
		}
		delete(c, last)
		return doc, true
	case []any:
		i, ok := arrayIndex(last, len(c), false)
		if !ok {
			return nil, false
		}
		nl := append(append([]any{}, c[:i]...), c[i+1:]...)
		return replaceAt(doc, toks[:len(toks)-1], nl)
	}
	return nil, false
}

// replaceAt stores v at the location toks (an array that was rebuilt).
func replaceAt(doc any, toks []string, v any) (any, bool) {
	if len(toks) == 0 {
		return v, true
	}
	return pointerSet(doc, "/"+joinPointer(toks), v, false)
}

func joinPointer(toks []string) string {
	esc := make([]string, len(toks))
	for i, t := range toks {
		esc[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
	}
	return strings.Join(esc, "/")
}
