package zsock

import (
	"fmt"
	"testing"

	zmq "github.com/pebbe/zmq4"
)

// BenchmarkPushPull measures one-way throughput PUSH → PULL over ipc
// through both owner loops and channels.
func BenchmarkPushPull(b *testing.B) {
	for _, size := range []int{100, 16 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			c := newContext(b)
			ep := ipc(ipcDir(b), "bench")
			rs := startAll(b, c,
				Options{Name: "pull", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{ep}},
				Options{Name: "push", Type: zmq.PUSH, Direction: SendOnly, Connect: []string{ep}, SendTimeout: waitFor},
			)
			pull, push := rs[0].s, rs[1].s
			payload := make([]byte, size)
			push.Send() <- Message{payload} // connection set-up outside the timer
			<-pull.Recv()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range b.N {
					<-pull.Recv()
				}
			}()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				push.Send() <- Message{payload}
			}
			<-done
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkTwoWayRoundTrip measures one sequential DEALER → ROUTER → DEALER
// request/reply through two two-way owners (bounded by TwoWayPoll per hop).
func BenchmarkTwoWayRoundTrip(b *testing.B) {
	c := newContext(b)
	ep := ipc(ipcDir(b), "rt")
	echoServer(b, c, ep, 0)
	cli := start(b, open(b, c, Options{Name: "cli", Type: zmq.DEALER, Direction: TwoWay, Connect: []string{ep}}))
	req := Message{{}, make([]byte, 100)}
	cli.s.Send() <- req
	<-cli.s.Recv()
	b.SetBytes(100)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		cli.s.Send() <- req
		<-cli.s.Recv()
	}
}
