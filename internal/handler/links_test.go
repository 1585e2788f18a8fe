package handler

import (
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/grip"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// recvOutReq returns the next outbound request the handler sent to the
// (test) proxy's intreq-in.
func (h *harness) recvOutReq() *zhttp.Packet {
	h.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(h.iin, zmq.POLLIN)
	polled, err := poller.Poll(hWait)
	if err != nil || len(polled) == 0 {
		h.t.Fatalf("no outbound request: %v", err)
	}
	m, err := h.iin.RecvMessageBytes(0)
	if err != nil || len(m) != 1 {
		h.t.Fatalf("bad intreq message %q: %v", m, err)
	}
	p, err := zhttp.Parse(m[0])
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// expectNoOutReq checks that no outbound request arrives for a while.
func (h *harness) expectNoOutReq() {
	h.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(h.iin, zmq.POLLIN)
	if polled, _ := poller.Poll(150 * time.Millisecond); len(polled) > 0 {
		m, _ := h.iin.RecvMessageBytes(0)
		h.t.Fatalf("unexpected outbound request %q", m)
	}
}

// answerOutReq replies to request req as the proxy would: an ack, then the
// response in one data packet.
func (h *harness) answerOutReq(req *zhttp.Packet, code int, headers []string, body string) {
	h.t.Helper()
	send := func(p *zhttp.Packet) {
		p.From = []byte("proxy_test")
		p.ID = req.ID
		if _, err := h.iout.SendBytes(zhttp.PubFrame(req.From, p), 0); err != nil {
			h.t.Fatal(err)
		}
	}
	ack := zhttp.New()
	ack.Type = zhttp.TypeKeepAlive
	ack.Seq = 0
	send(ack)
	p := zhttp.New()
	p.Seq = 1
	p.Code = int64(code)
	p.Reason = "OK"
	for i := 0; i+1 < len(headers); i += 2 {
		p.Headers = append(p.Headers, zhttp.Header{Name: headers[i], Value: headers[i+1]})
	}
	p.Body = []byte(body)
	send(p)
	h.waitEngine("reply to "+string(req.ID)+" processed", func(e *engine) bool { return e.outReqs[string(req.ID)] == nil })
}

func TestLinksStreamNextLink(t *testing.T) {
	h := startHarness(t, nil)
	h.sendAccept(acceptArgs("l-1", 2, 200000, streamResponse("Grip-Link", "</next?n=1>; rel=next; timeout=5")))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "l-1", 2)
	if p := h.expectPacket(); string(p.Body) != "[open]\n" {
		t.Fatalf("initial response %+v", p)
	}
	h.expectNoOutReq()

	// The channel's first subscription updates the session after 1 s:
	// the next link is fetched, through the proxy, routed internally.
	h.advance(time.Second)
	h.sync()
	req := h.recvOutReq()
	pass, _ := req.Passthrough.(tnetstring.Dict)
	route, _ := pass.Bytes("route")
	if req.Method != "GET" || req.URI != "http://127.0.0.1:7999/next?n=1" || string(req.From) != "handler_test" ||
		req.Seq != 0 || req.Credits != outReqCredits || !req.Stream || string(route) != "*,*,*,*" ||
		!pass.Bool("prefer-internal") || !pass.Bool("trusted") || !pass.Bool("auto-share") || len(req.Headers) != 0 {
		t.Fatalf("next-link request %+v, passthrough %v", req, pass)
	}
	// Its answer re-subscribes the session (with a prev-id now) and its
	// body is appended to the stream.
	h.answerOutReq(req, 200, []string{"Grip-Hold", "stream", "Grip-Channel", "test; prev-id=7",
		"Grip-Link", "</next?n=2>; rel=next; timeout=5", "Content-Type", "text/plain"}, "next-1\n")
	if p := h.expectPacket(); string(p.Body) != "next-1\n" || !p.More || p.Code >= 0 {
		t.Fatalf("next-link body %+v", p)
	}

	// The window ends with nothing delivered: fetch again, with Grip-Last.
	h.advance(5 * time.Second)
	h.sync()
	req = h.recvOutReq()
	if req.URI != "http://127.0.0.1:7999/next?n=2" || len(req.Headers) != 1 ||
		req.Headers[0].Name != "Grip-Last" || req.Headers[0].Value != "test; last-id=7" {
		t.Fatalf("second request %+v", req)
	}
	// No hold and no next link: the stream ends after this body.
	h.answerOutReq(req, 200, []string{"Content-Type", "text/plain"}, "bye\n")
	if body := h.drainBody(); string(body) != "bye\n" {
		t.Fatalf("last body %q", body)
	}
	h.waitGone("condure:l-1")
}

func TestLinksWindowResetByDeliveries(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	h.sendAccept(acceptArgs("w-1", 2, 200000, streamResponse("Grip-Link", "</next>; rel=next; timeout=5")))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "w-1", 2)
	h.expectPacket()
	h.advance(4 * time.Second)
	h.publish(pubStream("test", "x\n"))
	h.expectPacket()
	// Every channel got an item in the window: it restarts instead.
	h.advance(time.Second + 10*time.Millisecond)
	h.expectNoOutReq()
	h.advance(5 * time.Second)
	h.sync()
	if req := h.recvOutReq(); req.URI != "http://127.0.0.1:7999/next" {
		t.Fatalf("request %+v", req)
	}
}

func TestLinksNoHoldChain(t *testing.T) {
	h := startHarness(t, nil)
	resp := response(200, "OK", []string{"Content-Type", "text/plain", "Grip-Link", "<http://other.example:8080/more?p=1>; rel=next"}, "first\n")
	h.sendAccept(acceptArgs("c-1", 2, 200000, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "c-1", 2)
	if p := h.expectPacket(); p.Code != 200 || string(p.Body) != "first\n" || !p.More {
		t.Fatalf("initial response %+v", p)
	}
	// Fetched at once; another host: not routed internally.
	req := h.recvOutReq()
	pass, _ := req.Passthrough.(tnetstring.Dict)
	if req.URI != "http://other.example:8080/more?p=1" || pass.Bool("prefer-internal") {
		t.Fatalf("request %+v %v", req, pass)
	}
	h.answerOutReq(req, 200, []string{"Grip-Link", "</more?p=2>; rel=next"}, "second\n")
	if p := h.expectPacket(); string(p.Body) != "second\n" {
		t.Fatalf("chained body %+v", p)
	}
	// Relative to the link it came from; still not internal.
	req = h.recvOutReq()
	pass, _ = req.Passthrough.(tnetstring.Dict)
	if req.URI != "http://other.example:8080/more?p=2" || pass.Bool("prefer-internal") {
		t.Fatalf("relative link resolved to %q", req.URI)
	}
	h.answerOutReq(req, 200, nil, "third\n")
	if body := h.drainBody(); string(body) != "third\n" {
		t.Fatalf("last body %q", body)
	}
	h.waitGone("condure:c-1")
}

func TestLinksRetriesThenFails(t *testing.T) {
	h := startHarness(t, nil)
	resp := response(200, "OK", []string{"Grip-Link", "</more>; rel=next"}, "")
	args := acceptArgs("r-1", 2, 200000, resp)
	h.sendAccept(args)
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "r-1", 2)
	h.expectPacket()
	for i := range nextLinkRetries + 1 {
		req := h.recvOutReq()
		h.answerOutReq(req, 503, nil, "down\n")
		if i < nextLinkRetries {
			// Not before 2^i s; at the latest 2^i s + 999 ms.
			h.advance(time.Duration(1<<i)*time.Second - 10*time.Millisecond)
			h.expectNoOutReq()
			h.advance(time.Second + 10*time.Millisecond)
			h.sync()
		}
	}
	// The sixth failure ends the stream.
	p := h.expectPacket()
	if p.More {
		t.Fatalf("end packet %+v", p)
	}
	h.waitGone("condure:r-1")
}

func TestLinksNonStreamHoldFails(t *testing.T) {
	h := startHarness(t, nil)
	resp := response(200, "OK", []string{"Grip-Link", "</more>; rel=next"}, "")
	args := acceptArgs("x-1", 2, 200000, resp)
	// debug: the error text is written to the stream.
	reqs, _ := args.List("requests")
	r := reqs[0].(tnetstring.Dict)
	reqs[0] = append(r, tnetstring.Field{Key: "debug", Value: true})
	h.sendAccept(args)
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "x-1", 2)
	h.expectPacket()
	h.answerOutReq(h.recvOutReq(), 200, []string{"Grip-Hold", "response", "Grip-Channel", "x"}, "")
	if body := h.drainBody(); !strings.Contains(string(body), textNonStream) {
		t.Fatalf("body %q", body)
	}
	h.waitGone("condure:x-1")
}

func TestLinksGoneLink(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	h.sendAccept(acceptArgs("g-1", 2, 200000, streamResponse("Grip-Link", "</gone?u=1>; rel=gone")))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "g-1", 2)
	h.expectPacket()
	h.expectNoOutReq()
	h.sendStream(zhttpIn("g-1", 2, zhttp.TypeCancel))
	h.waitGone("condure:g-1")
	req := h.recvOutReq()
	if req.Method != "POST" || req.URI != "http://127.0.0.1:7999/gone?u=1" || len(req.Body) != 0 || req.More {
		t.Fatalf("gone request %+v", req)
	}
	h.answerOutReq(req, 200, nil, "")
	h.waitEngine("gone request done", func(e *engine) bool { return len(e.outReqs) == 0 })
}

func TestLinksBuildID(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	resp := response(200, "OK", []string{
		"Grip-Hold", "stream",
		"Grip-Channel", "test; prev-id=5; filter=build-id",
		"Grip-Set-Meta", `id_format="c:%(test)s"`,
		"Grip-Link", "</next>; rel=next",
	}, "start %I %(lit)I\n")
	h.sendAccept(acceptArgs("b-1", 2, 200000, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "b-1", 2)
	if p := h.expectPacket(); string(p.Body) != "start c:5 lit\n" {
		t.Fatalf("initial body %q", p.Body)
	}
	// Message content sees the prev-id from before the item.
	it := pubStream("test", "at %I\n")
	it.PrevID, it.ID = "5", "6"
	h.publish(it)
	if p := h.expectPacket(); string(p.Body) != "at c:5\n" {
		t.Fatalf("message body %q", p.Body)
	}
	it = pubStream("test", "at %I\n")
	it.PrevID, it.ID = "6", "7"
	h.publish(it)
	if p := h.expectPacket(); string(p.Body) != "at c:6\n" {
		t.Fatalf("message body %q", p.Body)
	}
}

func TestFilterBuildIDErrors(t *testing.T) {
	s := &hsession{}
	for _, tc := range []struct {
		meta    map[string]string
		content string
		want    string
		err     string
	}{
		{map[string]string{}, "%I", "", "no sub meta 'id_format'"},
		{map[string]string{"id_format": "x"}, "%I", "", "no ID specified and no default ID in context"},
		{map[string]string{"id_format": "x"}, "%(ab)I", "ab", ""},
		{map[string]string{"id_format": "x", "id_encoding": "hex"}, "%(ab)I", "6162", ""},
		{map[string]string{"id_format": "x", "id_encoding": "b64"}, "%I", "", "unsupported encoding: b64"},
		{map[string]string{"id_format": "x"}, "%s", "", "unknown directive 's'"},
		{map[string]string{"id_format": "x"}, "no directives", "no directives", ""},
	} {
		s.in = instructWithMeta(tc.meta)
		got, err := buildID([]byte(tc.content), s)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("buildID(%q, %v): err %v, want %q", tc.content, tc.meta, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("buildID(%q, %v) = %q, %v; want %q", tc.content, tc.meta, got, err, tc.want)
		}
	}
}

func TestLinkTarget(t *testing.T) {
	for _, tc := range []struct {
		base, link, uri string
		internal        bool
	}{
		{"http://127.0.0.1:7999/stream?x=1", "/next?n=1", "http://127.0.0.1:7999/next?n=1", true},
		{"http://127.0.0.1:7999/a/b", "c", "http://127.0.0.1:7999/a/c", true},
		{"http://example.com/a", "http://EXAMPLE.com:80/z", "http://EXAMPLE.com:80/z", true},
		{"https://example.com/a", "http://example.com/z", "http://example.com/z", false},
		{"http://example.com/a", "http://example.com:8080/z", "http://example.com:8080/z", false},
	} {
		uri, internal, err := linkTarget(tc.base, tc.base, tc.link)
		if err != nil || uri != tc.uri || internal != tc.internal {
			t.Errorf("linkTarget(%q, %q) = %q, %v, %v", tc.base, tc.link, uri, internal, err)
		}
	}
	if _, _, err := linkTarget("http://a/", "http://a/", "ftp://b/c"); err == nil {
		t.Error("ftp link accepted")
	}
}

func instructWithMeta(meta map[string]string) *grip.Instruct { return &grip.Instruct{Meta: meta} }

func TestLinksWithoutIntreq(t *testing.T) {
	h := startHarness(t, func(c *Config) {
		c.UpdateOnFirstSubscription = false
		c.IntreqOutSpecs, c.IntreqOutStream, c.IntreqInSpecs = nil, nil, nil
	})
	args := acceptArgs("ni-1", 2, 200000, streamResponse("Grip-Link", "</next>; rel=next; timeout=5"))
	reqs, _ := args.List("requests")
	reqs[0] = append(reqs[0].(tnetstring.Dict), tnetstring.Field{Key: "debug", Value: true})
	h.sendAccept(args)
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "ni-1", 2)
	h.expectPacket()
	// The window ends: no outbound sockets, so the stream fails at once
	// with Pushpin's text (debug mode writes it).
	h.advance(5 * time.Second)
	if body := h.drainBody(); !strings.Contains(string(body), textNoIntreq) {
		t.Fatalf("body %q", body)
	}
	h.waitGone("condure:ni-1")
}

// TestLinksBadReplies: garbage, unknown ids, replies without a status and
// bodies over OutReqBodyMax from the intreq side never take the handler
// down; the fetch fails (and is retried) as a network error would.
func TestLinksBadReplies(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	h.sendAccept(acceptArgs("bad-1", 2, 200000, response(200, "OK", []string{"Grip-Link", "</more>; rel=next"}, "")))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "bad-1", 2)
	h.expectPacket()
	req := h.recvOutReq()
	for _, frame := range [][]byte{
		[]byte("no-space-at-all"),
		[]byte("handler_test garbage"),
		[]byte("handler_test T5:junk"),
		zhttp.PubFrame([]byte("handler_test"), &zhttp.Packet{From: []byte("proxy_test"), ID: []byte("nobody"), Seq: 0, Type: zhttp.TypeKeepAlive, Credits: -1, Code: -1, MaxSize: -1, Timeout: -1, PeerPort: -1, ConnectPort: -1}),
	} {
		if _, err := h.iout.SendBytes(frame, 0); err != nil {
			t.Fatal(err)
		}
	}
	// A data packet without a status code fails the fetch.
	p := zhttp.New()
	p.From, p.ID, p.Seq, p.Body = []byte("proxy_test"), req.ID, 0, []byte("x")
	if _, err := h.iout.SendBytes(zhttp.PubFrame(req.From, p), 0); err != nil {
		t.Fatal(err)
	}
	h.waitEngine("failed fetch", func(e *engine) bool { return len(e.outReqs) == 0 })
	// The retry comes, and an oversized body fails it too.
	h.advance(2 * time.Second)
	h.sync()
	req = h.recvOutReq()
	big := zhttp.New()
	big.From, big.ID, big.Seq, big.Code, big.Reason = []byte("proxy_test"), req.ID, 0, 200, "OK"
	big.Body, big.More = make([]byte, OutReqBodyMax+1), true
	if _, err := h.iout.SendBytes(zhttp.PubFrame(req.From, big), 0); err != nil {
		t.Fatal(err)
	}
	h.waitEngine("oversized fetch dropped", func(e *engine) bool { return len(e.outReqs) == 0 })
	// The session is still held (the failures only schedule retries).
	h.inEngine(func(e *engine) {
		if e.sessions["condure\x00bad-1"] == nil {
			t.Error("session gone after bad replies")
		}
	})
}
