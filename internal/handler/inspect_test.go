package handler

import (
	"testing"

	"tack/pkg/tnetstring"
)

func inspectArgs(method, uri string, headers [][2]string, extra ...tnetstring.Field) tnetstring.Dict {
	hl := []any{}
	for _, h := range headers {
		hl = append(hl, []any{[]byte(h[0]), []byte(h[1])})
	}
	d := tnetstring.Dict{{Key: "method", Value: []byte(method)}, {Key: "uri", Value: []byte(uri)},
		{Key: "headers", Value: hl}, {Key: "body", Value: []byte{}}}
	return append(d, extra...)
}

// TestInspectSharingKey: each row's key (or bad-request) is what
// pushpin-handler 1.36 with share_all=true answered to the same inspect
// call (DEALER bound on its proxy_inspect_spec, 2026-12-07).
func TestInspectSharingKey(t *testing.T) {
	lastIDs := [][2]string{{"Host", "example.com"}, {"Grip-Last", "b; last-id=2"}, {"Grip-Last", "a; last-id=1"}}
	auto := tnetstring.Field{Key: "auto-share", Value: true}
	for _, tc := range []struct {
		name     string
		args     tnetstring.Dict
		shareAll bool
		key      string // "" = no sharing-key; "bad" = bad-request
	}{
		{"share_all", inspectArgs("GET", "http://example.com/path?x=1", lastIDs), true, "GET|http://example.com/path?x=1"},
		{"auto-share GET", inspectArgs("GET", "http://example.com/path?x=1", lastIDs, auto), true, "auto|http://example.com/path|a; last-id=1|b; last-id=2"},
		{"share_all POST", inspectArgs("POST", "http://example.com/p", nil), true, "POST|http://example.com/p"},
		{"auto-share POST falls back", inspectArgs("POST", "http://example.com/p", nil, auto), true, "POST|http://example.com/p"},
		{"encoded form", inspectArgs("GET", "http://example.com/%7Efoo/%2F?q=a%20b&r=~#frag", nil), true, "GET|http://example.com/~foo/%2F?q=a%20b&r=~#frag"},
		{"space", inspectArgs("GET", "http://example.com/a b", nil), true, "bad"},
		{"host case, list values", inspectArgs("GET", "http://Example.COM:80/x", [][2]string{{"Grip-Last", "c; last-id=3, d; last-id=4"}}, auto), true,
			"auto|http://example.com:80/x|c; last-id=3|d; last-id=4"},
		{"no headers or body", tnetstring.Dict{{Key: "method", Value: []byte("GET")}, {Key: "uri", Value: []byte("http://e/")}}, true, "bad"},
		{"auto-share not a bool", inspectArgs("GET", "http://e/", nil, tnetstring.Field{Key: "auto-share", Value: []byte("yes")}), true, "bad"},
		{"relative", inspectArgs("GET", "/relative", nil), true, "GET|/relative"},
		{"no share_all", inspectArgs("GET", "http://e/", nil), false, ""},
		{"auto-share without share_all", inspectArgs("GET", "http://e/x?y#f", nil, auto), false, "auto|http://e/x#f"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := inspectValue(tc.args, tc.shareAll)
			if tc.key == "bad" {
				if err == nil {
					t.Fatalf("accepted: %v", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if np, ok := v.Get("no-proxy"); !ok || np != false {
				t.Errorf("no-proxy %v", np)
			}
			key, has := v.Bytes("sharing-key")
			if string(key) != tc.key || has != (tc.key != "") {
				t.Errorf("sharing-key %q (present %v), want %q", key, has, tc.key)
			}
		})
	}
}
