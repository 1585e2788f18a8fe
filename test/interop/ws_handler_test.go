package interop

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	zmq "github.com/pebbe/zmq4"

	"tack/pkg/tnetstring"
)

// wsGripBackend is a GRIP WebSocket origin: it accepts with
// `Sec-WebSocket-Extensions: grip`, subscribes the connection to the
// channel named by ?channel= with a `c:` control message, sends the
// control messages of ?ka= (keep-alive content, 1 s interval) and
// ?detach=1, and echoes client text as `m:echo:<text>`. ended receives
// the channel name when the proxy closes the backend connection.
type wsGripBackend struct {
	url   string
	ended chan string
}

func newWSGripBackend(t *testing.T) *wsGripBackend {
	t.Helper()
	b := &wsGripBackend{ended: make(chan string, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			io.WriteString(w, "plain\n") // readiness probe
			return
		}
		if !strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "grip") || r.Header.Get("Grip-Sig") == "" {
			http.Error(w, "not offered grip", http.StatusBadRequest)
			return
		}
		u := ws.HTTPUpgrader{Header: http.Header{"Sec-WebSocket-Extensions": {"grip"}}}
		conn, _, _, err := u.Upgrade(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		q := r.URL.Query()
		ch := q.Get("channel")
		send := func(s string) error { return wsutil.WriteServerMessage(conn, ws.OpText, []byte(s)) }
		if send(`c:{"type":"subscribe","channel":"`+ch+`"}`) != nil {
			return
		}
		if ka := q.Get("ka"); ka != "" {
			send(`c:{"type":"keep-alive","content":"` + ka + `","timeout":1,"mode":"interval"}`)
		}
		if q.Get("detach") == "1" {
			send(`c:{"type":"detach"}`)
		}
		for {
			data, op, err := wsutil.ReadClientData(conn)
			if err != nil {
				b.ended <- ch
				return
			}
			if op == ws.OpText {
				send("m:echo:" + string(data))
			}
		}
	}))
	t.Cleanup(srv.Close)
	b.url = strings.TrimPrefix(srv.URL, "http://")
	return b
}

// wsClient is a WebSocket client connection through the deployment;
// frames are read by a goroutine into frames.
type wsClient struct {
	conn   net.Conn
	frames chan ws.Frame
}

func (d *deployment) dialWS(t *testing.T, path string) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d%s", d.httpPort, path))
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &wsClient{conn: conn, frames: make(chan ws.Frame, 64)}
	var r io.Reader = conn
	if br != nil {
		r = br
	}
	go func() {
		defer close(c.frames)
		for {
			f, err := ws.ReadFrame(r)
			if err != nil {
				return
			}
			c.frames <- f
			if f.Header.OpCode == ws.OpClose {
				return
			}
		}
	}()
	return c
}

func (c *wsClient) sendText(t *testing.T, s string) {
	t.Helper()
	if err := wsutil.WriteClientMessage(c.conn, ws.OpText, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

// next returns the next frame that is not a ping, or fails.
func (c *wsClient) next(t *testing.T, timeout time.Duration) ws.Frame {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("connection ended")
			}
			return f
		case <-deadline:
			t.Fatal("no frame in time")
		}
	}
}

// waitSubscribed publishes on channel until the client receives it (the
// subscription then is in place in the handler), then drains the
// repeats: a final "warm-done" marks the end, as one connection's
// messages keep their order.
func (d *deployment) waitSubscribed(t *testing.T, c *wsClient, channel string) {
	t.Helper()
	pub := func(s string) {
		d.publish(t, `{"items":[{"channel":"`+channel+`","formats":{"ws-message":{"content":"`+s+`"}}}]}`)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		pub("warm")
		select {
		case f, ok := <-c.frames:
			if !ok {
				t.Fatal("connection ended while warming up")
			}
			if f.Header.OpCode != ws.OpText || string(f.Payload) != "warm" {
				t.Fatalf("warm-up frame %v %q", f.Header.OpCode, f.Payload)
			}
			pub("warm-done")
			for {
				f := c.next(t, 10*time.Second)
				if string(f.Payload) == "warm-done" {
					return
				}
				if string(f.Payload) != "warm" {
					t.Fatalf("frame after warm-up %v %q", f.Header.OpCode, f.Payload)
				}
			}
		case <-time.After(300 * time.Millisecond):
		}
	}
	t.Fatalf("channel %s: publishes never reached the WebSocket client", channel)
}

// pullPublisher is a PUSH socket connected to the handler's PULL input.
type pullPublisher struct {
	zctx *zmq.Context
	sock *zmq.Socket
	mu   sync.Mutex
}

func (d *deployment) newPullPublisher(t *testing.T) *pullPublisher {
	t.Helper()
	zctx, err := zmq.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	s, err := zctx.NewSocket(zmq.PUSH)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLinger(0)
	if err := s.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5560+d.portOffset)); err != nil {
		t.Fatal(err)
	}
	p := &pullPublisher{zctx: zctx, sock: s}
	t.Cleanup(func() { s.Close(); zctx.Term() })
	return p
}

func (p *pullPublisher) publish(t *testing.T, item string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.sock.SendBytes([]byte("J"+item), 0); err != nil {
		t.Fatal(err)
	}
}

// The real Pushpin 1.36 (runner, condure, pushpin-proxy, zurl) with
// tack-handler in place of pushpin-handler: the ws-control sockets between
// the real proxy and tack-handler carry GRIP WebSocket subscriptions,
// published ws-messages (HTTP and PULL inputs), close, keep-alive and
// detach, seen by a real WebSocket client.
func TestInteropHandlerWebSocketUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := newWSGripBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "* "+be.url+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-handler": filepath.Join(binDir, "tack-handler")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")

	c := d.dialWS(t, "/ws?channel=x")
	// The backend's messages reach the client without their prefix.
	c.sendText(t, "hi")
	if f := c.next(t, 10*time.Second); f.Header.OpCode != ws.OpText || string(f.Payload) != "echo:hi" {
		t.Fatalf("echo frame %v %q", f.Header.OpCode, f.Payload)
	}
	d.waitSubscribed(t, c, "x")

	t.Run("text over HTTP", func(t *testing.T) {
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"hello ws"}}}]}`)
		if f := c.next(t, 10*time.Second); f.Header.OpCode != ws.OpText || string(f.Payload) != "hello ws" {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}
	})
	pull := d.newPullPublisher(t)
	t.Run("binary over PULL", func(t *testing.T) {
		// The PULL socket connects asynchronously; the first item may
		// wait in our PUSH until then, and it is not lost.
		pull.publish(t, `{"channel":"x","formats":{"ws-message":{"content-bin":"AAEC/w=="}}}`)
		if f := c.next(t, 10*time.Second); f.Header.OpCode != ws.OpBinary || string(f.Payload) != "\x00\x01\x02\xff" {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}
		pull.publish(t, `{"channel":"x","formats":{"ws-message":{"content":"text over pull"}}}`)
		if f := c.next(t, 10*time.Second); f.Header.OpCode != ws.OpText || string(f.Payload) != "text over pull" {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}
	})
	t.Run("SUB, command socket and tack publish", func(t *testing.T) {
		zctx, err := zmq.NewContext()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := zctx.NewSocket(zmq.PUB)
		if err != nil {
			t.Fatal(err)
		}
		req, err := zctx.NewSocket(zmq.REQ)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { pub.Close(); req.Close(); zctx.Term() }()
		pub.SetLinger(0)
		req.SetLinger(0)
		req.SetRcvtimeo(10 * time.Second)
		if err := pub.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5562+d.portOffset)); err != nil {
			t.Fatal(err)
		}
		if err := req.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5563+d.portOffset)); err != nil {
			t.Fatal(err)
		}
		// SUB: [channel, tnetstring item]; the subscription reaches the
		// handler asynchronously, so publish until it arrives.
		item := tnetstring.MustEncode(tnetstring.Dict{{Key: "formats", Value: tnetstring.Dict{
			{Key: "ws-message", Value: tnetstring.Dict{{Key: "content", Value: []byte("over sub")}}}}}})
		deadline := time.Now().Add(10 * time.Second)
		for got := false; !got; {
			if time.Now().After(deadline) {
				t.Fatal("SUB publish never arrived")
			}
			pub.SendMessage("x", item)
			select {
			case f := <-c.frames:
				if string(f.Payload) != "over sub" {
					t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
				}
				got = true
			case <-time.After(300 * time.Millisecond):
			}
		}
		// Drain repeats of the SUB publish with a marker.
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"content":"sub-done"}}}]}`)
		for f := c.next(t, 10*time.Second); string(f.Payload) != "sub-done"; f = c.next(t, 10*time.Second) {
			if string(f.Payload) != "over sub" {
				t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
			}
		}

		call := tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: []byte("1")}, {Key: "method", Value: []byte("publish")},
			{Key: "args", Value: tnetstring.Dict{{Key: "items", Value: []any{tnetstring.Dict{
				{Key: "channel", Value: []byte("x")},
				{Key: "formats", Value: tnetstring.Dict{{Key: "ws-message", Value: tnetstring.Dict{
					{Key: "type", Value: []byte("binary")}, {Key: "content", Value: []byte("cmd\x00")}}}}}}}}}}})
		if _, err := req.SendBytes(call, 0); err != nil {
			t.Fatal(err)
		}
		reply, err := req.RecvBytes(0)
		if err != nil || !strings.Contains(string(reply), "7:success,4:true!") {
			t.Fatalf("command publish: %q %v", reply, err)
		}
		if f := c.next(t, 10*time.Second); f.Header.OpCode != ws.OpBinary || string(f.Payload) != "cmd\x00" {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}

		out, err := exec.Command(filepath.Join(binDir, "tack"), "publish", "--spec",
			fmt.Sprintf("http://127.0.0.1:%d", 5561+d.portOffset), "x", "over cli").CombinedOutput()
		if err != nil {
			t.Fatalf("tack publish: %v: %s", err, out)
		}
		if f := c.next(t, 10*time.Second); f.Header.OpCode != ws.OpText || string(f.Payload) != "over cli" {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		k := d.dialWS(t, "/ws?channel=kach&ka=still-here")
		// Interval mode every 1 s (up to 1 s earlier): at least three
		// keep-alives within 6 s.
		n := 0
		deadline := time.After(6 * time.Second)
		for n < 3 {
			select {
			case f, ok := <-k.frames:
				if !ok {
					t.Fatal("connection ended")
				}
				if f.Header.OpCode != ws.OpText || string(f.Payload) != "still-here" {
					t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
				}
				n++
			case <-deadline:
				t.Fatalf("%d keep-alives in 6 s", n)
			}
		}
	})
	t.Run("detach", func(t *testing.T) {
		dc := d.dialWS(t, "/ws?channel=det&detach=1")
		deadline := time.After(10 * time.Second)
		for ended := ""; ended != "det"; {
			select {
			case ended = <-be.ended: // others may end meanwhile
			case <-deadline:
				t.Fatal("the proxy kept the backend connection after detach")
			}
		}
		// The client stays connected and subscribed.
		d.waitSubscribed(t, dc, "det")
	})
	t.Run("close action", func(t *testing.T) {
		d.publish(t, `{"items":[{"channel":"x","formats":{"ws-message":{"action":"close","code":4001,"reason":"bye now"}}}]}`)
		f := c.next(t, 10*time.Second)
		if f.Header.OpCode != ws.OpClose {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}
		code, reason := ws.ParseCloseFrameData(f.Payload)
		if code != 4001 || reason != "bye now" {
			t.Fatalf("close %d %q", code, reason)
		}
	})
	t.Run("handler stop closes with 1012", func(t *testing.T) {
		sc := d.dialWS(t, "/ws?channel=stop")
		d.waitSubscribed(t, sc, "stop")
		pid := childPid(t, d.proc.Cmd.Process.Pid, "pushpin-handler")
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		f := sc.next(t, 10*time.Second)
		if f.Header.OpCode != ws.OpClose {
			t.Fatalf("frame %v %q", f.Header.OpCode, f.Payload)
		}
		if code, _ := ws.ParseCloseFrameData(f.Payload); code != 1012 {
			t.Fatalf("close code %d", code)
		}
	})
}

// childPid returns the pid of parent's child process named name, or
// fails.
func childPid(t *testing.T, parent int, name string) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(parent), "-x", name).Output()
	if err != nil {
		t.Fatalf("no child %s of %d: %v", name, parent, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("pgrep: %q", out)
	}
	return pid
}
