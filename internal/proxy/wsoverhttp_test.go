package proxy

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

// These tests play condure, zurl and the handler around an in-process proxy
// for WebSocket-over-HTTP (grip-reference §6.3).

func TestWOHEventCodec(t *testing.T) {
	evs := []wohEvent{{typ: "OPEN"}, {typ: "TEXT", content: []byte("héllo\r\n"), hasBody: true}, {typ: "CLOSE", content: []byte{3, 0xe8}, hasBody: true}}
	b := encodeEvents(evs)
	if want := "OPEN\r\nTEXT 8\r\nhéllo\r\n\r\nCLOSE 2\r\n\x03\xe8\r\n"; string(b) != want {
		t.Fatalf("encoded %q, want %q", b, want)
	}
	got, err := decodeEvents(b)
	if err != nil || len(got) != 3 || got[1].typ != "TEXT" || string(got[1].content) != "héllo\r\n" || got[0].hasBody {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	for _, bad := range []string{"TEXT 10\r\nm:", "TEXT 5\r\nhello", "TEXT zz\r\nhello\r\n", "OPEN", "\r\n", "TEXT 2\r\nabcd\r\n"} {
		if _, err := decodeEvents([]byte(bad)); err == nil {
			t.Errorf("decodeEvents(%q) accepted", bad)
		}
	}
}

// wohConn is one WebSocket-over-HTTP connection as the fake peers see it.
type wohConn struct {
	*wsConn
	cid string
}

// post returns the next POST the proxy sent to zurl and its body.
func (c *wohConn) post() (*zhttp.Packet, string) {
	c.h.t.Helper()
	p := c.h.zurlFirst()
	if p.Method != "POST" || !p.Stream || p.More {
		c.h.t.Fatalf("request %s, want a complete POST", describe(p))
	}
	if v, _ := p.Header("Connection-Id"); c.cid != "" && v != c.cid {
		c.h.t.Fatalf("Connection-Id %q, want %q", v, c.cid)
	}
	c.zid = p.ID
	return p, string(p.Body)
}

// answer replies to the request with id zid.
func (c *wohConn) answer(zid []byte, code int64, headers []zhttp.Header, body string) {
	c.h.t.Helper()
	if code == 200 {
		headers = append([]zhttp.Header{{Name: "Content-Type", Value: wohContentType}}, headers...)
	}
	c.h.zurlSend(zurlResponse(zid, 0, code, "OK", headers, body, false))
}

// openWOH runs OPEN; the backend accepts with the given extra headers.
func openWOH(h *harness, uri string, headers []zhttp.Header) *wohConn {
	h.t.Helper()
	p := h.wsRequest(uri)
	p.Headers = append(p.Headers, zhttp.Header{Name: "Meta-User", Value: "mallory"}, zhttp.Header{Name: "Connection-Id", Value: "spoof"})
	h.sendFirst(p)
	c := &wohConn{wsConn: &wsConn{h: h, id: p.ID, cmSeq: 1}}
	req, body := c.post()
	if body != "OPEN\r\n" {
		h.t.Fatalf("OPEN body %q", body)
	}
	c.first = req
	c.cid, _ = req.Header("Connection-Id")
	c.answer(req.ID, 200, headers, "OPEN\r\n")
	c.resp = h.fromProxy(p.ID, 0)
	if c.resp.Code != 101 {
		h.t.Fatalf("handshake answer %s, want 101", describe(c.resp))
	}
	return c
}

func TestWOHRequestsAndEvents(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,over_http"}, mod: func(c *Config) { c.SigKey = "secret" }})
	c := openWOH(h, "ws://example.com/chat?x=1", []zhttp.Header{{Name: "Set-Meta-User", Value: "alice"},
		{Name: "X-Backend", Value: "yes"}, {Name: "Keep-Alive-Interval", Value: "5"}})
	req := c.first
	if req.URI != "http://example.com/chat?x=1" || len(c.cid) != 36 {
		t.Fatalf("request %s cid %q", describe(req), c.cid)
	}
	for name, want := range map[string]string{"Accept": wohContentType, "Content-Type": wohContentType, "Content-Length": "6",
		"Sec-WebSocket-Extensions": "grip", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"} {
		if v, _ := req.Header(name); v != want {
			t.Errorf("%s: %q, want %q (%v)", name, v, want, req.Headers)
		}
	}
	for _, name := range []string{"Upgrade", "Connection", "Meta-User"} {
		if _, ok := req.Header(name); ok {
			t.Errorf("%s forwarded: %v", name, req.Headers)
		}
	}
	if v, _ := req.Header("Grip-Sig"); v == "" {
		t.Errorf("no Grip-Sig: %v", req.Headers)
	}
	if v, _ := c.resp.Header("X-Backend"); v != "yes" {
		t.Errorf("101 headers %v", c.resp.Headers)
	}
	for _, name := range []string{"Set-Meta-User", "Keep-Alive-Interval", "Content-Type"} {
		if _, ok := c.resp.Header(name); ok {
			t.Errorf("%s shown to the client: %v", name, c.resp.Headers)
		}
	}

	// A fragmented message goes as one TEXT event with the stored meta;
	// while it is in flight the next messages wait and go together.
	c.fromClient(zhttp.TypeData, "text", "hel", -1, true)
	c.fromClient(zhttp.TypeData, "text", "lo", -1, false)
	r1, body := c.post()
	if body != "TEXT 5\r\nhello\r\n" {
		t.Fatalf("body %q", body)
	}
	if v, _ := r1.Header("Meta-User"); v != "alice" {
		t.Fatalf("Meta-User %q", v)
	}
	c.fromClient(zhttp.TypeData, "binary", "\x00\x01", -1, false)
	c.fromClient(zhttp.TypePing, "", "p", -1, false)
	h.noneToZurl()
	c.answer(r1.ID, 200, []zhttp.Header{{Name: "Set-Meta-User", Value: ""}}, "TEXT 5\r\nhello\r\nBINARY 1\r\n\x07\r\nPING\r\n")
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "hello", -1)
	expectFrame(t, c.toClient(), zhttp.TypeData, "binary", "\x07", -1)
	expectFrame(t, c.toClient(), zhttp.TypePing, "", "", -1)
	r2, body := c.post()
	if body != "BINARY 2\r\n\x00\x01\r\nPING 1\r\np\r\n" {
		t.Fatalf("body %q", body)
	}
	if _, ok := r2.Header("Meta-User"); ok {
		t.Fatalf("deleted meta sent: %v", r2.Headers)
	}
	c.answer(r2.ID, 200, nil, "")

	// The client's close goes as CLOSE; the backend's CLOSE answers it.
	c.fromClient(zhttp.TypeClose, "", "bye", 1001, false)
	r3, body := c.post()
	if body != "CLOSE 5\r\n\x03\xe9bye\r\n" {
		t.Fatalf("body %q", body)
	}
	c.answer(r3.ID, 200, nil, "CLOSE 2\r\n\x03\xe9\r\n")
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "", 1001)
	h.noneToZurl()
}

func TestWOHRejectAndBadAnswers(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,over_http"}})
	// A non-200 answer to OPEN is the client's handshake answer.
	p := h.wsRequest("ws://example.com/")
	h.sendFirst(p)
	c := &wohConn{wsConn: &wsConn{h: h, id: p.ID, cmSeq: 1}}
	req, _ := c.post()
	c.answer(req.ID, 403, []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}, "go away\n")
	r := h.fromProxy(p.ID, 0)
	if r.Type != zhttp.TypeError || r.Condition != zhttp.CondRejected || r.Code != 403 || string(r.Body) != "go away\n" {
		t.Fatalf("rejection %s", describe(r))
	}
	// A 200 with another content type is rejected too.
	p = h.wsRequest("ws://example.com/")
	h.sendFirst(p)
	c = &wohConn{wsConn: &wsConn{h: h, id: p.ID, cmSeq: 1}}
	req, _ = c.post()
	h.zurlSend(zurlResponse(req.ID, 0, 200, "OK", []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}, "hi", false))
	if r := h.fromProxy(p.ID, 0); r.Type != zhttp.TypeError || r.Code != 200 || string(r.Body) != "hi" {
		t.Fatalf("rejection %s", describe(r))
	}

	// A truncated events body after OPEN closes that connection with 1011;
	// another connection goes on.
	c = openWOH(h, "ws://example.com/a", nil)
	other := openWOH(h, "ws://example.com/b", nil)
	c.fromClient(zhttp.TypeData, "text", "x", -1, false)
	r1, _ := c.post()
	c.answer(r1.ID, 200, nil, "TEXT 10\r\nm:")
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "", 1011)
	other.fromClient(zhttp.TypeData, "text", "y", -1, false)
	r2, body := other.post()
	if body != "TEXT 1\r\ny\r\n" {
		t.Fatalf("body %q", body)
	}
	other.answer(r2.ID, 200, nil, "TEXT 1\r\nz\r\n")
	expectFrame(t, other.toClient(), zhttp.TypeData, "text", "z", -1)
	// DISCONNECT from the backend ends the client abruptly.
	other.fromClient(zhttp.TypeData, "text", "y", -1, false)
	r3, _ := other.post()
	other.answer(r3.ID, 200, nil, "DISCONNECT\r\n")
	if p := other.toClient(); p.Type != zhttp.TypeCancel {
		t.Fatalf("got %s, want cancel", describe(p))
	}
}

func TestWOHClientVanishes(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,over_http,one_event"}})
	c := openWOH(h, "ws://example.com/", nil)
	// one_event: one event per request.
	c.fromClient(zhttp.TypeData, "text", "a", -1, false)
	r1, _ := c.post()
	c.fromClient(zhttp.TypeData, "text", "b", -1, false)
	c.fromClient(zhttp.TypeData, "text", "c", -1, false)
	c.answer(r1.ID, 200, nil, "")
	r2, body := c.post()
	if body != "TEXT 1\r\nb\r\n" {
		t.Fatalf("one_event body %q", body)
	}
	c.answer(r2.ID, 200, nil, "")
	if _, body := c.post(); body != "TEXT 1\r\nc\r\n" {
		t.Fatalf("one_event body %q", body)
	}
	// The client vanishes: the request in flight is cancelled and a
	// DISCONNECT goes to the backend.
	c.fromClient(zhttp.TypeCancel, "", "", -1, false)
	if _, body := c.post(); body != "DISCONNECT\r\n" {
		t.Fatalf("body %q", body)
	}
}

func TestWOHGrip(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,over_http,sub=implicit"}, mod: withWSControl})
	wh := connectWSHandler(h)
	var c *wohConn
	var here wscontrol.Item
	deadline := time.Now().Add(waitFor)
	for here.Type == "" { // the PUSH to the fake handler delivers once connected
		c = openWOH(h, "ws://example.com/", []zhttp.Header{{Name: "Sec-WebSocket-Extensions", Value: "grip"}})
		select {
		case m := <-wh.pull.Recv():
			p, err := wscontrol.Parse(m[0])
			if err != nil {
				t.Fatal(err)
			}
			here = p.Items[0]
		case <-time.After(quiet):
			if time.Now().After(deadline) {
				t.Fatal("no here item")
			}
		}
	}
	if here.Type != wscontrol.TypeHere || string(here.CID) != c.cid {
		t.Fatalf("here %+v, cid %q", here, c.cid)
	}
	if _, ok := c.resp.Header("Sec-WebSocket-Extensions"); ok {
		t.Fatalf("grip extension shown to the client: %v", c.resp.Headers)
	}
	sub := wh.expect(wscontrol.TypeSubscribe)
	ack := wscontrol.NewItem(here.CID, wscontrol.TypeAck)
	ack.ReqID = sub.ReqID
	wh.send(ack)
	// c: TEXT events go to the handler, m: ones to the client stripped.
	c.fromClient(zhttp.TypeData, "text", "hi", -1, false)
	r1, _ := c.post()
	c.answer(r1.ID, 200, nil, string(encodeEvents([]wohEvent{
		{typ: "TEXT", content: []byte(`c:{"type":"subscribe","channel":"room"}`), hasBody: true},
		{typ: "TEXT", content: []byte("m:hi"), hasBody: true}, {typ: "TEXT", content: []byte("hi"), hasBody: true}})))
	g := wh.expect(wscontrol.TypeGrip)
	if !strings.Contains(string(g.Message), `"room"`) {
		t.Fatalf("grip %+v", g)
	}
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "hi", -1)
	// A send item reaches the client; a refresh item makes a request.
	send := wscontrol.NewItem(here.CID, wscontrol.TypeSend)
	send.ContentType, send.Message = "text", []byte("published")
	wh.send(send)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "published", -1)
	wh.send(wscontrol.NewItem(here.CID, wscontrol.TypeRefresh))
	if _, body := c.post(); body != "" {
		t.Fatalf("refresh body %q", body)
	}
}

func TestWOHKeepAliveAndRetries(t *testing.T) {
	var offset atomic.Int64
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,over_http"}, mod: func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		c.Tick = 20 * time.Millisecond
		// The failures below are the fake zurl's: an unacknowledged
		// request must not fail on its own first on a loaded machine.
		c.ServiceTimeout = time.Minute
	}})
	advance := func(d time.Duration) { offset.Add(int64(d)) }
	c := openWOH(h, "ws://example.com/", []zhttp.Header{{Name: "Keep-Alive-Interval", Value: "5"}})
	// Keep-Alive-Interval below 20 s counts as 20 s: an empty request then.
	advance(6 * time.Second)
	h.noneToZurl()
	advance(15 * time.Second)
	r1, body := c.post()
	if body != "" {
		t.Fatalf("keep-alive body %q", body)
	}
	c.answer(r1.ID, 200, []zhttp.Header{{Name: "Keep-Alive-Interval", Value: "0"}}, "")

	// A connection failure after OPEN is retried with the same events.
	c.fromClient(zhttp.TypeData, "text", "x", -1, false)
	r2, body := c.post()
	if body != "TEXT 1\r\nx\r\n" {
		t.Fatalf("body %q", body)
	}
	fail := zp(r2.ID, 0, zhttp.TypeError)
	fail.Condition = zhttp.CondRemoteConnectionFailed
	h.zurlSend(fail)
	time.Sleep(quiet)
	h.noneToZurl()
	advance(2100 * time.Millisecond)
	r3, body := c.post()
	if body != "TEXT 1\r\nx\r\n" || string(r3.ID) == string(r2.ID) {
		t.Fatalf("retry %s", describe(r3))
	}
	// Any other failure closes the client with 1011 (keep-alives are off).
	fail = zp(r3.ID, 0, zhttp.TypeError)
	fail.Condition = "bad-request"
	h.zurlSend(fail)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "", 1011)
	advance(30 * time.Second)
	h.noneToZurl()
}

func TestWOHClientSentEvents(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"a.com 127.0.0.1:9999,over_http", "b.com 127.0.0.1:9999"}})
	// An HTTP request with WebSocket events to an over_http target: 403.
	for _, ct := range []string{wohContentType, wohContentType + "; charset=x"} {
		p := h.newRequest("POST", "http://a.com/", []zhttp.Header{{Name: "Host", Value: "a.com"}, {Name: "Content-Type", Value: ct}})
		p.Body = []byte("OPEN\r\n")
		h.start(p)
		h.expectResponse(p.ID, 1, 403, "Forbidden", textEventsForbidden)
	}
	// Other targets take them as any body.
	p := h.newRequest("POST", "http://b.com/", []zhttp.Header{{Name: "Host", Value: "b.com"}, {Name: "Content-Type", Value: wohContentType}})
	h.start(p)
	if z := h.zurlFirst(); z.Method != "POST" {
		t.Fatalf("request %s", describe(z))
	}
}

func TestWOHLargeClientMessage(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999,over_http"}})
	c := openWOH(h, "ws://example.com/", nil)
	if c.resp.Credits != wsWindow {
		t.Fatalf("101 credits %d", c.resp.Credits)
	}
	// A 190000-byte message (more than the first window, within the
	// 200000-byte buffer) completes: the proxy grants the rest.
	c.fromClient(zhttp.TypeData, "text", strings.Repeat("a", wsWindow), -1, true)
	cr := h.fromProxyAnySeq(c.id)
	if cr.Type != zhttp.TypeCredit || cr.Credits != wohPendingMax-wsWindow {
		t.Fatalf("got %s, want credits %d", describe(cr), wohPendingMax-wsWindow)
	}
	c.fromClient(zhttp.TypeData, "text", strings.Repeat("b", 190000-wsWindow), -1, false)
	r, body := c.post()
	if want := string(encodeEvents([]wohEvent{{typ: "TEXT", content: []byte(strings.Repeat("a", wsWindow) + strings.Repeat("b", 190000-wsWindow)), hasBody: true}})); body != want {
		t.Fatalf("body of %d bytes, want %d", len(body), len(want))
	}
	c.answer(r.ID, 200, nil, "")
	// A message that cannot complete in the buffer closes with 1009
	// (message too big).
	c.fromClient(zhttp.TypeData, "text", strings.Repeat("c", wsWindow), -1, true)
	c.fromClient(zhttp.TypeData, "text", strings.Repeat("d", wohPendingMax-wsWindow), -1, true)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "", 1009)
}
