package zhttpclient

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tack/pkg/zhttp"
)

// BenchmarkZHTTPClientProxy measures requests through the service with 64
// in flight, against the same backend driven directly by net/http with the
// same concurrency ("direct"): the ratio is the share of the backend's own
// throughput this hop keeps.
func BenchmarkZHTTPClientProxy(b *testing.B) {
	for _, size := range []int{19, 16 << 10, 256 << 10} {
		body := make([]byte, size)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(size))
			w.Write(body)
		}))
		const inflight = 64
		b.Run(fmt.Sprintf("direct/%d", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			tr := &http.Transport{MaxIdleConnsPerHost: inflight, DisableCompression: true}
			cl := &http.Client{Transport: tr}
			var n atomic.Int64
			var wg sync.WaitGroup
			start := time.Now()
			for range inflight {
				wg.Go(func() {
					for n.Add(1) <= int64(b.N) {
						resp, err := cl.Get(srv.URL + "/x")
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			tr.CloseIdleConnections()
		})
		b.Run(fmt.Sprintf("zhttp/%d", size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			c := newFakeClient(b, startTarget(b, nil))
			b.ResetTimer()
			start := time.Now()
			sent, done := 0, 0
			seqs := map[string]int64{}
			send := func() {
				p := c.newRequest(strconv.Itoa(sent), "GET", srv.URL+"/x")
				c.request(p)
				sent++
			}
			for sent < min(inflight, b.N) {
				send()
			}
			for done < b.N {
				m := <-c.sub.Recv()
				_, payload, _ := zhttp.SplitPubFrame(m[0])
				p, err := zhttp.Parse(payload)
				if err != nil {
					b.Fatal(err)
				}
				if p.Type == zhttp.TypeData && p.More && len(p.Body) > 0 {
					// Hand the credits back as a proxy does once it has
					// written the body to its client.
					id := string(p.ID)
					seqs[id]++
					cp := zhttp.New()
					cp.ID, cp.Seq, cp.Type, cp.Credits = p.ID, seqs[id], zhttp.TypeCredit, int64(len(p.Body))
					c.follow(cp)
				}
				if p.Type == zhttp.TypeData && !p.More || p.Type == zhttp.TypeError {
					if p.Type == zhttp.TypeError {
						b.Fatalf("error %s", p.Condition)
					}
					done++
					if sent < b.N {
						send()
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
		srv.Close()
	}
}
