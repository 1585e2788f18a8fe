package zhttp

import (
	"bytes"
	"testing"
)

// benchPackets are a condure first request (§1.1) and a 16 KiB response
// body packet.
func benchPackets() []struct {
	name string
	p    *Packet
} {
	req := New()
	req.From, req.ID, req.Seq, req.Multi = []byte("condure"), []byte("0-0-0"), 0, true
	req.Method, req.URI = "GET", "http://127.0.0.1:18001/path/x?a=1&b=2"
	req.Headers = []Header{{"Host", "127.0.0.1:18001"}, {"User-Agent", "curl/7.88.1"}, {"Accept", "*/*"}, {"X-Foo", "bar"}}
	req.HasHeaders, req.Credits, req.Stream, req.PeerAddress, req.PeerPort = true, 8192, true, "127.0.0.1", 33144

	data := New()
	data.From, data.ID, data.Seq = []byte("pushpin-proxy_4263"), []byte("0-0-1"), 3
	data.Body, data.More = bytes.Repeat([]byte{'x'}, 16<<10), true
	return []struct {
		name string
		p    *Packet
	}{{"first-request", req}, {"data-16KiB", data}}
}

func BenchmarkEncode(b *testing.B) {
	for _, bp := range benchPackets() {
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bp.p.Encode())))
			buf := make([]byte, 0, 64<<10)
			for i := 0; i < b.N; i++ {
				buf = bp.p.Append(buf[:0])
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bp := range benchPackets() {
		enc := bp.p.Encode()
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for i := 0; i < b.N; i++ {
				if _, err := Parse(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRoundTrip is what a relaying service pays per packet: parse one,
// encode one.
func BenchmarkRoundTrip(b *testing.B) {
	for _, bp := range benchPackets() {
		enc := bp.p.Encode()
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			buf := make([]byte, 0, 64<<10)
			for i := 0; i < b.N; i++ {
				p, err := Parse(enc)
				if err != nil {
					b.Fatal(err)
				}
				buf = p.Append(buf[:0])
			}
		})
	}
}
