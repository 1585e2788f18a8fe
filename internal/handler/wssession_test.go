package handler

import (
	"fmt"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/grip"
	"tack/internal/zsock"
	"tack/pkg/wscontrol"
)

// The test plays the proxy on the ws-control sockets (harness_test.go).

// wsSendRaw sends one raw ws-control packet to the handler.
func (h *harness) wsSendRaw(b []byte) {
	h.t.Helper()
	if _, err := h.wsOut.SendBytes(b, 0); err != nil {
		h.t.Fatal(err)
	}
}

// wsSendItems sends items in one packet.
func (h *harness) wsSendItems(items ...wscontrol.Item) {
	h.t.Helper()
	p := wscontrol.Packet{Items: items}
	h.wsSendRaw(p.Encode())
}

// wsRecv returns the next packet from the handler, or nil after timeout.
func (h *harness) wsRecv(timeout time.Duration) *wscontrol.Packet {
	h.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(h.wsIn, zmq.POLLIN)
	ev, err := poller.Poll(timeout)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(ev) == 0 {
		return nil
	}
	parts, err := h.wsIn.RecvMessageBytes(0)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(parts) != 1 {
		h.t.Fatalf("ws-control message with %d parts", len(parts))
	}
	p, err := wscontrol.Parse(parts[0])
	if err != nil {
		h.t.Fatalf("bad packet from the handler: %v: %q", err, parts[0])
	}
	if p.From != nil {
		h.t.Fatalf("1.36 packets carry no from: %q", parts[0])
	}
	return p
}

// wsExpect returns the next n items (from one or more packets).
func (h *harness) wsExpect(n int) []wscontrol.Item {
	h.t.Helper()
	var out []wscontrol.Item
	for len(out) < n {
		p := h.wsRecv(hWait)
		if p == nil {
			h.t.Fatalf("got %d ws-control items, want %d: %+v", len(out), n, out)
		}
		out = append(out, p.Items...)
	}
	if len(out) > n {
		h.t.Fatalf("got %d ws-control items, want %d: %+v", len(out), n, out)
	}
	return out
}

// wsExpectNone checks that nothing arrives for a short while.
func (h *harness) wsExpectNone() {
	h.t.Helper()
	if p := h.wsRecv(300 * time.Millisecond); p != nil {
		h.t.Fatalf("unexpected ws-control packet: %+v", p.Items)
	}
}

// wsWarmUp waits until the handler's PUSH reaches our PULL.
func (h *harness) wsWarmUp() {
	h.t.Helper()
	deadline := time.Now().Add(hWait)
	for n := 0; ; n++ {
		h.wsSendItems(wsItem(fmt.Sprintf("warm-%d", n), wscontrol.TypeKeepAlive))
		if p := h.wsRecv(200 * time.Millisecond); p != nil {
			for h.wsRecv(100*time.Millisecond) != nil {
			}
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("handler ws-control PUSH never reached the test PULL")
		}
	}
}

// wsBarrier waits until the handler processed the ws-control packets
// sent before it: an item for an unknown id comes back as a cancel.
func (h *harness) wsBarrier() {
	h.t.Helper()
	h.wsSendItems(wsItem("barrier", wscontrol.TypeNeedKeepAlive))
	wantItem(h.t, h.wsExpect(1)[0], "barrier", "cancel")
}

func wsItem(cid, typ string) wscontrol.Item { return wscontrol.NewItem([]byte(cid), typ) }

// wsHere is a `here` as the 1.36 proxy sends it (Captured §A.7).
func wsHere(cid string) wscontrol.Item {
	it := wsItem(cid, wscontrol.TypeHere)
	it.URI, it.Route, it.TTL = "ws://127.0.0.1:7999/ws", "*,ws,*,*", 60
	return it
}

func wsGrip(cid, reqID, msg string) wscontrol.Item {
	it := wsItem(cid, wscontrol.TypeGrip)
	it.ReqID, it.Message = []byte(reqID), []byte(msg)
	return it
}

// wsConnect announces cid and subscribes it to channels, checking the
// acks.
func (h *harness) wsConnect(cid string, channels ...string) {
	h.t.Helper()
	h.wsSendItems(wsHere(cid))
	for i, ch := range channels {
		h.wsSendItems(wsGrip(cid, fmt.Sprint(100+i), `{"type":"subscribe","channel":"`+ch+`"}`))
		wantItem(h.t, h.wsExpect(1)[0], cid, wscontrol.TypeAck, "req-id", fmt.Sprint(100+i))
	}
}

// wantItem checks an item's cid, type and the given field values
// (req-id, content-type, message, reason, code, timeout,
// keep-alive-mode, queue).
func wantItem(t testing.TB, it wscontrol.Item, cid, typ string, kv ...string) {
	t.Helper()
	if string(it.CID) != cid || it.Type != typ {
		t.Fatalf("item %s/%s, want %s/%s: %+v", it.CID, it.Type, cid, typ, it)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		var got string
		switch kv[i] {
		case "req-id":
			got = string(it.ReqID)
			if it.ReqID == nil {
				got = "<none>"
			}
		case "content-type":
			got = it.ContentType
		case "message":
			got = string(it.Message)
		case "reason":
			got = it.Reason
		case "code":
			got = fmt.Sprint(it.Code)
		case "timeout":
			got = fmt.Sprint(it.Timeout)
		case "keep-alive-mode":
			got = it.KeepAliveMode
		case "queue":
			got = fmt.Sprint(it.Queue)
		default:
			t.Fatalf("wantItem: unknown field %q", kv[i])
		}
		if got != kv[i+1] {
			t.Fatalf("item %s %s: %s = %q, want %q (%+v)", it.CID, it.Type, kv[i], got, kv[i+1], it)
		}
	}
}

func pubWS(channel, content string) grip.Item {
	return grip.Item{Channel: channel, Size: -1, WSMessage: &grip.WSMessageFormat{Type: grip.WSText, Content: []byte(content)}}
}

func startWSHarness(t *testing.T, mod func(*Config)) *harness {
	h := startHarness(t, mod)
	h.wsWarmUp()
	return h
}

// TestWSCaptured replays the real 1.36 handler's exchange with a fake
// proxy (zmq-wire.md §A.7), byte for byte on the way in.
func TestWSCaptured(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsSendRaw([]byte(`109:5:items,97:93:3:cid,8:ws-cid-1,4:type,4:here,3:uri,22:ws://127.0.0.1:7999/ws,5:route,8:*,ws,*,*,3:ttl,2:60#}]}`))
	h.wsSendRaw([]byte(`111:5:items,99:95:3:cid,8:ws-cid-1,4:type,4:grip,6:req-id,1:0,7:message,37:{"type":"subscribe","channel":"wsch"},}]}`))
	wantItem(t, h.wsExpect(1)[0], "ws-cid-1", "ack", "req-id", "0")
	// Not an HTTP session: conncheck knows the cid as is.
	if got := h.svc.eng.ConnCheck([]string{"ws-cid-1", "nope"}); len(got) != 1 || got[0] != "ws-cid-1" {
		t.Fatalf("conncheck = %v", got)
	}

	h.publish(pubWS("wsch", "to ws"))
	wantItem(t, h.wsExpect(1)[0], "ws-cid-1", "send", "content-type", "text", "message", "to ws", "req-id", "<none>")

	h.wsSendRaw([]byte(`182:5:items,169:107:3:cid,8:ws-cid-1,4:type,4:grip,6:req-id,1:1,7:message,49:{"type":"keep-alive","content":"ka","timeout":20},}53:3:cid,11:unknown-cid,4:type,10:keep-alive,3:ttl,2:60#}]}`))
	p := h.wsRecv(hWait)
	if p == nil || len(p.Items) != 3 {
		t.Fatalf("want one packet with ack, keep-alive-setup, cancel: %+v", p)
	}
	wantItem(t, p.Items[0], "ws-cid-1", "ack", "req-id", "1")
	wantItem(t, p.Items[1], "ws-cid-1", "keep-alive-setup", "timeout", "20", "keep-alive-mode", "idle")
	wantItem(t, p.Items[2], "unknown-cid", "cancel")

	// The proxy's keep-alive timer fired: the stored content goes out.
	h.wsSendItems(wsItem("ws-cid-1", wscontrol.TypeNeedKeepAlive))
	wantItem(t, h.wsExpect(1)[0], "ws-cid-1", "send", "content-type", "text", "message", "ka", "req-id", "<none>")
}

func TestWSKeepAliveSetup(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1")
	cases := []struct {
		msg string
		kv  []string
	}{
		// Default timeout 55 s, idle.
		{`{"type":"keep-alive","content":"ping me"}`, []string{"timeout", "55", "keep-alive-mode", "idle"}},
		{`{"type":"keep-alive","content-bin":"AAEC","message-type":"binary","timeout":0,"mode":"interval"}`, []string{"timeout", "55", "keep-alive-mode", "interval"}},
		{`{"type":"keep-alive","message-type":"ping","content":"","timeout":"7"}`, []string{"timeout", "7", "keep-alive-mode", "idle"}},
	}
	for i, c := range cases {
		h.wsSendItems(wsGrip("c1", fmt.Sprint(i), c.msg))
		items := h.wsExpect(2)
		wantItem(t, items[0], "c1", "ack", "req-id", fmt.Sprint(i))
		wantItem(t, items[1], "c1", "keep-alive-setup", c.kv...)
	}
	h.wsSendItems(wsItem("c1", wscontrol.TypeNeedKeepAlive))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "content-type", "ping", "message", "")

	h.wsSendItems(wsGrip("c1", "2", `{"type":"keep-alive","content-bin":"AAEC","message-type":"binary"}`))
	h.wsExpect(2)
	h.wsSendItems(wsItem("c1", wscontrol.TypeNeedKeepAlive))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "content-type", "binary", "message", "\x00\x01\x02")

	// Without content: keep-alives off (no timeout), nothing stored.
	h.wsSendItems(wsGrip("c1", "3", `{"type":"keep-alive"}`))
	items := h.wsExpect(2)
	wantItem(t, items[1], "c1", "keep-alive-setup", "timeout", "-1", "keep-alive-mode", "")
	h.wsSendItems(wsItem("c1", wscontrol.TypeNeedKeepAlive))
	h.wsExpectNone()
}

func TestWSSubscribeUnsubscribeDetach(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a", "b")
	h.wsConnect("c2", "a")
	h.publish(pubWS("a", "to a"))
	items := h.wsExpect(2)
	got := map[string]bool{}
	for _, it := range items {
		wantItem(t, it, string(it.CID), "send", "message", "to a")
		got[string(it.CID)] = true
	}
	if !got["c1"] || !got["c2"] {
		t.Fatalf("receivers %v", got)
	}
	h.wsSendItems(wsGrip("c1", "7", `{"type":"unsubscribe","channel":"a"}`))
	wantItem(t, h.wsExpect(1)[0], "c1", "ack", "req-id", "7")
	h.publish(pubWS("a", "again"))
	wantItem(t, h.wsExpect(1)[0], "c2", "send", "message", "again")
	h.publish(pubWS("b", "to b"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "to b")

	h.wsSendItems(wsGrip("c1", "8", `{"type":"detach"}`))
	items = h.wsExpect(2)
	wantItem(t, items[0], "c1", "ack", "req-id", "8")
	wantItem(t, items[1], "c1", "detach")
	// Publishes still flow after detach.
	h.publish(pubWS("b", "after detach"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "after detach")

	// session: accepted and acked, nothing else (no state service).
	h.wsSendItems(wsGrip("c1", "9", `{"type":"session","id":"sess-1"}`))
	wantItem(t, h.wsExpect(1)[0], "c1", "ack", "req-id", "9")
	h.wsExpectNone()
}

func TestWSChannelPrefixAndImplicit(t *testing.T) {
	h := startWSHarness(t, nil)
	here := wsHere("c1")
	here.ChannelPrefix = "pre-"
	h.wsSendItems(here)
	h.wsSendItems(wsGrip("c1", "0", `{"type":"subscribe","channel":"x"}`))
	h.wsExpect(1)
	// sub= channels arrive unprefixed, with a req-id to ack.
	sub := wsItem("c1", wscontrol.TypeSubscribe)
	sub.ReqID, sub.Channel = []byte("1"), "implicit"
	h.wsSendItems(sub)
	wantItem(t, h.wsExpect(1)[0], "c1", "ack", "req-id", "1")
	h.publish(pubWS("x", "unprefixed"))
	h.wsExpectNone()
	h.publish(pubWS("pre-x", "prefixed"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "prefixed")
	h.publish(pubWS("implicit", "imp"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "imp")
	// An implicit channel cannot be unsubscribed.
	h.wsSendItems(wsGrip("c1", "2", `{"type":"unsubscribe","channel":"implicit"}`))
	here2 := wsHere("c1") // the prefix applies to c: names only
	here2.ChannelPrefix = ""
	h.wsSendItems(here2)
	h.wsSendItems(wsGrip("c1", "3", `{"type":"unsubscribe","channel":"implicit"}`))
	h.wsExpect(2)
	h.publish(pubWS("implicit", "still"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "still")
}

func TestWSSubscriptionMax(t *testing.T) {
	h := startWSHarness(t, func(c *Config) { c.ConnectionSubscriptionMax = 2 })
	h.wsConnect("c1", "a", "b")
	// The third is acked and ignored, as in 1.36.
	h.wsSendItems(wsGrip("c1", "5", `{"type":"subscribe","channel":"c"}`))
	wantItem(t, h.wsExpect(1)[0], "c1", "ack", "req-id", "5")
	h.publish(pubWS("c", "to c"))
	h.wsExpectNone()
	// Re-subscribing a channel it has is fine (filters replaced).
	h.wsSendItems(wsGrip("c1", "6", `{"type":"subscribe","channel":"a","filters":["skip-self"]}`))
	h.wsExpect(1)
	h.publish(pubWS("a", "to a"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "to a")
}

func TestWSFiltersAndMeta(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsSendItems(wsHere("c1"))
	h.wsSendItems(wsGrip("c1", "0", `{"type":"subscribe","channel":"a","filters":["skip-self","var-subst"]}`))
	h.wsSendItems(wsGrip("c1", "1", `{"type":"set-meta","name":"user","value":"alice"}`))
	h.wsExpect(2)
	mine := pubWS("a", "hello %(user)s")
	mine.Meta = map[string]string{"sender": "alice"}
	h.publish(mine)
	h.wsExpectNone()
	other := pubWS("a", "hello %(user)s")
	other.Meta = map[string]string{"sender": "bob"}
	h.publish(other)
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "hello alice")
	// A content filter list that does not match the subscription's:
	// skipped.
	cf := pubWS("a", "x")
	cf.WSMessage.HaveContentFilters = true
	h.publish(cf)
	h.wsExpectNone()
	// Removing the meta value: var-subst fails, the item is skipped.
	h.wsSendItems(wsGrip("c1", "2", `{"type":"set-meta","name":"user"}`))
	h.wsExpect(1)
	h.publish(other)
	h.wsExpectNone()
}

func TestWSPublishFormats(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	items, err := grip.ParseItems([]byte(`{"items":[
		{"channel":"a","formats":{"ws-message":{"content-bin":"AAEC"}}},
		{"channel":"a","formats":{"ws-message":{"type":"ping"}}},
		{"channel":"a","formats":{"ws-message":{"type":"pong","content":"p"}}},
		{"channel":"a","formats":{"ws-message":{"action":"hint"}}},
		{"channel":"a","formats":{"http-stream":{"content":"not for ws"}}},
		{"channel":"a","formats":{"ws-message":{"action":"refresh"}}},
		{"channel":"a","formats":{"ws-message":{"action":"close","code":4002,"reason":"done by publish"}}},
		{"channel":"a","formats":{"ws-message":{"content":"after close"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	h.publish(items...)
	got := h.wsExpect(5)
	wantItem(t, got[0], "c1", "send", "content-type", "binary", "message", "\x00\x01\x02")
	wantItem(t, got[1], "c1", "send", "content-type", "ping", "message", "")
	wantItem(t, got[2], "c1", "send", "content-type", "pong", "message", "p")
	wantItem(t, got[3], "c1", "refresh")
	wantItem(t, got[4], "c1", "close", "code", "4002", "reason", "done by publish")
	h.wsExpectNone()
}

func TestWSRefreshOwnPacket(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	refresh := grip.Item{Channel: "a", Size: -1, WSMessage: &grip.WSMessageFormat{Action: grip.ActionRefresh}}
	h.publish(pubWS("a", "one"), refresh, pubWS("a", "two"))
	// 1.36's proxy rejects a packet with a type it does not know: the
	// refresh travels alone.
	var packets [][]wscontrol.Item
	for n := 0; n < 3; {
		p := h.wsRecv(hWait)
		if p == nil {
			t.Fatalf("got %v", packets)
		}
		packets = append(packets, p.Items)
		n += len(p.Items)
	}
	for _, p := range packets {
		for _, it := range p {
			if it.Type == wscontrol.TypeRefresh && len(p) != 1 {
				t.Fatalf("refresh shares a packet: %+v", p)
			}
		}
	}
}

func TestWSSendDelayed(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1")
	h.wsSendItems(wsGrip("c1", "0", `{"type":"send-delayed","content":"later","timeout":5}`))
	wantItem(t, h.wsExpect(1)[0], "c1", "ack", "req-id", "0")
	h.advance(4 * time.Second)
	h.wsExpectNone()
	h.advance(time.Second)
	first := h.wsExpect(1)[0]
	wantItem(t, first, "c1", "send", "message", "later", "queue", "true", "req-id", "0", "content-type", "text")
	h.wsSendItems(func() wscontrol.Item { a := wsItem("c1", wscontrol.TypeAck); a.ReqID = first.ReqID; return a }())

	// A second send-delayed flushes a pending one; flush-delayed sends now.
	h.wsSendItems(wsGrip("c1", "1", `{"type":"send-delayed","content":"x"}`))
	h.wsSendItems(wsGrip("c1", "2", `{"type":"send-delayed","content-bin":"AAE=","message-type":"binary","timeout":30}`))
	got := h.wsExpect(3)
	wantItem(t, got[0], "c1", "ack", "req-id", "1")
	wantItem(t, got[1], "c1", "ack", "req-id", "2")
	wantItem(t, got[2], "c1", "send", "message", "x", "req-id", "1")
	h.wsSendItems(wsGrip("c1", "3", `{"type":"flush-delayed"}`))
	got = h.wsExpect(2)
	wantItem(t, got[1], "c1", "send", "message", "\x00\x01", "content-type", "binary", "req-id", "2")
	ack := wsItem("c1", wscontrol.TypeAck)
	ack.ReqID = []byte("1")
	h.wsSendItems(ack) // "2" stays unacked

	// No ack within 8 s: the session is cancelled and forgotten.
	h.advance(7 * time.Second)
	h.wsExpectNone()
	h.advance(2 * time.Second)
	wantItem(t, h.wsExpect(1)[0], "c1", "cancel")
	h.wsSendItems(wsItem("c1", wscontrol.TypeKeepAlive))
	wantItem(t, h.wsExpect(1)[0], "c1", "cancel")
}

func TestWSExpiryAndGone(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	h.wsConnect("c2", "a")
	// keep-alive refreshes c1's ttl; c2 expires 60 s after its here.
	h.advance(40 * time.Second)
	ka := wsItem("c1", wscontrol.TypeKeepAlive)
	ka.TTL = 60
	h.wsSendItems(ka)
	h.wsBarrier()
	h.advance(30 * time.Second)
	if got := h.svc.eng.ConnCheck([]string{"c1", "c2"}); len(got) != 1 || got[0] != "c1" {
		t.Fatalf("conncheck after expiry = %v", got)
	}
	h.publish(pubWS("a", "x"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send")
	h.wsSendItems(wsGrip("c2", "4", `{"type":"subscribe","channel":"b"}`))
	got := h.wsExpect(2)
	wantItem(t, got[0], "c2", "ack", "req-id", "4")
	wantItem(t, got[1], "c2", "cancel")

	// gone removes the session and its subscriptions; a cancel from the
	// proxy for an unknown id gets no answer.
	h.wsSendItems(wsItem("c1", wscontrol.TypeGone))
	h.wsBarrier()
	h.inEngine(func(e *engine) {
		if len(e.ws.sessions) != 0 || e.channels["a"] != nil {
			t.Errorf("after gone: %d sessions, channel a %v", len(e.ws.sessions), e.channels["a"])
		}
	})
	h.wsSendItems(wsItem("c1", wscontrol.TypeCancel))
	h.wsExpectNone()
}

func TestWSBadInput(t *testing.T) {
	h := startWSHarness(t, nil)
	for i, msg := range []string{
		`{"type":"subscribe"`, // not JSON
		`["subscribe"]`,       // not an object
		`{"type":"dance"}`,    // unknown type
		`{"type":"subscribe","channel":""}`,
		`{"type":"subscribe","channel":"a","filters":[1]}`,
		`{"type":"set-meta","name":""}`,
		`{"type":"keep-alive","content":"x","timeout":-1}`,
		`{"type":"send-delayed","content":"x","message-type":"jpeg"}`,
	} {
		cid := fmt.Sprintf("bad-%d", i)
		h.wsConnect(cid, "a")
		h.wsSendItems(wsGrip(cid, "9", msg))
		got := h.wsExpect(2)
		wantItem(t, got[0], cid, "ack", "req-id", "9")
		wantItem(t, got[1], cid, "close", "code", "1011", "reason", "")
		// Closed: publishes no longer go to it.
		h.publish(pubWS("a", "x"))
		h.wsExpectNone()
		h.wsSendItems(wsItem(cid, wscontrol.TypeGone))
	}
	// In debug mode the reason says why.
	here := wsHere("dbg")
	here.Debug = true
	h.wsSendItems(here)
	h.wsSendItems(wsGrip("dbg", "1", `{"type":"dance"}`))
	got := h.wsExpect(2)
	wantItem(t, got[1], "dbg", "close", "code", "1011", "reason", "'type' contains unknown value: dance")

	// Bad packets are skipped; the next one works.
	h.wsSendRaw([]byte("not a tnetstring"))
	h.wsSendRaw([]byte("9:5:items,0:]}"[:5]))
	h.wsSendRaw((&wscontrol.Packet{Items: []wscontrol.Item{wsItem("zzz", wscontrol.TypeGone)}}).Encode())
	wantItem(t, h.wsExpect(1)[0], "zzz", "cancel")
}

// TestWSStop: a stopping handler closes every WebSocket with 1012.
func TestWSStop(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	h.wsSendItems(wsHere("c2"))
	h.wsBarrier()
	h.stopRun()
	got := h.wsExpect(2)
	seen := map[string]bool{}
	for _, it := range got {
		wantItem(t, it, string(it.CID), "close", "code", "1012")
		seen[string(it.CID)] = true
	}
	if !seen["c1"] || !seen["c2"] {
		t.Fatalf("closed %v", seen)
	}
}

// TestWSSequencing: id/prev-id order ws-message items like the others.
func TestWSSequencing(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	one := pubWS("a", "1")
	one.ID = "1"
	three := pubWS("a", "3")
	three.ID, three.PrevID = "3", "2"
	two := pubWS("a", "2")
	two.ID, two.PrevID = "2", "1"
	h.publish(one)
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "1")
	h.publish(three)
	h.wsExpectNone()
	h.publish(two)
	got := h.wsExpect(2)
	wantItem(t, got[0], "c1", "send", "message", "2")
	wantItem(t, got[1], "c1", "send", "message", "3")
}

// TestWSRateLimited: with message_rate, ws-message deliveries leave in
// the limiter's batches as soon as a batch runs (here at once: the
// limiter is idle each time), not when the engine's next event comes
// (they waited up to 1 s in the shipped configuration).
func TestWSRateLimited(t *testing.T) {
	h := startWSHarness(t, func(c *Config) { c.MessageRate = 1000 })
	h.wsConnect("c1", "a")
	// No h.sync: the engine gets no other event after the publish.
	if err := h.svc.eng.Publish([]grip.Item{pubWS("a", "limited")}); err != nil {
		t.Fatal(err)
	}
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "limited")
	if err := h.svc.eng.Publish([]grip.Item{pubWS("a", "next")}); err != nil {
		t.Fatal(err)
	}
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "next")
}

// TestWSRefreshCommand: command refresh by cid and by channel.
func TestWSRefreshCommand(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	h.wsConnect("c2", "a")
	if err := h.svc.eng.Refresh("c1", ""); err != nil {
		t.Fatal(err)
	}
	wantItem(t, h.wsExpect(1)[0], "c1", "refresh")
	err := h.svc.eng.Refresh("nope", "")
	if ce, ok := err.(conditionError); !ok || ce.Condition() != "item-not-found" {
		t.Fatalf("unknown cid: %v", err)
	}
	if err := h.svc.eng.Refresh("", "a"); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, it := range h.wsExpect(2) {
		wantItem(t, it, string(it.CID), "refresh")
		got[string(it.CID)] = true
	}
	if !got["c1"] || !got["c2"] {
		t.Fatalf("refreshed %v", got)
	}
	if err := h.svc.eng.Refresh("", "no-such-channel"); err != nil {
		t.Fatal(err)
	}
	h.wsExpectNone()
}

// TestWSBackpressure: while the queue towards the proxy is over half full
// the engine leaves published items waiting, and takes them once it
// drains.
func TestWSBackpressure(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsConnect("c1", "a")
	var orig chan<- zsock.Message
	busy := make(chan zsock.Message, 4)
	h.inEngine(func(e *engine) {
		orig = e.ws.out
		for range 3 {
			busy <- nil
		}
		e.ws.out = busy
	})
	if err := h.svc.eng.Publish([]grip.Item{pubWS("a", "held")}); err != nil {
		t.Fatal(err)
	}
	h.sync()
	h.inEngine(func(e *engine) {
		if len(e.pubq) != 1 || len(busy) != 3 {
			t.Errorf("while congested: %d batches waiting, %d packets queued", len(e.pubq), len(busy))
		}
		e.ws.out = orig
	})
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "held")
}

// TestWSRequireSub: require-sub looks at the connection's channels.
func TestWSRequireSub(t *testing.T) {
	h := startWSHarness(t, nil)
	h.wsSendItems(wsHere("c1"))
	h.wsSendItems(wsGrip("c1", "0", `{"type":"subscribe","channel":"a","filters":["require-sub"]}`))
	h.wsExpect(1)
	it := pubWS("a", "needs b")
	it.Meta = map[string]string{"require_sub": "b"}
	h.publish(it)
	h.wsExpectNone()
	h.wsSendItems(wsGrip("c1", "1", `{"type":"subscribe","channel":"b"}`))
	h.wsExpect(1)
	h.publish(it)
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "needs b")
}

// TestWSHereAck: a `here` with a req-id (as 1.41 proxies send it) is
// acked; a repeated here updates the route but keeps the subscriptions.
func TestWSHereAck(t *testing.T) {
	h := startWSHarness(t, nil)
	here := wsHere("c1")
	here.ReqID = []byte("0")
	h.wsSendItems(here)
	wantItem(t, h.wsExpect(1)[0], "c1", "ack", "req-id", "0")
	h.wsSendItems(wsGrip("c1", "1", `{"type":"subscribe","channel":"a"}`))
	h.wsExpect(1)
	again := wsHere("c1")
	again.Route, again.SeparateStats = "chat", true
	h.wsSendItems(again)
	h.wsBarrier()
	h.inEngine(func(e *engine) {
		s := e.ws.sessions["c1"]
		if s == nil || s.statsRoute != "chat" || s.chans.get("a") == nil {
			t.Errorf("session after a second here: %+v", s)
		}
	})
	h.publish(pubWS("a", "still subscribed"))
	wantItem(t, h.wsExpect(1)[0], "c1", "send", "message", "still subscribed")
}
