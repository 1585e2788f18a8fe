package zhttpclient

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// BenchmarkZHTTPClientIdleWebSocketMemory reports what one idle WebSocket
// (opened, no traffic) costs the zhttp client: heap and goroutine stack
// bytes per session, measured after a GC with 2000 sessions open. The
// backend is one goroutine on raw sockets (no netpoller, no goroutine per
// connection) so that only the zhttp client's side is counted.
// TACK_HEAPPROFILE=<file> also writes a heap profile of that moment (every
// allocation sampled). Run with -benchtime=1x.
func BenchmarkZHTTPClientIdleWebSocketMemory(b *testing.B) {
	const n = 2000
	needInProcess(b, "measures the service's own heap")
	testutil.SampleAllocations()
	tg := startTarget(b, nil)
	c := newFakeClient(b, tg)
	be := startRawWSBackend(b)
	for it := range b.N {
		h0, s0 := testutil.HeapStack()
		for i := range n {
			id := fmt.Sprintf("mem-%d-%d", it, i)
			c.wsRequest(id, fmt.Sprintf("ws://127.0.0.1:%d/ws", be.port), 100000, nil)
			if p := c.next(id); p.Code != 101 {
				b.Fatalf("%s: accept = %+v", id, p)
			}
			delete(c.queued, id) // the fake client's bookkeeping is not measured
			delete(c.raw, id)
		}
		time.Sleep(200 * time.Millisecond) // let every session park
		h1, s1 := testutil.HeapStack()
		b.ReportMetric(float64(h1-h0)/n, "heap-B/ws")
		b.ReportMetric(float64(s1-s0)/n, "stack-B/ws")
		testutil.WriteHeapProfile(b)
	}
}

// rawWSBackend accepts WebSocket handshakes on a blocking socket in one
// goroutine and keeps the connections open without reading them.
type rawWSBackend struct {
	port int
}

func startRawWSBackend(b *testing.B) *rawWSBackend {
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Listen(lfd, 1024); err != nil {
		b.Fatal(err)
	}
	sa, err := syscall.Getsockname(lfd)
	if err != nil {
		b.Fatal(err)
	}
	be := &rawWSBackend{port: sa.(*syscall.SockaddrInet4).Port}
	done := make(chan struct{})
	var fds []int
	go func() {
		defer close(done)
		for {
			fd, _, err := syscall.Accept(lfd)
			if err != nil {
				return // the listener was shut down
			}
			fds = append(fds, fd)
			if err := rawWSAccept(fd); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	b.Cleanup(func() {
		syscall.Shutdown(lfd, syscall.SHUT_RDWR)
		<-done
		syscall.Close(lfd)
		for _, fd := range fds {
			syscall.Close(fd)
		}
	})
	return be
}

// rawWSAccept reads a handshake request from fd and answers it with a 101.
func rawWSAccept(fd int) error {
	var req []byte
	buf := make([]byte, 1024)
	for !bytes.Contains(req, []byte("\r\n\r\n")) {
		k, err := syscall.Read(fd, buf)
		if err != nil || k <= 0 {
			return fmt.Errorf("reading the handshake: %v", err)
		}
		req = append(req, buf[:k]...)
	}
	var key []byte
	for _, line := range bytes.Split(req, []byte("\r\n")) {
		if name, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Sec-WebSocket-Key")) {
			key = bytes.TrimSpace(v)
		}
	}
	sum := sha1.Sum(append(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	_, err := syscall.Write(fd, []byte(resp))
	return err
}
