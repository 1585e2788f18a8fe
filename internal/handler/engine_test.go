package handler

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/grip"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

func streamResponse(extra ...string) tnetstring.Dict {
	hs := append([]string{
		"Server", "BaseHTTP/0.6 Python/3.11.2",
		"Content-Type", "text/plain",
		"Grip-Hold", "stream",
		"Grip-Channel", "test",
		"Content-Length", "7",
	}, extra...)
	return response(200, "OK", hs, "[open]\n")
}

// expectKeepAliveTakeover checks the first packet after an accept: a
// keep-alive at out-seq announcing ext.multi (Captured, zmq-wire §2.10).
func expectKeepAliveTakeover(t *testing.T, h *harness, rid string, seq int64) {
	t.Helper()
	p := h.expectPacket()
	if p.Type != zhttp.TypeKeepAlive || string(p.ID) != rid || p.Seq != seq || !p.Multi {
		t.Fatalf("first packet %+v, want keep-alive seq %d with ext.multi", p, seq)
	}
}

func TestEngineStreamHoldAndPublish(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("1-0-1", 2, 200000, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "1-0-1", 2)

	p := h.expectPacket()
	if p.Seq != 3 || p.Code != 200 || p.Reason != "OK" || string(p.Body) != "[open]\n" || !p.More {
		t.Fatalf("initial response %+v", p)
	}
	for _, hd := range p.Headers {
		if strings.HasPrefix(strings.ToLower(hd.Name), "grip-") || strings.EqualFold(hd.Name, "Content-Length") {
			t.Fatalf("header %s relayed", hd.Name)
		}
	}
	if v, _ := p.Header("Content-Type"); v != "text/plain" {
		t.Fatalf("Content-Type %q", v)
	}
	if h.svc.chans.Snapshot()["test"] != struct{}{} {
		t.Fatalf("channel set %v", h.svc.chans.Snapshot())
	}

	h.publish(pubStream("test", "hello stream\n"))
	p = h.expectPacket()
	if p.Seq != 4 || string(p.Body) != "hello stream\n" || !p.More || p.Code >= 0 {
		t.Fatalf("published packet %+v", p)
	}

	// Another channel's item is not delivered.
	h.publish(pubStream("other", "nope\n"))
	h.expectNoPacket()

	// action close ends the response.
	h.publish(grip.Item{Channel: "test", Size: -1, HTTPStream: &grip.HTTPStreamFormat{Action: grip.ActionClose}})
	p = h.expectPacket()
	if p.Seq != 5 || p.More || len(p.Body) != 0 {
		t.Fatalf("close packet %+v", p)
	}
	h.waitGone("condure:1-0-1")
	if _, ok := h.svc.chans.Snapshot()["test"]; ok {
		t.Fatal("stream channel still subscribed")
	}
}

func TestEngineStreamCredits(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("c-1", 2, 4, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "c-1", 2)
	p := h.expectPacket()
	if string(p.Body) != "[ope" || !p.More {
		t.Fatalf("initial response beyond credits: %q", p.Body)
	}
	h.publish(pubStream("test", "one\n"), pubStream("test", "two\n"))
	h.expectNoPacket()

	in := zhttpIn("c-1", 2, zhttp.TypeCredit)
	in.Credits = 5
	h.sendStream(in)
	got := h.drainBody()
	if len(got) != 5 {
		t.Fatalf("sent %q with 5 credits", got)
	}
	in = zhttpIn("c-1", 3, zhttp.TypeCredit)
	in.Credits = 100
	h.sendStream(in)
	got = append(got, h.drainBody()...)
	if string(got) != "n]\none\ntwo\n" {
		t.Fatalf("body after credits %q", got)
	}
}

// TestEngineStreamCreditsListForm: a list-form credit packet (tack-connmgr
// grants a publish's credits that way) gives its credits to each listed
// session, as Pushpin 1.36's zhttp server applies it.
func TestEngineStreamCreditsListForm(t *testing.T) {
	h := startHarness(t, nil)
	rids := []string{"c-1", "c-2"}
	for _, rid := range rids {
		h.sendAccept(acceptArgs(rid, 2, 7, streamResponse()))
		h.expectAccepted()
		expectKeepAliveTakeover(t, h, rid, 2)
		if p := h.expectPacket(); string(p.Body) != "[open]\n" {
			t.Fatalf("%s: initial response %q", rid, p.Body)
		}
	}
	h.publish(pubStream("test", "one\n"))
	h.expectNoPacket() // no credits left

	in := zhttpIn("", 0, zhttp.TypeCredit)
	in.ID, in.Seq = nil, -1
	in.IDs = []zhttp.IDSeq{{ID: []byte("c-1"), Seq: 2}, {ID: []byte("c-2"), Seq: 2}}
	in.Credits = 4
	h.sendStream(in)
	got := map[string]string{}
	for range rids {
		p := h.expectPacket()
		got[string(p.ID)] += string(p.Body)
	}
	for _, rid := range rids {
		if got[rid] != "one\n" {
			t.Errorf("%s got %q after the list-form credits, want %q", rid, got[rid], "one\n")
		}
	}
	h.expectNoPacket()
}

func TestEngineBackpressureAndStall(t *testing.T) {
	// A Prometheus endpoint gives the engine a stats collector.
	h := startHarness(t, func(c *Config) { c.PrometheusPort = "127.0.0.1:0" })
	h.sendAccept(acceptArgs("slow", 2, 7, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "slow", 2)
	h.expectPacket() // initial response used every credit
	h.sendAccept(acceptArgs("fast", 2, 1<<30, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "fast", 2)
	h.expectPacket()

	const size = 64 << 10
	item := strings.Repeat("x", size)
	n := sessionQueueSoftBytes/size + 2 // one waits in pending, the rest go over the soft mark
	var items []grip.Item
	for i := 0; i < n; i++ {
		items = append(items, pubStream("test", item))
	}
	h.publish(items...)
	if got := h.drainBody(); len(got) != n*size {
		t.Fatalf("fast session got %d bytes, want %d", len(got), n*size)
	}
	// The slow session is over the soft mark: the next publish waits.
	h.publish(pubStream("test", "next"))
	h.expectNoPacket()
	var waiting, blocking int
	h.inEngine(func(e *engine) { waiting, blocking = len(e.pubq), len(e.blocking) })
	if waiting != 1 || blocking != 1 {
		t.Fatalf("publish queue %d, blocking sessions %d; want 1, 1", waiting, blocking)
	}

	// Credits drain the slow session below the soft mark: publishing resumes.
	in := zhttpIn("slow", 2, zhttp.TypeCredit)
	in.Credits = 3 * size
	h.sendStream(in)
	var fast, slow int
	for p := h.recvPacket(hWait); p != nil; p = h.recvPacket(200 * time.Millisecond) {
		if string(p.ID) == "fast" {
			fast += len(p.Body)
		} else {
			slow += len(p.Body)
		}
	}
	if fast != len("next") || slow != 3*size {
		t.Fatalf("after credits: fast got %d bytes, slow %d", fast, slow)
	}
	h.inEngine(func(e *engine) { waiting, blocking = len(e.pubq), len(e.blocking) })
	if waiting != 0 || blocking != 0 {
		t.Fatalf("publish queue %d, blocking sessions %d after credits", waiting, blocking)
	}

	// The slow client reads a little: that restarts the stall timeout.
	// Then it stops: it holds publishing back for sessionStallTimeout,
	// then fills its queue and drops, counted.
	h.publish(items...)
	h.drainBody()
	h.publish(pubStream("test", "late"))
	h.expectNoPacket()
	h.advance(sessionStallTimeout - time.Second)
	in = zhttpIn("slow", 3, zhttp.TypeCredit)
	in.Credits = 1024
	h.sendStream(in)
	if p := h.expectPacket(); string(p.ID) != "slow" || len(p.Body) != 1024 {
		t.Fatalf("after 1 KiB of credits: %s %d bytes", p.ID, len(p.Body))
	}
	h.advance(sessionStallTimeout - time.Second)
	h.expectNoPacket()
	h.advance(time.Second)
	if p := h.expectPacket(); string(p.ID) != "fast" || string(p.Body) != "late" {
		t.Fatalf("after the stall timeout: %s %q", p.ID, p.Body)
	}
	var more []grip.Item
	for i := 0; i < SessionQueueMaxBytes/size+8; i++ {
		more = append(more, pubStream("test", item))
	}
	h.publish(more[:len(more)/2]...)
	h.publish(more[len(more)/2:]...)
	if got := h.drainBody(); len(got) != len(more)*size {
		t.Fatalf("fast session got %d bytes, want %d", len(got), len(more)*size)
	}
	var queued, dropped int
	h.inEngine(func(e *engine) {
		s := e.sessions["condure\x00slow"]
		queued, dropped = s.queueBytes, s.dropped
	})
	if queued > SessionQueueMaxBytes || dropped == 0 {
		t.Fatalf("slow session queued %d bytes, dropped %d", queued, dropped)
	}
	if totals, _ := h.svc.st.snapshot(); totals.deliveryDropped != int64(dropped) {
		t.Fatalf("stats count %d drops, session %d", totals.deliveryDropped, dropped)
	}

	// It reads again: it holds publishing back again until it catches up.
	in = zhttpIn("slow", 4, zhttp.TypeCredit)
	in.Credits = 1024
	h.sendStream(in)
	h.drainBody()
	var stalled bool
	h.inEngine(func(e *engine) {
		s := e.sessions["condure\x00slow"]
		_, blocks := e.blocking[s]
		stalled = s.stalled || !blocks
	})
	if stalled {
		t.Fatal("a stalled session that reads again does not hold publishing back")
	}
}

func TestEngineResponseHoldPublish(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	resp := response(200, "OK", []string{"Content-Type", "text/plain", "Grip-Hold", "response", "Grip-Channel", "lp", "X-Keep", "1"}, "timeout body\n")
	h.sendAccept(acceptArgs("r-1", 2, 8192, resp))
	h.expectAccepted()
	h.sendAccept(acceptArgs("r-2", 2, 8192, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "r-1", 2)
	expectKeepAliveTakeover(t, h, "r-2", 2)
	h.expectNoPacket()

	h.publish(pubResponse("lp", 200, "published\n", grip.Header{Name: "X-Keep", Value: "2"}, grip.Header{Name: "Grip-Foo", Value: "x"}))
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		p := h.expectPacket()
		if p.Seq != 3 || p.Code != 200 || string(p.Body) != "published\n" || p.More {
			t.Fatalf("published response %+v", p)
		}
		if v, _ := p.Header("Content-Type"); v != "text/plain" {
			t.Fatalf("inherited Content-Type %q", v)
		}
		if v, _ := p.Header("X-Keep"); v != "2" {
			t.Fatalf("X-Keep %q", v)
		}
		if _, ok := p.Header("Grip-Foo"); ok {
			t.Fatal("Grip- header relayed")
		}
		seen[string(p.ID)] = true
	}
	if !seen["r-1"] || !seen["r-2"] {
		t.Fatalf("answered %v", seen)
	}
	h.waitGone("condure:r-1")
	h.waitGone("condure:r-2")
	// The channel lingers 60 s after its last poller.
	if _, ok := h.svc.chans.Snapshot()["lp"]; !ok {
		t.Fatal("response channel did not linger")
	}
	h.advance(61 * time.Second)
	h.advance(time.Second)
	if _, ok := h.svc.chans.Snapshot()["lp"]; ok {
		t.Fatal("response channel still subscribed after the linger")
	}
}

func TestEngineResponseHoldTimeout(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	resp := response(200, "OK", []string{"Content-Type", "text/plain", "Grip-Hold", "response", "Grip-Channel", "lp",
		"Grip-Timeout", "6", "Grip-Status", "203"}, "timed out\n")
	h.sendAccept(acceptArgs("t-1", 2, 8192, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "t-1", 2)
	h.advance(5 * time.Second)
	h.expectNoPacket()
	h.advance(time.Second)
	p := h.expectPacket()
	if p.Seq != 3 || p.Code != 203 || p.Reason != "Non-Authoritative Information" || string(p.Body) != "timed out\n" || p.More {
		t.Fatalf("timeout response %+v", p)
	}
	if _, ok := p.Header("Content-Length"); ok {
		t.Fatal("Content-Length kept (connmgr computes it)")
	}
	h.waitGone("condure:t-1")
}

func TestEngineResponseBeyondCredits(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	resp := response(200, "OK", []string{"Grip-Hold", "response", "Grip-Channel", "lp"}, "")
	h.sendAccept(acceptArgs("b-1", 2, 3, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "b-1", 2)
	h.publish(pubResponse("lp", 200, "0123456789"))
	p := h.expectPacket()
	if p.Code != 200 || string(p.Body) != "012" || !p.More {
		t.Fatalf("head %+v", p)
	}
	in := zhttpIn("b-1", 2, zhttp.TypeCredit)
	in.Credits = 100
	h.sendStream(in)
	p = h.expectPacket()
	if string(p.Body) != "3456789" || p.More {
		t.Fatalf("rest %+v", p)
	}
	h.waitGone("condure:b-1")
}

func TestEngineFirstSubscriptionRetry(t *testing.T) {
	h := startHarness(t, nil)
	resp := response(200, "OK", []string{"Grip-Hold", "response", "Grip-Channel", "fs"}, "")
	h.sendAccept(acceptArgs("f-1", 2, 8192, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "f-1", 2)
	h.advance(time.Second)
	p := h.expectPacket()
	if p.Type != zhttp.TypeHandoffStart || p.Seq != 3 {
		t.Fatalf("handoff-start %+v", p)
	}
	h.sendStream(zhttpIn("f-1", 2, zhttp.TypeHandoffProceed))
	d := h.recvRetry()
	reqs, _ := d.List("requests")
	if len(reqs) != 1 {
		t.Fatalf("retry %v", d)
	}
	r := reqs[0].(tnetstring.Dict)
	rid, _ := r.Dict("rid")
	id, _ := rid.Bytes("id")
	sender, _ := rid.Bytes("sender")
	inSeq, _ := r.Int("in-seq")
	outSeq, _ := r.Int("out-seq")
	credits, _ := r.Int("out-credits")
	peer, _ := r.Bytes("peer-address")
	if string(id) != "f-1" || string(sender) != "condure" || inSeq != 3 || outSeq != 4 || credits != 8192 || string(peer) != "127.0.0.1" {
		t.Fatalf("retry request %v", r)
	}
	rd, _ := d.Dict("request-data")
	hs, _ := rd.List("headers")
	if len(hs) != 3 {
		t.Fatalf("retry carries orig-request-data, got headers %v", hs)
	}
	if route, _ := d.Bytes("route"); string(route) != "*,*,*,*" {
		t.Fatalf("route %q", route)
	}
	h.waitGone("condure:f-1")
	// A second poll on the lingering channel is not updated again.
	h.sendAccept(acceptArgs("f-2", 5, 8192, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "f-2", 5)
	h.advance(2 * time.Second)
	h.expectNoPacket()
}

func TestEnginePrevIDConflictRetry(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	// Establish last id "a" on channel c1.
	resp := response(200, "OK", []string{"Grip-Hold", "response", "Grip-Channel", "c1"}, "")
	h.sendAccept(acceptArgs("p-1", 2, 8192, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "p-1", 2)
	it := pubResponse("c1", 200, "x")
	it.ID = "a"
	h.publish(it)
	h.expectPacket()
	// A hold whose prev-id differs from "a" is retried at once.
	resp = response(200, "OK", []string{"Grip-Hold", "response", "Grip-Channel", "c1; prev-id=zzz"}, "")
	h.sendAccept(acceptArgs("p-2", 2, 8192, resp))
	h.expectAccepted()
	d := h.recvRetry()
	in, _ := d.Dict("inspect")
	last, _ := in.Dict("last-ids")
	if v, _ := last.Bytes("c1"); string(v) != "zzz" || in.Bool("no-proxy") {
		t.Fatalf("retry inspect %v", in)
	}
	h.expectNoPacket()
}

func TestEngineSequencing(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.IDCacheTTL = time.Minute; c.MessageWait = 5 * time.Second })
	h.sendAccept(acceptArgs("q-1", 2, 200000, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "q-1", 2)
	h.expectPacket()
	item := func(id, prev, content string) grip.Item {
		it := pubStream("test", content)
		it.ID, it.PrevID = id, prev
		return it
	}
	h.publish(item("1", "", "one\n"))
	// Out of order: 3 waits for 2; duplicate 1 is dropped.
	h.publish(item("3", "2", "three\n"), item("1", "", "dup\n"))
	if p := h.expectPacket(); string(p.Body) != "one\n" {
		t.Fatalf("got %q", p.Body)
	}
	h.expectNoPacket()
	h.publish(item("2", "1", "two\n"))
	for _, want := range []string{"two\n", "three\n"} {
		if p := h.expectPacket(); string(p.Body) != want {
			t.Fatalf("got %q, want %q", p.Body, want)
		}
	}
	// A parked item whose predecessor never comes is released after the wait.
	h.publish(item("9", "8", "nine\n"))
	h.expectNoPacket()
	h.advance(6 * time.Second)
	if p := h.expectPacket(); string(p.Body) != "nine\n" {
		t.Fatalf("got %q", p.Body)
	}
}

func TestEngineCancelCleansUp(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("x-1", 2, 200000, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "x-1", 2)
	h.expectPacket()
	h.waitHeld("condure:x-1")
	h.sendStream(zhttpIn("x-1", 2, zhttp.TypeCancel))
	h.waitGone("condure:x-1")
	if _, ok := h.svc.chans.Snapshot()["test"]; ok {
		t.Fatal("channel still subscribed after cancel")
	}
	h.publish(pubStream("test", "late\n"))
	h.expectNoPacket()
}

func TestEngineKeepAliveAndExpiry(t *testing.T) {
	h := startHarness(t, nil)
	for _, rid := range []string{"k-1", "k-2"} {
		h.sendAccept(acceptArgs(rid, 2, 200000, streamResponse()))
		h.expectAccepted()
		expectKeepAliveTakeover(t, h, rid, 2)
		h.expectPacket()
		// condure announces ext.multi on every packet.
		in := zhttpIn(rid, 2, zhttp.TypeKeepAlive)
		h.sendStream(in)
		h.waitInSeq(rid, 3)
	}
	h.advance(46 * time.Second)
	p := h.expectPacket()
	if p.Type != zhttp.TypeKeepAlive || len(p.IDs) != 2 {
		t.Fatalf("batched keep-alive %+v", p)
	}
	for _, e := range p.IDs {
		if e.Seq != 4 {
			t.Fatalf("keep-alive entry %s seq %d", e.ID, e.Seq)
		}
	}
	// k-1 keeps talking; k-2 goes silent and expires 60 s after its last packet.
	h.sendStream(zhttpIn("k-1", 3, zhttp.TypeKeepAlive))
	h.waitInSeq("k-1", 4)
	h.advance(15 * time.Second)
	h.waitGone("condure:k-2")
	h.waitHeld("condure:k-1")
}

func TestEngineStreamKeepAliveData(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("g-1", 2, 200000, streamResponse("Grip-Keep-Alive", `ka\n; format=cstring; timeout=10`)))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "g-1", 2)
	h.expectPacket()
	h.advance(10 * time.Second)
	p := h.expectPacket()
	if string(p.Body) != "ka\n" || !p.More {
		t.Fatalf("keep-alive data %+v", p)
	}
	// idle mode: a publish restarts the timer.
	h.advance(8 * time.Second)
	h.publish(pubStream("test", "data\n"))
	h.expectPacket()
	h.advance(8 * time.Second)
	h.expectNoPacket()
	h.advance(3 * time.Second)
	if p := h.expectPacket(); !bytes.Equal(p.Body, []byte("ka\n")) {
		t.Fatalf("keep-alive data %+v", p)
	}
}

func TestEngineNonHoldAndErrors(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("n-1", 2, 100, response(200, "OK", []string{"Grip-Status", "299 Weird", "X-A", "1", "Content-Length", "3"}, "abc")))
	d := h.acceptReply()
	v, _ := d.Dict("value")
	r, ok := v.Dict("response")
	if !d.Bool("success") || !ok {
		t.Fatalf("reply %v", d)
	}
	code, _ := r.Int("code")
	reason, _ := r.Bytes("reason")
	body, _ := r.Bytes("body")
	if code != 299 || string(reason) != "Weird" || string(body) != "abc" {
		t.Fatalf("response %v", r)
	}
	hs, _ := r.List("headers")
	if len(hs) != 1 {
		t.Fatalf("headers %v", hs)
	}

	h.sendAccept(acceptArgs("n-2", 2, 100, response(200, "OK", []string{"Grip-Hold", "bogus"}, "")))
	d = h.acceptReply()
	cond, _ := d.Bytes("condition")
	val, _ := d.Bytes("value")
	if d.Bool("success") || string(cond) != "bad-format" || string(val) != "Grip-Hold must be set to either 'response' or 'stream'" {
		t.Fatalf("reply %v", d)
	}

	args := acceptArgs("n-3", 2, 100, response(200, "OK", nil, ""))
	args = append(args[:0:0], args[1:]...) // no requests
	h.sendAccept(args)
	d = h.acceptReply()
	if cond, _ := d.Bytes("condition"); d.Bool("success") || string(cond) != "bad-request" {
		t.Fatalf("reply %v", d)
	}
	h.expectNoPacket()
}

// TestEngineRefresh: as Pushpin 1.36 for HTTP sessions — by channel a
// success that changes nothing, by connection id item-not-found (no
// WebSocket session exists to refresh).
func TestEngineRefresh(t *testing.T) {
	h := startHarness(t, nil)
	if err := h.svc.eng.Refresh("", "test"); err != nil {
		t.Fatalf("refresh by channel: %v", err)
	}
	err := h.svc.eng.Refresh("condure:1-0-1", "")
	var ce conditioner
	if !errors.As(err, &ce) || ce.Condition() != "item-not-found" {
		t.Fatalf("refresh by cid: %v", err)
	}
}

// TestEngineQueueBoundsEmptyItems: items without content (filtered out,
// hint) count towards the queue bound too.
func TestEngineQueueBoundsEmptyItems(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("slow", 2, 7, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "slow", 2)
	h.expectPacket() // initial response used every credit
	h.publish(pubStream("test", "pending"))
	// The publish reaches the engine asynchronously: wait until it is
	// held behind the spent credits, so the empty items queue after it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pending int
		h.inEngine(func(e *engine) {
			s := e.sessions["condure\x00slow"]
			pending = len(s.pending) + len(s.queue)
		})
		if pending > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the publish was never queued")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var queued, dropped int
	h.inEngine(func(e *engine) {
		s := e.sessions["condure\x00slow"]
		for i := 0; i < SessionQueueMaxBytes/queuedItemOverhead+10; i++ {
			e.queueOrApply(s, &streamItem{channel: "test", skip: true}, e.clock.Now())
		}
		queued, dropped = s.queueBytes, s.dropped
	})
	if queued > SessionQueueMaxBytes || dropped == 0 {
		t.Fatalf("queued %d bytes of empty items, dropped %d", queued, dropped)
	}
}

// TestEngineFirstPacketsWaitForConnmgr: the proxy hands over a session
// while the handler is still connecting to connmgr's SUB (at start-up
// under load; the handler started before connmgr bound it). The packets
// it numbers then reach connmgr once connected, in order, instead of
// being dropped by the PUB (connmgr then saw a gap at the next
// keep-alive, 45 s later: "bad seq, closing ... expected=2 got=4").
func TestEngineFirstPacketsWaitForConnmgr(t *testing.T) {
	var late string
	h := startHarnessCold(t, func(c *Config) {
		late = strings.Replace(c.ConnmgrOutSpecs[0], "condure-in", "condure-in-late", 1)
		c.ConnmgrOutSpecs = []string{late}
	})
	h.sendAccept(acceptArgs("1-0-1", 2, 200000, streamResponse()))
	h.expectAccepted()
	h.sync()
	time.Sleep(100 * time.Millisecond) // a PUB would have sent (and lost) them by now
	sub, err := h.zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	sub.SetLinger(0)
	sub.SetSubscribe("condure ")
	if err := sub.Bind(late); err != nil {
		t.Fatal(err)
	}
	h.cin.Close()
	h.cin = sub // closed by h.stop
	expectKeepAliveTakeover(t, h, "1-0-1", 2)
	if p := h.expectPacket(); p.Seq != 3 || p.Code != 200 || string(p.Body) != "[open]\n" {
		t.Fatalf("initial response %+v", p)
	}
}

// TestEngineKeepAliveQueueFull: a zhttp keep-alive the full connmgr queue
// cannot take gives its sequence number back, so the next packet of the
// session carries it (connmgr closes a session at a gap).
func TestEngineKeepAliveQueueFull(t *testing.T) {
	clk := newHClock()
	e := newEngine(Config{InstanceID: "handler_test", clock: clk}, zerolog.Nop(), nil, nil)
	out := make(chan zsock.Message, 16)
	e.out.connmgr = out
	in, err := grip.Parse(200, "OK", []grip.Header{{Name: "Grip-Hold", Value: "stream"}, {Name: "Grip-Channel", Value: "c"}}, nil, grip.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.accept(&acceptData{Instruct: in, Requests: []requestState{{Sender: []byte("condure"), ID: []byte("0-0-1"),
		OutSeq: 2, InSeq: 2, OutCredits: 1 << 20, ResponseCode: -1}}}, clk.Now())
	for len(out) > 0 {
		<-out
	}
	s := e.sessions["condure\x000-0-1"]
	if s == nil {
		t.Fatal("session not held")
	}
	next := s.z.OutSeq
	e.out.connmgr = make(chan zsock.Message) // no room
	e.kaDue = append(e.kaDue, s)
	e.flushKeepAlives(clk.Now())
	if s.z.OutSeq != next {
		t.Fatalf("out seq %d after a keep-alive that was not queued, want %d", s.z.OutSeq, next)
	}
	e.out.connmgr = out
	e.kaDue = append(e.kaDue, s)
	e.flushKeepAlives(clk.Now())
	m := <-out
	_, raw, _ := zhttp.SplitPubFrame(m[0])
	p, err := zhttp.Parse(raw)
	if err != nil || p.Type != zhttp.TypeKeepAlive || p.Seq != next {
		t.Fatalf("keep-alive %+v (%v), want seq %d", p, err, next)
	}
}
