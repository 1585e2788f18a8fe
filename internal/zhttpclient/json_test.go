package zhttpclient

import (
	"testing"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

func TestJSONDecode(t *testing.T) {
	// Captured from a fake proxy talking to zurl (zmq-wire.md §A.9).
	d, err := decodeJSON([]byte(`{"from":"proxy_z5929","id":"json-1","seq":0,"method":"GET","uri":"http://127.0.0.1:18080/hello.txt","headers":[["A","b"]],"stream":true,"credits":1000.0,"ignore-policies":true,"user-data":{"x":[1,2.5,null]}}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := zhttp.FromDict(d)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.From) != "proxy_z5929" || string(p.ID) != "json-1" || p.Seq != 0 || p.Credits != 1000 || !p.Stream || !p.IgnorePolicies ||
		len(p.Headers) != 1 || p.Headers[0].Value != "b" {
		t.Fatalf("packet %+v", p)
	}
	ud := p.UserData.(tnetstring.Dict)
	x, _ := ud.List("x")
	if x[0] != int64(1) || x[1] != 2.5 || x[2] != nil {
		t.Fatalf("user-data %v", ud)
	}
	for _, bad := range []string{`[1]`, `{"a":1} {}`, `{`, `"s"`} {
		if _, err := decodeJSON([]byte(bad)); err == nil {
			t.Errorf("decodeJSON(%s) succeeded", bad)
		}
	}
}

func TestJSONEncode(t *testing.T) {
	d := tnetstring.Dict{
		{Key: "id", Value: []byte("a\"b\\c\n\x01")},
		{Key: "body", Value: []byte("ok \xff end")},
		{Key: "seq", Value: int64(3)},
		{Key: "more", Value: true},
		{Key: "list", Value: []any{nil, 1.5, "s"}},
	}
	got := string(appendJSON(nil, d))
	want := `{"id":"a\"b\\c\n\u0001","body":"ok ` + "\ufffd" + ` end","seq":3,"more":true,"list":[null,1.5,"s"]}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`T82:4:from,11:proxy_z5929,2:id,10:unknown-id,3:seq,1:1#4:type,6:credit,7:credits,2:10#}`))
	f.Add([]byte(`J{"from":"p","id":"j","seq":0,"method":"GET","uri":"http://x/","headers":[]}`))
	f.Add([]byte(`T35:2:id,10:unknown-id,4:type,6:cancel,}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, isJSON, _, err := decode(b)
		if err != nil {
			return
		}
		r := newReply(zhttp.TypeData)
		r.id, r.body, r.userData = p.ID, p.Body, p.UserData
		out := r.encode([]byte("x"), isJSON)
		if len(out) == 0 {
			t.Fatal("empty encoding")
		}
	})
}
