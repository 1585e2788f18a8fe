package proxy

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"tack/internal/grip"
	"tack/pkg/zhttp"
)

// These tests play condure, zurl and the handler around an in-process
// proxy and compare what it sends with the 1.36 captures in zmq-wire.md
// §A.3–A.5 and the texts in grip-reference §2.4, §11.8.

func TestProxyAck(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}})
	p := h.newRequest("GET", "http://example.com/", nil)
	h.sendFirst(p)
	ack := h.expectType(p.ID, 0, zhttp.TypeKeepAlive)
	// Capture §A.3: keep-alive, id echoed, from = proxy id, ext.multi, seq 0,
	// and nothing else.
	if !ack.Multi || ack.Code >= 0 || ack.Body != nil || ack.Credits >= 0 || ack.UserData != nil {
		t.Errorf("ack %s has more than Pushpin's fields", describe(ack))
	}
}

func TestProxyTestHandler(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}})
	for _, tc := range []struct {
		name, uri, reason, body string
		code                    int64
	}{
		{"root", "http://example.com/", "OK", "Hello from the Pushpin test handler!\n", 200},
		{"not found", "http://example.com/nope", "Not Found", "no such test resource\n", 404},
		{"trailing slash ignored", "http://example.com/nope/", "Not Found", "no such test resource\n", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			id := h.start(h.newRequest("GET", tc.uri, nil))
			r := h.expectResponse(id, 1, tc.code, tc.reason, tc.body)
			if ct, _ := r.Header("Content-Type"); ct != "text/plain" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := headerNames(r.Headers); !slices.Equal(got, []string{"Content-Type", "Content-Length"}) {
				t.Errorf("headers %v", got)
			}
		})
	}
}

// TestProxyTestHandlerTooLarge sends a body over 100000 bytes within the
// credits the proxy grants and expects 400 "request too large".
func TestProxyTestHandlerTooLarge(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}})
	p := h.newRequest("POST", "http://example.com/", nil)
	p.More = true
	id := h.start(p)
	seqIn, seqOut := int64(1), int64(1)
	sent := 0
	credit := int64(0)
	for sent <= TestBodyMax {
		// Wait for credit when the window is used up.
		for credit == 0 {
			c := h.expectType(id, seqOut, zhttp.TypeCredit)
			seqOut++
			credit += c.Credits
		}
		n := min(credit, 40000)
		b := cmPacket(id, seqIn, zhttp.TypeData)
		b.Body = bytes.Repeat([]byte("x"), int(n))
		b.More = true
		h.sendStream(b)
		seqIn++
		sent += int(n)
		credit -= n
	}
	end := cmPacket(id, seqIn, zhttp.TypeData)
	h.sendStream(end)
	// Skip credits granted meanwhile.
	for {
		r := h.fromProxy(id, seqOut)
		seqOut++
		if r.Type == zhttp.TypeCredit {
			continue
		}
		if r.Code != 400 || r.Reason != "Bad Request" || string(r.Body) != "request too large\n" {
			t.Fatalf("response %s", describe(r))
		}
		if cl, _ := r.Header("Content-Length"); cl != "18" {
			t.Errorf("Content-Length %q", cl)
		}
		return
	}
}

func TestProxyNoRoute(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"example.com test"}})
	id := h.start(h.newRequest("GET", "http://x/", nil))
	r := h.expectResponse(id, 1, 502, "Bad Gateway", "No route for host: x\n")
	if ct, _ := r.Header("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q", ct)
	}
}

// --- proxying through zurl ---

// proxied starts a request on route "* 127.0.0.1:9" and returns the
// connmgr id and the first packet zurl got.
func (h *harness) proxied(p *zhttp.Packet) ([]byte, *zhttp.Packet) {
	h.t.Helper()
	id := h.start(p)
	return id, h.zurlFirst()
}

func TestProxyForwardRequest(t *testing.T) {
	const key = "changeme"
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, mod: func(c *Config) { c.SigKey = key }})
	p := h.newRequest("GET", "http://example.com/path/x?a=1&b=%20", []zhttp.Header{
		{Name: "Host", Value: "example.com"},
		{Name: "User-Agent", Value: "curl/7.88.1"},
		{Name: "Connection", Value: "keep-alive"},
		{Name: "Keep-Alive", Value: "timeout=5"},
		{Name: "Accept-Encoding", Value: "gzip"},
		{Name: "Expect", Value: "100-continue"},
		{Name: "Grip-Sig", Value: "forged"},
		{Name: "grip-last", Value: "x; last-id=1"},
		{Name: "X-Foo", Value: "bar"},
		{Name: "Accept", Value: "*/*"},
	})
	p.Credits = 8192
	_, z := h.proxied(p)

	if string(z.From) != h.id || z.Seq != 0 || !z.Multi || z.Type != "" {
		t.Errorf("envelope %s, want from %q seq 0 ext.multi", describe(z), h.id)
	}
	if len(z.ID) == 0 {
		t.Error("no id")
	}
	if z.Method != "GET" || z.URI != "http://example.com/path/x?a=1&b=%20" {
		t.Errorf("request line %s %s", z.Method, z.URI)
	}
	if z.ConnectHost != "127.0.0.1" || z.ConnectPort != 9 {
		t.Errorf("connect-host/port %q %d", z.ConnectHost, z.ConnectPort)
	}
	if !z.IgnorePolicies || !z.Stream || z.More || z.Body != nil {
		t.Errorf("ignore-policies %v stream %v more %v body %q", z.IgnorePolicies, z.Stream, z.More, z.Body)
	}
	if z.Credits != 8192+ResponseBuffer {
		t.Errorf("credits %d, want connmgr's 8192 plus the proxy's ResponseBuffer", z.Credits)
	}
	want := []string{"Host", "User-Agent", "X-Foo", "Accept", "Grip-Sig", "Grip-Feature"}
	if got := headerNames(z.Headers); !slices.Equal(got, want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	if v, _ := z.Header("Grip-Feature"); v != "status, link:next, link:gone, filter:skip-self, filter:skip-users, filter:require-sub, filter:build-id, filter:var-subst" {
		t.Errorf("Grip-Feature %q (1.36 list, capture §A.4, without session, with link:gone)", v)
	}
	sig, _ := z.Header("Grip-Sig")
	if !grip.ValidateToken(sig, grip.NewSecretKey([]byte(key)), time.Now()) {
		t.Errorf("Grip-Sig %q does not validate", sig)
	}
	if grip.ValidateToken(sig, grip.NewSecretKey([]byte("other")), time.Now()) {
		t.Errorf("Grip-Sig validates with the wrong key")
	}
}

func TestProxyForwardNoSigKey(t *testing.T) {
	// tack sends no Grip-Sig without a key (a stated deviation: 1.36 signs
	// with an empty secret); Grip-Feature is still sent.
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	_, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	if _, ok := z.Header("Grip-Sig"); ok {
		t.Error("Grip-Sig sent without a key")
	}
	if _, ok := z.Header("Grip-Feature"); !ok {
		t.Error("no Grip-Feature")
	}
}

func TestProxyForwardUntrustedAndNoGrip(t *testing.T) {
	h := startProxy(t, harnessOpts{
		routes: []string{"*,no_grip 127.0.0.1:9,untrusted"},
		mod:    func(c *Config) { c.SigKey = "k" },
	})
	p := h.newRequest("GET", "http://example.com/", nil)
	p.Headers = append(p.Headers, zhttp.Header{Name: "Grip-Foo", Value: "x"})
	_, z := h.proxied(p)
	if z.IgnorePolicies {
		t.Error("ignore-policies set for an untrusted target")
	}
	for _, n := range []string{"Grip-Sig", "Grip-Feature", "Grip-Foo"} {
		if _, ok := z.Header(n); ok {
			t.Errorf("%s sent on a no_grip route", n)
		}
	}
}

// TestProxyResponseRelay: status, reason, headers minus hop headers, and
// the body in order with its more flags.
func TestProxyResponseRelay(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", []zhttp.Header{
		{Name: "Server", Value: "BaseHTTP/0.6 Python/3.11.2"},
		{Name: "Content-Type", Value: "text/plain"},
		{Name: "Connection", Value: "close"},
		{Name: "Keep-Alive", Value: "timeout=5"},
		{Name: "Transfer-Encoding", Value: "chunked"},
		{Name: "X-Backend", Value: "1"},
	}, "hello\n", true))
	r := h.fromProxy(id, 1)
	if r.Code != 200 || r.Reason != "OK" || string(r.Body) != "hello\n" || !r.More {
		t.Fatalf("head %s", describe(r))
	}
	if got, want := headerNames(r.Headers), []string{"Server", "Content-Type", "X-Backend"}; !slices.Equal(got, want) {
		t.Errorf("relayed headers %v, want %v", got, want)
	}
	h.zurlSend(zurlResponse(z.ID, 1, -1, "", nil, "world\n", true))
	r = h.fromProxy(id, 2)
	if r.Code >= 0 || string(r.Body) != "world\n" || !r.More {
		t.Fatalf("body %s", describe(r))
	}
	end := zp(z.ID, 2, zhttp.TypeData)
	end.Body = []byte{}
	h.zurlSend(end)
	r = h.fromProxy(id, 3)
	if r.More || len(r.Body) != 0 || r.Type != "" {
		t.Fatalf("end %s", describe(r))
	}
	// The session is over: a late packet from connmgr gets a cancel
	// addressed by id only.
	h.sendStream(cmPacket(id, 1, zhttp.TypeCredit))
	c := h.fromProxyAnySeq(id)
	if c.Type != zhttp.TypeCancel {
		t.Errorf("late packet answered with %s", describe(c))
	}
}

// TestProxyResponseContentEncoding: Pushpin drops Content-Encoding from a
// relayed response (proxysession.cpp startResponse removes Connection,
// Keep-Alive, Content-Encoding and Transfer-Encoding; grip-reference §3.13).
func TestProxyResponseContentEncoding(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", []zhttp.Header{
		{Name: "Content-Encoding", Value: "gzip"},
		{Name: "Trailer", Value: "X-T"},
		{Name: "Upgrade", Value: "h2c"},
		{Name: "X-Backend", Value: "1"},
	}, "x", false))
	r := h.fromProxy(id, 1)
	if got, want := headerNames(r.Headers), []string{"Trailer", "Upgrade", "X-Backend"}; !slices.Equal(got, want) {
		t.Errorf("relayed headers %v, want %v", got, want)
	}
}

// TestProxyResponseCredits: zurl may send connmgr's window plus the
// proxy's ResponseBuffer; the proxy holds the excess and releases it to
// connmgr only as connmgr grants credits, and grants zurl back in batches.
func TestProxyResponseCredits(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	p := h.newRequest("GET", "http://example.com/", nil)
	p.Credits = 10
	id, z := h.proxied(p)
	if z.Credits != 10+ResponseBuffer {
		t.Fatalf("first packet credits %d", z.Credits)
	}
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	h.zurlSend(zurlResponse(z.ID, 1, 200, "OK", nil, strings.Repeat("y", 67), false))
	if r := h.fromProxy(id, 1); r.Code != 200 || len(r.Body) != 10 || !r.More {
		t.Fatalf("head %s, want 10 bytes (connmgr's credits) and more", describe(r))
	}
	c := cmPacket(id, 1, zhttp.TypeCredit)
	c.Credits = 50
	h.sendStream(c)
	if r := h.fromProxy(id, 2); len(r.Body) != 50 || !r.More {
		t.Fatalf("second packet %s, want 50 bytes and more", describe(r))
	}
	c = cmPacket(id, 2, zhttp.TypeCredit)
	c.Credits = 100
	h.sendStream(c)
	if r := h.fromProxy(id, 3); len(r.Body) != 7 || r.More {
		t.Fatalf("last packet %s, want the last 7 bytes", describe(r))
	}
	// 67 bytes owed back is below one credit batch: zurl hears nothing.
	h.noneToZurlStream()
}

// TestProxyResponseCreditBatches: a long body is granted back to zurl in
// batches once connmgr has taken it.
func TestProxyResponseCreditBatches(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	p := h.newRequest("GET", "http://example.com/", nil)
	p.Credits = 1 << 20
	id, z := h.proxied(p)
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	h.zurlSend(zurlResponse(z.ID, 1, 200, "OK", nil, strings.Repeat("y", creditBatch), true))
	if r := h.fromProxy(id, 1); len(r.Body) != creditBatch {
		t.Fatalf("relayed %s", describe(r))
	}
	if g := h.zurlStream(z.ID, 1); g.Type != zhttp.TypeCredit || g.Credits != creditBatch {
		t.Fatalf("zurl got %s, want credit %d", describe(g), creditBatch)
	}
}

// TestProxyRequestBodyCredits: the request body goes to zurl in order with
// its more flags, and connmgr is never granted more than zurl granted.
func TestProxyRequestBodyCredits(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	p := h.newRequest("POST", "http://example.com/upload", nil)
	p.Headers = append(p.Headers, zhttp.Header{Name: "Content-Length", Value: "6000"})
	p.More = true
	id, z := h.proxied(p)
	if !z.More || len(z.Body) != 0 {
		t.Fatalf("first packet %s, want more without body", describe(z))
	}
	if cl, _ := z.Header("Content-Length"); cl != "6000" {
		t.Errorf("Content-Length %q", cl)
	}
	h.noneToConnmgr() // no request credit before zurl has granted any

	// zurl acks with a credit grant (zmq-wire.md §2.7).
	zc := zp(z.ID, 0, zhttp.TypeCredit)
	zc.Credits = 5000
	h.zurlSend(zc)
	g := h.expectType(id, 1, zhttp.TypeCredit)
	if g.Credits != 5000 {
		t.Fatalf("connmgr credit %d, want zurl's 5000", g.Credits)
	}
	body := func(seq int64, b string, more bool) {
		q := cmPacket(id, seq, zhttp.TypeData)
		q.Body, q.More = []byte(b), more
		h.sendStream(q)
	}
	part1, part2, part3 := strings.Repeat("a", 3000), strings.Repeat("b", 2000), strings.Repeat("c", 1000)
	body(1, part1, true)
	if f := h.zurlStream(z.ID, 1); string(f.Body) != part1 || !f.More {
		t.Fatalf("zurl got %s", describe(f))
	}
	body(2, part2, true)
	if f := h.zurlStream(z.ID, 2); string(f.Body) != part2 || !f.More {
		t.Fatalf("zurl got %s", describe(f))
	}
	h.noneToConnmgr() // zurl's window is used up: no more credit for connmgr

	zc = zp(z.ID, 1, zhttp.TypeCredit)
	zc.Credits = 4000
	h.zurlSend(zc)
	if g := h.expectType(id, 2, zhttp.TypeCredit); g.Credits != 4000 {
		t.Fatalf("connmgr credit %d, want 4000", g.Credits)
	}
	body(3, part3, false)
	if f := h.zurlStream(z.ID, 3); string(f.Body) != part3 || f.More {
		t.Fatalf("zurl got %s", describe(f))
	}
	h.zurlSend(zurlResponse(z.ID, 2, 200, "OK", []zhttp.Header{{Name: "Content-Length", Value: "3"}}, "ok\n", false))
	if r := h.fromProxy(id, 3); r.Code != 200 || string(r.Body) != "ok\n" {
		t.Fatalf("response %s", describe(r))
	}
}

func TestProxyFailover(t *testing.T) {
	for _, tc := range []struct {
		name, route, body string
	}{
		{"plain", "* 127.0.0.1:9 127.0.0.1:10", "Error while proxying to origin.\n"},
		{"debug", "*,debug 127.0.0.1:9 127.0.0.1:10",
			"Unable to connect to any targets. Tried: 127.0.0.1:9, 127.0.0.1:10\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startProxy(t, harnessOpts{routes: []string{tc.route}})
			id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
			if z.ConnectPort != 9 {
				t.Fatalf("first target port %d", z.ConnectPort)
			}
			e := zp(z.ID, 0, zhttp.TypeError)
			e.Condition = zhttp.CondRemoteConnectionFailed
			h.zurlSend(e)
			z2 := h.zurlFirst()
			if z2.ConnectPort != 10 || z2.Seq != 0 || bytes.Equal(z2.ID, z.ID) {
				t.Fatalf("second attempt %s port %d", describe(z2), z2.ConnectPort)
			}
			e = zp(z2.ID, 0, zhttp.TypeError)
			e.Condition = zhttp.CondRemoteConnectionFailed
			h.zurlSend(e)
			h.expectResponse(id, 1, 502, "Bad Gateway", tc.body)
		})
	}
}

func TestProxyZurlErrors(t *testing.T) {
	for _, tc := range []struct {
		cond, reason, body string
		code               int64
	}{
		{zhttp.CondLengthRequired, "Length Required", "Must provide Content-Length header.\n", 411},
		{zhttp.CondPolicyViolation, "Bad Gateway", "Error while proxying to origin.\n", 502},
		{zhttp.CondUndefined, "Bad Gateway", "Error while proxying to origin.\n", 502},
	} {
		t.Run(tc.cond, func(t *testing.T) {
			h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
			id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
			e := zp(z.ID, 0, zhttp.TypeError)
			e.Condition = tc.cond
			h.zurlSend(e)
			h.expectResponse(id, 1, tc.code, tc.reason, tc.body)
		})
	}
}

// TestProxyZurlErrorAfterResponse: the response was started, so the
// client connection is cut: cancel to connmgr.
func TestProxyZurlErrorAfterResponse(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", nil, "part", true))
	if r := h.fromProxy(id, 1); r.Code != 200 || !r.More {
		t.Fatalf("head %s", describe(r))
	}
	e := zp(z.ID, 1, zhttp.TypeError)
	e.Condition = zhttp.CondRemoteConnectionFailed
	h.zurlSend(e)
	h.expectType(id, 2, zhttp.TypeCancel)
	h.noneToZurlStream()
}

func TestProxyCancelFromConnmgr(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	// Make sure the ack was taken: the response head that follows it on
	// the same socket is relayed.
	h.zurlSend(zurlResponse(z.ID, 1, 200, "OK", nil, "", true))
	h.fromProxy(id, 1)
	h.sendStream(cmPacket(id, 1, zhttp.TypeCancel))
	if g := h.zurlStream(z.ID, 1); g.Type != zhttp.TypeCancel {
		t.Fatalf("zurl got %s, want cancel", describe(g))
	}
	h.noneToConnmgr()
}

func TestProxyBadSeqFromConnmgr(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	h.zurlSend(zurlResponse(z.ID, 1, 200, "OK", nil, "", true))
	h.fromProxy(id, 1)
	c := cmPacket(id, 5, zhttp.TypeCredit) // expected 1
	c.Credits = 1
	h.sendStream(c)
	h.expectType(id, 2, zhttp.TypeCancel)
	if g := h.zurlStream(z.ID, 1); g.Type != zhttp.TypeCancel {
		t.Fatalf("zurl got %s, want cancel", describe(g))
	}
}

func TestProxyBadSeqFromZurl(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	h.zurlSend(zp(z.ID, 3, zhttp.TypeKeepAlive))
	if g := h.zurlStream(z.ID, 1); g.Type != zhttp.TypeCancel {
		t.Fatalf("zurl got %s, want cancel", describe(g))
	}
	h.expectResponse(id, 1, 502, "Bad Gateway", "Error while proxying to origin.\n")
}

func TestProxyNoZurl(t *testing.T) {
	for _, tc := range []struct{ name, route, body string }{
		{"plain", "* 127.0.0.1:9", "Error while proxying to origin.\n"},
		{"debug", "*,debug 127.0.0.1:9", "Error: zhttp service for route is unreachable.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startProxy(t, harnessOpts{routes: []string{tc.route}, noZurl: true})
			start := time.Now()
			id := h.start(h.newRequest("GET", "http://example.com/", nil))
			h.expectResponse(id, 1, 502, "Bad Gateway", tc.body)
			if d := time.Since(start); d < h.cfg.ServiceTimeout {
				t.Errorf("502 after %v, before the service timeout %v", d, h.cfg.ServiceTimeout)
			}
		})
	}
}

// TestProxyUnknownIDFromZurl: a zurl packet for a session the proxy no
// longer has is answered with cancel, as Pushpin's zhttp client does
// (zhttpmanager.cpp: "received message for unknown request id, canceling");
// otherwise zurl keeps the backend request open until it expires.
func TestProxyUnknownIDFromZurl(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	// The client goes away before zurl has answered: the proxy cannot
	// address zurl yet.
	h.sendStream(cmPacket(id, 1, zhttp.TypeCancel))
	h.noneToZurlStream()
	h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
	if g := h.zurlStream(z.ID, -1); g.Type != zhttp.TypeCancel {
		t.Fatalf("zurl got %s, want cancel", describe(g))
	}
}

// TestProxyBatchedCancel: condure cancels several sessions with one
// list-form packet (zmq-wire.md §2.2, §2.11 step 7); each reaches zurl.
func TestProxyBatchedCancel(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	var ids, outs [][]byte
	for range 2 {
		id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
		h.zurlSend(zp(z.ID, 0, zhttp.TypeKeepAlive))
		h.zurlSend(zurlResponse(z.ID, 1, 200, "OK", nil, "", true))
		h.fromProxy(id, 1) // proves the ack was taken
		ids, outs = append(ids, id), append(outs, z.ID)
	}
	c := cmPacket(nil, -1, zhttp.TypeCancel)
	c.IDs = []zhttp.IDSeq{{ID: ids[0], Seq: 1}, {ID: ids[1], Seq: 1}}
	h.sendStream(c)
	got := map[string]bool{}
	for range 2 {
		select {
		case m := <-h.zDealer.Recv():
			p, err := zhttp.Parse(m[len(m)-1])
			if err != nil || p.Type != zhttp.TypeCancel || p.Seq != 1 {
				t.Fatalf("zurl got %q (%v)", m, err)
			}
			got[string(p.ID)] = true
		case <-time.After(waitFor):
			t.Fatal("missing cancel to zurl")
		}
	}
	if !got[string(outs[0])] || !got[string(outs[1])] {
		t.Errorf("cancelled %v, want %q and %q", got, outs[0], outs[1])
	}
}

// TestProxyShutdownCancels: on shutdown every live session is cancelled
// on both sides.
func TestProxyShutdownCancels(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	id, z := h.proxied(h.newRequest("GET", "http://example.com/", nil))
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", nil, "a", true))
	h.fromProxy(id, 1)
	h.stop()
	h.expectType(id, 2, zhttp.TypeCancel)
	if g := h.zurlStream(z.ID, 1); g.Type != zhttp.TypeCancel {
		t.Errorf("zurl got %s", describe(g))
	}
}
