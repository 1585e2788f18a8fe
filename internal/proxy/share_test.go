package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// --- the handler's inspect service ---

// expectInspect returns the next inspect call the proxy sent to the fake
// handler's ROUTER (envelope [peer, "", request], zmq-wire.md §4.1).
func (h *harness) expectInspect() *acceptCall {
	h.t.Helper()
	select {
	case m := <-h.hInspect.Recv():
		return h.parseZRPC(m, "inspect")
	case <-time.After(waitFor):
		h.t.Fatal("no inspect call")
	}
	return nil
}

// parseZRPC checks a ZRPC request the fake handler's ROUTER received
// (envelope [peer, "", request], zmq-wire.md §4.1) for method.
func (h *harness) parseZRPC(m zsock.Message, method string) *acceptCall {
	h.t.Helper()
	if len(m) != 3 || len(m[1]) != 0 {
		h.t.Fatalf("%s message %q", method, m)
	}
	d, err := tnetstring.DecodeDict(m[2])
	if err != nil {
		h.t.Fatalf("%s request: %v", method, err)
	}
	c := &acceptCall{peer: m[0], raw: m[2], req: d}
	c.id, _ = d.Bytes("id")
	if meth, _ := d.Bytes("method"); string(meth) != method {
		h.t.Fatalf("ZRPC method %q, want %s", meth, method)
	}
	c.args, _ = d.Dict("args")
	return c
}

// replyInspect answers an inspect call with {no-proxy: false} plus extra.
func (h *harness) replyInspect(c *acceptCall, extra ...tnetstring.Field) {
	h.t.Helper()
	v := append(tnetstring.Dict{{Key: "no-proxy", Value: false}}, extra...)
	b := tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: c.id}, {Key: "success", Value: true}, {Key: "value", Value: v}})
	select {
	case h.hInspect.Send() <- zsock.Message{c.peer, nil, b}:
	case <-time.After(waitFor):
		h.t.Fatal("h-inspect queue full")
	}
}

// noneToZurl asserts that no new backend request starts for a moment.
func (h *harness) noneToZurl() {
	h.t.Helper()
	select {
	case m := <-h.zPull.Recv():
		h.t.Fatalf("unexpected request to zurl: %q", m)
	case <-time.After(quiet):
	}
}

// warmInspect waits until the proxy's inspect DEALER has the fake
// handler's connection: until then calls find no handler, the service
// counts as unavailable, and requests go out before their (background)
// inspect call. Warm-up requests are answered by the fake zurl.
func (h *harness) warmInspect() {
	h.t.Helper()
	deadline := time.Now().Add(waitFor)
	for n := 0; ; n++ {
		if time.Now().After(deadline) {
			h.t.Fatal("the proxy's inspect calls never came before their requests")
		}
		p := h.newRequest("GET", fmt.Sprintf("http://warm/inspect-%d", n), nil)
		h.start(p)
		inspected, proxied, inspectFirst := false, false, false
		wait := time.After(500 * time.Millisecond)
	loop:
		for !inspected || !proxied {
			select {
			case m := <-h.hInspect.Recv():
				c := h.parseZRPC(m, "inspect")
				h.replyInspect(c)
				if uri, _ := c.args.Bytes("uri"); string(uri) == p.URI { // not an earlier one's background call
					inspected, inspectFirst = true, !proxied
				}
			case m := <-h.zPull.Recv():
				z, err := zhttp.Parse(m[0])
				if err != nil {
					h.t.Fatal(err)
				}
				h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", nil, "", false))
				proxied = true
			case <-wait:
				break loop
			}
		}
		if !proxied {
			h.t.Fatal("warm-up request not proxied")
		}
		for r := h.fromProxyAnySeq(p.ID); r.Type != zhttp.TypeData || r.More; r = h.fromProxyAnySeq(p.ID) {
		}
		if inspectFirst {
			// Answer the late background calls of earlier warm-ups.
			for {
				select {
				case m := <-h.hInspect.Recv():
					h.replyInspect(h.parseZRPC(m, "inspect"))
				case <-time.After(quiet):
					return
				}
			}
		}
	}
}

// collect reads what the proxy sends connmgr for ids until each has a
// whole response (or a cancel) and returns, per id, the packets in order.
func (h *harness) collect(ids ...[]byte) map[string][]*zhttp.Packet {
	h.t.Helper()
	return h.cm.collect(ids...)
}

// collect is harness.collect on either client side.
func (sd *side) collect(ids ...[]byte) map[string][]*zhttp.Packet {
	h := sd.h
	h.t.Helper()
	out := map[string][]*zhttp.Packet{}
	open := map[string]bool{}
	for _, id := range ids {
		open[string(id)] = true
	}
	deadline := time.After(waitFor)
	for len(open) > 0 {
		select {
		case m := <-sd.sub.Recv():
			p := sd.parse(m)
			if !open[string(p.ID)] {
				continue
			}
			out[string(p.ID)] = append(out[string(p.ID)], p)
			if p.Type == zhttp.TypeCancel || p.Type == zhttp.TypeHandoffStart || (p.Type == zhttp.TypeData && !p.More && p.Code != 0) ||
				(p.Type == zhttp.TypeData && !p.More && len(out[string(p.ID)]) > 1) {
				delete(open, string(p.ID))
			}
		case <-deadline:
			h.t.Fatalf("no complete response for %d of %d sessions", len(open), len(ids))
		}
	}
	return out
}

// sharedStart starts n identical requests for uri, answers each inspect
// call with sharing key key and returns their ids and the one backend
// request they share.
func (h *harness) sharedStart(n int, uri, key string, credits int64) ([][]byte, *zhttp.Packet) {
	h.t.Helper()
	var ids [][]byte
	var z *zhttp.Packet
	for i := range n {
		p := h.newRequest("GET", uri, nil)
		if credits > 0 {
			p.Credits = credits
		}
		ids = append(ids, h.start(p))
		c := h.expectInspect()
		h.replyInspect(c, tnetstring.Field{Key: "sharing-key", Value: []byte(key)})
		if i == 0 {
			z = h.zurlFirst()
		}
	}
	h.noneToZurl()
	return ids, z
}

// body joins the bodies of a session's packets.
func body(ps []*zhttp.Packet) string {
	var sb strings.Builder
	for _, p := range ps {
		sb.Write(p.Body)
	}
	return sb.String()
}

// TestProxyInspectCall: the inspect call carries the request as received
// (method, uri, headers, body, truncated when more body follows); the
// request waits for the answer, whose last ids become Grip-Last headers.
func TestProxyInspectCall(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	p := h.newRequest("POST", "http://example.com/a?b=1", nil)
	p.Body = []byte("hello")
	h.start(p)
	c := h.expectInspect()
	want := map[string]any{
		"method":  "POST",
		"uri":     "http://example.com/a?b=1",
		"headers": []any{[]any{"Host", "example.com"}, []any{"User-Agent", "curl/7.88.1"}, []any{"Accept", "*/*"}},
		"body":    "hello",
	}
	for _, d := range diffCanon("args", canon(c.args), want) {
		t.Error(d)
	}
	if _, ok := c.req.Get("from"); ok {
		t.Error("inspect request has a from field (1.36 sends none)")
	}
	h.noneToZurl()
	h.replyInspect(c, tnetstring.Field{Key: "last-ids", Value: tnetstring.Dict{{Key: "ch", Value: []byte("7")}}})
	z := h.zurlFirst()
	if v, _ := headerOf(z.Headers, "Grip-Last"); v != "ch; last-id=7" {
		t.Errorf("Grip-Last %q", v)
	}

	// More body to come (after the 10000 bytes inspect waits for): truncated.
	p = h.newRequest("POST", "http://example.com/b", nil)
	p.Body, p.More = []byte(strings.Repeat("p", inspectPrefetch)), true
	h.start(p)
	c = h.expectInspect()
	if !c.args.Bool("truncated") {
		t.Errorf("no truncated in %v", canon(c.args))
	}
	// A failure reply from the handler: proxied unshared.
	b := tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: c.id}, {Key: "success", Value: false}, {Key: "condition", Value: []byte("bad-request")}})
	h.hInspect.Send() <- zsock.Message{c.peer, nil, b}
	h.zurlFirst()
}

// TestProxyInspectTimeout: an unanswered call lets its request go after
// the timeout and makes the service unavailable: the next request goes at
// once while its call still goes out; the first reply makes the service
// available again (Pushpin's ZrpcChecker).
func TestProxyInspectTimeout(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	h.start(h.newRequest("GET", "http://example.com/a", nil))
	lost := h.expectInspect()
	h.noneToZurl()
	h.zurlFirst() // after the 1 s timeout

	h.start(h.newRequest("GET", "http://example.com/b", nil))
	h.zurlFirst() // unavailable: at once
	bg := h.expectInspect()
	h.replyInspect(lost) // too late: ignored
	h.replyInspect(bg)
	h.noneToZurl()

	h.start(h.newRequest("GET", "http://example.com/c", nil))
	c := h.expectInspect()
	h.noneToZurl() // available again: the request waits for its answer
	h.replyInspect(c)
	h.zurlFirst()
}

// TestProxyInspectNoHandler: with no handler connected the call fails at
// once and the request is proxied.
func TestProxyInspectNoHandler(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true, noHandler: true})
	for i := range 2 {
		h.start(h.newRequest("GET", fmt.Sprintf("http://example.com/%d", i), nil))
		h.zurlFirst()
	}
}

// TestProxyShareRelay: three requests with one sharing key make one
// backend request; its response reaches all three.
func TestProxyShareRelay(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(3, "http://example.com/s", "GET|http://example.com/s", 0)
	hdr := []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}, {Name: "Content-Length", Value: "11"}}
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", hdr, "hello ", true))
	h.zurlSend(zurlResponse(z.ID, 1, -1, "", nil, "world", false))
	got := h.collect(ids...)
	for _, id := range ids {
		ps := got[string(id)]
		if ps[0].Code != 200 || body(ps) != "hello world" {
			t.Errorf("%s: %d %q", id, ps[0].Code, body(ps))
		}
		if ps[0].Seq != 1 {
			t.Errorf("%s: response at seq %d", id, ps[0].Seq)
		}
	}
	h.noneToZurl()

	// The group is gone with its response: the same key starts anew.
	h.start(h.newRequest("GET", "http://example.com/s", nil))
	h.replyInspect(h.expectInspect(), tnetstring.Field{Key: "sharing-key", Value: []byte("GET|http://example.com/s")})
	h.zurlFirst()
}

// TestProxyShareLateJoin: a request that joins after the response began
// gets the head and body so far, then the rest.
func TestProxyShareLateJoin(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(1, "http://example.com/s", "k", 0)
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", nil, "hello ", true))
	if p := h.fromProxy(ids[0], 1); p.Code != 200 {
		t.Fatalf("leader got %s", describe(p))
	}
	p := h.newRequest("GET", "http://example.com/s", nil)
	late := h.start(p)
	h.replyInspect(h.expectInspect(), tnetstring.Field{Key: "sharing-key", Value: []byte("k")})
	h.noneToZurl()
	h.zurlSend(zurlResponse(z.ID, 1, -1, "", nil, "world", false))
	got := h.collect(ids[0], late)
	if b := body(got[string(late)]); b != "hello world" || got[string(late)][0].Code != 200 {
		t.Errorf("late member got %q", b)
	}
	if b := body(got[string(ids[0])]); b != "world" {
		t.Errorf("leader got %q after the head", b)
	}
}

// TestProxyShareGRIP: a GRIP answer to a shared request pauses every
// member and hands them to the handler in one accept call.
func TestProxyShareGRIP(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(3, "http://127.0.0.1:7999/stream?x=1", "GET|http://127.0.0.1:7999/stream?x=1", 0)
	h.zurlSend(captureHold(z.ID, 0, "Sun, 22 Nov 2026 10:48:12 GMT"))
	for _, id := range ids {
		h.expectType(id, 1, zhttp.TypeHandoffStart)
	}
	for i, id := range ids {
		h.sendStream(cmPacket(id, 1, zhttp.TypeHandoffProceed))
		if i < len(ids)-1 {
			select {
			case m := <-h.hRouter.Recv():
				t.Fatalf("accept before every member paused: %q", m)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	c := h.expectAccept()
	reqs, _ := c.args.List("requests")
	if len(reqs) != len(ids) {
		t.Fatalf("accept with %d requests, want %d", len(reqs), len(ids))
	}
	for i, r := range reqs {
		rq := r.(tnetstring.Dict)
		rid, _ := rq.Dict("rid")
		id, _ := rid.Bytes("id")
		sender, _ := rid.Bytes("sender")
		in, _ := rq.Int("in-seq")
		out, _ := rq.Int("out-seq")
		if string(id) != string(ids[i]) || string(sender) != connmgrFrom || in != 2 || out != 2 {
			t.Errorf("request %d: %v", i, canon(rq))
		}
	}
	insp, _ := c.args.Dict("inspect")
	if k, _ := insp.Bytes("sharing-key"); string(k) != "GET|http://127.0.0.1:7999/stream?x=1" {
		t.Errorf("accept inspect %v", canon(insp))
	}
	h.reply(c, tnetstring.Dict{{Key: "accepted", Value: true}})
	h.noneToConnmgr()
	h.noneToZurlStream()
}

// TestProxyShareGRIPResponse: an accept answered with a response gives it
// to every member.
func TestProxyShareGRIPResponse(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(2, "http://example.com/g", "g", 0)
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", []zhttp.Header{{Name: "Content-Type", Value: "application/grip-instruct"}}, "{}", false))
	for _, id := range ids {
		h.expectType(id, 1, zhttp.TypeHandoffStart)
		h.sendStream(cmPacket(id, 1, zhttp.TypeHandoffProceed))
	}
	c := h.expectAccept()
	h.reply(c, tnetstring.Dict{{Key: "response", Value: tnetstring.Dict{
		{Key: "code", Value: 200}, {Key: "reason", Value: []byte("OK")}, {Key: "headers", Value: []any{}}, {Key: "body", Value: []byte("done\n")},
	}}})
	for _, id := range ids {
		h.expectType(id, 2, zhttp.TypeKeepAlive)
		h.expectResponse(id, 3, 200, "OK", "done\n")
	}
}

// TestProxyShareLeaderLeaves: the first client leaving does not end the
// backend request the others wait for; when all have left it is
// cancelled.
func TestProxyShareLeaderLeaves(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(2, "http://example.com/l", "l", 0)
	h.sendStream(cmPacket(ids[0], 1, zhttp.TypeCancel))
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive)) // acked: a cancel would now go out
	h.noneToZurlStream()
	h.zurlSend(zurlResponse(z.ID, 1, 200, "OK", nil, "for you", false))
	got := h.collect(ids[1])
	if b := body(got[string(ids[1])]); b != "for you" {
		t.Errorf("follower got %q", b)
	}

	ids, z = h.sharedStart(2, "http://example.com/m", "m", 0)
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	h.sendStream(cmPacket(ids[0], 1, zhttp.TypeCancel))
	h.noneToZurlStream()
	h.sendStream(cmPacket(ids[1], 1, zhttp.TypeCancel))
	if p := h.zurlStream(z.ID, -1); p.Type != zhttp.TypeCancel {
		t.Fatalf("zurl got %s, want cancel", describe(p))
	}
}

// TestProxyShareBackendError: a backend failure before the response is
// answered to every member.
func TestProxyShareBackendError(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(2, "http://example.com/e", "e", 0)
	e := zp(z.ID, 0, zhttp.TypeError)
	e.Condition = zhttp.CondRemoteConnectionFailed
	h.zurlSend(e)
	got := h.collect(ids...)
	for _, id := range ids {
		if ps := got[string(id)]; len(ps) != 1 || ps[0].Code != 502 || string(ps[0].Body) != textProxyError {
			t.Errorf("%s: %s", id, describe(ps[0]))
		}
	}
}

// TestProxyShareSlowMember: the backend is granted credits only as the
// slowest member's client takes the body.
func TestProxyShareSlowMember(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	p := h.newRequest("GET", "http://example.com/big", nil)
	fast := h.start(p)
	h.replyInspect(h.expectInspect(), tnetstring.Field{Key: "sharing-key", Value: []byte("big")})
	z := h.zurlFirst()
	p = h.newRequest("GET", "http://example.com/big", nil)
	p.Credits = 1000
	slow := h.start(p)
	h.replyInspect(h.expectInspect(), tnetstring.Field{Key: "sharing-key", Value: []byte("big")})
	h.noneToZurl()
	chunk := strings.Repeat("x", 50000)
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", nil, chunk, true))
	h.zurlSend(zurlResponse(z.ID, 1, -1, "", nil, chunk, true))
	// The fast client took all 100000 bytes, the slow one 1000: no grant.
	var fastGot int
	for fastGot < 100000 {
		fastGot += len(h.fromProxyAnySeq(fast).Body)
	}
	h.noneToZurlStream()
	// The slow client's window opens: the backend may send more.
	c := cmPacket(slow, 1, zhttp.TypeCredit)
	c.Credits = 200000
	h.sendStream(c)
	if g := h.zurlStream(z.ID, -1); g.Type != zhttp.TypeCredit || g.Credits < creditBatch {
		t.Fatalf("zurl got %s, want a credit", describe(g))
	}
}

// TestProxyShareIntreqAutoShare: the handler's next-link requests carry
// auto-share to the inspect call; with the key it answers, identical ones
// share one backend request and each gets the response on intreq-out.
func TestProxyShareIntreqAutoShare(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true, intreq: true})
	var ids [][]byte
	var z *zhttp.Packet
	for i := range 2 {
		p := h.intreqRequest("GET", "http://127.0.0.1:7999/next", passthroughDict("", false, true))
		h.intreq.start(p)
		ids = append(ids, p.ID)
		c := h.expectInspect()
		if !c.args.Bool("auto-share") {
			t.Fatalf("inspect args without auto-share: %v", canon(c.args))
		}
		h.replyInspect(c, tnetstring.Field{Key: "sharing-key", Value: []byte("auto|http://127.0.0.1:7999/next")})
		if i == 0 {
			z = h.zurlFirst()
		}
	}
	h.noneToZurl()
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", []zhttp.Header{{Name: "Grip-Hold", Value: "stream"}}, "next", false))
	got := h.intreq.collect(ids...)
	for _, id := range ids {
		ps := got[string(id)]
		if v, _ := headerOf(ps[0].Headers, "Grip-Hold"); ps[0].Code != 200 || body(ps) != "next" || v != "stream" {
			t.Errorf("%s: %s", id, describe(ps[0]))
		}
	}
	h.noAccept()
}

// TestProxyShareRetry: the sessions of a retry packet whose inspect data
// names a sharing key share one backend request again.
func TestProxyShareRetry(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	var reqs []any
	ids := [][]byte{[]byte("r-1"), []byte("r-2")}
	for _, id := range ids {
		reqs = append(reqs, tnetstring.Dict{
			{Key: "rid", Value: tnetstring.Dict{{Key: "sender", Value: []byte(connmgrFrom)}, {Key: "id", Value: id}}},
			{Key: "in-seq", Value: 2}, {Key: "out-seq", Value: 2}, {Key: "out-credits", Value: 200000},
		})
	}
	h.sendRetry(tnetstring.MustEncode(tnetstring.Dict{
		{Key: "requests", Value: reqs},
		{Key: "request-data", Value: requestData("GET", "http://example.com/r", []zhttp.Header{{Name: "Host", Value: "example.com"}}, nil)},
		{Key: "inspect", Value: tnetstring.Dict{{Key: "no-proxy", Value: false}, {Key: "sharing-key", Value: []byte("rk")}}},
		{Key: "route", Value: []byte("*,*,*,*")},
	}))
	z := h.zurlFirst()
	h.noneToZurl()
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", nil, "again", false))
	got := h.collect(ids...)
	for _, id := range ids {
		ps := got[string(id)]
		if len(ps) != 2 || ps[0].Type != zhttp.TypeKeepAlive || ps[0].Seq != 2 || ps[1].Seq != 3 || body(ps) != "again" {
			t.Errorf("%s: %d packets, last %s", id, len(ps), describe(ps[len(ps)-1]))
		}
	}
}

// acceptRIDs returns the request ids of an accept call's requests.
func acceptRIDs(c *acceptCall) []string {
	reqs, _ := c.args.List("requests")
	var out []string
	for _, r := range reqs {
		rid, _ := r.(tnetstring.Dict).Dict("rid")
		id, _ := rid.Bytes("id")
		out = append(out, string(id))
	}
	return out
}

// TestProxyShareGRIPMembersLeave: a leader whose client left before the
// GRIP answer is not handed over (its backend request served the others);
// a member leaving while the others are paused does not hold up their
// accept call.
func TestProxyShareGRIPMembersLeave(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	ids, z := h.sharedStart(4, "http://example.com/h", "h", 0)
	h.sendStream(cmPacket(ids[0], 1, zhttp.TypeCancel))
	// (The cancel and the backend's answer come on different sockets:
	// let the cancel land first; no cancel reaches the backend.)
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	h.noneToZurlStream()
	h.zurlSend(captureHold(z.ID, 1, "Sun, 22 Nov 2026 10:48:12 GMT"))
	for _, id := range ids[1:] {
		h.expectType(id, 1, zhttp.TypeHandoffStart)
	}
	h.sendStream(cmPacket(ids[1], 1, zhttp.TypeHandoffProceed))
	h.sendStream(cmPacket(ids[2], 1, zhttp.TypeHandoffProceed))
	h.sendStream(cmPacket(ids[3], 1, zhttp.TypeCancel))
	c := h.expectAccept()
	if got := acceptRIDs(c); len(got) != 2 || got[0] != string(ids[1]) || got[1] != string(ids[2]) {
		t.Fatalf("accept for %q, want %q and %q", got, ids[1], ids[2])
	}
	h.reply(c, tnetstring.Dict{{Key: "accepted", Value: true}})
	h.noneToConnmgr()
	h.noneToZurlStream()
}

// TestProxyInspectNoProxy: an inspect answer with no-proxy: true sends
// the request to the handler without a backend request, once its whole
// body has come (1.36's ReceivingForAccept).
func TestProxyInspectNoProxy(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	noProxy := tnetstring.Field{Key: "no-proxy", Value: true}
	reply := func(c *acceptCall) {
		b := tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: c.id}, {Key: "success", Value: true},
			{Key: "value", Value: tnetstring.Dict{noProxy}}})
		h.hInspect.Send() <- zsock.Message{c.peer, nil, b}
	}

	first := strings.Repeat("f", inspectPrefetch)
	p := h.newRequest("POST", "http://example.com/np", nil)
	p.Body, p.More = []byte(first), true
	id := h.start(p)
	reply(h.expectInspect())
	// The proxy asks for the rest of the body.
	if c := h.expectType(id, 1, zhttp.TypeCredit); c.Credits != RequestBodyKeep+1-inspectPrefetch {
		t.Errorf("credits %d", c.Credits)
	}
	rest := cmPacket(id, 1, zhttp.TypeData)
	rest.Body = []byte("second")
	h.sendStream(rest)
	h.expectType(id, 2, zhttp.TypeHandoffStart)
	h.sendStream(cmPacket(id, 2, zhttp.TypeHandoffProceed))
	c := h.expectAccept()
	want := map[string]any{
		"requests": []any{map[string]any{
			"rid":    map[string]any{"sender": connmgrFrom, "id": string(id)},
			"in-seq": int64(3), "out-seq": int64(3), "out-credits": int64(200000),
			"peer-address": "127.0.0.1", "logical-peer-address": "127.0.0.1",
		}},
		"request-data": map[string]any{"method": "POST", "uri": "http://example.com/np", "body": first + "second",
			"headers": []any{[]any{"Host", "example.com"}, []any{"User-Agent", "curl/7.88.1"}, []any{"Accept", "*/*"}}},
		"orig-request-data": map[string]any{"method": "", "uri": "", "headers": []any{}, "body": ""},
		"inspect":           map[string]any{"no-proxy": true},
		"route":             "*,*,*,*",
	}
	for _, d := range diffCanon("args", canon(c.args), want) {
		t.Error(d)
	}
	h.reply(c, tnetstring.Dict{{Key: "accepted", Value: true}})
	h.noneToConnmgr()
	h.noneToZurl()

	// Too much body: 413.
	p = h.newRequest("POST", "http://example.com/np", nil)
	p.Body, p.More = []byte("x"), true
	id = h.start(p)
	h.expectType(id, 1, zhttp.TypeCredit) // the inspect prefetch
	big := cmPacket(id, 1, zhttp.TypeData)
	big.Body, big.More = make([]byte, RequestBodyKeep), true
	h.sendStream(big)
	c = h.expectInspect()
	if b, _ := c.args.Bytes("body"); len(b) != inspectPrefetch || !c.args.Bool("truncated") {
		t.Errorf("inspect body %d bytes truncated %v", len(b), c.args.Bool("truncated"))
	}
	reply(c)
	h.expectResponse(id, 2, 413, "Request Entity Too Large", textNoProxyTooLarge)

	// A failed accept call: 500.
	id = h.start(h.newRequest("GET", "http://example.com/np", nil))
	reply(h.expectInspect())
	h.expectType(id, 1, zhttp.TypeHandoffStart)
	h.sendStream(cmPacket(id, 1, zhttp.TypeHandoffProceed))
	c = h.expectAccept()
	h.replyRaw(c, tnetstring.Dict{{Key: "id", Value: c.id}, {Key: "success", Value: false}, {Key: "condition", Value: []byte("bad-format")}})
	h.expectType(id, 2, zhttp.TypeKeepAlive)
	h.expectResponse(id, 3, 500, "Internal Server Error", textAcceptUnavailable)
}

// TestProxyInspectPrefetch: the inspect call waits for the first 10000
// bytes of body (or all of a shorter one); with a sharing key, the proxy
// reads up to 100000 bytes before the request goes out, so that it can
// share.
func TestProxyInspectPrefetch(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, inspect: true})
	p := h.newRequest("POST", "http://example.com/p", nil)
	p.Body, p.More = []byte("abc"), true
	id := h.start(p)
	if c := h.expectType(id, 1, zhttp.TypeCredit); c.Credits != inspectPrefetch-3 {
		t.Errorf("prefetch credits %d", c.Credits)
	}
	select {
	case m := <-h.hInspect.Recv():
		t.Fatalf("inspect before the body: %q", m)
	case <-time.After(quiet):
	}
	rest := cmPacket(id, 1, zhttp.TypeData)
	rest.Body = []byte("def")
	h.sendStream(rest)
	c := h.expectInspect()
	if b, _ := c.args.Bytes("body"); string(b) != "abcdef" || c.args.Bool("truncated") {
		t.Errorf("inspect body %q truncated %v", b, c.args.Bool("truncated"))
	}
	h.replyInspect(c, tnetstring.Field{Key: "sharing-key", Value: []byte("p")})
	if z := h.zurlFirst(); string(z.Body) != "abcdef" || z.More {
		t.Errorf("backend request body %q more %v", z.Body, z.More)
	}

	// A longer body: 10000 bytes inspected (truncated), the rest read
	// before the request goes out.
	p = h.newRequest("POST", "http://example.com/q", nil)
	p.Body, p.More = []byte("a"), true
	id = h.start(p)
	h.expectType(id, 1, zhttp.TypeCredit)
	more := cmPacket(id, 1, zhttp.TypeData)
	more.Body, more.More = []byte(strings.Repeat("b", inspectPrefetch)), true
	h.sendStream(more)
	c = h.expectInspect()
	if b, _ := c.args.Bytes("body"); len(b) != inspectPrefetch || !c.args.Bool("truncated") {
		t.Errorf("inspect body %d bytes truncated %v", len(b), c.args.Bool("truncated"))
	}
	h.replyInspect(c, tnetstring.Field{Key: "sharing-key", Value: []byte("q")})
	if cr := h.expectType(id, 2, zhttp.TypeCredit); cr.Credits != RequestBodyKeep-inspectPrefetch-1 {
		t.Errorf("share read-ahead credits %d", cr.Credits)
	}
	h.noneToZurl()
	last := cmPacket(id, 2, zhttp.TypeData)
	last.Body = []byte("zz")
	h.sendStream(last)
	if z := h.zurlFirst(); len(z.Body) != inspectPrefetch+3 || z.More {
		t.Errorf("backend request body %d bytes more %v", len(z.Body), z.More)
	}
}
