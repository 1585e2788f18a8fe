package connmgr

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/zhttp"
)

// BenchmarkConnmgrKeepAliveGET measures one request/response round trip
// through the connection manager on a keep-alive connection. The fake
// server is a bare PULL + XPUB owned by the benchmark goroutine (zsock's
// two-way poll would add its own latency).
func BenchmarkConnmgrKeepAliveGET(b *testing.B) {
	for _, size := range []int{16, 4096} {
		b.Run(fmt.Sprintf("body=%d", size), func(b *testing.B) {
			h := startConnmgr(b, nil)
			out, _, in, _ := StreamSpecs(h.base)
			zctx, err := zmq.NewContext()
			if err != nil {
				b.Fatal(err)
			}
			defer zctx.Term()
			pull, _ := zctx.NewSocket(zmq.PULL)
			defer pull.Close()
			pub, _ := zctx.NewSocket(zmq.XPUB)
			defer pub.Close()
			pull.SetLinger(0)
			pub.SetLinger(0)
			if err := pull.Connect(out); err != nil {
				b.Fatal(err)
			}
			if err := pub.Connect(in); err != nil {
				b.Fatal(err)
			}
			if _, err := pub.RecvBytes(0); err != nil { // the SUB's subscription
				b.Fatal(err)
			}
			pull.SetRcvtimeo(time.Second)
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			body := make([]byte, size)
			roundTrip := func() (string, error) {
				fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				m, err := pull.RecvBytes(0)
				if err == nil {
					p, _ := zhttp.Parse(m)
					r := zhttp.New()
					r.From, r.ID, r.Seq = []byte("proxy_bench"), p.ID, 0
					r.Code, r.Reason, r.Body = 200, "OK", body
					if _, err := pub.SendBytes(zhttp.PubFrame([]byte(h.id), r), 0); err != nil {
						b.Fatal(err)
					}
				}
				status, _ := br.ReadString('\n')
				n := 0
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return "", err
					}
					if line == "\r\n" {
						break
					}
					fmt.Sscanf(line, "Content-Length: %d", &n)
				}
				_, err = br.Discard(n)
				return status, err
			}
			for { // until the PUSH has its peer (503 before)
				status, err := roundTrip()
				if err != nil {
					b.Fatal(err)
				}
				if strings.Contains(status, " 200 ") {
					break
				}
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for range b.N {
				if _, err := roundTrip(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
