package proxy

import (
	"testing"

	"tack/internal/routes"
	"tack/pkg/zhttp"
)

func TestJSONPRequest(t *testing.T) {
	basic := &routes.Route{JSONPMode: "basic", JSONPCallback: "callback"}
	body := &routes.Route{JSONPMode: "extended", JSONPCallback: "cbk", JSONPBody: "data", JSONPDefCallback: "dcb"}
	for _, tc := range []struct {
		name, method, uri string
		r                 *routes.Route
		bad               string
		want              string // method + " " + uri after rewriting; "" = not JSON-P
		cb                string
		extended          bool
		body              string
	}{
		{name: "not GET", method: "POST", uri: "http://h/p?callback=cb"},
		{name: "no callback", method: "GET", uri: "http://h/p?x=1"},
		{name: "extended default", method: "GET", uri: "http://h/p?callback=cb", want: "GET http://h/p", cb: "cb", extended: true},
		{name: "basic default method", method: "GET", uri: "http://h/p?callback=cb&a=%20b&flag", r: basic, want: "POST http://h/p?a=%20b&flag", cb: "cb"},
		{name: "method and body", method: "GET", uri: "http://h/p?callback=cb&_method=PUT&_body=a%2Bb", want: "PUT http://h/p", cb: "cb", extended: true, body: "a+b"},
		{name: "body param with default callback", method: "GET", uri: "http://h/p?data=%7B%7D", r: body, want: "GET http://h/p", cb: "dcb", extended: true, body: "{}"},
		{name: "body param only used with its name", method: "GET", uri: "http://h/p?_body=x", r: body},
		{name: "callback name from route", method: "GET", uri: "http://h/p?cbk=f.g%5B0%5D&callback=x", r: body, want: "GET http://h/p?callback=x", cb: "f.g[0]", extended: true},
		{name: "empty callback", method: "GET", uri: "http://h/p?callback=", bad: textBadCallback},
		{name: "markup callback", method: "GET", uri: "http://h/p?callback=a(1)", bad: textBadCallback},
		{name: "broken escape", method: "GET", uri: "http://h/p?callback=%ZZ", bad: textBadCallback},
		{name: "bad method", method: "GET", uri: "http://h/p?callback=cb&_method=", bad: textBadMethod},
		{name: "bad headers", method: "GET", uri: "http://h/p?callback=cb&_headers=%7B%22a%22%3Anull%7D", bad: textBadHeaders},
		{name: "bad body param", method: "GET", uri: "http://h/p?data=%Z&cbk=c", r: body, bad: textBadBody},
		{name: "bad _body", method: "GET", uri: "http://h/p?callback=c&_body=%Z", bad: textBadRawBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := zhttp.New()
			p.Method, p.URI = tc.method, tc.uri
			p.Headers = []zhttp.Header{{Name: "Host", Value: "h"}, {Name: "Accept", Value: "text/html"}, {Name: "X-Keep", Value: "1"}}
			js, bad := applyJSONP(p, tc.r)
			if bad != tc.bad {
				t.Fatalf("bad %q, want %q", bad, tc.bad)
			}
			if tc.want == "" {
				if js != nil {
					t.Fatalf("JSON-P applied: %+v", js)
				}
				return
			}
			if js == nil || js.callback != tc.cb || js.extended != tc.extended {
				t.Fatalf("state %+v", js)
			}
			if got := p.Method + " " + p.URI; got != tc.want {
				t.Errorf("request %q, want %q", got, tc.want)
			}
			if string(p.Body) != tc.body {
				t.Errorf("body %q, want %q", p.Body, tc.body)
			}
			if v, _ := p.Header("Accept"); v != "*/*" {
				t.Errorf("Accept %q", v)
			}
			if v, _ := p.Header("X-Keep"); v != "1" {
				t.Errorf("X-Keep %q", v)
			}
		})
	}
}

func TestJSONPEncodeSplitsNoRune(t *testing.T) {
	j := &jsonpState{callback: "cb", extended: true}
	got := string(j.encode([]byte("caf\xc3"), false)) + string(j.encode([]byte("\xa9\n"), true))
	if got != `café\n` {
		t.Fatalf("encoded %q", got)
	}
}
