package tnetstring

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every error wraps one of
// the package's sentinels, and that anything it accepts re-encodes to bytes
// that decode to an equal value (and re-encode identically). The seed corpus
// under testdata/fuzz/FuzzDecode holds every capture of zmq-wire.md §A
// (TestCaptureFuzzCorpus keeps it in step).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"0:,", "5:hello,", "3:200#", "2:-1#", "4:true!", "5:false!", "0:~", "0:]", "0:}",
		"15:5:multi,4:true!}", "3:1.5^", "8:1:1#1:a,}", "100:hello,", "5:hello",
		nest(MaxDepth+1, ']', ""), nest(3, '}', "0:~"),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrSyntax) &&
				!errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrKeyType) {
				t.Fatalf("Decode(%q): error %v wraps no sentinel", data, err)
			}
			return
		}
		pv, rest, err := DecodePrefix(data)
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(pv, v) {
			t.Fatalf("DecodePrefix(%q) = %#v, %q, %v; Decode gave %#v", data, pv, rest, err, v)
		}
		enc, err := Encode(nil, v)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", data, err)
		}
		v2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%q) (re-encoding of %q): %v", enc, data, err)
		}
		if !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-encoding of %q decodes differently:\n got %#v\nwant %#v", data, v2, v)
		}
		enc2, err := Encode(nil, v2)
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point: %q then %q (%v)", enc, enc2, err)
		}
		if len(enc) > len(data) {
			// Minimal prefixes and canonical scalars never make it longer,
			// except for floats and ints written in a longer form.
			if !hasNumber(v) {
				t.Fatalf("re-encoding grew: %q -> %q", data, enc)
			}
		}
	})
}

func hasNumber(v any) bool {
	switch x := v.(type) {
	case int64, float64:
		return true
	case []any:
		for _, e := range x {
			if hasNumber(e) {
				return true
			}
		}
	case Dict:
		for _, f := range x {
			if hasNumber(f.Value) {
				return true
			}
		}
	}
	return false
}
