package interop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsBackend is an origin with three WebSocket paths: /echo (frame by frame
// echo; "close-me" makes it close with 4001), /reject (403 with a body)
// and /grip (accepts the grip extension, subscribes to channel x).
type wsBackend struct {
	addr string

	mu         sync.Mutex
	closes     []string // "code reason" of client closes the echo saw
	gripOffers []string // Sec-WebSocket-Extensions offered to /grip
	gripSigs   int      // /grip requests with Grip-Sig
}

func newWSBackend(t *testing.T) *wsBackend {
	t.Helper()
	b := &wsBackend{}
	mux := http.NewServeMux()
	mux.HandleFunc("/reject", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "forbidden here\n")
	})
	mux.HandleFunc("/sub/", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		b.echo(conn)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		b.echo(conn)
	})
	mux.HandleFunc("/drop", func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		// Gone without a close frame once the first message arrives.
		wsutil.ReadClientData(conn)
		conn.Close()
	})
	mux.HandleFunc("/grip", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.gripOffers = append(b.gripOffers, r.Header.Get("Sec-WebSocket-Extensions"))
		if r.Header.Get("Grip-Sig") != "" {
			b.gripSigs++
		}
		b.mu.Unlock()
		u := ws.HTTPUpgrader{Header: http.Header{"Sec-WebSocket-Extensions": {"grip"}}}
		conn, _, _, err := u.Upgrade(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		channel := r.URL.Query().Get("channel")
		if err := wsutil.WriteServerText(conn, []byte(`c:{"type":"subscribe","channel":"`+channel+`"}`)); err != nil {
			return
		}
		if ctl := r.URL.Query().Get("control"); ctl != "" {
			if err := wsutil.WriteServerText(conn, []byte("c:"+ctl)); err != nil {
				return
			}
		}
		if err := wsutil.WriteServerText(conn, []byte("m:subscribed")); err != nil {
			return
		}
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(conn, op, append([]byte("m:echo:"), msg...)); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b.addr = strings.TrimPrefix(srv.URL, "http://")
	return b
}

// echo returns every frame as it came (fragments stay fragments).
func (b *wsBackend) echo(conn net.Conn) {
	for {
		f, err := ws.ReadFrame(conn)
		if err != nil {
			return
		}
		if f.Header.Masked {
			ws.Cipher(f.Payload, f.Header.Mask, 0)
			f.Header.Masked = false
		}
		switch f.Header.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			b.mu.Lock()
			b.closes = append(b.closes, fmt.Sprintf("%d %s", code, reason))
			b.mu.Unlock()
			ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
			return
		case ws.OpPing:
			ws.WriteFrame(conn, ws.NewPongFrame(f.Payload))
		case ws.OpPong:
		default:
			if string(f.Payload) == "close-me" {
				ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(4001, "server bye")))
				continue
			}
			if err := ws.WriteFrame(conn, ws.Frame{Header: ws.Header{Fin: f.Header.Fin, OpCode: f.Header.OpCode, Length: int64(len(f.Payload))}, Payload: f.Payload}); err != nil {
				return
			}
		}
	}
}

func (b *wsBackend) clientCloses() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.closes...)
}

// wsDial connects a WebSocket client; on a non-101 answer it returns the
// status and body in the error.
func wsDial(t *testing.T, url string) (net.Conn, error) {
	t.Helper()
	var rejected error
	d := ws.Dialer{Timeout: 10 * time.Second, OnStatusError: func(status int, reason []byte, resp io.Reader) {
		body, _ := io.ReadAll(io.LimitReader(resp, 1<<16))
		if i := bytes.Index(body, []byte("\r\n\r\n")); i >= 0 {
			body = body[i+4:]
		}
		rejected = fmt.Errorf("status %d body %q", status, body)
	}}
	conn, br, _, err := d.Dial(context.Background(), url)
	if rejected != nil {
		return nil, rejected
	}
	if err != nil {
		return nil, err
	}
	if br != nil {
		// Frames the server sent with its 101 are in br.
		return &bufConn{Conn: conn, r: br}, nil
	}
	return conn, nil
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// readMsg reads one message (answering pings and a close itself).
func readMsg(t *testing.T, conn net.Conn) ([]byte, ws.OpCode, error) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	return wsutil.ReadServerData(conn)
}

// readClose reads frames until a close and returns its code and reason.
func readClose(t *testing.T, conn net.Conn) (ws.StatusCode, string) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		f, err := ws.ReadFrame(conn)
		if err != nil {
			t.Fatalf("reading for a close: %v", err)
		}
		if f.Header.OpCode == ws.OpClose {
			return ws.ParseCloseFrameData(f.Payload)
		}
	}
}

func writeMasked(t *testing.T, conn net.Conn, f ws.Frame) {
	t.Helper()
	if err := ws.WriteFrame(conn, ws.MaskFrameInPlace(f)); err != nil {
		t.Fatal(err)
	}
}

// TestInteropProxyWebSocketsWithPushpin runs tack-proxy in place of
// pushpin-proxy with the real condure, zurl and pushpin-handler: plain
// WebSocket relay, a rejection, and GRIP over WebSocket with publishes
// through the real handler's ws-control sockets.
func TestInteropProxyWebSocketsWithPushpin(t *testing.T) {
	requirePushpin(t)
	be := newWSBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "*,path_beg=/sub/ "+be.addr+",sub=implicit\n* "+be.addr+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")})
	d.startPushpin(t, conf, links)
	base := fmt.Sprintf("ws://127.0.0.1:%d", d.httpPort)
	var conn net.Conn
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err = wsDial(t, base+"/echo"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer conn.Close()

	t.Run("echo", func(t *testing.T) {
		if err := wsutil.WriteClientText(conn, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if msg, op, err := readMsg(t, conn); err != nil || op != ws.OpText || string(msg) != "hello" {
			t.Fatalf("text echo %q %v %v", msg, op, err)
		}
		bin := []byte{0, 1, 2, 255}
		if err := wsutil.WriteClientBinary(conn, bin); err != nil {
			t.Fatal(err)
		}
		if msg, op, err := readMsg(t, conn); err != nil || op != ws.OpBinary || !bytes.Equal(msg, bin) {
			t.Fatalf("binary echo %q %v %v", msg, op, err)
		}
		// A fragmented message comes back whole.
		writeMasked(t, conn, ws.NewFrame(ws.OpText, false, []byte("frag-one,")))
		writeMasked(t, conn, ws.NewFrame(ws.OpContinuation, true, []byte("frag-two")))
		if msg, _, err := readMsg(t, conn); err != nil || string(msg) != "frag-one,frag-two" {
			t.Fatalf("fragmented echo %q %v", msg, err)
		}
		// A 5 MB message each way (Pushpin 1.36 fails over 200 kB).
		big := bytes.Repeat([]byte("0123456789abcdef"), 5<<16)
		go wsutil.WriteClientBinary(conn, big)
		if msg, _, err := readMsg(t, conn); err != nil || !bytes.Equal(msg, big) {
			t.Fatalf("5 MB echo: %d bytes, %v", len(msg), err)
		}
	})

	t.Run("client close", func(t *testing.T) {
		writeMasked(t, conn, ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "client bye")))
		code, reason := readClose(t, conn)
		if code != 4000 || reason != "client bye" {
			t.Fatalf("close answer %d %q", code, reason)
		}
		if got := be.clientCloses(); len(got) != 1 || got[0] != "4000 client bye" {
			t.Fatalf("backend saw closes %q", got)
		}
	})

	t.Run("backend close", func(t *testing.T) {
		c, err := wsDial(t, base+"/echo")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wsutil.WriteClientText(c, []byte("close-me"))
		code, reason := readClose(t, c)
		if code != 4001 || reason != "server bye" {
			t.Fatalf("close %d %q", code, reason)
		}
	})

	t.Run("backend drops", func(t *testing.T) {
		c, err := wsDial(t, base+"/drop")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wsutil.WriteClientText(c, []byte("bye"))
		// Pushpin 1.36 drops the client without a close frame here;
		// tack-proxy tells it why with 1011.
		if code, _ := readClose(t, c); code != 1011 {
			t.Fatalf("close code %d, want 1011", code)
		}
	})

	t.Run("rejection", func(t *testing.T) {
		_, err := wsDial(t, base+"/reject")
		if err == nil || !strings.Contains(err.Error(), "status 403") || !strings.Contains(err.Error(), "forbidden here") {
			t.Fatalf("dial /reject: %v", err)
		}
	})

	t.Run("grip", func(t *testing.T) {
		c, msgs := openGripClient(t, d, base+"/grip?channel=x")
		defer c.Close()
		// The grip extension and signature reached the backend.
		be.mu.Lock()
		offer, sigs := be.gripOffers[len(be.gripOffers)-1], be.gripSigs
		be.mu.Unlock()
		if offer != "grip" || sigs == 0 {
			t.Fatalf("backend offered %q, %d Grip-Sig", offer, sigs)
		}
		// Client messages reach the backend unchanged; the backend's
		// prefixed answer loses its prefix.
		wsutil.WriteClientText(c, []byte("hi"))
		if m := nextMsg(t, msgs); m != "echo:hi" {
			t.Fatalf("got %q", m)
		}
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"second"}}}]}`)
		if m := nextMsg(t, msgs); m != "second" {
			t.Fatalf("got %q", m)
		}
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"action":"close","code":4005,"reason":"bye pub"}}}]}`)
		select {
		case m := <-msgs:
			if m != "close 4005 bye pub" {
				t.Fatalf("got %q, want the publish close", m)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no close after the close publish")
		}
	})

	t.Run("grip fan-out", func(t *testing.T) {
		// One publish of three messages to six connections: the real
		// handler sends them in one ws-control packet, which tack-proxy
		// passes to the real condure as list-form (multi-id) packets.
		var all []<-chan string
		for range 6 {
			c, msgs := openGripClient(t, d, base+"/grip?channel=x")
			defer c.Close()
			all = append(all, msgs)
		}
		time.Sleep(300 * time.Millisecond)
		for _, msgs := range all {
			for len(msgs) > 0 {
				if m := <-msgs; m != "first" {
					t.Fatalf("got %q before the fan-out publish", m)
				}
			}
		}
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"m1"}}},`+
			`{"channel":"x","formats":{"ws-message":{"content":"m2"}}},{"channel":"x","formats":{"ws-message":{"content":"m3"}}}]}`)
		for i, msgs := range all {
			for _, want := range []string{"m1", "m2", "m3"} {
				if m := nextMsg(t, msgs); m != want {
					t.Fatalf("connection %d: got %q, want %q", i, m, want)
				}
			}
		}
	})

	t.Run("grip keep-alive", func(t *testing.T) {
		// The proxy runs the timer and asks the handler (need-keep-alive),
		// whose keep-alive message then reaches the client.
		c, msgs := openGripClient(t, d, base+"/grip?channel=x&control="+url.QueryEscape(`{"type":"keep-alive","content":"ka","timeout":2,"mode":"interval"}`))
		defer c.Close()
		for range 2 {
			if m := nextMsg(t, msgs); m != "ka" {
				t.Fatalf("got %q, want the keep-alive", m)
			}
		}
	})

	t.Run("grip detach", func(t *testing.T) {
		c, msgs := openGripClient(t, d, base+"/grip?channel=x&control="+url.QueryEscape(`{"type":"detach"}`))
		defer c.Close()
		// The backend is gone: client messages are dropped, publishes
		// still arrive.
		wsutil.WriteClientText(c, []byte("to nobody"))
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"after detach"}}}]}`)
		if m := nextMsg(t, msgs); m != "after detach" {
			t.Fatalf("got %q", m)
		}
	})

	t.Run("sub target", func(t *testing.T) {
		c, err := wsDial(t, base+"/sub/echo")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wsutil.WriteClientText(c, []byte("plain"))
		if msg, _, err := readMsg(t, c); err != nil || string(msg) != "plain" {
			t.Fatalf("echo %q %v", msg, err)
		}
		got := make(chan string, 4)
		go func() {
			for {
				msg, _, err := wsutil.ReadServerData(c)
				if err != nil {
					return
				}
				got <- string(msg)
			}
		}()
		deadline := time.Now().Add(20 * time.Second)
		for {
			d.publish(t, `{"items":[{"channel":"implicit","formats":{"ws-message":{"content":"implicit pub"}}}]}`)
			select {
			case m := <-got:
				if m != "implicit pub" {
					t.Fatalf("got %q", m)
				}
				return
			case <-time.After(300 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("publish to the sub= channel never arrived")
			}
		}
	})
}

// openGripClient connects to a GRIP path and publishes to channel x until
// a publish arrives (the subscription goes through the handler first); it
// returns the connection and a channel of its next messages ("close <code>
// <reason>" for the close).
func openGripClient(t *testing.T, d *deployment, url string) (net.Conn, <-chan string) {
	t.Helper()
	c, err := wsDial(t, url)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 16)
	go func() {
		defer close(msgs)
		for {
			c.SetReadDeadline(time.Now().Add(60 * time.Second))
			msg, _, err := wsutil.ReadServerData(c)
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				msgs <- fmt.Sprintf("close %d %s", ce.Code, ce.Reason)
				return
			}
			if err != nil {
				return
			}
			msgs <- string(msg)
		}
	}()
	if m := nextMsg(t, msgs); m != "subscribed" {
		t.Fatalf("first message %q", m)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"first"}}}]}`)
		select {
		case m := <-msgs:
			if m == "ka" {
				continue // a keep-alive subtest's message
			}
			if m != "first" {
				t.Fatalf("got %q, want the publish", m)
			}
			// Later duplicates of the warm-up publish are drained.
			time.Sleep(300 * time.Millisecond)
			for len(msgs) > 0 {
				if m := <-msgs; m != "first" && m != "ka" {
					t.Fatalf("got %q", m)
				}
			}
			return c, msgs
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("publish never reached the GRIP WebSocket")
		}
	}
}

func nextMsg(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatal("connection ended")
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no message")
	}
	return ""
}
