package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsMsg is one message (or the end) read by a wsClient.
type wsMsg struct {
	op   ws.OpCode
	data []byte
	err  error // the read error ending the connection (wsutil.ClosedError for a close)
}

// wsClient is a WebSocket client through tack; a goroutine reads whole
// messages (answering pings) into msgs.
type wsClient struct {
	conn net.Conn
	msgs chan wsMsg
}

func dialWS(t *testing.T, s *suite, path string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d%s", s.httpPort, path))
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{conn: conn, msgs: make(chan wsMsg, 64)}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	rw := struct {
		io.Reader
		io.Writer
	}{r, conn}
	go func() {
		defer close(c.msgs)
		for {
			data, op, err := wsutil.ReadServerData(rw)
			c.msgs <- wsMsg{op: op, data: data, err: err}
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *wsClient) send(t *testing.T, op ws.OpCode, data []byte) {
	t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, op, data); err != nil {
		t.Fatal(err)
	}
}

func (c *wsClient) next(t *testing.T) wsMsg {
	t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			t.Fatal("connection ended")
		}
		return m
	case <-time.After(15 * time.Second):
		t.Fatal("no message in time")
	}
	return wsMsg{}
}

// echo sends a message and expects it back.
func (c *wsClient) echo(t *testing.T, op ws.OpCode, data []byte) {
	t.Helper()
	c.send(t, op, data)
	c.expect(t, op, data)
}

// expect reads the next message and checks it.
func (c *wsClient) expect(t *testing.T, op ws.OpCode, want []byte) {
	t.Helper()
	m := c.next(t)
	if m.err != nil {
		t.Fatalf("want %v %q, got error %v", op, want, m.err)
	}
	if m.op != op || !bytes.Equal(m.data, want) {
		t.Fatalf("got %v %q (%d bytes), want %v %q", m.op, trunc(m.data), len(m.data), op, trunc(want))
	}
}

// expectClose reads the close frame the server sent.
func (c *wsClient) expectClose(t *testing.T, code ws.StatusCode, reason string) {
	t.Helper()
	m := c.next(t)
	var ce wsutil.ClosedError
	if !errors.As(m.err, &ce) {
		t.Fatalf("want close %d %q, got %v %q err=%v", code, reason, m.op, m.data, m.err)
	}
	if ce.Code != code || ce.Reason != reason {
		t.Fatalf("close %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func wsMessageItem(channel, format string) string {
	return `{"channel":"` + channel + `","formats":{"ws-message":` + format + `}}`
}

// waitSubscribed publishes on channel until c receives it (the handler
// then has the subscription), then drains the repeats up to a final
// marker (one connection's messages keep their order).
func waitSubscribed(t *testing.T, s *suite, c *wsClient, channel string) {
	t.Helper()
	pub := func(content string) { publishJSON(t, s, wsMessageItem(channel, `{"content":"`+content+`"}`)) }
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		pub("warm")
		select {
		case m, ok := <-c.msgs:
			if !ok || m.err != nil || string(m.data) != "warm" {
				t.Fatalf("warm-up: got %v %q err=%v", m.op, m.data, m.err)
			}
			pub("warm-done")
			for {
				m := c.next(t)
				if string(m.data) == "warm-done" {
					return
				}
				if m.err != nil || string(m.data) != "warm" {
					t.Fatalf("after warm-up: got %v %q err=%v", m.op, m.data, m.err)
				}
			}
		case <-time.After(300 * time.Millisecond):
		}
	}
	t.Fatalf("channel %s: publishes never reached the WebSocket client", channel)
}

// rawHandshake sends a WebSocket handshake for path and returns the
// response status and body.
func rawHandshake(t *testing.T, s *suite, path string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.httpPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp := sendWSHandshake(t, conn, path)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// sendWSHandshake sends a WebSocket handshake for path on conn and reads
// the response head (within 10 s).
func sendWSHandshake(t *testing.T, conn net.Conn, path string) *http.Response {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestE2EWebSocketTestHandler: the built-in `test` target answers /ws like
// Pushpin's test WebSocket (echo, subscribed to its channel parameters or
// "test"), and other paths with 404.
func TestE2EWebSocketTestHandler(t *testing.T) {
	s := startSuite(t, suiteOptions{})

	if code, body := rawHandshake(t, s, "/nope"); code != 404 || body != "no such test resource\n" {
		t.Fatalf("/nope: %d %q", code, body)
	}

	c := dialWS(t, s, "/ws?channel=x&channel=y")
	c.echo(t, ws.OpText, []byte("hello"))
	c.echo(t, ws.OpBinary, []byte{0, 1, 2})
	waitSubscribed(t, s, c, "x")
	publishJSON(t, s, wsMessageItem("y", `{"content":"on y"}`))
	c.expect(t, ws.OpText, []byte("on y"))
	c.echo(t, ws.OpText, []byte("still echoing"))

	d := dialWS(t, s, "/ws")
	waitSubscribed(t, s, d, "test")

	publishJSON(t, s, wsMessageItem("x", `{"action":"close","code":4001,"reason":"bye"}`))
	c.expectClose(t, 4001, "bye")
}

// wsEchoBackend is a WebSocket origin echoing every message; messages
// over 1000 bytes are also sent to big. With grip it is a GRIP origin: it
// requires and accepts `Sec-WebSocket-Extensions: grip`, subscribes the
// connection to channel x with a control message and echoes with the
// `m:` prefix.
func wsEchoBackend(t *testing.T, grip bool, big chan<- []byte) string {
	return newBackendWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			io.WriteString(w, "plain\n") // readiness probe
			return
		}
		var u ws.HTTPUpgrader
		prefix := []byte{}
		if grip {
			if !strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "grip") {
				http.Error(w, "grip not offered", http.StatusBadRequest)
				return
			}
			u.Header = http.Header{"Sec-WebSocket-Extensions": {"grip"}}
			prefix = []byte("m:")
		}
		conn, _, _, err := u.Upgrade(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		if grip && wsutil.WriteServerMessage(conn, ws.OpText, []byte(`c:{"type":"subscribe","channel":"x"}`)) != nil {
			return
		}
		for {
			data, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				return
			}
			if big != nil && len(data) > 1000 {
				big <- data
			}
			if wsutil.WriteServerMessage(conn, op, append(prefix[:len(prefix):len(prefix)], data...)) != nil {
				return
			}
		}
	}))
}

// TestE2EWebSocketGripBackend: a GRIP WebSocket backend subscribes its
// connection with a control message; tack relays its `m:` messages
// without the prefix and delivers published text, binary and close.
func TestE2EWebSocketGripBackend(t *testing.T) {
	s := startSuite(t, suiteOptions{routes: "* " + wsEchoBackend(t, true, nil) + "\n"})

	c := dialWS(t, s, "/chat")
	c.echo(t, ws.OpText, []byte("hello"))
	c.echo(t, ws.OpBinary, []byte{9, 8, 7})
	waitSubscribed(t, s, c, "x")

	publishJSON(t, s, wsMessageItem("x", `{"content":"published text"}`))
	c.expect(t, ws.OpText, []byte("published text"))
	bin := []byte{0, 0xff, 0x10, 'b'}
	publishJSON(t, s, wsMessageItem("x", `{"content-bin":"`+base64.StdEncoding.EncodeToString(bin)+`"}`))
	c.expect(t, ws.OpBinary, bin)
	publishJSON(t, s, wsMessageItem("x", `{"action":"close","code":4002,"reason":"done here"}`))
	c.expectClose(t, 4002, "done here")
}

// TestE2EWebSocketPassthrough: a backend that does not speak GRIP gets a
// plain relay; a 1 MB message crosses each way intact.
func TestE2EWebSocketPassthrough(t *testing.T) {
	got := make(chan []byte, 1)
	s := startSuite(t, suiteOptions{routes: "* " + wsEchoBackend(t, false, got) + "\n"})

	c := dialWS(t, s, "/echo")
	c.echo(t, ws.OpText, []byte("m:not a grip prefix here"))
	big := make([]byte, 1<<20)
	rand.Read(big)
	c.send(t, ws.OpBinary, big)
	select {
	case b := <-got:
		if !bytes.Equal(b, big) {
			t.Fatalf("backend got %d bytes, not the 1 MB sent", len(b))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("1 MB message never reached the backend")
	}
	c.expect(t, ws.OpBinary, big)
}
