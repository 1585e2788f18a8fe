package interop

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// newWSBackend is a WebSocket origin: /echo echoes messages, closes with
// 4001 "backend bye" when asked ("close-me") and answers a client's close
// with its code and "echo: <reason>"; /forbidden rejects with 403 and a
// body; /grip accepts the GRIP extension and subscribes the connection to
// channel x; anything else is a plain 200. The close frames it receives
// are reported as "code reason" on the returned channel.
func newConnmgrWSBackend(t *testing.T) (string, <-chan string) {
	t.Helper()
	closes := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/forbidden":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Reason", "test")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, "not for you\n")
			return
		case "/echo", "/grip":
		default:
			fmt.Fprint(w, "ok\n")
			return
		}
		up := ws.HTTPUpgrader{}
		if r.URL.Path == "/grip" {
			if !strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "grip") {
				http.Error(w, "no grip offered", http.StatusBadRequest)
				return
			}
			up.Header = http.Header{"Sec-WebSocket-Extensions": {"grip"}}
		}
		conn, _, _, err := up.Upgrade(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		if r.URL.Path == "/grip" {
			wsutil.WriteServerMessage(conn, ws.OpText, []byte(`c:{"type":"subscribe","channel":"x"}`))
		}
		for {
			msg, op, err := wsutil.ReadClientData(conn)
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				closes <- fmt.Sprintf("%d %s", ce.Code, ce.Reason)
				ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(ce.Code, "echo: "+ce.Reason)))
				return
			}
			if err != nil {
				return
			}
			if string(msg) == "close-me" {
				ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(4001, "backend bye")))
				continue
			}
			wsutil.WriteServerMessage(conn, op, msg)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), closes
}

// wsDial opens a client WebSocket through the deployment.
func (d *deployment) wsDial(t *testing.T, path string) (net.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d%s", d.httpPort, path))
	if err == nil {
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}

// readClose reads frames until a close and returns its code and reason.
// TestInteropConnmgrWebSocketUnderPushpin: tack-connmgr as condure inside
// the real Pushpin 1.36 (runner, pushpin-proxy, pushpin-handler, zurl)
// relays WebSockets: text and binary echo, close code and reason both
// ways, a backend's 403 rejection with its body, and with a GRIP backend
// a ws-message publish through the real handler's :5561.
func TestInteropConnmgrWebSocketUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be, closes := newConnmgrWSBackend(t)
	d := newDeployment(t)
	connmgr := filepath.Join(binDir, "tack-connmgr")
	if ref := os.Getenv("TACK_CONNMGR_REF"); ref != "" {
		connmgr = ref // the same checks against the real condure
	}
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.condure_bin": connmgr,
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startPushpin(t, conf, "")
	d.waitReady(t, "/ready")

	t.Run("echo", func(t *testing.T) {
		conn, err := d.wsDial(t, "/echo")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []struct {
			op   ws.OpCode
			body string
		}{{ws.OpText, "hello"}, {ws.OpBinary, "\x00\x01\x02"}, {ws.OpText, strings.Repeat("é", 50000)}} {
			if err := wsutil.WriteClientMessage(conn, m.op, []byte(m.body)); err != nil {
				t.Fatal(err)
			}
			got, op, err := wsutil.ReadServerData(conn)
			if err != nil || op != m.op || string(got) != m.body {
				t.Fatalf("echo of %d bytes (op %d): %d bytes op %d %v", len(m.body), m.op, len(got), op, err)
			}
		}
		// The client closes: code and reason reach the backend, whose
		// answer comes back (Pushpin 1.36 relays its code only: the real
		// condure gets the same).
		ws.WriteFrame(conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4002, "client bye"))))
		if code, _ := readClose(t, conn); code != 4002 {
			t.Fatalf("close answer %d", code)
		}
		select {
		case c := <-closes:
			if c != "4002 client bye" {
				t.Fatalf("backend got close %q", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("backend got no close")
		}
	})

	t.Run("backend closes", func(t *testing.T) {
		conn, err := d.wsDial(t, "/echo")
		if err != nil {
			t.Fatal(err)
		}
		wsutil.WriteClientMessage(conn, ws.OpText, []byte("close-me"))
		if code, reason := readClose(t, conn); code != 4001 || reason != "backend bye" {
			t.Fatalf("backend close %d %q", code, reason)
		}
	})

	t.Run("rejected", func(t *testing.T) {
		_, err := d.wsDial(t, "/forbidden")
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusForbidden {
			t.Fatalf("dial: %v, want a 403", err)
		}
		// The body reaches the client too (read raw).
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(c, "GET /forbidden HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		var sb strings.Builder
		buf := make([]byte, 4096)
		for !strings.Contains(sb.String(), "not for you\n") {
			n, err := c.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if got := sb.String(); !strings.HasPrefix(got, "HTTP/1.1 403 ") || !strings.Contains(got, "not for you\n") {
			t.Fatalf("rejection %q", got)
		}
	})

	t.Run("grip publish", func(t *testing.T) {
		conn, err := d.wsDial(t, "/grip")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			msg, _, err := wsutil.ReadServerData(conn)
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- string(msg)
		}()
		// The subscription reaches the handler asynchronously: publish
		// until the message arrives.
		for i := 0; ; i++ {
			d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"hello subscribers"}}}]}`)
			select {
			case m := <-got:
				if m != "hello subscribers" {
					t.Fatalf("client got %q", m)
				}
				return
			case <-time.After(300 * time.Millisecond):
			}
			if i > 50 {
				t.Fatal("publish never reached the client")
			}
		}
	})
}

// TestInteropConnmgrWebSocketCompression: our runner with
// allow_compression=true (Pushpin 1.37's key) starts tack-connmgr with
// --compression; behind it the real pushpin-proxy and zurl relay a
// WebSocket echo whose client uses permessage-deflate.
func TestInteropConnmgrWebSocketCompression(t *testing.T) {
	requirePushpin(t)
	be, _ := newConnmgrWSBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.proxy_bin":         "pushpin-proxy",
		"runner.zurl_bin":          "/usr/bin/zurl",
		"runner.allow_compression": "true",
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startTack(t, conf)
	d.waitReady(t, "/ready")

	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprint(c, "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || !strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
		t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
	}
	msg := strings.Repeat("squeeze me ", 5000)
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestCompression)
	fw.Write([]byte(msg))
	fw.Flush()
	fr := ws.NewTextFrame(bytes.TrimSuffix(z.Bytes(), []byte{0, 0, 0xff, 0xff}))
	fr.Header.Rsv = ws.Rsv(true, false, false)
	if err := ws.WriteFrame(c, ws.MaskFrame(fr)); err != nil {
		t.Fatal(err)
	}
	// The echo comes back compressed, maybe in several frames.
	var payload []byte
	for {
		f, err := ws.ReadFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode.IsControl() {
			continue
		}
		if r1, _, _ := ws.RsvBits(f.Header.Rsv); f.Header.OpCode != ws.OpContinuation && !r1 {
			t.Fatalf("echo not compressed: %+v", f.Header)
		}
		payload = append(payload, f.Payload...)
		if f.Header.Fin {
			break
		}
	}
	got, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(payload),
		bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
	if err != nil || string(got) != msg {
		t.Fatalf("echo inflated to %d bytes (%v), want %d", len(got), err, len(msg))
	}
}
