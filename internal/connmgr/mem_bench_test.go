package connmgr

import (
	"net"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// BenchmarkConnmgrHeldStreamMemory reports what one held streaming
// response costs the connection manager: heap and goroutine stack bytes
// per connection, measured after a GC with 2000 streams open. The
// clients are raw sockets (no netpoller, no goroutine) so that only the
// connection manager's side is counted. Run with -benchtime=1x.
func BenchmarkConnmgrHeldStreamMemory(b *testing.B) {
	const n = 2000
	h := startConnmgr(b, func(c *Config) { c.StreamMaxConn = n + 100 })
	f := newFakeServer(b, h, "proxy_mem")
	f.warm()
	port := h.svc.Addrs()[0].(*net.TCPAddr).Port
	open := func() int {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			b.Fatal(err)
		}
		if _, err := syscall.Write(fd, []byte("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			b.Fatal(err)
		}
		return fd
	}
	for range b.N {
		h0, s0 := testutil.HeapStack()
		fds := make([]int, 0, n)
		for range n {
			fds = append(fds, open())
			p, _ := f.first()
			f.respond(p.ID, 0, 200, hdr("Content-Type", "text/plain"), "[open]\n", true)
		}
		// Let every connection write its head and settle in its wait.
		buf := make([]byte, 512)
		for _, fd := range fds {
			if _, err := syscall.Read(fd, buf); err != nil {
				b.Fatal(err)
			}
		}
		eventually(b, waitFor, func() error { return nil })
		h1, s1 := testutil.HeapStack()
		b.ReportMetric(float64(h1-h0)/n, "heap-B/stream")
		b.ReportMetric(float64(s1-s0)/n, "stack-B/stream")
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}

// BenchmarkConnmgrIdleWebSocketMemory reports what one idle WebSocket
// (accepted, no traffic) costs the connection manager, as
// BenchmarkConnmgrHeldStreamMemory does for held streams.
// TACK_HEAPPROFILE=<file> also writes a heap profile of that moment
// (every allocation sampled). Run with -benchtime=1x.
func BenchmarkConnmgrIdleWebSocketMemory(b *testing.B) {
	testutil.SampleAllocations()
	const n = 2000
	h := startConnmgr(b, func(c *Config) { c.StreamMaxConn = n + 100 })
	f := newFakeServer(b, h, "proxy_mem")
	f.warm()
	port := h.svc.Addrs()[0].(*net.TCPAddr).Port
	open := func() int {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			b.Fatal(err)
		}
		hs := "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
		if _, err := syscall.Write(fd, []byte(hs)); err != nil {
			b.Fatal(err)
		}
		return fd
	}
	for range b.N {
		h0, s0 := testutil.HeapStack()
		fds := make([]int, 0, n)
		for range n {
			fds = append(fds, open())
			p, _ := f.first()
			a := f.packet(p.ID, 0)
			a.Code, a.Credits = 101, 200000
			f.send(a)
		}
		buf := make([]byte, 512)
		for _, fd := range fds {
			if _, err := syscall.Read(fd, buf); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(200 * time.Millisecond) // let every connection detach
		h1, s1 := testutil.HeapStack()
		b.ReportMetric(float64(h1-h0)/n, "heap-B/ws")
		b.ReportMetric(float64(s1-s0)/n, "stack-B/ws")
		testutil.WriteHeapProfile(b)
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}
