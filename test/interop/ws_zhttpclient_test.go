package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"tack/internal/testutil"
)

// wsEcho is a WebSocket origin (gobwas/ws, server side): it echoes each
// message, answers "close-me" with close 4001 "bye", echoes a client's
// close and records it; /reject answers 403 with a body; any other plain
// GET answers 200 (the readiness probe).
type wsEcho struct {
	addr   string
	mu     sync.Mutex
	closes []string
}

func newWSEcho(t *testing.T) *wsEcho {
	t.Helper()
	e := &wsEcho{}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.addr = strings.TrimPrefix(srv.URL, "http://")
	return e
}

func wsFrame(w *bufio.Writer, op ws.OpCode, p []byte, masked bool) error {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}
	if masked {
		h.Masked, h.Mask = true, ws.NewMask()
		p = append([]byte(nil), p...)
		ws.Cipher(p, h.Mask, 0)
	}
	if err := ws.WriteHeader(w, h); err != nil {
		return err
	}
	if _, err := w.Write(p); err != nil {
		return err
	}
	return w.Flush()
}

// wsMessage reads one whole message or control frame, unmasking.
func wsMessage(br *bufio.Reader) (ws.OpCode, []byte, error) {
	var op ws.OpCode
	var msg []byte
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return 0, nil, err
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			return 0, nil, err
		}
		if h.Masked {
			ws.Cipher(p, h.Mask, 0)
		}
		if h.OpCode.IsControl() {
			return h.OpCode, p, nil
		}
		if h.OpCode != ws.OpContinuation {
			op = h.OpCode
		}
		msg = append(msg, p...)
		if h.Fin {
			return op, msg, nil
		}
	}
}

func closePayload(code int, reason string) []byte {
	p := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	copy(p[2:], reason)
	return p
}

func parseClose(p []byte) (int, string) {
	if len(p) < 2 {
		return -1, ""
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:])
}

func (e *wsEcho) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/reject" {
		w.Header().Set("X-Reason", "nope")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "go away\n")
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		io.WriteString(w, "ok\n")
		return
	}
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	for {
		op, p, err := wsMessage(rw.Reader)
		if err != nil {
			return
		}
		switch {
		case op == ws.OpPing:
			_ = wsFrame(rw.Writer, ws.OpPong, p, false)
		case op == ws.OpClose:
			code, reason := parseClose(p)
			e.mu.Lock()
			e.closes = append(e.closes, strings.TrimSpace(strings.Join([]string{strconv.Itoa(code), reason}, " ")))
			e.mu.Unlock()
			_ = wsFrame(rw.Writer, ws.OpClose, p, false)
			return
		case op == ws.OpText && string(p) == "close-me":
			_ = wsFrame(rw.Writer, ws.OpClose, closePayload(4001, "bye"), false)
		case op == ws.OpText || op == ws.OpBinary:
			_ = wsFrame(rw.Writer, op, p, false)
		}
	}
}

func (e *wsEcho) lastClose() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.closes) == 0 {
		return ""
	}
	return e.closes[len(e.closes)-1]
}

// wsClientConn is a plain RFC 6455 client connection through the deployment.
type wsClientConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

func dialWS(t *testing.T, url string) (*wsClientConn, error) {
	t.Helper()
	var status int
	var body []byte
	d := ws.Dialer{Timeout: 10 * time.Second, OnStatusError: func(st int, _ []byte, r io.Reader) {
		status = st
		body, _ = io.ReadAll(io.LimitReader(r, 1<<16))
	}}
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		if status != 0 {
			return nil, &wsStatusError{status: status, resp: body}
		}
		return nil, err
	}
	if br == nil {
		br = bufio.NewReader(conn)
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	return &wsClientConn{conn: conn, br: br, bw: bufio.NewWriter(conn)}, nil
}

type wsStatusError struct {
	status int
	resp   []byte // the raw response after the status line: headers and body
}

func (e *wsStatusError) Error() string { return "websocket handshake status " + strconv.Itoa(e.status) }

func (c *wsClientConn) send(t *testing.T, op ws.OpCode, p []byte) {
	t.Helper()
	if err := wsFrame(c.bw, op, p, true); err != nil {
		t.Fatal(err)
	}
}

func (c *wsClientConn) expect(t *testing.T, op ws.OpCode, p []byte) {
	t.Helper()
	gop, gp, err := wsMessage(c.br)
	if err != nil || gop != op || !bytes.Equal(gp, p) {
		t.Fatalf("got op %v %q (%v), want op %v %q", gop, gp, err, op, p)
	}
}

// waitWSEcho waits until a WebSocket message goes through d and back.
// pushpin-proxy starts before the zhttp client has bound its sockets and
// retries its connects every 100 ms, one socket at a time: its stream
// ROUTER (not ROUTER_MANDATORY) can still be connecting after its SUB
// already heard the zhttp client's first reply, and silently drops what it
// sends meanwhile (seen: the first message and keep-alive of a WebSocket,
// then "bad seq" in the zhttp client). That start-up race is pushpin-proxy's
// own (the real zurl meets it too); the checks begin once it is over.
func waitWSEcho(t *testing.T, d *deployment) {
	t.Helper()
	url := "ws://127.0.0.1:" + strconv.Itoa(d.httpPort) + "/echo"
	testutil.Eventually(t, 20*time.Second, func() error {
		c, err := dialWS(t, url)
		if err != nil {
			return err
		}
		defer c.conn.Close()
		_ = c.conn.SetDeadline(time.Now().Add(2 * time.Second))
		if err := wsFrame(c.bw, ws.OpText, []byte("warm-up"), true); err != nil {
			return err
		}
		op, p, err := wsMessage(c.br)
		if err != nil || op != ws.OpText || string(p) != "warm-up" {
			return fmt.Errorf("warm-up echo: op %v %q (%v)", op, p, err)
		}
		return nil
	})
}

// checkWSThrough runs the WebSocket checks through deployment d whose
// routes point at e.
// With tack, the checks where tack-zhttp-client does better than zurl
// apply too: ping payloads pass (zurl sends them empty) and the rejection
// keeps the backend's reason and headers (zurl relays only code and body).
func checkWSThrough(t *testing.T, d *deployment, e *wsEcho, tack bool) {
	t.Helper()
	base := "ws://127.0.0.1:" + strconv.Itoa(d.httpPort)
	c, err := dialWS(t, base+"/echo")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.conn.Close()
	c.send(t, ws.OpText, []byte("hello"))
	c.expect(t, ws.OpText, []byte("hello"))
	bin := []byte{0, 1, 2, 0xfe, 0xff}
	c.send(t, ws.OpBinary, bin)
	c.expect(t, ws.OpBinary, bin)
	// A fragmented client message arrives whole.
	for _, f := range []ws.Header{{OpCode: ws.OpText, Length: 2}, {Fin: true, OpCode: ws.OpContinuation, Length: 2}} {
		f.Masked, f.Mask = true, ws.NewMask()
		p := []byte("ab")
		if f.Fin {
			p = []byte("cd")
		}
		ws.Cipher(p, f.Mask, 0)
		if err := ws.WriteHeader(c.bw, f); err != nil {
			t.Fatal(err)
		}
		c.bw.Write(p)
		c.bw.Flush()
	}
	c.expect(t, ws.OpText, []byte("abcd"))
	c.send(t, ws.OpPing, []byte("pp"))
	if op, p, err := wsMessage(c.br); err != nil || op != ws.OpPong || (tack && string(p) != "pp") {
		t.Fatalf("pong: op %v %q (%v)", op, p, err)
	}
	big := bytes.Repeat([]byte("0123456789"), 10000) // 100 kB: several zhttp packets both ways
	c.send(t, ws.OpBinary, big)
	c.expect(t, ws.OpBinary, big)
	// The backend closes with a code and reason: the client gets them.
	c.send(t, ws.OpText, []byte("close-me"))
	op, p, err := wsMessage(c.br)
	if code, reason := parseClose(p); err != nil || op != ws.OpClose || code != 4001 || reason != "bye" {
		t.Fatalf("backend close: op %v %d %q (%v)", op, code, reason, err)
	}
	c.send(t, ws.OpClose, p)
	c.conn.Close()

	// The client closes with a code and reason: the backend gets them and
	// its answer comes back.
	c2, err := dialWS(t, base+"/echo2")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c2.conn.Close()
	c2.send(t, ws.OpText, []byte("x"))
	c2.expect(t, ws.OpText, []byte("x"))
	c2.send(t, ws.OpClose, closePayload(4000, "done"))
	op, p, err = wsMessage(c2.br)
	if code, reason := parseClose(p); err != nil || op != ws.OpClose || code != 4000 || reason != "done" {
		t.Fatalf("close answer: op %v %d %q (%v)", op, code, reason, err)
	}
	if got := e.lastClose(); got != "4000 done" {
		t.Fatalf("backend saw close %q", got)
	}

	// A backend rejection reaches the client as that HTTP response.
	_, err = dialWS(t, base+"/reject")
	var se *wsStatusError
	if !errors.As(err, &se) || se.status != 403 || !bytes.Contains(se.resp, []byte("go away")) {
		t.Fatalf("rejection: %v", err)
	}
	t.Logf("rejection as the client saw it: %q", se.resp)
	if tack && (!bytes.Contains(se.resp, []byte("403 Forbidden")) || !bytes.Contains(se.resp, []byte("X-Reason: nope"))) {
		t.Fatalf("rejection lost the backend's reason or headers: %q", se.resp)
	}
}

// Pushpin 1.36 (runner, condure, pushpin-proxy, pushpin-handler) with
// tack-zhttp-client as zurl carries WebSockets to a plain WebSocket origin;
// the same checks pass with the real zurl (the control run).
func TestInteropZhttpClientWebSocketUnderPushpin(t *testing.T) {
	requirePushpin(t)
	for _, tc := range []struct {
		name, bin string
		tack      bool
	}{
		{"tack-zhttp-client", filepath.Join(binDir, "tack-zhttp-client"), true},
		{"zurl", "/usr/bin/zurl", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newWSEcho(t)
			d := newDeployment(t)
			conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
				"runner.zurl_bin": tc.bin,
			})
			writeRoutes(t, d.dir, "* "+e.addr+"\n")
			d.startPushpin(t, conf, "")
			d.waitReady(t, "/ready")
			waitWSEcho(t, d)
			checkWSThrough(t, d, e, tc.tack)
		})
	}
}
