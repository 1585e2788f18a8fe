package zhttp

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"tack/pkg/tnetstring"
)

// FuzzParse checks that Parse never panics, that it fails only with
// ErrFormat, and that an accepted packet re-encodes to bytes that parse to an
// equal Packet (and re-encode identically), also through a PUB frame, and
// that Append writes exactly the bytes of the Dict form; Parse's fast path
// gives what the Dict path gives. Seeds:
// every zhttp capture of zmq-wire.md §A, cut ones included.
func FuzzParse(f *testing.F) {
	for _, c := range loadCaptures(f) {
		if c.kind != "zhttp" && c.kind != "pub" {
			continue
		}
		_, pkt, err := c.packet()
		if err != nil {
			f.Fatalf("%s: %v", c.name(), err)
		}
		f.Add(pkt)
	}
	f.Add([]byte("T"))
	f.Add([]byte("T0:}"))
	f.Add([]byte(`J{"id":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if len(data) > 0 && data[0] == 'T' {
			ref, refErr := parseDict(data)
			if (err == nil) != (refErr == nil) || (err == nil && !reflect.DeepEqual(p, ref)) {
				t.Fatalf("Parse(%q) = %+v, %v; the Dict path gives %+v, %v", data, p, err, ref, refErr)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrFormat", data, err)
			}
			return
		}
		enc := p.Encode()
		if viaDict := append([]byte("T"), tnetstring.MustEncode(p.Dict())...); !bytes.Equal(enc, viaDict) {
			t.Fatalf("Append and Dict encodings of %q differ:\n got %q\nwant %q", data, enc, viaDict)
		}
		p2, err := Parse(enc)
		if err != nil {
			t.Fatalf("Parse(%q) (re-encoding of %q): %v", enc, data, err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("re-encoding of %q parses differently:\n got %+v\nwant %+v", data, p2, p)
		}
		if enc2 := p2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not a fixed point: %q then %q", enc, enc2)
		}
		dest, pkt, err := SplitPubFrame(PubFrame([]byte("condure"), p))
		if err != nil || string(dest) != "condure" || !bytes.Equal(pkt, enc) {
			t.Fatalf("PubFrame/SplitPubFrame: %q, %q, %v", dest, pkt, err)
		}
	})
}
