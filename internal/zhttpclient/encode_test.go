package zhttpclient

import (
	"bytes"
	"testing"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

func TestEncodeReplyMatchesPacket(t *testing.T) {
	cases := []*reply{
		{typ: zhttp.TypeKeepAlive, seq: 0, code: -1, credits: -1, multi: true},
		{typ: zhttp.TypeCredit, seq: 12, code: -1, credits: 200000},
		{typ: zhttp.TypeCancel, seq: -1, code: -1, credits: -1},
		{typ: zhttp.TypeError, cond: zhttp.CondPolicyViolation, seq: 3, code: -1, credits: -1},
		{typ: zhttp.TypeData, seq: 1, code: 200, reason: "OK", headers: []zhttp.Header{{Name: "Content-Length", Value: "19"}, {Name: "X-Empty", Value: ""}},
			body: []byte("hello from backend\n"), more: true, credits: -1},
		{typ: zhttp.TypeData, seq: 1, code: 204, reason: "No Content", credits: -1},
		{typ: zhttp.TypeData, seq: 1234567, code: -1, body: bytes.Repeat([]byte{0, ':', ','}, 5000), credits: -1},
		{typ: zhttp.TypeData, seq: 1, code: 101, reason: "Switching Protocols", headers: []zhttp.Header{{Name: "Upgrade", Value: "websocket"}}, credits: 200000, multi: true},
		{typ: zhttp.TypeError, cond: zhttp.CondRejected, seq: 0, code: 403, reason: "Forbidden", headers: []zhttp.Header{{Name: "Content-Length", Value: "2"}}, body: []byte("no"), credits: -1},
		{typ: zhttp.TypeData, seq: 4, code: -1, ctype: "binary", body: []byte{0, 0xff}, more: true, credits: -1},
		{typ: zhttp.TypeClose, seq: 5, code: 4001, body: []byte("bye"), credits: -1},
		{typ: zhttp.TypePing, seq: 6, code: -1, credits: -1},
		{typ: zhttp.TypeData, seq: 2, code: -1, credits: -1, userData: tnetstring.Dict{{Key: "k", Value: []byte("v")}, {Key: "n", Value: int64(-5)}}},
	}
	for i, r := range cases {
		for _, from := range [][]byte{nil, []byte("zhcli_1")} {
			r.from, r.id = from, []byte("0-1-abc")
			got := r.appendPub(nil, []byte("proxy_7"))
			want := zhttp.PubFrame([]byte("proxy_7"), r.packet())
			if !bytes.Equal(got, want) {
				t.Fatalf("case %d:\n got %q\nwant %q", i, got, want)
			}
			bare := r.encode(nil, false)
			if !bytes.Equal(bare, r.packet().Encode()) {
				t.Fatalf("case %d bare:\n got %q\nwant %q", i, bare, r.packet().Encode())
			}
			if _, err := zhttp.Parse(bare); err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
		}
	}
}

func BenchmarkEncodeReply(b *testing.B) {
	r := &reply{from: []byte("zhttpclient_1234"), id: []byte("5e54936f-4aac-451b-b060-80a154c04701"), typ: zhttp.TypeData, seq: 1, code: 200, reason: "OK",
		headers: []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}, {Name: "Content-Length", Value: "19"}, {Name: "Date", Value: "Sun, 22 Nov 2026 11:12:10 GMT"}},
		body:    []byte("hello from backend\n"), credits: -1}
	to := []byte("pushpin-proxy_4263")
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = r.appendPub(nil, to)
		}
	})
	b.Run("packet", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = zhttp.PubFrame(to, r.packet())
		}
	})
}
