package connmgr

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"tack/pkg/zhttp"
)

// wsClient is a raw RFC 6455 client on one connection (gobwas/ws frames).
type wsClient struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

// wsOpen sends a WebSocket handshake for path with extra header lines and
// returns the client and the first packet the fake server got.
func wsOpen(t testing.TB, h *harness, f *fakeServer, path string, extra ...string) (*wsClient, *zhttp.Packet) {
	t.Helper()
	c := dial(t, h)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n", path, strings.Join(extra, ""))
	p, _ := f.first()
	return &wsClient{t: t, c: c, br: bufio.NewReader(c)}, p
}

// wsAccept answers a first packet with a 101 granting credits, and checks
// the client's handshake response.
func wsAccept(t testing.TB, f *fakeServer, cl *wsClient, p *zhttp.Packet, credits int64, headers ...zhttp.Header) string {
	t.Helper()
	a := f.packet(p.ID, 0)
	a.Code, a.Reason, a.Headers, a.Credits = 101, "Switching Protocols", headers, credits
	f.send(a)
	head := readHead(t, cl.br)
	if !strings.HasPrefix(head, "HTTP/1.1 101 Switching Protocols\r\n") ||
		!strings.Contains(head, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n") {
		t.Fatalf("handshake response %q", head)
	}
	return head
}

func (w *wsClient) send(op ws.OpCode, fin bool, payload string) {
	w.t.Helper()
	if err := ws.WriteFrame(w.c, ws.MaskFrame(ws.NewFrame(op, fin, []byte(payload)))); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsClient) read() ws.Frame {
	w.t.Helper()
	f, err := ws.ReadFrame(w.br)
	if err != nil {
		w.t.Fatalf("reading frame: %v", err)
	}
	if f.Header.Masked {
		w.t.Fatalf("masked server frame")
	}
	return f
}

func (w *wsClient) expect(op ws.OpCode, fin bool, payload string) {
	w.t.Helper()
	f := w.read()
	if f.Header.OpCode != op || f.Header.Fin != fin || string(f.Payload) != payload {
		w.t.Fatalf("frame %+v %q, want op %d fin %v %q", f.Header, f.Payload, op, fin, payload)
	}
}

// expectClose reads a close frame with code and reason, then EOF.
func (w *wsClient) expectClose(code int, reason string) {
	w.t.Helper()
	f := w.read()
	if f.Header.OpCode != ws.OpClose || len(f.Payload) < 2 {
		w.t.Fatalf("frame %+v %q, want close %d", f.Header, f.Payload, code)
	}
	got, r := ws.ParseCloseFrameData(f.Payload)
	if int(got) != code || (reason != "" && r != reason) {
		w.t.Fatalf("close %d %q, want %d %q", got, r, code, reason)
	}
	w.expectEOF()
}

func (w *wsClient) expectEOF() {
	w.t.Helper()
	b, err := io.ReadAll(w.br)
	if (err != nil && !isReset(err)) || len(b) > 0 {
		w.t.Fatalf("after close: %q %v, want EOF", b, err)
	}
}

// wsData returns a server data packet.
func wsData(f *fakeServer, id []byte, seq int64, ctype, body string, more bool) *zhttp.Packet {
	p := f.packet(id, seq)
	p.ContentType, p.Body, p.More = ctype, []byte(body), more
	return p
}

func (f *fakeServer) expectData(id []byte, ctype, body string, more bool) {
	f.t.Helper()
	p := f.expectSkipping(id, zhttp.TypeData)
	if p.ContentType != ctype || string(p.Body) != body || p.More != more {
		f.t.Fatalf("data packet %q %q more=%v, want %q %q more=%v", p.ContentType, p.Body, p.More, ctype, body, more)
	}
}

// TestWSRelay: a WebSocket through the connection manager carries the
// handshake and every kind of frame both ways as condure does
// (zmq-wire.md §2.12, Captured §A.1).
func TestWSRelay(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws?x=1", "Sec-WebSocket-Protocol: chat\r\n")
	if p.Method != "GET" || p.URI != "ws://example.com/ws?x=1" || p.Stream || p.More || p.Seq != 0 ||
		p.Credits != int64(DefaultBufferSize) || p.PeerAddress != "127.0.0.1" || !p.Multi || string(p.From) != h.id {
		t.Fatalf("first packet %+v", p)
	}
	if v, _ := p.Header("Sec-WebSocket-Protocol"); v != "chat" {
		t.Fatalf("handshake headers not passed: %+v", p.Headers)
	}
	head := wsAccept(t, f, cl, p, 200000, hdr("Sec-WebSocket-Protocol", "chat", "Sec-WebSocket-Accept", "bogus")...)
	if !strings.Contains(head, "Sec-WebSocket-Protocol: chat\r\n") || strings.Contains(head, "bogus") {
		t.Fatalf("accept headers %q", head)
	}

	// Client → server: text, binary, a fragmented text message, ping, pong.
	cl.send(ws.OpText, true, "hello text")
	cl.send(ws.OpBinary, true, "\x00\x01bin")
	cl.send(ws.OpText, false, "frag1")
	if refBin == "" {
		// condure 1.9.1 cancels on an empty continuation frame or a ping
		// between fragments (both allowed by RFC 6455 §5.4).
		cl.send(ws.OpContinuation, false, "")
		cl.send(ws.OpPing, true, "mid-message ping")
	}
	cl.send(ws.OpContinuation, true, "frag2")
	cl.send(ws.OpPong, true, "pongdata")
	f.expectData(p.ID, "text", "hello text", false)
	f.expectData(p.ID, "binary", "\x00\x01bin", false)
	f.expectData(p.ID, "text", "frag1", true)
	if refBin == "" {
		if q := f.expectSkipping(p.ID, zhttp.TypePing); string(q.Body) != "mid-message ping" {
			t.Fatalf("ping %+v", q)
		}
	}
	f.expectData(p.ID, "text", "frag2", false)
	if q := f.expectSkipping(p.ID, zhttp.TypePong); string(q.Body) != "pongdata" {
		t.Fatalf("pong %+v", q)
	}

	// Server → client: text, binary, fragmented binary, ping, pong. The
	// client's ping was forwarded, not answered: the first frame the
	// client gets is the server's.
	seq := int64(1)
	next := func(q *zhttp.Packet) {
		q.Seq = seq
		seq++
		f.send(q)
	}
	next(wsData(f, p.ID, 0, "text", "server says hi", false))
	next(wsData(f, p.ID, 0, "binary", "\x01\x02", false))
	next(wsData(f, p.ID, 0, "binary", "ab", true))
	next(wsData(f, p.ID, 0, "binary", "cd", false))
	sp := f.packet(p.ID, 0)
	sp.Type, sp.Body = zhttp.TypePing, []byte("sp")
	next(sp)
	spo := f.packet(p.ID, 0)
	spo.Type = zhttp.TypePong
	next(spo)
	cl.expect(ws.OpText, true, "server says hi")
	cl.expect(ws.OpBinary, true, "\x01\x02")
	cl.expect(ws.OpBinary, false, "ab")
	cl.expect(ws.OpContinuation, true, "cd")
	cl.expect(ws.OpPing, true, "sp")
	cl.expect(ws.OpPong, true, "")
	// What reached the client is granted back as credits.
	granted := int64(0)
	for granted < 20 {
		granted += f.expectSkipping(p.ID, zhttp.TypeCredit).Credits
	}

	// The server closes with code and reason; the client answers.
	sc := f.packet(p.ID, 0)
	sc.Type, sc.Code, sc.Body = zhttp.TypeClose, 4000, []byte("bye now")
	next(sc)
	f0 := cl.read()
	if code, reason := ws.ParseCloseFrameData(f0.Payload); f0.Header.OpCode != ws.OpClose || code != 4000 || reason != "bye now" {
		t.Fatalf("close frame %+v %q", f0.Header, f0.Payload)
	}
	ws.WriteFrame(cl.c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "done"))))
	if q := f.expectSkipping(p.ID, zhttp.TypeClose); q.Code != 4000 || string(q.Body) != "done" {
		t.Fatalf("client close %+v", q)
	}
	cl.expectEOF()
	f.noStream(200 * time.Millisecond) // no cancel after a clean close
}

// TestWSClientClosesFirst: the client's close (code and reason) reaches
// the server, whose answer reaches the client, and the connection ends.
func TestWSClientClosesFirst(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 1000)
	ws.WriteFrame(cl.c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "client done"))))
	if q := f.expectSkipping(p.ID, zhttp.TypeClose); q.Code != 1000 || string(q.Body) != "client done" {
		t.Fatalf("client close %+v", q)
	}
	sc := f.packet(p.ID, 1)
	sc.Type, sc.Code, sc.Body = zhttp.TypeClose, 1000, []byte("ok")
	f.send(sc)
	cl.expectClose(1000, "ok")
	f.noStream(200 * time.Millisecond)
}

// TestWSRejected: a server's `rejected` error is the HTTP response the
// client gets.
func TestWSRejected(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	r := f.packet(p.ID, 0)
	r.Type, r.Condition = zhttp.TypeError, "rejected"
	r.Code, r.Reason, r.Headers, r.Body = 403, "Forbidden", hdr("Content-Type", "text/plain", "X-Why", "no"), []byte("go away\n")
	f.send(r)
	head, body := readHTTP(t, cl.br)
	if !strings.HasPrefix(head, "HTTP/1.1 403 Forbidden\r\n") || !strings.Contains(head, "X-Why: no\r\n") || body != "go away\n" {
		t.Fatalf("rejection %q %q", head, body)
	}
	cl.expectEOF()
}

// TestWSBadHandshake: a handshake we cannot accept is answered 400 and
// never reaches a server.
func TestWSBadHandshake(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure's answers to bad handshakes differ")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	c := dial(t, h)
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
	head, body := readHTTP(t, bufio.NewReader(c))
	if !strings.HasPrefix(head, "HTTP/1.1 400 ") || !strings.Contains(body, "Sec-WebSocket-Key") {
		t.Fatalf("%q %q", head, body)
	}
	select {
	case m := <-f.pull.Recv():
		t.Fatalf("bad handshake reached the server: %q", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestWSLargeMessages: a 5 MB message each way passes in pieces bounded
// by the credits: no piece exceeds --buffer-size, the client's message
// never runs ahead of what the server granted, and the server's pieces
// are granted back as they reach the client.
func TestWSLargeMessages(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	const size = 5 << 20
	const grant = 65536
	wsAccept(t, f, cl, p, grant)
	msg := bytes.Repeat([]byte("0123456789abcdef"), size/16)

	// Client → server, one 5 MB frame.
	go ws.WriteFrame(cl.c, ws.MaskFrame(ws.NewBinaryFrame(msg)))
	var got bytes.Buffer
	outstanding := int64(grant)
	seq := int64(1)
	for {
		q := f.expectSkipping(p.ID, zhttp.TypeData)
		if len(q.Body) > DefaultBufferSize || int64(len(q.Body)) > outstanding || q.ContentType != "binary" {
			t.Fatalf("piece of %d bytes (%q) with %d credits outstanding", len(q.Body), q.ContentType, outstanding)
		}
		outstanding -= int64(len(q.Body))
		got.Write(q.Body)
		if !q.More {
			break
		}
		if outstanding < grant/2 {
			c := f.packet(p.ID, seq)
			seq++
			c.Type, c.Credits = zhttp.TypeCredit, grant-outstanding
			f.send(c)
			outstanding = grant
		}
	}
	if !bytes.Equal(got.Bytes(), msg) {
		t.Fatalf("server got %d bytes, want the %d sent", got.Len(), len(msg))
	}

	// Server → client: 5 MB in pieces within the connection manager's
	// credits (8192 to start, then what it grants back).
	window := int64(DefaultBufferSize)
	done := make(chan error, 1)
	go func() {
		var rcv bytes.Buffer
		for {
			fr, err := ws.ReadFrame(cl.br)
			if err != nil {
				done <- err
				return
			}
			rcv.Write(fr.Payload)
			if fr.Header.Fin {
				break
			}
		}
		if !bytes.Equal(rcv.Bytes(), msg) {
			done <- fmt.Errorf("client got %d bytes, want %d", rcv.Len(), len(msg))
			return
		}
		done <- nil
	}()
	for off := 0; off < len(msg); {
		for window == 0 {
			window += f.expectSkipping(p.ID, zhttp.TypeCredit).Credits
		}
		n := min(int(window), len(msg)-off)
		f.send(wsData(f, p.ID, seq, "binary", string(msg[off:off+n]), off+n < len(msg)))
		seq++
		off += n
		window -= int64(n)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWSBadInput: each RFC 6455 violation ends only that connection, with
// its close code, and the server's session is cancelled; another
// WebSocket on the same connection manager carries on.
func TestWSBadInput(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure's close codes differ")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	other, po := wsOpen(t, h, f, "/other")
	wsAccept(t, f, other, po, 100000)
	long := strings.Repeat("x", 126)
	cases := []struct {
		name  string
		frame []byte
		code  int
	}{
		{"unmasked", ws.MustCompileFrame(ws.NewTextFrame([]byte("hi"))), 1002},
		{"bad utf-8", ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("ok \xc3\x28")))), 1007},
		{"bad utf-8 split over fragments", append(ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpText, false, []byte("a\xe2\x82")))),
			ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte("x"))))...), 1007},
		{"oversized ping", ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame([]byte(long)))), 1002},
		{"fragmented ping", ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpPing, false, nil))), 1002},
		{"reserved bits", ws.MustCompileFrame(ws.MaskFrame(ws.Frame{Header: ws.Header{Fin: true, Rsv: ws.Rsv(true, false, false), OpCode: ws.OpText, Length: 1}, Payload: []byte("x")})), 1002},
		{"unknown opcode", ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpCode(3), true, []byte("x")))), 1002},
		{"continuation first", ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte("x")))), 1002},
		{"bad close code", ws.MustCompileFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(999, "")))), 1002},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl, p := wsOpen(t, h, f, "/ws")
			cl.t = t
			wsAccept(t, f, cl, p, 100000)
			if _, err := cl.c.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			cl.expectClose(tc.code, "")
			for {
				// Pieces of the message before the bad byte were forwarded.
				if q, _, _ := f.stream(); q.Type == zhttp.TypeCancel {
					break
				}
			}
		})
	}
	other.send(ws.OpText, true, "still here")
	f.expectData(po.ID, "text", "still here", false)
	f.send(wsData(f, po.ID, 1, "text", "yes", false))
	other.expect(ws.OpText, true, "yes")
}

// TestWSHandoff: the proxy may hand a WebSocket session over (as an HTTP
// one): handoff-start is answered with handoff-proceed and the new owner's
// packets and the client's frames flow between them.
func TestWSHandoff(t *testing.T) {
	h := startConnmgr(t, nil)
	a := newFakeServer(t, h, "srv-a")
	a.warm()
	b := newFakeServer(t, h, "srv-b")
	cl, p := wsOpen(t, h, a, "/ws")
	wsAccept(t, a, cl, p, 10000)
	hs := a.packet(p.ID, 1)
	hs.Type = zhttp.TypeHandoffStart
	a.send(hs)
	a.expectSkipping(p.ID, zhttp.TypeHandoffProceed)
	cl.send(ws.OpText, true, "during handoff")
	ka := b.packet(p.ID, 2)
	ka.Type, ka.Credits = zhttp.TypeKeepAlive, 0
	b.send(ka)
	b.expectData(p.ID, "text", "during handoff", false)
	b.send(wsData(b, p.ID, 3, "text", "from b", false))
	cl.expect(ws.OpText, true, "from b")
	cl.send(ws.OpText, true, "to b")
	b.expectData(p.ID, "text", "to b", false)
}

// TestWSServerGone: WebSocket clients of a zhttp server that went away get
// close 1012 (service restart) at once, so they reconnect.
func TestWSServerGone(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure 1.9.1 waits for the 60 s session expiry")
	a := newFakeServer(t, h, "srv-a")
	a.warm()
	cl, p := wsOpen(t, h, a, "/ws")
	wsAccept(t, a, cl, p, 10000)
	gone := time.Now()
	a.close()
	cl.expectClose(1012, "")
	if d := time.Since(gone); d > 2*time.Second {
		t.Errorf("client of the gone server closed after %v", d)
	}
}

// TestWSCancelAndExpiry: a server cancel ends the client connection; a
// client that goes away cancels the session; a silent server's session
// expires as an HTTP one.
func TestWSCancelAndExpiry(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 10000)
	c := f.packet(p.ID, 1)
	c.Type = zhttp.TypeCancel
	f.send(c)
	cl.expectEOF()

	cl, p = wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 10000)
	cl.c.Close()
	f.expectSkipping(p.ID, zhttp.TypeCancel)

	if refBin != "" {
		return
	}
	cl, p = wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 10000)
	h.clock.Advance(46 * time.Second)
	f.expectSkipping(p.ID, zhttp.TypeKeepAlive)
	h.clock.Advance(61 * time.Second)
	cl.expectEOF()
}

// TestWSOverTLS: on a TLS listener the session is wss://, and frames of
// any size pass both ways (a TLS connection keeps its goroutine while
// idle and is woken by the engine for server messages).
func TestWSOverTLS(t *testing.T) {
	certs := t.TempDir()
	writeSelfSigned(t, certs, "default", "localhost", time.Now().Add(24*time.Hour), time.Now())
	h := startConnmgr(t, func(c *Config) {
		c.Listen = append(c.Listen, Listener{Addr: "127.0.0.1:0", Stream: true, TLS: true, DefaultCert: "default"})
		c.TLSIdentities = certs
	})
	h.tackOnly("in-process TLS listener")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	tc, err := tls.Dial("tcp", h.svc.Addrs()[1].String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(tc, "GET /wss HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	p, _ := f.first()
	if p.URI != "wss://example.com/wss" {
		t.Fatalf("uri %q", p.URI)
	}
	cl := &wsClient{t: t, c: tc, br: bufio.NewReader(tc)}
	wsAccept(t, f, cl, p, 1<<20)
	big := strings.Repeat("z", 200000)
	cl.send(ws.OpText, true, big)
	var got strings.Builder
	for got.Len() < len(big) {
		q := f.expectSkipping(p.ID, zhttp.TypeData)
		got.Write(q.Body)
		if !q.More {
			break
		}
	}
	if got.String() != big {
		t.Fatalf("server got %d bytes", got.Len())
	}
	time.Sleep(50 * time.Millisecond) // idle: the connection waits in its read
	f.send(wsData(f, p.ID, 1, "text", "pushed", false))
	cl.expect(ws.OpText, true, "pushed")
	cl.send(ws.OpText, true, "after")
	f.expectData(p.ID, "text", "after", false)
}

// TestWSShutdown: stopping the connection manager closes accepted
// WebSockets with 1001 (going away) and cancels their sessions.
func TestWSShutdown(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("in-process shutdown")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 1000)
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	cl.expectClose(1001, "")
	f.expectSkipping(p.ID, zhttp.TypeCancel)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

// TestWSServerOverCredits: a server sending more than the credits we
// granted is cancelled and the client connection closed (condure's
// BufferExceeded).
func TestWSServerOverCredits(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("the overdraft allowance is ours")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 1000)
	f.send(wsData(f, p.ID, 1, "binary", strings.Repeat("x", DefaultBufferSize+wsOverdraft+1), false))
	f.expectSkipping(p.ID, zhttp.TypeCancel)
	cl.expectEOF()
}

// TestWSOutboundQueueBound: a client that stops reading does not make us
// queue without bound: once its socket is full, at most maxQueuedFrames
// frames wait; beyond that the client is closed with 1011 and the
// session cancelled.
func TestWSOutboundQueueBound(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("the frame bound is ours")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 1000)
	// Fill the client's socket: send within our credits until no credit
	// comes back for a while (the connection is blocked writing).
	seq := int64(1)
	window := int64(DefaultBufferSize)
	chunk := strings.Repeat("y", 4096)
	for stalled := false; !stalled; {
		for window >= int64(len(chunk)) {
			f.send(wsData(f, p.ID, seq, "binary", chunk, false))
			seq++
			window -= int64(len(chunk))
		}
		select {
		case m := <-f.rtr.Recv():
			q, err := zhttp.Parse(m[2])
			if err != nil {
				t.Fatal(err)
			}
			if q.Type == zhttp.TypeCredit {
				window += q.Credits
			}
		case <-time.After(2 * time.Second):
			stalled = true
		}
	}
	// Empty messages cost no credits; more than the bound overflow.
	for i := range maxQueuedFrames + 10 {
		f.send(wsData(f, p.ID, seq, "text", "", false))
		seq++
		if i%100 == 99 {
			time.Sleep(20 * time.Millisecond) // stay under the PUB's HWM
		}
	}
	time.Sleep(200 * time.Millisecond)
	// The client reads again: what was written, then close 1011.
	cl.c.SetDeadline(time.Now().Add(30 * time.Second))
	closed := make(chan error, 1)
	go func() {
		for {
			fr, err := ws.ReadFrame(cl.br)
			if err != nil {
				closed <- err
				return
			}
			if fr.Header.OpCode == ws.OpClose {
				if code, _ := ws.ParseCloseFrameData(fr.Payload); code != closeInternal {
					closed <- fmt.Errorf("close code %d, want 1011", code)
					return
				}
				closed <- nil
				return
			}
		}
	}()
	deadline := time.After(30 * time.Second)
	for cancelled := false; !cancelled; {
		select {
		case m := <-f.rtr.Recv():
			q, err := zhttp.Parse(m[2])
			cancelled = err == nil && q.Type == zhttp.TypeCancel
		case <-deadline:
			t.Fatal("no cancel")
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := h.svc.overflows.total.Load(); n != 1 {
		t.Fatalf("overflow closes counted: %d, want 1", n)
	}
}

// TestWSCloseUnanswered: a client's close the server never answers ends
// the connection after wsCloseWait, cancelling the session.
func TestWSCloseUnanswered(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("our close wait")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 1000)
	ws.WriteFrame(cl.c, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, ""))))
	f.expectSkipping(p.ID, zhttp.TypeClose)
	start := time.Now()
	cl.expectEOF()
	if d := time.Since(start); d < wsCloseWait-time.Second || d > wsCloseWait+10*time.Second {
		t.Fatalf("closed after %v, want about %v", d, wsCloseWait)
	}
	f.expectSkipping(p.ID, zhttp.TypeCancel)
}

// deflateMsg compresses a whole message as a permessage-deflate sender
// without context takeover does.
func deflateMsg(t testing.TB, p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	w.Write(p)
	w.Flush()
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

func inflateMsg(t testing.TB, p []byte) string {
	t.Helper()
	b, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return string(b)
}

// TestWSCompression: with --compression a client's permessage-deflate
// offer is answered (no context takeover either way) and never reaches
// the server (grip and other extensions do); compressed client messages,
// whole or fragmented, arrive uncompressed within the credits, and the
// server's messages, whole or in pieces, are compressed.
func TestWSCompression(t *testing.T) {
	h := startConnmgr(t, func(c *Config) { c.Compression = true })
	h.tackOnly("condure 1.9.1 runs without --compression under Pushpin 1.36")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits, grip\r\n")
	if v, _ := p.Header("Sec-WebSocket-Extensions"); v != "grip" {
		t.Fatalf("extensions passed to the server: %q", v)
	}
	head := wsAccept(t, f, cl, p, 4096)
	if !strings.Contains(head, "Sec-WebSocket-Extensions: "+deflateAnswer+"\r\n") {
		t.Fatalf("no deflate answer in %q", head)
	}

	// Client → server: a compressed text message, then a large compressed
	// binary message in three frames with a ping in between.
	send := func(fr ws.Frame) {
		if err := ws.WriteFrame(cl.c, ws.MaskFrame(fr)); err != nil {
			t.Fatal(err)
		}
	}
	fr := ws.NewTextFrame(deflateMsg(t, []byte("hello hello hello")))
	fr.Header.Rsv = ws.Rsv(true, false, false)
	send(fr)
	f.expectData(p.ID, "text", "hello hello hello", false)

	big := bytes.Repeat([]byte("compressible "), 100000)
	z := deflateMsg(t, big)
	third := len(z) / 3
	fr = ws.NewFrame(ws.OpBinary, false, z[:third])
	fr.Header.Rsv = ws.Rsv(true, false, false)
	send(fr)
	send(ws.NewFrame(ws.OpContinuation, false, z[third:2*third]))
	send(ws.NewPingFrame([]byte("between")))
	send(ws.NewFrame(ws.OpContinuation, true, z[2*third:]))
	var got bytes.Buffer
	outstanding := int64(4096 - len("hello hello hello"))
	seq := int64(1)
	sawPing := false
	for {
		q, _, _ := f.stream()
		switch q.Type {
		case zhttp.TypePing:
			sawPing = true
			continue
		case zhttp.TypeData:
		default:
			continue
		}
		if int64(len(q.Body)) > outstanding || q.ContentType != "binary" {
			t.Fatalf("piece of %d bytes (%s) with %d credits", len(q.Body), q.ContentType, outstanding)
		}
		outstanding -= int64(len(q.Body))
		got.Write(q.Body)
		if !q.More {
			break
		}
		if outstanding < 2048 {
			c := f.packet(p.ID, seq)
			seq++
			c.Type, c.Credits = zhttp.TypeCredit, 4096-outstanding
			f.send(c)
			outstanding = 4096
		}
	}
	if !bytes.Equal(got.Bytes(), big) || !sawPing {
		t.Fatalf("server got %d bytes (want %d), ping %v", got.Len(), len(big), sawPing)
	}

	// Server → client: a whole message, then one in two pieces.
	f.send(wsData(f, p.ID, seq, "text", "server message server message", false))
	f.send(wsData(f, p.ID, seq+1, "binary", "part one ", true))
	f.send(wsData(f, p.ID, seq+2, "binary", "part two", false))
	m := cl.read()
	if r1, _, _ := ws.RsvBits(m.Header.Rsv); !r1 || m.Header.OpCode != ws.OpText || inflateMsg(t, m.Payload) != "server message server message" {
		t.Fatalf("compressed text frame %+v", m.Header)
	}
	m1, m2 := cl.read(), cl.read()
	r1, _, _ := ws.RsvBits(m1.Header.Rsv)
	r2, _, _ := ws.RsvBits(m2.Header.Rsv)
	if !r1 || r2 || m1.Header.Fin || !m2.Header.Fin || m2.Header.OpCode != ws.OpContinuation {
		t.Fatalf("fragmented compressed frames %+v %+v", m1.Header, m2.Header)
	}
	if s := inflateMsg(t, append(m1.Payload, m2.Payload...)); s != "part one part two" {
		t.Fatalf("inflated %q", s)
	}

	// Corrupt compressed data: 1007.
	fr = ws.NewBinaryFrame([]byte{0xff, 0xff, 0xff, 0xff})
	fr.Header.Rsv = ws.Rsv(true, false, false)
	send(fr)
	cl.expectClose(1007, "")
}

// TestWSStaleReadableEvent: the parker may report readability for bytes
// an earlier goroutine already read (its edge arrives after the detach).
// The resumed WebSocket must not block reading the client then: the
// server's next message still reaches the client at once.
func TestWSStaleReadableEvent(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("resumes a detached connection by hand")
	f := newFakeServer(t, h, "proxy_ws")
	f.warm()
	cl, p := wsOpen(t, h, f, "/ws")
	wsAccept(t, f, cl, p, 200000)
	cl.send(ws.OpText, true, "in")
	f.expectData(p.ID, "text", "in", false)

	detached := func() *conn {
		h.svc.connsMu.Lock()
		defer h.svc.connsMu.Unlock()
		for c := range h.svc.conns {
			c.mu.Lock()
			x := c.parkedX
			c.mu.Unlock()
			if x != nil {
				return c
			}
		}
		return nil
	}
	// A parker event that came while the goroutine ran keeps it parked
	// on the socket until something happens: a message then lets it
	// detach.
	seq := int64(1)
	var c *conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		for wait := time.Now().Add(time.Second); c == nil && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
			c = detached()
		}
		if c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection never detached")
		}
		f.send(wsData(f, p.ID, seq, "text", "nudge", false))
		seq++
		cl.expect(ws.OpText, true, "nudge")
	}
	c.wakeParked(resumeReadable) // no byte is waiting
	eventually(t, 5*time.Second, func() error {
		if detached() == nil {
			return fmt.Errorf("connection did not detach again")
		}
		return nil
	})
	f.send(wsData(f, p.ID, seq, "text", "out", false))
	cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	cl.expect(ws.OpText, true, "out")
}
