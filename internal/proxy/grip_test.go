package proxy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"tack/internal/grip"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

const sigKey = "changeme"

// captureRequest is the client request of captures §A.4/§A.5.
func (h *harness) captureRequest() *zhttp.Packet {
	p := h.newRequest("GET", "http://127.0.0.1:7999/stream?x=1", []zhttp.Header{
		{Name: "Host", Value: "127.0.0.1:7999"},
		{Name: "User-Agent", Value: "curl/7.88.1"},
		{Name: "Accept", Value: "*/*"},
	})
	p.ID = []byte("1-0-1")
	p.PeerPort = 40001
	return p
}

// captureHold is the backend's stream hold of §A.4/§A.5, as zurl relays it.
func captureHold(outID []byte, seq int64, date string) *zhttp.Packet {
	return zurlResponse(outID, seq, 200, "OK", []zhttp.Header{
		{Name: "Server", Value: "BaseHTTP/0.6 Python/3.11.2"},
		{Name: "Date", Value: date},
		{Name: "Content-Type", Value: "text/plain"},
		{Name: "Grip-Hold", Value: "stream"},
		{Name: "Grip-Channel", Value: "test"},
		{Name: "Content-Length", Value: "7"},
	}, "[open]\n", false)
}

// handoff expects handoff-start at outSeq, answers handoff-proceed at
// inSeq (as condure does, capture §A.3) and returns the accept call.
func (h *harness) handoff(id []byte, outSeq, inSeq int64) *acceptCall {
	h.t.Helper()
	h.expectType(id, outSeq, zhttp.TypeHandoffStart)
	h.sendStream(cmPacket(id, inSeq, zhttp.TypeHandoffProceed))
	return h.expectAccept()
}

// compareAccept checks an accept call against a captured one: the same
// fields and values, except that the Grip-Sig must validate under sigKey
// rather than equal the captured token.
func compareAccept(t *testing.T, c *acceptCall, capture string) {
	t.Helper()
	want, err := tnetstring.DecodeDict([]byte(capture))
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	wantArgs, _ := want.Dict("args")
	got := canon(c.args).(map[string]any)
	exp := canon(wantArgs).(map[string]any)
	if rd, ok := got["request-data"].(map[string]any); ok {
		mapHeaders(rd["headers"], func(n, v string) string {
			if n != "Grip-Sig" {
				return v
			}
			if !grip.ValidateToken(v, grip.NewSecretKey([]byte(sigKey)), time.Now()) {
				t.Errorf("accept request-data Grip-Sig %q does not validate", v)
			}
			return "SIG"
		})
	}
	mapHeaders(exp["request-data"].(map[string]any)["headers"], func(n, v string) string {
		switch n {
		case "Grip-Sig":
			return "SIG"
		case "Grip-Feature":
			// tack also does gone links, which 1.41 advertises, and not
			// the session feature.
			v = strings.Replace(v, "session, ", "", 1)
			return strings.Replace(v, "link:next, ", "link:next, link:gone, ", 1)
		}
		return v
	})
	for _, d := range diffCanon("args", got, exp) {
		t.Error(d)
	}
	// The 1.36 proxy sends no `from` in its accept requests (§4.1).
	if _, ok := c.req.Get("from"); ok {
		t.Errorf("accept request has a from field")
	}
}

// TestProxyGRIPAccept replays capture §A.4: stream hold from the backend →
// handoff-start → handoff-proceed → accept with the captured arguments;
// {accepted: true} → the proxy sends nothing more.
func TestProxyGRIPAccept(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, mod: func(c *Config) { c.SigKey = sigKey }})
	id, z := h.proxied(h.captureRequest())
	h.zurlSend(captureHold(z.ID, 0, "Sun, 22 Nov 2026 10:48:12 GMT"))
	c := h.handoff(id, 1, 1)
	compareAccept(t, c, captureA4Accept)
	h.reply(c, tnetstring.Dict{{Key: "accepted", Value: true}})
	h.noneToConnmgr()
	h.noneToZurlStream()
	// The session is the handler's now: a stray packet connmgr still sends
	// here is ignored (a cancel would end the handler's session).
	h.sendStream(cmPacket(id, 2, zhttp.TypeKeepAlive))
	h.noneToConnmgr()
}

// TestProxyGRIPAcceptReplies covers the non-accepted replies (§4.3).
func TestProxyGRIPAcceptReplies(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test", "debug.example,debug test"}})
	for _, tc := range []struct {
		name  string
		host  string
		reply tnetstring.Dict // value, or a whole failure reply when failure
		fail  bool
		code  int64
		rsn   string
		body  string
		hdrs  []string
	}{
		{name: "response", host: "example.com", reply: tnetstring.Dict{{Key: "response", Value: tnetstring.Dict{
			{Key: "code", Value: int64(201)}, {Key: "reason", Value: "Created"},
			{Key: "headers", Value: []any{[]any{"Content-Type", "text/plain"}, []any{"X-H", "1"}}},
			{Key: "body", Value: "from handler\n"},
		}}}, code: 201, rsn: "Created", body: "from handler\n", hdrs: []string{"Content-Type", "X-H"}},
		{name: "empty", host: "example.com", reply: tnetstring.Dict{}, code: 500, rsn: "Internal Server Error",
			body: "Accept service unavailable.\n"},
		{name: "bad-format", host: "example.com", fail: true, reply: tnetstring.Dict{
			{Key: "condition", Value: "bad-format"}, {Key: "value", Value: "bad hold mode"}},
			code: 502, rsn: "Bad Gateway", body: "Error while proxying to origin.\n"},
		{name: "bad-format debug", host: "debug.example", fail: true, reply: tnetstring.Dict{
			{Key: "condition", Value: "bad-format"}, {Key: "value", Value: "bad hold mode"}},
			code: 502, rsn: "Bad Gateway", body: "Failed to parse accept instructions: bad hold mode\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			id := h.start(h.newRequest("GET", "http://"+tc.host+"/response", nil))
			c := h.handoff(id, 1, 1)
			if tc.fail {
				h.replyRaw(c, append(tnetstring.Dict{{Key: "id", Value: c.id}, {Key: "success", Value: false}}, tc.reply...))
			} else {
				h.reply(c, tc.reply)
			}
			// The proxy takes the session back first (capture §A.5).
			h.expectType(id, 2, zhttp.TypeKeepAlive)
			r := h.fromProxy(id, 3)
			if r.Code != tc.code || r.Reason != tc.rsn || string(r.Body) != tc.body || r.More {
				t.Fatalf("response %s, want %d %s %q", describe(r), tc.code, tc.rsn, tc.body)
			}
			if tc.hdrs != nil {
				names := headerNames(r.Headers)
				names = slices.DeleteFunc(names, func(n string) bool { return n == "Content-Length" })
				if !slices.Equal(names, tc.hdrs) {
					t.Errorf("headers %v, want %v", r.Headers, tc.hdrs)
				}
			}
		})
	}
}

func TestProxyGRIPNoHandler(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}, noHandler: true})
	// No handler is connected: the client session is never paused; after
	// acceptSendTimeout the client gets Pushpin's 500.
	start := time.Now()
	id := h.start(h.newRequest("GET", "http://example.com/response", nil))
	h.expectResponse(id, 1, 500, "Internal Server Error", "Accept service unavailable.\n")
	if d := time.Since(start); d < acceptSendTimeout/2 {
		t.Errorf("500 after %v, before the accept send timeout", d)
	}
}

func TestProxyGRIPNoAcceptSpec(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}, noHandler: true,
		mod: func(c *Config) { c.AcceptSpecs, c.RetryInSpecs = nil, nil }})
	id := h.start(h.newRequest("GET", "http://example.com/response", nil))
	h.expectType(id, 1, zhttp.TypeHandoffStart)
	h.sendStream(cmPacket(id, 1, zhttp.TypeHandoffProceed))
	h.expectType(id, 2, zhttp.TypeKeepAlive)
	h.expectResponse(id, 3, 500, "Internal Server Error", "Accept service unavailable.\n")
}

// TestProxyTestHandlerHolds: /stream and /response of the test handler
// are GRIP holds handed to the handler (grip-reference §11.8).
func TestProxyTestHandlerHolds(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}})
	for _, tc := range []struct{ path, mode, channels, body string }{
		{"/stream?channel=a&channel=b", "stream", "a, b", "[stream opened]\n"},
		{"/response", "response", "test", "nothing for now\n"},
		{"/stream/?channel=x", "stream", "x", "[stream opened]\n"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			h.t = t
			id := h.start(h.newRequest("GET", "http://example.com"+tc.path, nil))
			c := h.handoff(id, 1, 1)
			resp, _ := c.args.Dict("response")
			code, _ := resp.Int("code")
			body, _ := resp.Bytes("body")
			hl, _ := resp.Get("headers")
			hs := pairs(t, hl)
			if code != 200 || string(body) != tc.body {
				t.Errorf("response %d %q", code, body)
			}
			if v, _ := headerOf(hs, "Grip-Hold"); v != tc.mode {
				t.Errorf("Grip-Hold %q, want %q", v, tc.mode)
			}
			if v, _ := headerOf(hs, "Grip-Channel"); v != tc.channels {
				t.Errorf("Grip-Channel %q, want %q", v, tc.channels)
			}
			reqs, _ := c.args.List("requests")
			if len(reqs) != 1 {
				t.Fatalf("requests %v", reqs)
			}
			rq := reqs[0].(tnetstring.Dict)
			in, _ := rq.Int("in-seq")
			out, _ := rq.Int("out-seq")
			cr, _ := rq.Int("out-credits")
			if in != 2 || out != 2 || cr != 200000 {
				t.Errorf("in-seq %d out-seq %d out-credits %d", in, out, cr)
			}
			h.reply(c, tnetstring.Dict{{Key: "accepted", Value: true}})
			h.noneToConnmgr()
		})
	}
}

// TestProxyRetry replays capture §A.5: accept, then the handler's retry
// packet; the proxy resumes with a keep-alive at out-seq, asks the backend
// again with Grip-Last, hands over again with is-retry, and sends the
// response the handler returns.
func TestProxyRetry(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, mod: func(c *Config) { c.SigKey = sigKey }})
	id, z := h.proxied(h.captureRequest())
	h.zurlSend(captureHold(z.ID, 0, "Sun, 22 Nov 2026 10:48:12 GMT"))
	c := h.handoff(id, 1, 1)
	compareAccept(t, c, captureA4Accept)
	h.reply(c, tnetstring.Dict{{Key: "accepted", Value: true}})

	h.sendRetry([]byte(captureA5Retry))
	ka := h.expectType(id, 2, zhttp.TypeKeepAlive)
	if !ka.Multi {
		t.Errorf("resume keep-alive without ext.multi (capture §A.5 has it)")
	}
	z2 := h.zurlFirst()
	if last, _ := z2.Header("Grip-Last"); last != "test; last-id=prev-1" {
		t.Errorf("Grip-Last %q", last)
	}
	if z2.URI != "http://127.0.0.1:7999/stream?x=1" || z2.ConnectPort != 9 || z2.Credits != 200000+ResponseBuffer {
		t.Errorf("retried request %s %s port %d credits %d", z2.Method, z2.URI, z2.ConnectPort, z2.Credits)
	}
	h.zurlSend(captureHold(z2.ID, 0, "Sun, 22 Nov 2026 11:13:43 GMT"))
	// condure's handoff-proceed here carries no ext (capture §A.5).
	h.expectType(id, 3, zhttp.TypeHandoffStart)
	hp := cmPacket(id, 2, zhttp.TypeHandoffProceed)
	hp.Multi = false
	h.sendStream(hp)
	c2 := h.expectAccept()
	compareAccept(t, c2, captureA5SecondAccept)

	reply, err := tnetstring.DecodeDict([]byte(captureA5ResponseReply))
	if err != nil {
		t.Fatal(err)
	}
	for i := range reply {
		if reply[i].Key == "id" {
			reply[i].Value = c2.id
		}
	}
	h.replyRaw(c2, reply)
	h.expectType(id, 4, zhttp.TypeKeepAlive)
	r := h.fromProxy(id, 5)
	if r.Code != 200 || r.Reason != "OK" || string(r.Body) != "handler says no hold\n" || r.More {
		t.Fatalf("response %s", describe(r))
	}
	// Capture: headers [Content-Type: text/plain] only; tack adds
	// Content-Length (reported as a difference, harmless for connmgr).
	names := slices.DeleteFunc(headerNames(r.Headers), func(n string) bool { return strings.EqualFold(n, "Content-Length") })
	if !slices.Equal(names, []string{"Content-Type"}) {
		t.Errorf("headers %v", r.Headers)
	}
}

// TestProxyGRIPRequestTooLarge: the proxy keeps at most 100000 bytes of
// request body, so a GRIP answer to a bigger request is refused
// (grip-reference §3.1).
func TestProxyGRIPRequestTooLarge(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}})
	p := h.newRequest("POST", "http://example.com/", nil)
	p.More = true
	id, z := h.proxied(p)
	zc := zp(z.ID, 0, zhttp.TypeCredit)
	zc.Credits = 200000
	h.zurlSend(zc)
	if g := h.expectType(id, 1, zhttp.TypeCredit); g.Credits != 200000 {
		t.Fatalf("credit %d", g.Credits)
	}
	for i, n := range []int{60000, 40001} {
		b := cmPacket(id, int64(i+1), zhttp.TypeData)
		b.Body, b.More = []byte(strings.Repeat("x", n)), i == 0
		h.sendStream(b)
		if f := h.zurlStream(z.ID, int64(i+1)); len(f.Body) != n {
			t.Fatalf("zurl got %s", describe(f))
		}
	}
	h.zurlSend(captureHold(z.ID, 1, "Sun, 22 Nov 2026 10:48:12 GMT"))
	h.expectResponse(id, 2, 400, "Bad Request", "Request too large to accept GRIP instruct.\n")
}

// TestProxyGRIPResponseCredits: a response the handler returns in its
// accept reply is written within connmgr's credits, as the C++ zhttp
// server does (zmq-wire.md §2.7): condure granted 8192 bytes.
func TestProxyGRIPResponseCredits(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* test"}})
	p := h.newRequest("GET", "http://example.com/response", nil)
	p.Credits = 8192
	id := h.start(p)
	c := h.handoff(id, 1, 1)
	body := strings.Repeat("z", 20000)
	h.reply(c, tnetstring.Dict{{Key: "response", Value: tnetstring.Dict{
		{Key: "code", Value: int64(200)}, {Key: "reason", Value: "OK"},
		{Key: "headers", Value: []any{}}, {Key: "body", Value: body},
	}}})
	h.expectType(id, 2, zhttp.TypeKeepAlive)
	got, seqIn := 0, int64(2)
	for seq := int64(3); ; seq++ {
		r := h.fromProxy(id, seq)
		if len(r.Body) > 8192 {
			t.Fatalf("packet with %d body bytes, over the 8192 credits", len(r.Body))
		}
		got += len(r.Body)
		if !r.More {
			break
		}
		c := cmPacket(id, seqIn, zhttp.TypeCredit)
		c.Credits = int64(len(r.Body))
		h.sendStream(c)
		seqIn++
	}
	if got != len(body) {
		t.Errorf("body %d bytes, want %d", got, len(body))
	}
}
