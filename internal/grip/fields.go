package grip

import "fmt"

// Field readers with Pushpin's error texts (its VariantUtil helpers). pn is
// the parent's name as it appears in messages, e.g. "hold" or
// "'http-response'".

func errNotObject(pn string) error { return formatErr(fmt.Sprintf("%s is not an object", pn)) }

func errMissing(pn, key string) error {
	return formatErr(fmt.Sprintf("%s does not contain '%s'", pn, key))
}

func errWrongType(pn, key string) error {
	return formatErr(fmt.Sprintf("%s contains '%s' with wrong type", pn, key))
}

func errInvalid(pn, key string) error {
	return formatErr(fmt.Sprintf("%s contains '%s' with invalid value", pn, key))
}

// child returns the value under key. A missing key is an error only when
// required; a tnetstring null under an optional key counts as missing.
func (o obj) child(pn, key string, required bool) (any, bool, error) {
	v, ok := o.get(key)
	if !ok {
		if required {
			return nil, false, errMissing(pn, key)
		}
		return nil, false, nil
	}
	if !required && o.absent(v) {
		return nil, false, nil
	}
	return v, true, nil
}

// str reads a string field.
func (o obj) str(pn, key string, required bool) (string, bool, error) {
	v, ok, err := o.child(pn, key, required)
	if err != nil || !ok {
		return "", false, err
	}
	s, ok := toString(v)
	if !ok {
		return "", false, errWrongType(pn, key)
	}
	return s, true, nil
}

// list reads a list field.
func (o obj) list(pn, key string, required bool) ([]any, bool, error) {
	v, ok, err := o.child(pn, key, required)
	if err != nil || !ok {
		return nil, false, err
	}
	l, ok := v.([]any)
	if !ok {
		return nil, false, errWrongType(pn, key)
	}
	return l, true, nil
}

// object reads an object field.
func (o obj) object(pn, key string, required bool) (obj, bool, error) {
	v, ok, err := o.child(pn, key, required)
	if err != nil || !ok {
		return obj{}, false, err
	}
	c, ok := asObj(v)
	if !ok {
		return obj{}, false, errWrongType(pn, key)
	}
	return c, true, nil
}

// integer reads a field converted like QVariant::toInt; present reports
// whether the key exists.
func (o obj) integer(pn, key string) (n int, present bool, err error) {
	v, ok := o.get(key)
	if !ok {
		return 0, false, nil
	}
	n, ok = toInt(v)
	if !ok {
		return 0, true, errWrongType(pn, key)
	}
	return n, true, nil
}

// stringMap reads a `meta` object: every value must be a string.
func stringMap(m obj, dst map[string]string) error {
	for _, k := range m.keys() {
		v, _ := m.get(k)
		s, ok := toString(v)
		if !ok {
			return formatErr(fmt.Sprintf("'meta' contains '%s' with wrong type", k))
		}
		dst[k] = s
	}
	return nil
}

// headerList reads `headers` given as an object or a list of [name, value]
// pairs (JSON instruct `response`, publish `http-response`).
func headerList(v any, pn string) ([]Header, error) {
	var out []Header
	if l, ok := v.([]any); ok {
		for _, e := range l {
			pair, ok := e.([]any)
			if !ok {
				return nil, formatErr("headers contains element with wrong type")
			}
			if len(pair) != 2 {
				return nil, formatErr("headers contains list with wrong number of elements")
			}
			name, ok := toString(pair[0])
			if !ok {
				return nil, formatErr("header contains name element with wrong type")
			}
			val, ok := toString(pair[1])
			if !ok {
				return nil, formatErr("header contains value element with wrong type")
			}
			out = append(out, Header{Name: name, Value: val})
		}
		return out, nil
	}
	m, ok := asObj(v)
	if !ok {
		return nil, errWrongType(pn, "headers")
	}
	for _, k := range m.keys() {
		hv, _ := m.get(k)
		val, ok := toString(hv)
		if !ok {
			return nil, formatErr(fmt.Sprintf("headers contains '%s' with wrong type", k))
		}
		out = append(out, Header{Name: k, Value: val})
	}
	return out, nil
}

// stringList reads a list whose elements must all be strings; bad is the
// message for a non-string element.
func stringList(l []any, bad string) ([]string, error) {
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, ok := toString(e)
		if !ok {
			return nil, formatErr(bad)
		}
		out = append(out, s)
	}
	return out, nil
}
