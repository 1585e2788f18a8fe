package proxy

import (
	"testing"
	"time"

	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

// openTestWS opens WebSockets to the test target until the fake handler
// hears a `here` (the PUSH to it delivers only once connected); it
// returns the connection, its 101 and its cid.
func openTestWS(h *harness, wh *wsHandler, uri string) (*wsConn, []byte) {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		p := h.wsRequest(uri)
		h.sendFirst(p)
		c := &wsConn{h: h, id: p.ID, cmSeq: 1}
		c.resp = h.fromProxy(p.ID, 0)
		select {
		case m := <-wh.pull.Recv():
			pkt, err := wscontrol.Parse(m[0])
			if err != nil {
				h.t.Fatal(err)
			}
			if it := pkt.Items[0]; it.Type != wscontrol.TypeHere || it.URI != uri {
				h.t.Fatalf("first item %+v, want here", it)
			}
			return c, pkt.Items[0].CID
		case <-time.After(quiet):
		}
		if time.Now().After(deadline) {
			h.t.Fatal("no here item")
		}
	}
}

func TestWSTestHandler(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"*,path_beg=/t/ test"}, mod: withWSControl})
	wh := connectWSHandler(h)

	// Only /ws (after the path_beg prefix) is a test WebSocket.
	p := h.wsRequest("ws://example.com/t/nope")
	h.sendFirst(p)
	if r := h.fromProxy(p.ID, 0); r.Type != zhttp.TypeError || r.Condition != zhttp.CondRejected || r.Code != 404 ||
		string(r.Body) != testNotFound {
		t.Fatalf("/nope: %s", describe(r))
	}

	c, cid := openTestWS(h, wh, "ws://example.com/t/ws?channel=a&channel=b")
	if c.resp.Type != zhttp.TypeData || c.resp.Code != 101 || len(c.resp.Headers) != 0 || c.resp.Credits != wsWindow {
		t.Fatalf("handshake answer %s headers %v credits %d", describe(c.resp), c.resp.Headers, c.resp.Credits)
	}
	// Subscriptions are GRIP control messages, acked by the handler.
	for i, ch := range []string{"a", "b"} {
		g := wh.expect(wscontrol.TypeGrip)
		if string(g.Message) != `{"type":"subscribe","channel":"`+ch+`"}` || string(g.CID) != string(cid) {
			t.Fatalf("grip item %d: %+v", i, g)
		}
		ack := wscontrol.NewItem(cid, wscontrol.TypeAck)
		ack.ReqID = g.ReqID
		wh.send(ack)
	}

	// Messages come back as sent, fragments included; pings get pongs.
	c.fromClient(zhttp.TypeData, "text", "hello", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "hello", -1)
	c.fromClient(zhttp.TypeData, "binary", "\x00\x01", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "binary", "\x00\x01", -1)
	c.fromClient(zhttp.TypeData, "text", "frag", -1, true)
	if f := c.toClient(); f.Type != zhttp.TypeData || string(f.Body) != "frag" || !f.More {
		t.Fatalf("first fragment %s more=%v", describe(f), f.More)
	}
	// A publish during the fragmented echo waits for its end.
	send := wscontrol.NewItem(cid, wscontrol.TypeSend)
	send.ContentType, send.Message, send.Queue = "text", []byte("published"), true
	wh.send(send)
	time.Sleep(quiet)
	c.fromClient(zhttp.TypeData, "", "ment", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "ment", -1)
	expectFrame(t, c.toClient(), zhttp.TypeData, "text", "published", -1)
	c.fromClient(zhttp.TypePing, "", "pp", -1, false)
	expectFrame(t, c.toClient(), zhttp.TypePong, "", "pp", -1)

	// The client's close is answered; the handler hears gone.
	c.fromClient(zhttp.TypeClose, "", "", 1000, false)
	expectFrame(t, c.toClient(), zhttp.TypeClose, "", "", 1000)
	if it := wh.expect(wscontrol.TypeGone); string(it.CID) != string(cid) {
		t.Fatalf("gone %+v", it)
	}
}
