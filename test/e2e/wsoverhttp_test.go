package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tack/internal/testutil"
)

// wohClient is a minimal RFC 6455 client for the WebSocket-over-HTTP tests.
type wohClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	head string // the handshake answer's status line and headers
}

func dialWOH(t *testing.T, port int, path string) *wohClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nMeta-User: mallory\r\n\r\n", path)
	c := &wohClient{t: t, conn: conn, br: bufio.NewReader(conn)}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	var head strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatalf("handshake answer: %v (so far %q)", err, head.String())
		}
		if line == "\r\n" {
			break
		}
		head.WriteString(line)
	}
	c.head = head.String()
	return c
}

func (c *wohClient) send(op byte, payload []byte) {
	c.t.Helper()
	var mask [4]byte
	rand.Read(mask[:])
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 65536:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next frame's opcode and payload.
func (c *wohClient) read(timeout time.Duration) (byte, []byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c.br, p)
	return h[0] & 0x0f, p, err
}

func (c *wohClient) expect(op byte, payload string) {
	c.t.Helper()
	gotOp, got, err := c.read(20 * time.Second)
	if err != nil || gotOp != op || string(got) != payload {
		c.t.Fatalf("frame op %d %q (%v), want op %d %q", gotOp, got, err, op, payload)
	}
}

// publishUntil calls publish until the client receives want as a text
// message (a subscription takes effect asynchronously).
func (c *wohClient) publishUntil(publish func(), want string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		publish()
		op, got, err := c.read(500 * time.Millisecond)
		if err == nil {
			if op != 0x1 || string(got) != want {
				c.t.Fatalf("frame op %d %q, want %q", op, got, want)
			}
			return
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() || time.Now().After(deadline) {
			c.t.Fatalf("no publish reached the client: %v", err)
		}
	}
}

// wohBackend is a WebSocket-over-HTTP backend: it accepts OPEN with the
// grip extension, echoes TEXT with the m: prefix, subscribes the connection
// to the channel a "sub:<channel>" message names (a c: control message),
// and answers CLOSE with CLOSE. It records each request.
type wohBackend struct {
	mu   sync.Mutex
	reqs []*http.Request
	bods []string
}

func (b *wohBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" {
		w.Write([]byte("plain HTTP\n"))
		return
	}
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.reqs, b.bods = append(b.reqs, r), append(b.bods, string(body))
	b.mu.Unlock()
	var out bytes.Buffer
	event := func(typ, content string) {
		fmt.Fprintf(&out, "%s %x\r\n%s\r\n", typ, len(content), content)
	}
	for rest := string(body); rest != ""; {
		line, after, _ := strings.Cut(rest, "\r\n")
		typ, hexLen, hasLen := strings.Cut(line, " ")
		content := ""
		if hasLen {
			n, _ := strconv.ParseInt(hexLen, 16, 64)
			content, after = after[:n], after[n+2:]
		}
		rest = after
		switch typ {
		case "OPEN":
			out.WriteString("OPEN\r\n")
			w.Header().Set("Sec-WebSocket-Extensions", "grip")
			w.Header().Set("Set-Meta-User", "alice")
		case "TEXT":
			if ch, ok := strings.CutPrefix(content, "sub:"); ok {
				event("TEXT", `c:{"type":"subscribe","channel":"`+ch+`"}`)
				event("TEXT", "m:subscribed "+ch)
			} else {
				event("TEXT", "m:echo "+content)
			}
		case "CLOSE":
			event("CLOSE", content)
		}
	}
	w.Header().Set("Content-Type", "application/websocket-events")
	w.Write(out.Bytes())
}

// TestE2EWebSocketOverHTTP runs a WebSocket client through tack to a
// WebSocket-over-HTTP backend: OPEN, echo, a GRIP subscribe, a ws-message
// publish reaching the client, Meta-* handling and the close handshake.
func TestE2EWebSocketOverHTTP(t *testing.T) {
	be := &wohBackend{}
	srv := httptest.NewServer(be)
	defer srv.Close()
	backendPort := srv.Listener.Addr().(*net.TCPAddr).Port
	s := startSuite(t, suiteOptions{routes: fmt.Sprintf("* 127.0.0.1:%d,over_http\n", backendPort)})

	c := dialWOH(t, s.httpPort, "/chat")
	if !strings.HasPrefix(c.head, "HTTP/1.1 101 ") || strings.Contains(strings.ToLower(c.head), "set-meta") || strings.Contains(c.head, "grip") {
		t.Fatalf("handshake answer %q", c.head)
	}
	c.send(0x1, []byte("hello"))
	c.expect(0x1, "echo hello")
	c.send(0x1, []byte("sub:room"))
	c.expect(0x1, "subscribed room")

	// Publish until the subscription is in place (the handler acks the
	// grip item asynchronously).
	c.publishUntil(func() {
		resp, err := http.Post(s.publishURL(), "application/json", strings.NewReader(
			`{"items":[{"channel":"room","formats":{"ws-message":{"content":"published!"}}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}, "published!")

	// A refresh publish makes tack poll the backend (an empty request).
	countEmpty := func() int {
		be.mu.Lock()
		defer be.mu.Unlock()
		n := 0
		for _, b := range be.bods {
			if b == "" {
				n++
			}
		}
		return n
	}
	resp, err := http.Post(s.publishURL(), "application/json", strings.NewReader(
		`{"items":[{"channel":"room","formats":{"ws-message":{"action":"refresh"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testutil.Eventually(t, 20*time.Second, func() error {
		if countEmpty() == 0 {
			return fmt.Errorf("no refresh request")
		}
		return nil
	})

	c.send(0x8, append(binary.BigEndian.AppendUint16(nil, 1000), "bye"...))
	for {
		op, got, err := c.read(20 * time.Second)
		if err != nil {
			t.Fatalf("close answer: %v", err)
		}
		if op == 0x1 && string(got) == "published!" {
			continue // a publish retry delivered twice
		}
		if op != 0x8 || string(got) != "\x03\xe8bye" {
			t.Fatalf("frame op %d %q, want close 1000 bye", op, got)
		}
		break
	}

	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.reqs) < 5 || be.bods[0] != "OPEN\r\n" || be.bods[1] != "TEXT 5\r\nhello\r\n" || be.bods[len(be.bods)-1] != "CLOSE 5\r\n\x03\xe8bye\r\n" {
		t.Fatalf("backend saw %q", be.bods)
	}
	cid := be.reqs[0].Header.Get("Connection-Id")
	for i, r := range be.reqs {
		if r.Header.Get("Connection-Id") != cid || cid == "" || r.Header.Get("Content-Type") != "application/websocket-events" ||
			r.Header.Get("Grip-Sig") == "" || r.URL.Path != "/chat" {
			t.Errorf("request %d headers %v", i, r.Header)
		}
		if want := map[bool]string{true: "", false: "alice"}[i == 0]; r.Header.Get("Meta-User") != want {
			t.Errorf("request %d Meta-User %q, want %q", i, r.Header.Get("Meta-User"), want)
		}
	}
}

// TestE2EJSGripWebSocketContext puts a WebSocket-over-HTTP backend written
// with js-grip's WebSocketContext behind tack, unchanged: its Grip-Sig
// check passes, it accepts and subscribes on OPEN, echoes with the meta it
// set, its Publisher's ws-message reaches the client, and it closes.
func TestE2EJSGripWebSocketContext(t *testing.T) {
	node, be := startJSGripBackend(t, "jsgrip-ws-backend.mjs")
	s := startSuite(t, suiteOptions{routes: "* " + be + ",over_http\n"})

	c := dialWOH(t, s.httpPort, "/ws")
	if !strings.HasPrefix(c.head, "HTTP/1.1 101 ") {
		t.Fatalf("handshake answer %q (backend: %s)", c.head, node.Output())
	}
	c.send(0x1, []byte("hi"))
	c.expect(0x1, "echo hi (user alice)")

	gripURL := url.QueryEscape(fmt.Sprintf("http://127.0.0.1:%d/", 5561+s.portOffset))
	c.publishUntil(func() {
		resp, err := http.Get("http://" + be + "/publish?grip=" + gripURL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("js-grip publish: %d %s", resp.StatusCode, b)
		}
	}, "hello from js-grip ws")

	c.send(0x8, binary.BigEndian.AppendUint16(nil, 1000))
	for {
		op, got, err := c.read(20 * time.Second)
		if err != nil {
			t.Fatalf("close answer: %v (backend: %s)", err, node.Output())
		}
		if op == 0x1 && string(got) == "hello from js-grip ws" {
			continue
		}
		if op != 0x8 {
			t.Fatalf("frame op %d %q, want a close", op, got)
		}
		break
	}
}
