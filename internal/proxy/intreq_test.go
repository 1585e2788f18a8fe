package proxy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tack/internal/config"
	"tack/internal/grip"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// captureA7Intreq is the first packet the real 1.36 handler sent for a
// next link (zmq-wire.md §A.7), byte for byte.
const captureA7Intreq = "T302:2:id,36:a421abc6-824a-43d6-8ae0-45cced3e97d3,7:credits,6:200000#6:method,3:GET,4:from,20:pushpin-handler_9233,3:uri,30:http://127.0.0.1:7999/next?p=1,3:ext,15:5:multi,4:true!}6:stream,4:true!3:seq,1:0#11:passthrough,82:5:route,7:*,*,*,*,7:trusted,4:true!10:auto-share,4:true!15:prefer-internal,4:true!}}"

// --- the handler as an intreq client ---

// warmIntreq beats the slow joiner on intreq-out (side.warm).
func (h *harness) warmIntreq() {
	h.t.Helper()
	h.intreq.warm("iwarm", func() *zhttp.Packet { return h.intreqRequest("GET", "http://warm/", nil) })
}

// intreqRequest builds a first packet shaped like the 1.36 handler's
// (capture §A.7): credits 200000, stream, ext.multi, seq 0, no headers
// unless given, passthrough (nil pt: none).
func (h *harness) intreqRequest(method, uri string, pt tnetstring.Dict) *zhttp.Packet {
	p := h.intreq.request("a421abc6-824a-43d6-8ae0-%012x", method, uri)
	if pt != nil {
		p.Passthrough = pt
	}
	return p
}

func passthroughDict(route string, preferInternal, trusted bool) tnetstring.Dict {
	return tnetstring.Dict{
		{Key: "route", Value: route},
		{Key: "trusted", Value: trusted},
		{Key: "auto-share", Value: true},
		{Key: "prefer-internal", Value: preferInternal},
	}
}

// handlerPacket builds a handler follow-up for session id at seq.
func handlerPacket(id []byte, seq int64, typ string) *zhttp.Packet {
	return followUp(handlerFrom, id, seq, typ)
}

func (h *harness) noAccept() {
	h.t.Helper()
	select {
	case m := <-h.hRouter.Recv():
		h.t.Fatalf("unexpected accept call: %q", m)
	default:
	}
}

// intreqStart sends a first packet, checks the keep-alive ack on
// intreq-out (ext.multi echoed, §2.7) and returns the zurl first packet.
func (h *harness) intreqStart(p *zhttp.Packet) *zhttp.Packet {
	h.t.Helper()
	h.intreq.start(p)
	return h.zurlFirst()
}

// tokenIss checks that tok validates under key and returns its issuer.
func tokenIss(t *testing.T, tok, key string) string {
	t.Helper()
	if !grip.ValidateToken(tok, grip.NewSecretKey([]byte(key)), time.Now()) {
		t.Fatalf("Grip-Sig %q does not validate under %q", tok, key)
	}
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Iss
}

// gripNextHeaders are a next-link response's headers as a GRIP backend
// sends them (Connection included, which the proxy must drop).
func gripNextHeaders() []zhttp.Header {
	return []zhttp.Header{
		{Name: "Content-Type", Value: "text/plain"},
		{Name: "Grip-Hold", Value: "stream"},
		{Name: "Grip-Channel", Value: "c"},
		{Name: "Grip-Link", Value: "</next?n=2>; rel=next; timeout=3"},
		{Name: "Connection", Value: "close"},
	}
}

// TestProxyIntreqPreferInternal: a next-link request with prefer-internal
// takes the route named by its id (not the one its host would match): that
// route's target, path rewriting and signing key; the handler's Grip-Last
// reaches the backend, nothing is appended for a client address, and the
// GRIP response goes back to the handler untouched instead of being handed
// off.
func TestProxyIntreqPreferInternal(t *testing.T) {
	h := startProxy(t, harnessOpts{intreq: true, routes: []string{
		"* 127.0.0.1:9",
		"other.example,id=nx,sig_iss=rt,sig_key=routekey,path_beg=/api,replace_beg=/v2 127.0.0.1:10",
	}, mod: func(c *Config) {
		c.SigKey = sigKey
		c.XForwardedFor = XFFRule{Truncate: -1, Append: true}
	}})
	p := h.intreqRequest("GET", "http://127.0.0.1:7999/api/next?p=1", passthroughDict("nx", true, false))
	p.Headers = []zhttp.Header{{Name: "Grip-Last", Value: "c; last-id=7"}, {Name: "Grip-Sig", Value: "forged"}}
	z := h.intreqStart(p)

	if z.ConnectHost != "127.0.0.1" || z.ConnectPort != 10 || !z.IgnorePolicies {
		t.Errorf("target %s:%d ignore-policies %v, want the nx route's 127.0.0.1:10, trusted", z.ConnectHost, z.ConnectPort, z.IgnorePolicies)
	}
	if z.URI != "http://127.0.0.1:7999/v2/next?p=1" || z.Method != "GET" {
		t.Errorf("request %s %s, want the nx route's rewriting", z.Method, z.URI)
	}
	if v, _ := headerOf(z.Headers, "Grip-Last"); v != "c; last-id=7" {
		t.Errorf("Grip-Last %q, want the handler's", v)
	}
	var sigs []string
	for _, hd := range z.Headers {
		if strings.EqualFold(hd.Name, "Grip-Sig") {
			sigs = append(sigs, hd.Value)
		}
	}
	if len(sigs) != 1 {
		t.Fatalf("Grip-Sig headers %q, want exactly the proxy's", sigs)
	}
	if iss := tokenIss(t, sigs[0], "routekey"); iss != "rt" {
		t.Errorf("Grip-Sig iss %q, want the route's rt", iss)
	}
	if v, _ := headerOf(z.Headers, "Grip-Feature"); v != gripFeatures {
		t.Errorf("Grip-Feature %q", v)
	}
	if v, _ := headerOf(z.Headers, "Host"); v != "127.0.0.1:7999" {
		t.Errorf("Host %q, want the URI's", v)
	}
	if _, ok := headerOf(z.Headers, "X-Forwarded-For"); ok {
		t.Errorf("X-Forwarded-For on an internal request: %v", z.Headers)
	}

	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", gripNextHeaders(), "next-1\n", false))
	r := h.intreq.fromProxy(p.ID, 1)
	if r.Code != 200 || string(r.Body) != "next-1\n" || r.More {
		t.Fatalf("relayed response %s", describe(r))
	}
	want := gripNextHeaders()[:4] // Connection is hop-by-hop
	if fmt.Sprint(r.Headers) != fmt.Sprint(want) {
		t.Errorf("relayed headers %v, want %v", r.Headers, want)
	}
	h.intreq.noneFromProxy()
	h.noAccept()
	h.noneToConnmgr()
}

// TestProxyIntreqCapture replays the exact first packet of capture §A.7:
// route "*,*,*,*" (the "*" line's synthesised id), prefer-internal.
func TestProxyIntreqCapture(t *testing.T) {
	h := startProxy(t, harnessOpts{intreq: true, routes: []string{"* 127.0.0.1:9"}, mod: func(c *Config) { c.SigKey = sigKey }})
	h.intreq.sendFirstRaw([]byte(captureA7Intreq))
	id := []byte("a421abc6-824a-43d6-8ae0-45cced3e97d3")
	ack := h.intreq.fromProxy(id, 0)
	if ack.Type != zhttp.TypeKeepAlive || !ack.Multi {
		t.Fatalf("ack %s", describe(ack))
	}
	z := h.zurlFirst()
	if z.URI != "http://127.0.0.1:7999/next?p=1" || z.ConnectHost != "127.0.0.1" || z.ConnectPort != 9 || !z.Stream {
		t.Fatalf("outbound %s connect %s:%d", z.URI, z.ConnectHost, z.ConnectPort)
	}
	if z.Passthrough != nil {
		t.Errorf("passthrough forwarded to zurl")
	}
	if v, _ := headerOf(z.Headers, "Grip-Sig"); tokenIss(t, v, sigKey) != DefaultSigIss {
		t.Errorf("Grip-Sig %q", v)
	}
	if names := headerNames(z.Headers); fmt.Sprint(names) != "[Host Grip-Sig Grip-Feature]" {
		t.Errorf("headers %v", names)
	}
	// The plain reply of §A.7.
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}, "next-data\n", false))
	r := h.intreq.fromProxy(id, 1)
	if r.Code != 200 || r.Reason != "OK" || string(r.Body) != "next-data\n" || r.More {
		t.Fatalf("response %s", describe(r))
	}
}

// TestProxyIntreqFollowUps: credits and cancel from the handler arrive on
// the intreq ROUTER and act on the session; a packet for an unknown
// session is answered with a cancel on intreq-out, not on condure-in.
func TestProxyIntreqFollowUps(t *testing.T) {
	h := startProxy(t, harnessOpts{intreq: true, routes: []string{"* 127.0.0.1:9"}})

	t.Run("credit", func(t *testing.T) {
		p := h.intreqRequest("GET", "http://127.0.0.1:7999/next", passthroughDict("*,*,*,*", true, true))
		p.Credits = 10
		z := h.intreqStart(p)
		body := strings.Repeat("x", 30)
		h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", gripNextHeaders(), body, false))
		r := h.intreq.fromProxy(p.ID, 1)
		if string(r.Body) != body[:10] || !r.More {
			t.Fatalf("first part %s, want 10 bytes and more", describe(r))
		}
		h.intreq.noneFromProxy()
		c := handlerPacket(p.ID, 1, zhttp.TypeCredit)
		c.Credits = 20
		h.intreq.sendStream(c)
		r = h.intreq.fromProxy(p.ID, 2)
		if string(r.Body) != body[10:] || r.More {
			t.Fatalf("rest %s, want 20 bytes, end", describe(r))
		}
	})

	t.Run("cancel", func(t *testing.T) {
		p := h.intreqRequest("GET", "http://127.0.0.1:7999/next", passthroughDict("*,*,*,*", true, true))
		z := h.intreqStart(p)
		h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", gripNextHeaders(), "part", true))
		if r := h.intreq.fromProxy(p.ID, 1); string(r.Body) != "part" || !r.More {
			t.Fatalf("relayed %s", describe(r))
		}
		h.intreq.sendStream(handlerPacket(p.ID, 1, zhttp.TypeCancel))
		if c := h.zurlStream(z.ID, 1); c.Type != zhttp.TypeCancel {
			t.Fatalf("to zurl %s, want cancel", describe(c))
		}
		h.intreq.noneFromProxy()
	})

	t.Run("unknown session", func(t *testing.T) {
		h.intreq.sendStream(handlerPacket([]byte("no-such-id"), 3, zhttp.TypeCredit))
		if c := h.intreq.fromProxy([]byte("no-such-id"), -1); c.Type != zhttp.TypeCancel {
			t.Fatalf("got %s, want cancel", describe(c))
		}
		h.noneToConnmgr()
	})

	t.Run("request body", func(t *testing.T) {
		// A gone-link style POST with body in its first packet (C++ clients
		// send it before any credit) and more to come.
		p := h.intreqRequest("POST", "http://127.0.0.1:7999/gone", passthroughDict("*,*,*,*", true, true))
		p.Body, p.More = []byte("abc"), true
		z := h.intreqStart(p)
		if string(z.Body) != "abc" || !z.More {
			t.Fatalf("outbound first %s", describe(z))
		}
		ack := zp(z.ID, 0, zhttp.TypeCredit)
		ack.Credits = 1000
		h.zurlSend(ack)
		if c := h.intreq.fromProxy(p.ID, 1); c.Type != zhttp.TypeCredit || c.Credits <= 0 {
			t.Fatalf("to handler %s, want credit", describe(c))
		}
		d := handlerPacket(p.ID, 1, zhttp.TypeData)
		d.Body = []byte("def")
		h.intreq.sendStream(d)
		if b := h.zurlStream(z.ID, 1); string(b.Body) != "def" || b.More {
			t.Fatalf("to zurl %s, want the rest of the body", describe(b))
		}
	})
}

// TestProxyIntreqRouting covers the routing rules of §4.8 other than
// prefer-internal with a known id.
func TestProxyIntreqRouting(t *testing.T) {
	h := startProxy(t, harnessOpts{intreq: true, routes: []string{
		"* 127.0.0.1:9",
		"signed.example,id=sg,sig_key=routekey 127.0.0.1:11",
	}, mod: func(c *Config) { c.SigKey = sigKey }})
	for _, tc := range []struct {
		name      string
		uri       string
		pt        tnetstring.Dict // nil: no passthrough
		host      string
		port      int64
		uriOut    string
		ignorePol bool
		key       string // Grip-Sig must validate under it
	}{
		{name: "direct trusted with the original route's key", uri: "http://elsewhere.example:8080/next?x=1",
			pt: passthroughDict("sg", false, true), host: "elsewhere.example", port: 8080,
			uriOut: "http://elsewhere.example:8080/next?x=1", ignorePol: true, key: "routekey"},
		{name: "direct untrusted, unknown route: default key", uri: "http://10.1.2.3/n",
			pt: passthroughDict("nope", false, false), host: "10.1.2.3", port: 80,
			uriOut: "http://10.1.2.3/n", key: sigKey},
		{name: "direct https default port", uri: "https://secure.example/n",
			pt: passthroughDict("sg", false, true), host: "secure.example", port: 443,
			uriOut: "https://secure.example/n", ignorePol: true, key: "routekey"},
		{name: "prefer-internal unknown id: host lookup", uri: "http://signed.example/n",
			pt: passthroughDict("gone-route", true, true), host: "127.0.0.1", port: 11,
			uriOut: "http://signed.example/n", ignorePol: true, key: "routekey"},
		{name: "no passthrough: host lookup", uri: "http://any.example/n",
			host: "127.0.0.1", port: 9, uriOut: "http://any.example/n", ignorePol: true, key: sigKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := h.intreqRequest("GET", tc.uri, tc.pt)
			z := h.intreqStart(p)
			if z.ConnectHost != tc.host || z.ConnectPort != tc.port || z.URI != tc.uriOut || z.IgnorePolicies != tc.ignorePol {
				t.Errorf("outbound %s connect %s:%d ignore-policies %v, want %s %s:%d %v",
					z.URI, z.ConnectHost, z.ConnectPort, z.IgnorePolicies, tc.uriOut, tc.host, tc.port, tc.ignorePol)
			}
			v, _ := headerOf(z.Headers, "Grip-Sig")
			tokenIss(t, v, tc.key)
			// Whatever the route, the GRIP response is the handler's.
			h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", gripNextHeaders(), "n\n", false))
			r := h.intreq.fromProxy(p.ID, 1)
			if v, _ := r.Header("Grip-Hold"); r.Code != 200 || v != "stream" {
				t.Fatalf("relayed %s", describe(r))
			}
			h.noAccept()
		})
	}

	t.Run("direct without a host", func(t *testing.T) {
		p := h.intreqRequest("GET", "http:///n", passthroughDict("sg", false, true))
		h.intreq.sendFirst(p)
		h.intreq.fromProxy(p.ID, 0)
		if r := h.intreq.fromProxy(p.ID, 1); r.Code != 400 {
			t.Fatalf("got %s, want 400", describe(r))
		}
	})
}

// TestProxyIntreqConfig reads the three [proxy] keys; with none set there
// is no intreq.
func TestProxyIntreqConfig(t *testing.T) {
	dir := t.TempDir()
	base := "[global]\nrundir=" + filepath.Join(dir, "run") + "\nipc_prefix=pp-\n[proxy]\ncondure_in_specs=ipc://a\ncondure_in_stream_specs=ipc://b\ncondure_out_specs=ipc://c\n" +
		"zurl_out_specs=ipc://d\nzurl_out_stream_specs=ipc://e\nzurl_in_specs=ipc://f\n"
	for _, tc := range []struct {
		name, extra string
		enabled     bool
	}{
		{"unset", "", false},
		{"set", "intreq_in_specs=ipc://{rundir}/{ipc_prefix}intreq-in\nintreq_in_stream_specs=ipc://{rundir}/{ipc_prefix}intreq-in-stream\nintreq_out_specs=ipc://{rundir}/{ipc_prefix}intreq-out\n", true},
		{"partial", "intreq_in_specs=ipc://x\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".conf")
			if err := os.WriteFile(path, []byte(base+tc.extra), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := config.Load(path, config.Options{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := ConfigFromFile(f, []string{"* test"})
			if err != nil {
				t.Fatal(err)
			}
			if c.IntreqEnabled() != tc.enabled {
				t.Fatalf("enabled %v, want %v (%+v)", c.IntreqEnabled(), tc.enabled, c)
			}
			if tc.enabled {
				want := "ipc://" + filepath.Join(dir, "run") + "/pp-intreq-in-stream"
				if len(c.IntreqInStreamSpecs) != 1 || c.IntreqInStreamSpecs[0] != want {
					t.Errorf("intreq_in_stream_specs %v, want %s", c.IntreqInStreamSpecs, want)
				}
			}
		})
	}
}

// TestProxyIntreqKeepAlive: an idle intreq session gets its keep-alive on
// intreq-out, addressed to the handler (the engine's tick groups
// keep-alives per side).
func TestProxyIntreqKeepAlive(t *testing.T) {
	var offset atomic.Int64
	h := startProxy(t, harnessOpts{intreq: true, routes: []string{"* 127.0.0.1:9"}, mod: func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		c.Tick = 20 * time.Millisecond
	}})
	p := h.intreqRequest("GET", "http://127.0.0.1:7999/next", passthroughDict("*,*,*,*", true, true))
	z := h.intreqStart(p)
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", gripNextHeaders(), "part", true))
	h.intreq.fromProxy(p.ID, 1)
	offset.Store(int64(46 * time.Second))
	if ka := h.intreq.fromProxy(p.ID, 2); ka.Type != zhttp.TypeKeepAlive {
		t.Fatalf("got %s, want keep-alive", describe(ka))
	}
	h.noneToConnmgr()
}
