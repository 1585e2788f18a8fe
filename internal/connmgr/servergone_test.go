package connmgr

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"tack/pkg/zhttp"
)

// expectSkipping returns the next stream packet of type typ for session id,
// skipping credits and keep-alives (which the ticks send as they please).
func (f *fakeServer) expectSkipping(id []byte, typ string) *zhttp.Packet {
	f.t.Helper()
	for {
		p, _, _ := f.stream()
		ids := []zhttp.IDSeq{{ID: p.ID}}
		if p.IDs != nil {
			ids = p.IDs
		}
		for _, e := range ids {
			if string(e.ID) == string(id) && p.Type == typ {
				return p
			}
		}
		if p.Type != zhttp.TypeCredit && p.Type != zhttp.TypeKeepAlive {
			f.t.Fatalf("stream packet %+v while waiting for %s", p, typ)
		}
	}
}

// readExactly reads len(want) bytes and compares them.
func readExactly(t *testing.T, br *bufio.Reader, want string) {
	t.Helper()
	b := make([]byte, len(want))
	if _, err := io.ReadFull(br, b); err != nil || string(b) != want {
		t.Fatalf("read %q (%v), want %q", b, err, want)
	}
}

// TestServerGoneEndsItsSessions: when a zhttp server disconnects (its
// process died), connmgr ends its sessions within a second (doc.go, "A
// zhttp server that goes away") and leaves those of live servers alone.
func TestServerGoneEndsItsSessions(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure 1.9.1 waits for the 60 s session expiry")
	a := newFakeServer(t, h, "srv-a")
	a.warm()
	open := func(path string) (net.Conn, *bufio.Reader, *zhttp.Packet) {
		c := dial(t, h)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		p, _ := a.first()
		if p.URI != "http://x"+path {
			t.Fatalf("first packet for %s", p.URI)
		}
		return c, bufio.NewReader(c), p
	}

	// Taken by a, nothing answered yet (a request being worked on).
	_, brWait, pWait := open("/wait")
	ka := a.packet(pWait.ID, 0)
	ka.Type = zhttp.TypeKeepAlive
	a.send(ka)
	// A response a is proxying: head and part of the body sent.
	_, brPass, pPass := open("/pass")
	a.respond(pPass.ID, 0, 200, hdr("Content-Type", "text/plain"), "part", true)
	if head := readHead(t, brPass); !strings.Contains(head, "Transfer-Encoding: chunked") {
		t.Fatalf("head %q", head)
	}
	readExactly(t, brPass, "4\r\npart\r\n")
	// A stream a hands off to b (a GRIP hold taken over by the handler).
	_, brHeld, pHeld := open("/held")
	a.respond(pHeld.ID, 0, 200, hdr("Content-Type", "text/plain"), "open\n", true)
	readHead(t, brHeld)
	readExactly(t, brHeld, "5\r\nopen\n\r\n")
	b := newFakeServer(t, h, "srv-b")
	hs := a.packet(pHeld.ID, 1)
	hs.Type = zhttp.TypeHandoffStart
	a.send(hs)
	a.expectSkipping(pHeld.ID, zhttp.TypeHandoffProceed)
	more := b.packet(pHeld.ID, 2)
	more.Body, more.More = []byte("more\n"), true
	b.send(more)
	readExactly(t, brHeld, "5\r\nmore\n\r\n")

	// a goes away.
	gone := time.Now()
	a.close()
	head, body := readHTTP(t, brWait)
	if !strings.HasPrefix(head, "HTTP/1.1 502 ") || body != msgServerGone {
		t.Errorf("request a was working on: %q %q, want a 502", head, body)
	}
	// The cut body must not look complete: no final chunk.
	expectClosed(t, brPass, "")
	if d := time.Since(gone); d > 2*time.Second {
		t.Errorf("clients of the gone server ended after %v", d)
	}

	// b's session is untouched; b got a probe.
	b.expectSkipping(pHeld.ID, zhttp.TypeKeepAlive)
	more = b.packet(pHeld.ID, 3)
	more.Body, more.More = []byte("still\n"), true
	b.send(more)
	readExactly(t, brHeld, "6\r\nstill\n\r\n")

	// b goes away: the hold it took over ends with the final chunk, and
	// the connection serves the next request.
	b.close()
	readExactly(t, brHeld, "0\r\n\r\n")
}
