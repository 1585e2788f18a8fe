package grip

import (
	"errors"
	"strings"
	"testing"

	"tack/pkg/tnetstring"
)

// splitHeaderBlob turns "Name: value\n..." into headers.
func splitHeaderBlob(s string) []Header {
	var hs []Header
	for _, l := range strings.Split(s, "\n") {
		if name, value, ok := strings.Cut(l, ":"); ok {
			hs = append(hs, Header{Name: name, Value: trimSpace(value)})
		}
	}
	return hs
}

func FuzzParseInstruct(f *testing.F) {
	// Header sets and bodies sent to Pushpin 1.36 while checking this package.
	seeds := []struct {
		code    int
		headers string
		body    string
	}{
		{200, "Grip-Hold: stream\nGrip-Channel: \"q,1\", b ;x=7, ,c; y=\"x\nGrip-Channel: d;filter=\"skip-self\" , e ; y=\"a\\\"b;c\"; filter=skip-self", ""},
		{200, "Grip-Hold: response\nGrip-Timeout: 7\nGrip-Set-Meta: user=alice, a=1,,b=2", ""},
		{200, "Grip-Keep-Alive: ka\\x4; format=cstring; timeout=2; mode=interval", ""},
		{200, "Grip-Status: 299 Weird  Thing\nGrip-Expose-Headers: x-a, X-B\nX-A: 1\nConnection: foo", "hi\n"},
		{200, "Grip-Link: <x>; rel=next, <y>; rel=next; timeout=-2\nGrip-Link: </g>; rel=gone", ""},
		{200, "Content-Type: application/grip-instruct", `{"hold":{"mode":"response","channels":[{"name":"i1"}],"timeout":6},"response":{"code":202,"headers":{"X-J":"1"},"body":"instruct timeout\n"}}`},
		{200, "Content-Type: application/grip-instruct", `{"hold":{"mode":"stream","channels":[],"keep-alive":{"content-bin":"aGk=","timeout":3},"meta":{"a":"b"}},"response":{"headers":[["a","b"]],"body-bin":"!!!aGk="}}`},
		{200, "Content-Type: application/grip-instruct", `{"response":5}`},
		{201, "Content-Type: application/grip-instruct", `{}`},
	}
	for _, s := range seeds {
		f.Add(s.code, s.headers, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, code int, headers string, body []byte) {
		hs := splitHeaderBlob(headers)
		_ = IsGRIP(hs)
		opts := ParseOptions{ChannelPrefix: "p:", MaxFiltersPerChannel: FilterMax141}
		in, err := Parse(code, "", hs, body, opts)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		if in.Timeout < MinTimeout {
			t.Fatalf("Timeout %v below minimum", in.Timeout)
		}
		if len(in.Channels) > DefaultConnectionSubscriptionMax {
			t.Fatalf("%d channels kept", len(in.Channels))
		}
		if in.KeepAlive != nil && in.KeepAlive.Timeout < MinKeepAliveTimeout {
			t.Fatalf("keep-alive timeout %v", in.KeepAlive.Timeout)
		}
		for _, h := range in.Response.Headers {
			if containsFold(droppedHeaders, h.Name) {
				t.Fatalf("header %q kept", h.Name)
			}
		}
	})
}

func FuzzParseItems(f *testing.F) {
	// Bodies posted to the 1.36 publish API while checking this package, plus
	// PULL frames (J prefix, T prefix, bare tnetstring).
	seeds := []string{
		`{"items":[{"channel":"a","id":"2","prev-id":"1","meta":{"sender":"s"},"size":7,"no-seq":true,"http-stream":{"content":"x"}}]}`,
		`{"items":[{"channel":"a","formats":{"http-response":{"code":"abc","headers":[["a","b"]],"body-patch":[]}}}]}`,
		`{"items":[{"channel":"a","ws-message":{"action":"close","code":70000,"reason":"r"}}]}`,
		`{"items":[{"channel":"a","ws-message":{"type":"ping"}},{"channel":"b","http-stream":{"action":"bogus"}}]}`,
		`{"items":[{"channel":"a","http-response":{"body-bin":"!!!","content-filters":["build-id"]}}]}`,
		`J{"channel":"c","http-stream":{"content-bin":"cw=="}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	tn := tnetstring.MustEncode(td("channel", []byte("c"), "formats", td("ws-message", td("content-bin", []byte{0, 1}))))
	f.Add(tn)
	f.Add(append([]byte("T"), tn...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := ParseItems(data); err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
		}
		v, err := DecodeItemFrame(data)
		if err != nil {
			return
		}
		_, _ = ParseItem(v)
		_, _ = ParseItemList(v)
	})
}
