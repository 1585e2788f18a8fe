package handler

import (
	"fmt"
	"testing"

	"github.com/rs/zerolog"

	"tack/internal/grip"
	"tack/internal/zsock"
	"tack/pkg/wscontrol"
)

// BenchmarkEngineDeliverStream publishes one http-stream item to a channel
// with many held sessions, engine only (the PUB queue is a channel that
// the benchmark drains).
func BenchmarkEngineDeliverStream(b *testing.B) {
	for _, n := range []int{100, 10000} {
		for _, size := range []int{16, 4096} {
			b.Run(fmt.Sprintf("sessions=%d/bytes=%d", n, size), func(b *testing.B) {
				clk := newHClock()
				e := newEngine(Config{InstanceID: "handler_bench", clock: clk}, zerolog.Nop(), nil, nil)
				out := make(chan zsock.Message, n+16)
				e.out.connmgr = out
				in, err := grip.Parse(200, "OK", []grip.Header{{Name: "Grip-Hold", Value: "stream"}, {Name: "Grip-Channel", Value: "c"}}, nil, grip.ParseOptions{})
				if err != nil {
					b.Fatal(err)
				}
				a := &acceptData{Instruct: in}
				for i := 0; i < n; i++ {
					a.Requests = append(a.Requests, requestState{Sender: []byte("condure"), ID: []byte(fmt.Sprintf("0-0-%x", i)),
						OutSeq: 2, InSeq: 2, OutCredits: 1 << 40, ResponseCode: -1})
				}
				e.accept(a, clk.Now())
				for len(out) > 0 {
					<-out
				}
				it := grip.Item{Channel: "c", Size: -1, HTTPStream: &grip.HTTPStreamFormat{Content: make([]byte, size)}}
				b.ReportAllocs()
				b.SetBytes(int64(size * n))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					e.publishItem(&it, clk.Now())
					for len(out) > 0 {
						<-out
					}
				}
			})
		}
	}
}

// BenchmarkEngineDeliverWS publishes one ws-message item to a channel
// with many WebSocket sessions, engine only: deliveries and the packets
// for the proxy, encoded (the ws-control queue is a channel that the
// benchmark drains).
func BenchmarkEngineDeliverWS(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			clk := newHClock()
			e := newEngine(Config{InstanceID: "handler_bench", clock: clk}, zerolog.Nop(), nil, nil)
			out := make(chan zsock.Message, n+16)
			e.ws.out = out
			for i := 0; i < n; i++ {
				cid := []byte(fmt.Sprintf("%08x-0000-4000-8000-000000000000", i))
				here := wscontrol.NewItem(cid, wscontrol.TypeHere)
				e.wsItem(&here, clk.Now())
				sub := wscontrol.NewItem(cid, wscontrol.TypeSubscribe)
				sub.Channel = "c"
				e.wsItem(&sub, clk.Now())
			}
			e.wsFlush()
			it := pubWS("c", "a published message of moderate size")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.publishItem(&it, clk.Now())
				e.wsFlush()
				for len(out) > 0 {
					<-out
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
