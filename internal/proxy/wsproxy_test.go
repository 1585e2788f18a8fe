package proxy

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/zsock"
	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

// These tests play condure, zurl and the handler around an in-process
// proxy for WebSockets (zmq-wire.md §2.12, §4.5, capture §A.7).

// wsConn is one proxied WebSocket as the fake peers see it.
type wsConn struct {
	h     *harness
	id    []byte // connmgr's id
	cmSeq int64  // next seq connmgr sends
	zid   []byte // the proxy's id towards zurl
	zSeq  int64  // next seq zurl sends
	first *zhttp.Packet
	resp  *zhttp.Packet // the proxy's 101 to connmgr
}

// wsHandler is the fake handler's ws-control sockets.
type wsHandler struct {
	t          *testing.T
	push, pull *zsock.Socket
}

// withWSControl configures the ws-control binds beside the harness's others.
func withWSControl(c *Config) {
	dir := strings.TrimSuffix(c.ConnmgrInSpecs[0], "condure-out")
	c.WSControlInSpecs = []string{dir + "ws-control-in"}
	c.WSControlOutSpecs = []string{dir + "ws-control-out"}
}

// connectWSHandler connects a fake handler to the proxy's ws-control binds.
func connectWSHandler(h *harness) *wsHandler {
	t := h.t
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	push, err := h.zctx.Open(zsock.Options{Name: "wsc-push", Type: zmq.PUSH, Direction: zsock.SendOnly,
		Connect: h.cfg.WSControlInSpecs, SendTimeout: waitFor, Linger: 0}, log)
	if err != nil {
		t.Fatal(err)
	}
	pull, err := h.zctx.Open(zsock.Options{Name: "wsc-pull", Type: zmq.PULL, Direction: zsock.RecvOnly,
		Connect: h.cfg.WSControlOutSpecs, Linger: 0}, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 2)
	go func() { ch <- push.Run(ctx) }()
	go func() { ch <- pull.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ch; <-ch })
	return &wsHandler{t: t, push: push, pull: pull}
}

// next returns the next item the proxy sent to the handler.
func (w *wsHandler) next() wscontrol.Item {
	w.t.Helper()
	select {
	case m := <-w.pull.Recv():
		p, err := wscontrol.Parse(m[0])
		if err != nil || len(p.Items) != 1 {
			w.t.Fatalf("ws-control packet %q: %v", m[0], err)
		}
		return p.Items[0]
	case <-time.After(waitFor):
		w.t.Fatal("no ws-control item")
	}
	return wscontrol.Item{}
}

func (w *wsHandler) expect(typ string) wscontrol.Item {
	w.t.Helper()
	it := w.next()
	if it.Type != typ {
		w.t.Fatalf("ws-control item %q (%+v), want %q", it.Type, it, typ)
	}
	return it
}

func (w *wsHandler) none() {
	w.t.Helper()
	select {
	case m := <-w.pull.Recv():
		w.t.Fatalf("unexpected ws-control packet %q", m[0])
	case <-time.After(quiet):
	}
}

func (w *wsHandler) send(items ...wscontrol.Item) {
	w.t.Helper()
	p := wscontrol.Packet{Items: items}
	select {
	case w.push.Send() <- zsock.Message{p.Encode()}:
	case <-time.After(waitFor):
		w.t.Fatal("wsc-push queue full")
	}
}

// wsRequest builds a WebSocket first packet as condure sends it (§A.7).
func (h *harness) wsRequest(uri string) *zhttp.Packet {
	p := h.newRequest("GET", uri, []zhttp.Header{
		{Name: "Host", Value: "example.com"}, {Name: "Upgrade", Value: "websocket"}, {Name: "Connection", Value: "Upgrade"},
		{Name: "Sec-WebSocket-Key", Value: "dGhlIHNhbXBsZSBub25jZQ=="}, {Name: "Sec-WebSocket-Version", Value: "13"},
		{Name: "Sec-WebSocket-Extensions", Value: "permessage-deflate"},
	})
	p.Stream = false
	p.Credits = 8192
	return p
}

// openWS runs the handshake: the proxy's request to zurl, zurl's 101 with
// the given extension header (if any) and zurlCredits, the proxy's 101.
func openWS(h *harness, uri, ext string, zurlCredits int64) *wsConn {
	h.t.Helper()
	p := h.wsRequest(uri)
	h.sendFirst(p)
	zf := h.zurlFirst()
	c := &wsConn{h: h, id: p.ID, cmSeq: 1, zid: zf.ID, zSeq: 1, first: zf}
	hs := []zhttp.Header{{Name: "Upgrade", Value: "websocket"}, {Name: "Connection", Value: "Upgrade"},
		{Name: "Sec-WebSocket-Accept", Value: "x3JJHMbDL1EzLkh9GBhXDw=="}, {Name: "X-Backend", Value: "yes"}}
	if ext != "" {
		hs = append(hs, zhttp.Header{Name: "Sec-WebSocket-Extensions", Value: ext})
	}
	r := zurlResponse(zf.ID, 0, 101, "Switching Protocols", hs, "", false)
	r.Credits = zurlCredits
	h.zurlSend(r)
	c.resp = h.fromProxy(p.ID, 0)
	if c.resp.Type != zhttp.TypeData || c.resp.Code != 101 {
		h.t.Fatalf("handshake answer %s, want 101", describe(c.resp))
	}
	return c
}

// fromClient sends a connmgr packet of this connection.
func (c *wsConn) fromClient(typ, ctype, body string, code int64, more bool) {
	c.h.t.Helper()
	p := cmPacket(c.id, c.cmSeq, typ)
	c.cmSeq++
	p.ContentType, p.Code, p.More = ctype, code, more
	if body != "" || typ == zhttp.TypeData {
		p.Body = []byte(body)
	}
	c.h.sendStream(p)
}

// fromBackend sends a zurl packet of this connection.
func (c *wsConn) fromBackend(typ, ctype, body string, code int64, more bool) {
	c.h.t.Helper()
	p := zp(c.zid, c.zSeq, typ)
	c.zSeq++
	p.ContentType, p.Code, p.More = ctype, code, more
	if body != "" || typ == zhttp.TypeData {
		p.Body = []byte(body)
	}
	c.h.zurlSend(p)
}

// toClient returns the next non-credit packet the proxy sent to connmgr.
func (c *wsConn) toClient() *zhttp.Packet {
	c.h.t.Helper()
	for {
		p := c.h.fromProxyAnySeq(c.id)
		if p.Type != zhttp.TypeCredit && p.Type != zhttp.TypeKeepAlive {
			return p
		}
	}
}

// toBackend returns the next non-credit packet the proxy sent to zurl.
func (c *wsConn) toBackend() *zhttp.Packet {
	c.h.t.Helper()
	for {
		p := c.h.zurlStream(c.zid, -1)
		if p.Type != zhttp.TypeCredit && p.Type != zhttp.TypeKeepAlive {
			return p
		}
	}
}

func expectFrame(t *testing.T, p *zhttp.Packet, typ, ctype, body string, code int64) {
	t.Helper()
	if p.Type != typ || (ctype != "" && p.ContentType != ctype) || string(p.Body) != body || (code >= 0 && p.Code != code) || p.More {
		t.Fatalf("got %s content-type %q, want type %q %q %q code %d", describe(p), p.ContentType, typ, ctype, body, code)
	}
}

func TestWSPassthrough(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}, mod: func(c *Config) { c.SigKey = "secret" }})
	c := openWS(h, "ws://example.com/chat?x=1", "", 200000)

	// The request to zurl: ws URI, no stream, credits, the client's
	// extensions replaced by the grip offer, Grip-Sig added.
	zf := c.first
	if zf.URI != "ws://example.com/chat?x=1" || zf.Stream || zf.Credits != wsWindow || zf.ConnectHost != "127.0.0.1" || zf.ConnectPort != 9999 {
		t.Fatalf("zurl request %s uri %q stream %v", describe(zf), zf.URI, zf.Stream)
	}
	if ext, _ := zf.Header("Sec-WebSocket-Extensions"); ext != "grip" {
		t.Errorf("Sec-WebSocket-Extensions %q, want grip", ext)
	}
	if _, ok := zf.Header("Grip-Sig"); !ok {
		t.Error("no Grip-Sig")
	}
	if key, _ := zf.Header("Sec-WebSocket-Key"); key == "" {
		t.Error("Sec-WebSocket-Key not passed")
	}
	// The 101 to connmgr: credits, the backend's extra headers only.
	if c.resp.Credits != wsWindow || !c.resp.Multi {
		t.Errorf("101 %s", describe(c.resp))
	}
	if v, _ := c.resp.Header("X-Backend"); v != "yes" {
		t.Errorf("X-Backend not relayed: %v", c.resp.Headers)
	}
	for _, n := range []string{"Sec-WebSocket-Accept", "Upgrade", "Connection", "Sec-WebSocket-Extensions"} {
		if _, ok := c.resp.Header(n); ok {
			t.Errorf("101 carries %s: %v", n, c.resp.Headers)
		}
	}

	c.fromClient(zhttp.TypeData, "text", "hello", -1, false)
	expectFrame(t, c.toBackend(), zhttp.TypeData, "text", "hello", -1)
	c.fromBackend(zhttp.TypeData, "binary", "\x00\x01bin", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "binary", "\x00\x01bin", -1)
	// Unprefixed messages pass when GRIP was not accepted.
	c.fromBackend(zhttp.TypeData, "", "c:{}", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "c:{}", -1)

	// Fragments keep their more flags both ways.
	c.fromClient(zhttp.TypeData, "text", "frag1", -1, true)
	if p := c.toBackend(); string(p.Body) != "frag1" || !p.More {
		t.Fatalf("fragment %s", describe(p))
	}
	c.fromClient(zhttp.TypeData, "text", "frag2", -1, false)
	expectFrame(t, c.toBackend(), zhttp.TypeData, "text", "frag2", -1)

	// Ping and pong relay both ways.
	c.fromClient(zhttp.TypePing, "", "p1", -1, false)
	expectFrame(t, c.toBackend(), zhttp.TypePing, "", "p1", -1)
	c.fromBackend(zhttp.TypePong, "", "p1", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypePong, "", "p1", -1)

	// Close from the client: relayed with code and reason; the backend's
	// answer is relayed back and the session ends.
	c.fromClient(zhttp.TypeClose, "", "bye", 4000, false)
	expectFrame(t, c.toBackend(), zhttp.TypeClose, "", "bye", 4000)
	c.fromBackend(zhttp.TypeClose, "", "ok", 4000, false)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "ok", 4000)
	// The session is gone: a late packet from connmgr is cancelled.
	c.fromClient(zhttp.TypeData, "text", "late", -1, false)
	if p := c.toClient(); p.Type != zhttp.TypeCancel {
		t.Fatalf("late packet answered with %s", describe(p))
	}
}

func TestWSBackendCloses(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}})
	c := openWS(h, "ws://example.com/", "", 200000)
	c.fromBackend(zhttp.TypeClose, "", "server done", 1001, false)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "server done", 1001)
	c.fromClient(zhttp.TypeClose, "", "", 1001, false)
	expectFrame(t, c.toBackend(), zhttp.TypeClose, "", "", 1001)

	// A backend that fails after the handshake: the client gets 1011.
	c = openWS(h, "ws://example.com/", "", 200000)
	p := zp(c.zid, c.zSeq, zhttp.TypeError)
	p.Condition = zhttp.CondUndefined
	h.zurlSend(p)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "", wsCloseInternalError)
	c.fromClient(zhttp.TypeClose, "", "", wsCloseInternalError, false)
	h.noneToZurlStream()
}

func TestWSRejections(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{
		"example.com 127.0.0.1:9999,over_http",
		"other.com 127.0.0.1:9998 127.0.0.1:9999",
	}})
	expectReject := func(p *zhttp.Packet, code int64, body string) {
		t.Helper()
		if p.Type != zhttp.TypeError || p.Condition != zhttp.CondRejected || p.Code != code || !strings.Contains(string(p.Body), body) {
			t.Fatalf("rejection %s, want %d %q", describe(p), code, body)
		}
	}
	// over_http whose zhttp client never answers the OPEN request: 502.
	p := h.wsRequest("ws://example.com/")
	h.sendFirst(p)
	if z := h.zurlFirst(); z.Method != "POST" {
		t.Fatalf("over_http request %s", describe(z))
	}
	expectReject(h.fromProxy(p.ID, 0), 502, "Error while proxying")

	// No route.
	p = h.wsRequest("ws://nowhere.org/")
	h.sendFirst(p)
	expectReject(h.fromProxy(p.ID, 0), 502, "No route for host: nowhere.org")

	// Failover on a connect error, then the backend's 403 with its body.
	p = h.wsRequest("ws://other.com/")
	h.sendFirst(p)
	zf := h.zurlFirst()
	if zf.ConnectPort != 9998 {
		t.Fatalf("first target port %d", zf.ConnectPort)
	}
	e := zp(zf.ID, 0, zhttp.TypeError)
	e.Condition = zhttp.CondRemoteConnectionFailed
	h.zurlSend(e)
	zf = h.zurlFirst()
	if zf.ConnectPort != 9999 {
		t.Fatalf("second target port %d", zf.ConnectPort)
	}
	e = zp(zf.ID, 0, zhttp.TypeError)
	e.Condition = zhttp.CondRejected
	e.Code = 403
	e.Body = []byte("go away\n")
	h.zurlSend(e)
	r := h.fromProxy(p.ID, 0)
	expectReject(r, 403, "go away\n")
	if r.Reason != "Forbidden" {
		t.Errorf("reason %q", r.Reason)
	}
	// All targets failing: 502.
	p = h.wsRequest("ws://other.com/")
	h.sendFirst(p)
	for range 2 {
		zf = h.zurlFirst()
		e = zp(zf.ID, 0, zhttp.TypeError)
		e.Condition = zhttp.CondRemoteConnectionFailed
		h.zurlSend(e)
	}
	expectReject(h.fromProxy(p.ID, 0), 502, "Error while proxying to origin.")
}

// TestWSLargeMessages moves a 5 MB message each way through the proxy with
// peers that send exactly what they were granted: every packet the proxy
// sends fits the receiver's credits, so what waits in the proxy is bounded
// by its window whatever the message size.
func TestWSLargeMessages(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}})
	const total = 5 << 20
	const zurlWindow = 30000 // smaller than connmgr's chunks: frames get split
	c := openWS(h, "ws://example.com/", "", zurlWindow)
	t.Run("client to backend", func(t *testing.T) {
		pumpWS(t, h, total, c.resp.Credits, zurlWindow, 20000,
			func(p *zhttp.Packet) {
				p.From, p.ID, p.Seq, p.Multi = []byte(connmgrFrom), c.id, c.cmSeq, true
				c.cmSeq++
				h.sendStream(p)
			},
			func(p *zhttp.Packet) { p.From, p.ID, p.Seq = []byte(zurlFrom), c.zid, c.zSeq; c.zSeq++; h.zurlSend(p) },
			h.cm.sub.Recv(), func(m zsock.Message) *zhttp.Packet { return h.cm.parse(m) },
			h.zDealer.Recv(), func(m zsock.Message) *zhttp.Packet { return mustParse(t, m[1]) })
	})
	t.Run("backend to client", func(t *testing.T) {
		pumpWS(t, h, total, wsWindow, 8192, 25000,
			func(p *zhttp.Packet) { p.From, p.ID, p.Seq = []byte(zurlFrom), c.zid, c.zSeq; c.zSeq++; h.zurlSend(p) },
			func(p *zhttp.Packet) {
				p.From, p.ID, p.Seq, p.Multi = []byte(connmgrFrom), c.id, c.cmSeq, true
				c.cmSeq++
				h.sendStream(p)
			},
			h.zDealer.Recv(), func(m zsock.Message) *zhttp.Packet { return mustParse(t, m[1]) },
			h.cm.sub.Recv(), func(m zsock.Message) *zhttp.Packet { return h.cm.parse(m) })
	})
}

func mustParse(t *testing.T, b []byte) *zhttp.Packet {
	t.Helper()
	p, err := zhttp.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pumpWS sends one message of total bytes from a sender that spends
// exactly the credits the proxy granted it (senderCredits, then credit
// packets on senderIn) to a receiver that granted receiverCredits and
// grants back what it receives, checking that the proxy never sends the
// receiver more than its credits and that the bytes arrive in order.
func pumpWS(t *testing.T, h *harness, total int, senderCredits, receiverCredits int64, chunk int,
	send, receiverSend func(*zhttp.Packet),
	senderIn <-chan zsock.Message, senderParse func(zsock.Message) *zhttp.Packet,
	receiverIn <-chan zsock.Message, receiverParse func(zsock.Message) *zhttp.Packet) {
	t.Helper()
	pattern := func(i int) byte { return byte(i % 251) }
	sent, got := 0, 0
	lastMore := true
	deadline := time.After(60 * time.Second)
	for got < total {
		for sent < total && senderCredits > 0 {
			n := min(chunk, int(senderCredits), total-sent)
			b := make([]byte, n)
			for i := range b {
				b[i] = pattern(sent + i)
			}
			p := zhttp.New()
			p.ContentType, p.Body, p.More = "binary", b, sent+n < total
			send(p)
			sent += n
			senderCredits -= int64(n)
		}
		select {
		case m := <-senderIn:
			if p := senderParse(m); p.Type == zhttp.TypeCredit {
				senderCredits += p.Credits
			}
		case m := <-receiverIn:
			p := receiverParse(m)
			if p.Type != zhttp.TypeData {
				continue
			}
			if int64(len(p.Body)) > receiverCredits {
				t.Fatalf("proxy sent %d bytes with %d credits", len(p.Body), receiverCredits)
			}
			for i, b := range p.Body {
				if b != pattern(got+i) {
					t.Fatalf("byte %d differs", got+i)
				}
			}
			got += len(p.Body)
			lastMore = p.More
			// Spent, and granted back at once.
			cr := zhttp.New()
			cr.Type, cr.Credits = zhttp.TypeCredit, int64(len(p.Body))
			receiverSend(cr)
		case <-deadline:
			t.Fatalf("stalled at %d of %d bytes", got, total)
		}
	}
	if lastMore {
		t.Fatal("last packet still has more")
	}
}

// openGripWS opens GRIP WebSockets until the handler hears a `here` (the
// PUSH to it delivers only once connected) and returns the last one and
// its cid.
func openGripWS(h *harness, wh *wsHandler, uri, ext string) (*wsConn, wscontrol.Item) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		c := openWS(h, uri, ext, 200000)
		select {
		case m := <-wh.pull.Recv():
			p, err := wscontrol.Parse(m[0])
			if err != nil {
				h.t.Fatal(err)
			}
			return c, p.Items[0]
		case <-time.After(quiet):
		}
		if time.Now().After(deadline) {
			h.t.Fatal("no here item")
		}
	}
}

func TestWSGrip(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,sub=implicit"}, mod: withWSControl})
	wh := connectWSHandler(h)
	c, here := openGripWS(h, wh, "ws://example.com/room", `grip; message-prefix="p:"`)
	if here.Type != wscontrol.TypeHere || here.TTL != 60 || here.URI != "ws://example.com/room" || len(here.CID) != 36 || here.ReqID != nil {
		t.Fatalf("here %+v", here)
	}
	cid := here.CID
	for _, n := range []string{"Sec-WebSocket-Extensions"} {
		if _, ok := c.resp.Header(n); ok {
			t.Errorf("grip extension shown to the client: %v", c.resp.Headers)
		}
	}
	sub := wh.expect(wscontrol.TypeSubscribe)
	if sub.Channel != "implicit" || string(sub.ReqID) != "0" {
		t.Fatalf("subscribe %+v", sub)
	}
	ack := wscontrol.NewItem(cid, wscontrol.TypeAck)
	ack.ReqID = sub.ReqID
	wh.send(ack)

	// A control message goes to the handler, never to the client.
	c.fromBackend(zhttp.TypeData, "text", `c:{"type":"subscribe","channel":"x"}`, -1, false)
	g := wh.expect(wscontrol.TypeGrip)
	if string(g.Message) != `{"type":"subscribe","channel":"x"}` || string(g.ReqID) != "1" || string(g.CID) != string(cid) {
		t.Fatalf("grip %+v", g)
	}
	ack.ReqID = g.ReqID
	wh.send(ack)
	// Bad control messages are skipped (logged with the cid).
	c.fromBackend(zhttp.TypeData, "text", `c:{not json`, -1, false)
	c.fromBackend(zhttp.TypeData, "text", `c:{"type":"bogus"}`, -1, false)
	wh.none()
	// The prefix is stripped; unprefixed messages are dropped.
	c.fromBackend(zhttp.TypeData, "text", "no prefix", -1, false)
	c.fromBackend(zhttp.TypeData, "text", "p:hello", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "hello", -1)
	// Client messages go unchanged.
	c.fromClient(zhttp.TypeData, "text", "m:raw", -1, false)
	expectFrame(t, c.toBackend(), zhttp.TypeData, "text", "m:raw", -1)

	// A send with req-id is acked once written to the client.
	send := wscontrol.NewItem(cid, wscontrol.TypeSend)
	send.ContentType, send.Message, send.ReqID = "text", []byte("published text"), []byte("77")
	wh.send(send)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "published text", -1)
	if a := wh.expect(wscontrol.TypeAck); string(a.ReqID) != "77" {
		t.Fatalf("ack %+v", a)
	}
	// Binary sends keep their type.
	send = wscontrol.NewItem(cid, wscontrol.TypeSend)
	send.ContentType, send.Message = "binary", []byte{0, 1, 2}
	wh.send(send)
	expectFrame(t, c.toClient(), zhttp.TypeData, "binary", "\x00\x01\x02", -1)

	// Items for an unknown cid are answered with cancel.
	wh.send(wscontrol.NewItem([]byte("unknown-cid"), wscontrol.TypeKeepAlive))
	if it := wh.expect(wscontrol.TypeCancel); string(it.CID) != "unknown-cid" {
		t.Fatalf("cancel %+v", it)
	}

	// close from the handler: the client gets the code and reason, the
	// backend a close; after the client's answer the handler hears gone.
	cl := wscontrol.NewItem(cid, wscontrol.TypeClose)
	cl.Code, cl.Reason = 4002, "done by publish"
	wh.send(cl)
	expectFrame(t, c.toBackend(), zhttp.TypeClose, "", "", -1)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "done by publish", 4002)
	c.fromClient(zhttp.TypeClose, "", "done by publish", 4002, false)
	if it := wh.expect(wscontrol.TypeGone); string(it.CID) != string(cid) {
		t.Fatalf("gone %+v", it)
	}
}

func TestWSGripDetachAndTimers(t *testing.T) {
	var offset atomic.Int64
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}, mod: func(c *Config) {
		withWSControl(c)
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		c.Tick = 20 * time.Millisecond
	}})
	wh := connectWSHandler(h)
	c, here := openGripWS(h, wh, "ws://example.com/", "grip")
	cid := here.CID
	advance := func(d time.Duration) { offset.Add(int64(d)) }
	// keep-alive-setup: the proxy asks the handler for the keep-alive.
	ka := wscontrol.NewItem(cid, wscontrol.TypeKeepAliveSetup)
	ka.Timeout, ka.KeepAliveMode = 20, "interval"
	wh.send(ka)
	time.Sleep(quiet)
	advance(21 * time.Second)
	wh.expect(wscontrol.TypeNeedKeepAlive)
	// The handler's keep-alive message goes to the client.
	send := wscontrol.NewItem(cid, wscontrol.TypeSend)
	send.Message = []byte("ka")
	wh.send(send)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "ka", -1)
	// Connection keep-alive items at least every 45 s with ttl 60.
	advance(25 * time.Second)
	for {
		it := wh.next()
		if it.Type == wscontrol.TypeKeepAlive {
			if it.TTL != 60 {
				t.Fatalf("keep-alive %+v", it)
			}
			break
		}
		if it.Type != wscontrol.TypeNeedKeepAlive {
			t.Fatalf("item %+v", it)
		}
	}
	// Keep the zhttp sessions alive across the jumps.
	c.fromClient(zhttp.TypeKeepAlive, "", "", -1, false)
	c.fromBackend(zhttp.TypeKeepAlive, "", "", -1, false)
	ka.Timeout = 0
	wh.send(ka)

	// detach: the backend is closed, the client stays and still gets sends.
	wh.send(wscontrol.NewItem(cid, wscontrol.TypeDetach))
	expectFrame(t, c.toBackend(), zhttp.TypeClose, "", "", -1)
	c.fromBackend(zhttp.TypeClose, "", "", -1, false)
	c.fromClient(zhttp.TypeData, "text", "ignored", -1, false)
	send.Message = []byte("still here")
	wh.send(send)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "still here", -1)
	h.noneToZurlStream()

	// A grip message not acked in 8 s drops the connection.
	c2 := openWS(h, "ws://example.com/", "grip", 200000)
	here2 := wh.expect(wscontrol.TypeHere)
	c2.fromBackend(zhttp.TypeData, "text", `c:{"type":"subscribe","channel":"x"}`, -1, false)
	wh.expect(wscontrol.TypeGrip)
	time.Sleep(quiet)
	advance(9 * time.Second)
	for {
		it := wh.next()
		if it.Type == wscontrol.TypeGone && string(it.CID) == string(here2.CID) {
			break
		}
	}
	if p := c2.toClient(); p.Type != zhttp.TypeCancel {
		t.Fatalf("client got %s", describe(p))
	}
}

// TestWSSendDrops: a publish the client cannot take now is dropped (and
// acked), as in Pushpin; one queued with send-delayed waits for credits.
func TestWSSendDrops(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}, mod: withWSControl})
	wh := connectWSHandler(h)
	c, here := openGripWS(h, wh, "ws://example.com/", "grip")
	cid := here.CID
	// Use up connmgr's 8192 credits.
	big := strings.Repeat("x", 8192)
	c.fromBackend(zhttp.TypeData, "text", "m:"+big, -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", big, -1)
	send := wscontrol.NewItem(cid, wscontrol.TypeSend)
	send.Message, send.ReqID = []byte("dropped"), []byte("1")
	wh.send(send)
	if a := wh.expect(wscontrol.TypeAck); string(a.ReqID) != "1" {
		t.Fatalf("ack %+v", a)
	}
	queued := wscontrol.NewItem(cid, wscontrol.TypeSend)
	queued.Message, queued.Queue, queued.ReqID = []byte("queued"), true, []byte("2")
	wh.send(queued)
	wh.none()
	cr := cmPacket(c.id, c.cmSeq, zhttp.TypeCredit)
	c.cmSeq++
	cr.Credits = 100
	h.sendStream(cr)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "queued", -1)
	if a := wh.expect(wscontrol.TypeAck); string(a.ReqID) != "2" {
		t.Fatalf("ack %+v", a)
	}
}

// TestWSFailoverThenRelay: after a failed first target the connection to
// the second one relays both ways.
func TestWSFailoverThenRelay(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9998 127.0.0.1:9999"}})
	p := h.wsRequest("ws://example.com/")
	p.Credits = 100000
	h.sendFirst(p)
	zf := h.zurlFirst()
	e := zp(zf.ID, 0, zhttp.TypeError)
	e.Condition = zhttp.CondConnectionTimeout
	h.zurlSend(e)
	zf = h.zurlFirst()
	if zf.ConnectPort != 9999 {
		t.Fatalf("second target port %d", zf.ConnectPort)
	}
	r := zurlResponse(zf.ID, 0, 101, "Switching Protocols", nil, "", false)
	r.Credits = 1000
	h.zurlSend(r)
	c := &wsConn{h: h, id: p.ID, cmSeq: 1, zid: zf.ID, zSeq: 1, first: zf, resp: h.fromProxy(p.ID, 0)}
	if c.resp.Code != 101 {
		t.Fatalf("answer %s", describe(c.resp))
	}
	c.fromClient(zhttp.TypeData, "text", "up", -1, false)
	expectFrame(t, c.toBackend(), zhttp.TypeData, "text", "up", -1)
	// Enough backend data that the proxy must grant the zhttp client more.
	big := strings.Repeat("y", 6000)
	for range 4 {
		c.fromBackend(zhttp.TypeData, "text", big, -1, false)
		expectFrame(t, c.toClient(), zhttp.TypeData, "text", big, -1)
	}
	if p := h.zurlStream(c.zid, -1); p.Type != zhttp.TypeCredit || p.Credits <= 0 {
		t.Fatalf("no credit to the zhttp client: %s", describe(p))
	}
}

// TestWSCancels: a cancel from connmgr cancels the backend session and
// ends the control session; a cancel from the handler ends both sides.
func TestWSCancels(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}, mod: withWSControl})
	wh := connectWSHandler(h)
	c, here := openGripWS(h, wh, "ws://example.com/", "grip")
	c.fromClient(zhttp.TypeCancel, "", "", -1, false)
	if p := c.toBackend(); p.Type != zhttp.TypeCancel {
		t.Fatalf("zhttp client got %s", describe(p))
	}
	if it := wh.expect(wscontrol.TypeGone); string(it.CID) != string(here.CID) {
		t.Fatalf("gone %+v", it)
	}

	c = openWS(h, "ws://example.com/", "grip", 200000)
	here = wh.expect(wscontrol.TypeHere)
	wh.send(wscontrol.NewItem(here.CID, wscontrol.TypeCancel))
	if p := c.toBackend(); p.Type != zhttp.TypeCancel {
		t.Fatalf("zhttp client got %s", describe(p))
	}
	if p := c.toClient(); p.Type != zhttp.TypeCancel {
		t.Fatalf("connmgr got %s", describe(p))
	}
	wh.expect(wscontrol.TypeGone)
}
