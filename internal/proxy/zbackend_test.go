package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/testutil"
	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

func TestZhttpSpecs(t *testing.T) {
	for _, tc := range []struct {
		base string
		want [3]string
		bad  bool
	}{
		{base: "tcp://127.0.0.1:9000", want: [3]string{"tcp://127.0.0.1:9000", "tcp://127.0.0.1:9001", "tcp://127.0.0.1:9002"}},
		{base: "tcp://*:10", want: [3]string{"tcp://*:10", "tcp://*:11", "tcp://*:12"}},
		{base: "ipc:///tmp/x", want: [3]string{"ipc:///tmp/x-out", "ipc:///tmp/x-out-stream", "ipc:///tmp/x-in"}},
		{base: "tcp://127.0.0.1:65534", bad: true},
		{base: "tcp://127.0.0.1", bad: true},
		{base: "tcp://127.0.0.1:x", bad: true},
		{base: "/tmp/x", bad: true},
	} {
		got, err := zhttpSpecs(tc.base)
		if tc.bad {
			if err == nil {
				t.Errorf("%s: no error, got %q", tc.base, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.base, got, err, tc.want)
		}
	}
}

// zreqHarness is a proxy with one route to a zhttpreq/ target on ipc and a
// ROUTER backend connected to it (a REP socket sees the same packets
// without the envelope).
type zreqHarness struct {
	*harness
	spec    string
	backend *zsock.Socket // nil: nobody connected
}

func startZreq(t *testing.T, connect bool, mod func(*Config)) *zreqHarness {
	t.Helper()
	dir, err := os.MkdirTemp("", "tkz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	spec := "ipc://" + dir + "/req"
	zh := &zreqHarness{spec: spec}
	if connect {
		zh.backend = testutil.Sockets(t, zsock.Options{Name: "zreq-backend", Type: zmq.ROUTER, Direction: zsock.TwoWay,
			Connect: []string{spec}, SendTimeout: waitFor})[0]
	}
	zh.harness = startProxy(t, harnessOpts{routes: []string{"* zhttpreq/" + spec, "debug.example,debug zhttpreq/" + spec}, mod: mod})
	return zh
}

// request returns the next request the backend received: its envelope
// and the packet (framing [peer, "", "T…"] at a ROUTER).
func (zh *zreqHarness) request() (env []byte, p *zhttp.Packet) {
	zh.t.Helper()
	select {
	case m := <-zh.backend.Recv():
		if len(m) != 3 || len(m[1]) != 0 || !strings.HasPrefix(string(m[2]), "T") {
			zh.t.Fatalf("backend got %q, want [peer, \"\", T…]", m)
		}
		p, err := zhttp.Parse(m[2])
		if err != nil {
			zh.t.Fatalf("backend packet: %v", err)
		}
		return m[0], p
	case <-time.After(waitFor):
		zh.t.Fatal("backend got no request")
	}
	return nil, nil
}

func (zh *zreqHarness) answerRaw(env []byte, payload []byte) {
	zh.t.Helper()
	select {
	case zh.backend.Send() <- zsock.Message{env, nil, payload}:
	case <-time.After(waitFor):
		zh.t.Fatal("backend queue full")
	}
}

// answer sends one complete response packet for id, as the README's REP
// backend does: id, code, reason, headers, body; no from, no seq.
func (zh *zreqHarness) answer(env, id []byte, code int64, headers []zhttp.Header, body string) {
	zh.t.Helper()
	r := zhttp.New()
	r.ID, r.Code, r.Reason, r.Headers, r.Body = id, code, "OK", headers, []byte(body)
	zh.answerRaw(env, r.Encode())
}

func TestProxyZhttpreqPlain(t *testing.T) {
	zh := startZreq(t, true, nil)
	p := zh.newRequest("GET", "http://example.com/path?a=1", nil)
	id := zh.start(p)
	env, q := zh.request()
	// Pushpin 1.36's req-mode request (captured): from, id, method, uri,
	// headers, max-size 1000000, ignore-policies; no seq, credits, stream
	// or ext.
	if string(q.From) != zh.id || len(q.ID) == 0 || q.Method != "GET" || q.URI != "http://example.com/path?a=1" {
		t.Fatalf("request %s", describe(q))
	}
	if q.Seq != -1 || q.Credits != -1 || q.Stream || q.Multi || q.More || q.MaxSize != zreqBodyMax || !q.IgnorePolicies {
		t.Fatalf("request flags %s", describe(q))
	}
	if q.ConnectHost != "" || q.ConnectPort != -1 {
		t.Fatalf("request has a connect target: %s", describe(q))
	}
	if h, _ := q.Header("Host"); h != "example.com" {
		t.Errorf("Host %q", h)
	}
	zh.answer(env, q.ID, 200, []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}, "hello there\n")
	r := zh.fromProxy(id, 1)
	if r.Code != 200 || string(r.Body) != "hello there\n" || r.More {
		t.Fatalf("response %s", describe(r))
	}
	if ct, _ := r.Header("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q", ct)
	}
}

// TestProxyZhttpreqBody: a streamed request body is collected under
// credits granted to connmgr and sent in the one request packet.
func TestProxyZhttpreqBody(t *testing.T) {
	zh := startZreq(t, true, nil)
	p := zh.newRequest("POST", "http://example.com/up", nil)
	p.More = true
	p.Body = []byte("first-")
	id := zh.start(p)
	if c := zh.expectType(id, 1, zhttp.TypeCredit); c.Credits != zreqWindow {
		t.Fatalf("credit %d, want %d", c.Credits, zreqWindow)
	}
	part := strings.Repeat("x", 150000)
	q := cmPacket(id, 1, zhttp.TypeData)
	q.Body, q.More = []byte(part), true
	zh.sendStream(q)
	// 150000 of 200000 used: the window is topped up.
	if c := zh.expectType(id, 2, zhttp.TypeCredit); c.Credits != 150000 {
		t.Fatalf("credit %d, want 150000", c.Credits)
	}
	q = cmPacket(id, 2, zhttp.TypeData)
	q.Body = []byte("-last")
	zh.sendStream(q)
	env, req := zh.request()
	if want := "first-" + part + "-last"; string(req.Body) != want || req.More {
		t.Fatalf("backend got %d body bytes (more %v), want %d", len(req.Body), req.More, len(want))
	}
	zh.answer(env, req.ID, 201, nil, "made\n")
	if r := zh.fromProxy(id, 3); r.Code != 201 || string(r.Body) != "made\n" {
		t.Fatalf("response %s", describe(r))
	}
}

func TestProxyZhttpreqBodyTooLarge(t *testing.T) {
	zh := startZreq(t, true, nil)
	p := zh.newRequest("POST", "http://example.com/up", nil)
	p.More = true
	id := zh.start(p)
	seq, out := int64(1), int64(1)
	sent := 0
	for sent <= zreqBodyMax {
		c := zh.fromProxy(id, out)
		out++
		if c.Type != zhttp.TypeCredit {
			t.Fatalf("got %s, want credit", describe(c))
		}
		q := cmPacket(id, seq, zhttp.TypeData)
		q.Body, q.More = []byte(strings.Repeat("y", int(c.Credits))), true
		zh.sendStream(q)
		seq++
		sent += int(c.Credits)
	}
	zh.expectResponse(id, out, 502, "Bad Gateway", textProxyError)
	if sent != zreqBodyMax+1 {
		t.Errorf("connmgr was granted %d bytes, want the limit + 1", sent)
	}
}

// TestProxyZhttpreqGrip: a GRIP answer from a zhttpreq backend is handed
// to the handler like any other.
func TestProxyZhttpreqGrip(t *testing.T) {
	zh := startZreq(t, true, nil)
	id := zh.start(zh.newRequest("GET", "http://example.com/stream", nil))
	env, q := zh.request()
	zh.answer(env, q.ID, 200, []zhttp.Header{
		{Name: "Grip-Hold", Value: "stream"}, {Name: "Grip-Channel", Value: "test"}, {Name: "Content-Type", Value: "text/plain"},
	}, "welcome to the stream\n")
	c := zh.handoff(id, 1, 1)
	rd, _ := c.args.Dict("response")
	if b, _ := rd.Bytes("body"); string(b) != "welcome to the stream\n" {
		t.Fatalf("accept response %v", c.args)
	}
}

// TestProxyZhttpreqFailures: a backend that is absent, silent, answers
// garbage, answers another id or answers a stream gets 502 "Error while
// proxying to origin." (Pushpin 1.36: after its 60 s session expiry, or
// at once for an answer that is not one complete response); the next
// request is served.
func TestProxyZhttpreqFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		connect bool
		answer  func(zh *zreqHarness, env []byte, q *zhttp.Packet)
		wait    bool // the 502 needs the 60 s deadline
	}{
		{name: "absent"},
		{name: "silent", connect: true, wait: true, answer: func(*zreqHarness, []byte, *zhttp.Packet) {}},
		{name: "garbage", connect: true, wait: true, answer: func(zh *zreqHarness, env []byte, _ *zhttp.Packet) {
			zh.answerRaw(env, []byte("garbage"))
			zh.answerRaw(env, []byte("T3:abc,"))
		}},
		{name: "unknown id", connect: true, wait: true, answer: func(zh *zreqHarness, env []byte, _ *zhttp.Packet) {
			zh.answer(env, []byte("no-such-id"), 200, nil, "x")
		}},
		{name: "more", connect: true, answer: func(zh *zreqHarness, env []byte, q *zhttp.Packet) {
			r := zhttp.New()
			r.ID, r.Code, r.Reason, r.Body, r.More = q.ID, 200, "OK", []byte("part"), true
			zh.answerRaw(env, r.Encode())
		}},
		{name: "cancel", connect: true, answer: func(zh *zreqHarness, env []byte, q *zhttp.Packet) {
			r := zhttp.New()
			r.ID, r.Type = q.ID, zhttp.TypeCancel
			zh.answerRaw(env, r.Encode())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var offset atomic.Int64
			zh := startZreq(t, tc.connect, func(c *Config) {
				c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
				c.Tick = 20 * time.Millisecond
			})
			for _, host := range []string{"example.com", "debug.example"} {
				id := zh.start(zh.newRequest("GET", "http://"+host+"/", nil))
				if tc.answer != nil {
					env, q := zh.request()
					tc.answer(zh, env, q)
				}
				seq := int64(1)
				if tc.wait {
					zh.noneToConnmgr()
					// 58 s on: only connmgr's keep-alive (every 45 s).
					offset.Store(offset.Load() + int64(zreqTimeout) - int64(2*time.Second))
					zh.expectType(id, seq, zhttp.TypeKeepAlive)
					zh.sendStream(cmPacket(id, 1, zhttp.TypeKeepAlive)) // as condure does
					zh.noneToConnmgr()
					offset.Store(offset.Load() + int64(3*time.Second))
					seq++
				}
				body := textProxyError
				if host == "debug.example" && (tc.wait || tc.name == "absent") {
					body = "Error: zhttp service for route is unreachable.\n"
				}
				zh.expectResponse(id, seq, 502, "Bad Gateway", body)
			}
			if !tc.connect {
				return
			}
			// The next request is served.
			id := zh.start(zh.newRequest("GET", "http://example.com/next", nil))
			env, q := zh.request()
			zh.answer(env, q.ID, 200, nil, "fine\n")
			if r := zh.fromProxy(id, 1); r.Code != 200 || string(r.Body) != "fine\n" {
				t.Fatalf("next response %s", describe(r))
			}
		})
	}
}

// zstreamHarness is a proxy with one route to a zhttp/ target on ipc and
// a zhttp server backend connected to its three binds: PULL to -out,
// ROUTER (identity = its from) to -out-stream, XPUB to -in.
type zstreamHarness struct {
	*harness
	pull, router, pub *zsock.Socket
}

const backendFrom = "zbackend-fake"

func startZstream(t *testing.T, connect bool) *zstreamHarness {
	t.Helper()
	dir, err := os.MkdirTemp("", "tkz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	base := "ipc://" + dir + "/zs"
	zs := &zstreamHarness{}
	if connect {
		socks := testutil.Sockets(t,
			zsock.Options{Name: "pull", Type: zmq.PULL, Direction: zsock.RecvOnly, Connect: []string{base + "-out"}},
			zsock.Options{Name: "router", Type: zmq.ROUTER, Direction: zsock.RecvOnly, Connect: []string{base + "-out-stream"}, Identity: backendFrom},
			zsock.Options{Name: "pub", Type: zmq.XPUB, Direction: zsock.TwoWay, Connect: []string{base + "-in"}})
		zs.pull, zs.router, zs.pub = socks[0], socks[1], socks[2]
	}
	zs.harness = startProxy(t, harnessOpts{routes: []string{"* zhttp/" + base}})
	if connect {
		want := "\x01" + zs.id + " "
		select {
		case m := <-zs.pub.Recv():
			if len(m) != 1 || string(m[0]) != want {
				t.Fatalf("subscription %q, want %q", m, want)
			}
		case <-time.After(waitFor):
			t.Fatal("the proxy never subscribed on the backend's PUB")
		}
	}
	return zs
}

func (zs *zstreamHarness) first() *zhttp.Packet {
	zs.t.Helper()
	return recvFirst(zs.t, zs.pull, "the backend's PULL")
}

func (zs *zstreamHarness) stream(id []byte, seq int64) *zhttp.Packet {
	zs.t.Helper()
	select {
	case m := <-zs.router.Recv():
		if len(m) != 3 || string(m[0]) != zs.id || len(m[1]) != 0 {
			zs.t.Fatalf("backend follow-up %q", m)
		}
		p, err := zhttp.Parse(m[2])
		if err != nil || string(p.ID) != string(id) || p.Seq != seq || string(p.From) != zs.id {
			zs.t.Fatalf("backend follow-up %q (%v), want id %q seq %d", m[2], err, id, seq)
		}
		return p
	case <-time.After(waitFor):
		zs.t.Fatalf("no follow-up at the backend (seq %d)", seq)
	}
	return nil
}

func (zs *zstreamHarness) send(p *zhttp.Packet) {
	zs.t.Helper()
	p.From = []byte(backendFrom)
	select {
	case zs.pub.Send() <- zsock.Message{zhttp.PubFrame([]byte(zs.id), p)}:
	case <-time.After(waitFor):
		zs.t.Fatal("backend pub queue full")
	}
}

// TestProxyZhttpStream: request and response bodies stream through a
// zhttp/ backend under credits, as through zurl.
func TestProxyZhttpStream(t *testing.T) {
	zs := startZstream(t, true)
	p := zs.newRequest("POST", "http://example.com/up", nil)
	p.More = true
	p.Credits = 10
	id := zs.start(p)
	z := zs.first()
	if string(z.From) != zs.id || z.Seq != 0 || !z.Stream || !z.More || z.Credits != 10+ResponseBuffer || z.ConnectHost != "" || !z.IgnorePolicies {
		t.Fatalf("first packet %s", describe(z))
	}
	ack := zp(z.ID, 0, zhttp.TypeCredit)
	ack.Credits = 4
	zs.send(ack)
	if c := zs.expectType(id, 1, zhttp.TypeCredit); c.Credits != 4 {
		t.Fatalf("connmgr credit %d, want the backend's 4", c.Credits)
	}
	q := cmPacket(id, 1, zhttp.TypeData)
	q.Body, q.More = []byte("abcd"), true
	zs.sendStream(q)
	if f := zs.stream(z.ID, 1); string(f.Body) != "abcd" || !f.More {
		t.Fatalf("backend got %s", describe(f))
	}
	c := zp(z.ID, 1, zhttp.TypeCredit)
	c.Credits = 100
	zs.send(c)
	zs.expectType(id, 2, zhttp.TypeCredit)
	q = cmPacket(id, 2, zhttp.TypeData)
	q.Body = []byte("ef")
	zs.sendStream(q)
	if f := zs.stream(z.ID, 2); string(f.Body) != "ef" || f.More {
		t.Fatalf("backend got %s", describe(f))
	}
	// The response: a head with 25 bytes; connmgr's window is 10.
	zs.send(zurlResponse(z.ID, 2, 200, "OK", []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}, strings.Repeat("r", 25), true))
	if r := zs.fromProxy(id, 3); r.Code != 200 || len(r.Body) != 10 || !r.More {
		t.Fatalf("head %s", describe(r))
	}
	g := cmPacket(id, 3, zhttp.TypeCredit)
	g.Credits = 100
	zs.sendStream(g)
	if r := zs.fromProxy(id, 4); string(r.Body) != strings.Repeat("r", 15) || !r.More {
		t.Fatalf("rest of the head packet %s", describe(r))
	}
	zs.send(zurlResponse(z.ID, 3, -1, "", nil, "end", false))
	if r := zs.fromProxy(id, 5); string(r.Body) != "end" || r.More {
		t.Fatalf("last packet %s", describe(r))
	}
}

// TestProxyZhttpAbsent: nobody connected to a zhttp/ target: 502 at once
// (Pushpin 1.36 too: its PUSH cannot write).
func TestProxyZhttpAbsent(t *testing.T) {
	zs := startZstream(t, false)
	start := time.Now()
	id := zs.start(zs.newRequest("GET", "http://example.com/", nil))
	zs.expectResponse(id, 1, 502, "Bad Gateway", textProxyError)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("502 after %v", d)
	}
}

// TestProxyZhttpTargetsFollowRoutes: a reloaded routes file binds its new
// zhttp targets and closes those it no longer names.
func TestProxyZhttpTargetsFollowRoutes(t *testing.T) {
	dir, err := os.MkdirTemp("", "tkz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	routesFile := dir + "/routes"
	write := func(line string) {
		if err := os.WriteFile(routesFile+".tmp", []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(routesFile+".tmp", routesFile); err != nil {
			t.Fatal(err)
		}
	}
	// bound: something listens on the ipc path (libzmq leaves the file
	// behind when it closes the socket).
	exists := func(name string) bool {
		c, err := net.Dial("unix", dir+"/"+name)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	write("* zhttpreq/ipc://" + dir + "/a")
	startProxy(t, harnessOpts{mod: func(c *Config) {
		c.RoutesFile = routesFile
		c.Tick = 20 * time.Millisecond
	}})
	testutil.Eventually(t, waitFor, func() error {
		if !exists("a") {
			return errors.New("zhttpreq/ target a not bound")
		}
		return nil
	})
	write("* zhttp/ipc://" + dir + "/b")
	testutil.Eventually(t, 3*waitFor, func() error {
		if exists("a") || !exists("b-out") || !exists("b-out-stream") || !exists("b-in") {
			return fmt.Errorf("a bound %v, b bound %v", exists("a"), exists("b-in"))
		}
		return nil
	})
}
