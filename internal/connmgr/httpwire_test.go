package connmgr

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"tack/pkg/zhttp"
)

func TestHTTPWireHeadEnd(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n\r\nrest", 27},
		{"GET / HTTP/1.1\nHost: x\n\nrest", 24},
		{"GET / HTTP/1.1\r\nHost: x\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: x\r\n\r", -1},
	}
	for _, tc := range tests {
		if got := headEnd([]byte(tc.in), 0); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestHTTPWireScanHeaders(t *testing.T) {
	hs, host, err := scanHeaders("GET / HTTP/1.1\r\nhost: a:1\r\nX-Fold: one\r\n two\r\nHost: b\r\nX-Empty:\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []zhttp.Header{{Name: "host", Value: "a:1"}, {Name: "X-Fold", Value: "one two"}, {Name: "Host", Value: "b"}, {Name: "X-Empty", Value: ""}}
	if fmt.Sprint(hs) != fmt.Sprint(want) || host != "a:1" {
		t.Fatalf("%v %q", hs, host)
	}
	many := "GET / HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", MaxRequestHeaders+1) + "\r\n"
	if _, _, err := scanHeaders(many); !errors.Is(err, errTooManyHeaders) {
		t.Fatalf("too many headers: %v", err)
	}
}

func TestHTTPWireRequestURI(t *testing.T) {
	for _, tc := range []struct {
		host, target string
		secure       bool
		want         string
	}{
		{"example.com:8080", "/a?b", false, "http://example.com:8080/a?b"},
		{"", "/a", false, "http://localhost/a"},
		{"x", "http://other/p", false, "http://other/p"},
		{"example.com", "/a", true, "https://example.com/a"},
	} {
		if got := requestURI(tc.host, tc.target, tc.secure); got != tc.want {
			t.Errorf("%q %q: %q", tc.host, tc.target, got)
		}
	}
}

func TestHTTPWireResponseHead(t *testing.T) {
	tests := []struct {
		name       string
		code       int64
		headers    []zhttp.Header
		body       string
		more       bool
		head, v11  bool
		persistent bool
		want       string
		wantErr    bool
	}{
		{name: "length kept", code: 200, headers: hdr("Content-Length", "10"), more: true, v11: true, persistent: true,
			want: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"},
		{name: "chunked quirk", code: 200, headers: hdr("X", "1"), more: true, v11: true, persistent: true,
			want: "HTTP/1.1 200 OK\r\nX: 1\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{name: "chunked closing", code: 200, more: true, v11: true,
			want: "HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{name: "1.0 stream", code: 200, more: true, persistent: true,
			want: "HTTP/1.0 200 OK\r\n\r\n"},
		{name: "connection-listed and hop-by-hop dropped", code: 200, headers: hdr("Connection", "X-Hop, close", "X-Hop", "1", "Keep-Alive", "5", "X-Keep", "2", "Upgrade", "h2c"), body: "ab", v11: true, persistent: true,
			want: "HTTP/1.1 200 OK\r\nX-Keep: 2\r\nContent-Length: 2\r\n\r\n"},
		{name: "head without length", code: 200, head: true, v11: true, persistent: true,
			want: "HTTP/1.1 200 OK\r\n\r\n"},
		{name: "304", code: 304, headers: hdr("Content-Length", "9", "ETag", "e"), v11: true, persistent: true,
			want: "HTTP/1.1 304 Not Modified\r\nETag: e\r\n\r\n"},
		{name: "bad length", code: 200, headers: hdr("Content-Length", "x"), v11: true, wantErr: true},
		{name: "header injection", code: 200, headers: hdr("X", "a\r\nSet-Cookie: b"), v11: true, wantErr: true},
		{name: "bad code", code: 42, v11: true, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := zhttp.New()
			p.Code, p.Headers, p.Body, p.More = tc.code, tc.headers, []byte(tc.body), tc.more
			if tc.code == 200 {
				p.Reason = "OK"
			}
			rh, err := planResponse(p, tc.head, tc.v11, tc.persistent)
			var b []byte
			if err == nil {
				b, err = appendHead(nil, p, rh, tc.v11)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if !tc.wantErr && string(b) != tc.want {
				t.Fatalf("got %q\nwant %q", b, tc.want)
			}
		})
	}
}

func TestHTTPWireMailboxMerge(t *testing.T) {
	var mb mailbox
	for i := range 3 * maxQueuedPieces {
		mb.addBody([]byte{byte('a' + i%26)})
	}
	if len(mb.body) > maxQueuedPieces+1 || mb.bytes != 3*maxQueuedPieces {
		t.Fatalf("%d pieces, %d bytes", len(mb.body), mb.bytes)
	}
	var all []byte
	for _, b := range mb.body {
		all = append(all, b...)
	}
	for i, c := range all {
		if c != byte('a'+i%26) {
			t.Fatalf("byte %d = %q", i, c)
		}
	}
}
