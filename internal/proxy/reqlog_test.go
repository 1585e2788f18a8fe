package proxy

import (
	"testing"

	"tack/internal/grip"
	"tack/internal/routes"
)

// TestProxyRequestLine renders request lines as pushpin-proxy 1.36 printed
// them for the same requests (run with Debian's config, 2026-12-07).
func TestProxyRequestLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		rl   requestLog
		want string
	}{
		{"plain", requestLog{method: "GET", uri: "http://127.0.0.1:47999/index.html", target: "127.0.0.1:48080", status: statusResponse, code: 200, bytes: 6},
			"GET http://127.0.0.1:47999/index.html -> 127.0.0.1:48080 code=200 6"},
		{"referer and last ids", requestLog{method: "GET", uri: "http://foo.example/index.html?a=b%20c", target: "127.0.0.1:48080",
			referer: "http://ref.example/x?y=1", status: statusResponse, code: 200, bytes: 6,
			lastIDs: grip.RequestLastIDs([]grip.Header{{Name: "Grip-Last", Value: "ch1; last-id=5"}})},
			"GET http://foo.example/index.html?a=b%20c -> 127.0.0.1:48080 ref=http://ref.example/x?y=1 code=200 6 #ch1=5"},
		{"route id", requestLog{method: "GET", uri: "http://foo.example/index.html", target: "127.0.0.1:48080", route: "myroute", status: statusResponse, code: 200, bytes: 6},
			"GET http://foo.example/index.html -> 127.0.0.1:48080 route=myroute code=200 6"},
		{"accept", requestLog{method: "GET", uri: "http://hold.example/stream", target: "test", status: statusAccept},
			"GET http://hold.example/stream -> test accept"},
		{"every part", requestLog{method: "POST", uri: "http://a/b", target: "h:1", from: "10.0.0.1", route: "r", status: statusError,
			retry: true, userAgent: "curl/8", lastIDs: []grip.LastID{{Channel: "a", ID: "1"}, {Channel: "b", ID: "2"}}},
			"POST http://a/b -> h:1 from=10.0.0.1 route=r error retry ua=curl/8 #a=1 #b=2"},
		{"no target", requestLog{method: "GET", uri: "http://nowhere/", status: statusResponse, code: 502, bytes: 29},
			"GET http://nowhere/ code=502 29"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rl.line(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestProxyRequestLogTarget(t *testing.T) {
	for _, tc := range []struct {
		t    routes.Target
		want string
	}{
		{routes.Target{Kind: routes.TargetHost, Host: "127.0.0.1", Port: 8080}, "127.0.0.1:8080"},
		{routes.Target{Kind: routes.TargetHost, Host: "::1", Port: 80}, "::1:80"},
		{routes.Target{Kind: routes.TargetTest}, "test"},
		{routes.Target{Kind: routes.TargetZHTTP, Spec: "ipc://x"}, "zhttp/ipc://x"},
	} {
		if got := logTarget(&tc.t); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.t, got, tc.want)
		}
	}
}
