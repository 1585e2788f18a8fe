package proxy

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait for a packet that must arrive.
const waitFor = 5 * time.Second

// quiet is how long a "nothing more is sent" check listens.
const quiet = 300 * time.Millisecond

const (
	connmgrFrom = "condure"   // the fake connmgr's `from` (condure 1.9.1's default)
	zurlFrom    = "zurl-fake" // the fake zurl's `from` and DEALER identity
	// handlerFrom is the fake handler's `from` and ROUTER identity on
	// intreq: the real 1.36 handler's of capture §A.7.
	handlerFrom = "pushpin-handler_9233"
)

var harnessSeq atomic.Int64

// harness runs one proxy in-process on ipc endpoints in a short temp dir
// and plays its neighbours with raw packets (style.md §8): connmgr (PUSH,
// ROUTER, SUB bound as condure binds them), zurl (PULL, DEALER, XPUB bound
// as zurl binds them) and the handler (ROUTER and PUSH connected to the
// proxy's accept and retry binds). Every socket has its own owner goroutine
// (internal/zsock).
type harness struct {
	t   *testing.T
	id  string // proxy instance id
	dir string
	cfg Config

	zctx                 *zsock.Context
	cm                   *side // connmgr
	zPull, zDealer, zPub *zsock.Socket
	hRouter, hPush       *zsock.Socket
	intreq               *side // the handler as an intreq client (harnessOpts.intreq); nil without

	hInspect *zsock.Socket // the handler's inspect ROUTER (harnessOpts.inspect)

	reqN int
	stop func() // stops the proxy (once); also run at cleanup
}

type harnessOpts struct {
	routes    []string
	noZurl    bool // bind no zurl sockets: the proxy's sends go nowhere
	noHandler bool // connect no fake handler (the proxy still binds accept/retry)
	intreq    bool // configure intreq and connect the handler's client sockets to it
	inspect   bool // configure the inspect socket (1 s call timeout) and connect the handler's ROUTER to it
	mod       func(*Config)
}

func startProxy(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ipc := func(name string) string { return "ipc://" + dir + "/" + name }
	h := &harness{t: t, dir: dir, id: fmt.Sprintf("tkproxy_%d_%d", os.Getpid(), harnessSeq.Add(1))}
	h.cfg = Config{
		InstanceID:           h.id,
		ConnmgrInSpecs:       []string{ipc("condure-out")},
		ConnmgrInStreamSpecs: []string{ipc("condure-out-stream")},
		ConnmgrOutSpecs:      []string{ipc("condure-in")},
		ClientOutSpecs:       []string{ipc("zurl-in")},
		ClientOutStreamSpecs: []string{ipc("zurl-in-stream")},
		ClientInSpecs:        []string{ipc("zurl-out")},
		AcceptSpecs:          []string{ipc("accept")},
		RetryInSpecs:         []string{ipc("retry")},
		Routes:               o.routes,
		SigIss:               DefaultSigIss,
		ServiceTimeout:       300 * time.Millisecond,
		XForwardedFor:        XFFRule{Truncate: -1},
	}
	if o.intreq {
		h.cfg.IntreqInSpecs = []string{ipc("intreq-in")}
		h.cfg.IntreqInStreamSpecs = []string{ipc("intreq-in-stream")}
		h.cfg.IntreqOutSpecs = []string{ipc("intreq-out")}
	}
	if o.inspect {
		h.cfg.InspectSpecs = []string{ipc("inspect")}
		h.cfg.InspectTimeout = time.Second
		h.cfg.Tick = 100 * time.Millisecond
		// Shared requests wait on an unacknowledged backend request.
		h.cfg.ServiceTimeout = waitFor
	}
	if o.mod != nil {
		o.mod(&h.cfg)
	}

	zctx, err := zsock.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	h.zctx = zctx
	slog := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("side", "fake").Logger()
	var socks []*zsock.Socket
	open := func(opt zsock.Options) *zsock.Socket {
		s, err := zctx.Open(opt, slog)
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, s)
		return s
	}
	// connmgr (condure 1.36 binds all three, zmq-wire.md §3.2).
	h.cm = &side{h: h, name: "connmgr", from: connmgrFrom, out: "condure-in",
		push: open(zsock.Options{Name: "cm-push", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Bind: h.cfg.ConnmgrInSpecs, SendTimeout: waitFor}),
		router: open(zsock.Options{Name: "cm-router", Type: zmq.ROUTER, Direction: zsock.TwoWay,
			Bind: h.cfg.ConnmgrInStreamSpecs, RouterMandatory: true, SendTimeout: waitFor}),
		sub: open(zsock.Options{Name: "cm-sub", Type: zmq.SUB, Direction: zsock.RecvOnly,
			Bind: h.cfg.ConnmgrOutSpecs, Subscribe: []string{connmgrFrom + " "}}),
	}
	if !o.noZurl {
		h.zPull = open(zsock.Options{Name: "z-pull", Type: zmq.PULL, Direction: zsock.RecvOnly,
			Bind: h.cfg.ClientOutSpecs})
		h.zDealer = open(zsock.Options{Name: "z-dealer", Type: zmq.DEALER, Direction: zsock.RecvOnly,
			Bind: h.cfg.ClientOutStreamSpecs, Identity: zurlFrom})
		// XPUB so that the test can wait for the proxy's subscription.
		h.zPub = open(zsock.Options{Name: "z-pub", Type: zmq.XPUB, Direction: zsock.TwoWay,
			Bind: h.cfg.ClientInSpecs})
	}
	if !o.noHandler {
		h.hRouter = open(zsock.Options{Name: "h-router", Type: zmq.ROUTER, Direction: zsock.TwoWay,
			Connect: h.cfg.AcceptSpecs})
		h.hPush = open(zsock.Options{Name: "h-push", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Connect: h.cfg.RetryInSpecs, SendTimeout: waitFor})
		if o.inspect {
			h.hInspect = open(zsock.Options{Name: "h-inspect", Type: zmq.ROUTER, Direction: zsock.TwoWay,
				Connect: h.cfg.InspectSpecs})
		}
	}
	if o.intreq {
		// The 1.36 handler connects to the three binds of the proxy
		// (zmq-wire.md §3.2): PUSH, ROUTER (identity = its from), SUB.
		h.intreq = &side{h: h, name: "the handler", from: handlerFrom, out: "intreq-out",
			push: open(zsock.Options{Name: "i-push", Type: zmq.PUSH, Direction: zsock.SendOnly,
				Connect: h.cfg.IntreqInSpecs, SendTimeout: waitFor}),
			router: open(zsock.Options{Name: "i-router", Type: zmq.ROUTER, Direction: zsock.SendOnly,
				Connect: h.cfg.IntreqInStreamSpecs, Identity: handlerFrom, RouterMandatory: true, SendTimeout: waitFor}),
			sub: open(zsock.Options{Name: "i-sub", Type: zmq.SUB, Direction: zsock.RecvOnly,
				Connect: h.cfg.IntreqOutSpecs, Subscribe: []string{handlerFrom + " "}}),
		}
	}
	sctx, stopSocks := context.WithCancel(context.Background())
	var swg sync.WaitGroup
	for _, s := range socks {
		swg.Go(func() {
			if err := s.Run(sctx); err != nil {
				t.Errorf("fake socket %s: %v", s.Name(), err)
			}
		})
	}
	// Registered first, so it runs after the proxy has stopped.
	t.Cleanup(func() {
		stopSocks()
		swg.Wait()
		zctx.Close()
	})

	plog := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	svc, err := New(h.cfg, plog)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return")
			}
		})
	}
	t.Cleanup(h.stop)

	if !o.noZurl {
		h.waitZurlSubscription()
	}
	h.warmConnmgr()
	if o.intreq {
		h.warmIntreq()
	}
	if h.hInspect != nil {
		h.warmInspect()
	}
	return h
}

// waitZurlSubscription waits until the proxy's SUB has subscribed to its
// own id on the fake zurl's XPUB (zmq-wire.md §1.3), so no reply is lost.
func (h *harness) waitZurlSubscription() {
	h.t.Helper()
	want := "\x01" + h.id + " "
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-h.zPub.Recv():
			if len(m) == 1 && string(m[0]) == want {
				return
			}
		case <-deadline:
			h.t.Fatal("proxy never subscribed on zurl-out")
		}
	}
}

// warmConnmgr beats the slow joiner on condure-in (side.warm).
func (h *harness) warmConnmgr() {
	h.t.Helper()
	h.cm.warm("warm", func() *zhttp.Packet { return h.newRequest("GET", "http://warm/", nil) })
}

// --- the client sides: connmgr, and the handler as an intreq client ---

// side is one client of the proxy on the zhttp wire. It plays the peers of
// the proxy's PULL, ROUTER and PUB: a PUSH for first packets, a ROUTER for
// follow-ups (addressed to the proxy's id) and a SUB for what the proxy
// sends it (PUB frames "<from> T…").
type side struct {
	h    *harness
	name string // for messages: "connmgr", "the handler"
	from string // its `from`, and the PUB address of the proxy's packets to it
	out  string // the proxy's PUB to it, for messages: "condure-in", "intreq-out"

	push, router, sub *zsock.Socket
}

// warm beats the PUB/SUB slow joiner: the proxy's PUB drops what it sends
// before our SUB's subscription reached it, so Pushpin-Check requests
// (answered by the proxy itself, whatever the routes) are sent, each built
// by request with a fresh id "<idPrefix>-<n>", until one is acked and
// answered.
func (s *side) warm(idPrefix string, request func() *zhttp.Packet) {
	t := s.h.t
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for n := 0; ; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("no ack from the proxy on %s", s.out)
		}
		p := request()
		p.ID = []byte(fmt.Sprintf("%s-%d", idPrefix, n))
		p.Headers = append(p.Headers, zhttp.Header{Name: "Pushpin-Check", Value: "1"})
		s.sendFirst(p)
		gotAck := false
		wait := time.After(200 * time.Millisecond)
	loop:
		for {
			select {
			case m := <-s.sub.Recv():
				q := s.parse(m)
				if string(q.ID) != string(p.ID) {
					continue
				}
				if q.Type == zhttp.TypeKeepAlive {
					gotAck = true
					continue
				}
				if gotAck && q.Code == 200 {
					return // the check response followed: the link is clean
				}
			case <-wait:
				break loop
			}
		}
	}
}

// request builds a first packet as both clients send it: seq 0,
// ext.multi, stream, 200000 credits, a fresh id (idFormat of the
// harness's request count).
func (s *side) request(idFormat, method, uri string) *zhttp.Packet {
	s.h.reqN++
	p := zhttp.New()
	p.From = []byte(s.from)
	p.ID = []byte(fmt.Sprintf(idFormat, s.h.reqN))
	p.Seq = 0
	p.Multi = true
	p.Method = method
	p.URI = uri
	p.Credits = 200000
	p.Stream = true
	return p
}

// sendFirst pushes a first packet to the proxy's PULL.
func (s *side) sendFirst(p *zhttp.Packet) { s.sendFirstRaw(p.Encode()) }

func (s *side) sendFirstRaw(b []byte) {
	s.h.t.Helper()
	select {
	case s.push.Send() <- zsock.Message{b}:
	case <-time.After(waitFor):
		s.h.t.Fatalf("%s queue full", s.push.Name())
	}
}

// followUp builds a client side's follow-up for session id at seq.
func followUp(from string, id []byte, seq int64, typ string) *zhttp.Packet {
	p := zhttp.New()
	p.From = []byte(from)
	p.ID = id
	p.Seq = seq
	p.Multi = true
	p.Type = typ
	return p
}

// sendStream sends a follow-up through the ROUTER to the proxy's identity.
func (s *side) sendStream(p *zhttp.Packet) {
	s.h.t.Helper()
	select {
	case s.router.Send() <- zsock.Message{[]byte(s.h.id), nil, p.Encode()}:
	case <-time.After(waitFor):
		s.h.t.Fatalf("%s queue full", s.router.Name())
	}
}

// parse checks that a SUB message is one PUB frame addressed to this side
// and returns its packet.
func (s *side) parse(m zsock.Message) *zhttp.Packet {
	t := s.h.t
	t.Helper()
	if len(m) != 1 {
		t.Fatalf("%s message with %d frames", s.out, len(m))
	}
	dest, payload, err := zhttp.SplitPubFrame(m[0])
	if err != nil {
		t.Fatalf("%s frame %q: %v", s.out, m[0], err)
	}
	if string(dest) != s.from {
		t.Fatalf("%s frame addressed to %q", s.out, dest)
	}
	p, err := zhttp.Parse(payload)
	if err != nil {
		t.Fatalf("%s packet %q: %v", s.out, payload, err)
	}
	return p
}

// fromProxy returns the next packet the proxy sent to this side for id
// (packets of other sessions are skipped) and checks its from and seq.
func (s *side) fromProxy(id []byte, seq int64) *zhttp.Packet {
	t := s.h.t
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-s.sub.Recv():
			p := s.parse(m)
			if string(p.ID) != string(id) {
				t.Logf("skipping %s packet for %q: %+v", s.out, p.ID, p)
				continue
			}
			if string(p.From) != s.h.id {
				t.Fatalf("%s packet from %q, want %q", s.out, p.From, s.h.id)
			}
			if p.Seq != seq {
				t.Fatalf("%s packet seq %d, want %d (%s)", s.out, p.Seq, seq, describe(p))
			}
			return p
		case <-deadline:
			t.Fatalf("no %s packet for %q (seq %d) within %v", s.out, id, seq, waitFor)
		}
	}
}

// expectType is fromProxy plus a type check.
func (s *side) expectType(id []byte, seq int64, typ string) *zhttp.Packet {
	s.h.t.Helper()
	p := s.fromProxy(id, seq)
	if p.Type != typ {
		s.h.t.Fatalf("%s packet type %q, want %q (%s)", s.out, p.Type, typ, describe(p))
	}
	return p
}

// noneFromProxy asserts that nothing reaches this side for a moment.
func (s *side) noneFromProxy() {
	s.h.t.Helper()
	select {
	case m := <-s.sub.Recv():
		s.h.t.Fatalf("unexpected packet to %s: %s", s.name, describe(s.parse(m)))
	case <-time.After(quiet):
	}
}

// start sends a first packet and checks the proxy's ack: a keep-alive
// with from = proxy id, seq 0 and ext.multi echoed (capture §A.3, §2.7).
func (s *side) start(p *zhttp.Packet) {
	s.h.t.Helper()
	s.sendFirst(p)
	if ack := s.expectType(p.ID, 0, zhttp.TypeKeepAlive); !ack.Multi {
		s.h.t.Fatalf("ack without ext.multi: %s", describe(ack))
	}
}

// --- connmgr side ---

// newRequest builds a first packet as condure sends it (zmq-wire.md §2.11).
func (h *harness) newRequest(method, uri string, headers []zhttp.Header) *zhttp.Packet {
	p := h.cm.request("0-0-%x", method, uri)
	if headers == nil {
		host := strings.SplitN(strings.SplitN(uri, "://", 2)[1], "/", 2)[0]
		headers = []zhttp.Header{{Name: "Host", Value: host}, {Name: "User-Agent", Value: "curl/7.88.1"}, {Name: "Accept", Value: "*/*"}}
	}
	p.Headers = headers
	p.PeerAddress = "127.0.0.1"
	p.PeerPort = 40000
	return p
}

// cmPacket builds a connmgr follow-up for session id at seq.
func cmPacket(id []byte, seq int64, typ string) *zhttp.Packet {
	return followUp(connmgrFrom, id, seq, typ)
}

// sendFirst, sendStream, fromProxy, expectType and noneToConnmgr are the
// connmgr side's helpers as the tests call them.
func (h *harness) sendFirst(p *zhttp.Packet) {
	h.t.Helper()
	h.cm.sendFirst(p)
}

func (h *harness) sendStream(p *zhttp.Packet) {
	h.t.Helper()
	h.cm.sendStream(p)
}

func (h *harness) fromProxy(id []byte, seq int64) *zhttp.Packet {
	h.t.Helper()
	return h.cm.fromProxy(id, seq)
}

func (h *harness) expectType(id []byte, seq int64, typ string) *zhttp.Packet {
	h.t.Helper()
	return h.cm.expectType(id, seq, typ)
}

func (h *harness) noneToConnmgr() {
	h.t.Helper()
	h.cm.noneFromProxy()
}

// start sends a first packet, checks the proxy's ack (side.start) and
// returns the session id.
func (h *harness) start(p *zhttp.Packet) []byte {
	h.t.Helper()
	h.cm.start(p)
	return p.ID
}

// expectResponse checks a complete proxy-made response.
func (h *harness) expectResponse(id []byte, seq int64, code int64, reason, body string) *zhttp.Packet {
	h.t.Helper()
	p := h.fromProxy(id, seq)
	if p.Type != zhttp.TypeData || p.Code != code || p.Reason != reason || string(p.Body) != body || p.More {
		h.t.Fatalf("response %s, want %d %s %q", describe(p), code, reason, body)
	}
	if cl, _ := p.Header("Content-Length"); cl != fmt.Sprint(len(body)) {
		h.t.Errorf("Content-Length %q, want %d", cl, len(body))
	}
	return p
}

// --- zurl side ---

// zurlFirst returns the next first packet the proxy pushed to zurl.
func (h *harness) zurlFirst() *zhttp.Packet {
	h.t.Helper()
	return recvFirst(h.t, h.zPull, "zurl-in")
}

// recvFirst returns the next first packet the proxy pushed to a PULL.
func recvFirst(t *testing.T, pull *zsock.Socket, name string) *zhttp.Packet {
	t.Helper()
	select {
	case m := <-pull.Recv():
		if len(m) != 1 {
			t.Fatalf("%s message with %d frames", name, len(m))
		}
		p, err := zhttp.Parse(m[0])
		if err != nil {
			t.Fatalf("%s packet: %v", name, err)
		}
		return p
	case <-time.After(waitFor):
		t.Fatalf("no first packet on %s", name)
	}
	return nil
}

// zurlStream returns the next follow-up the proxy routed to zurl and checks
// the DEALER framing ["", T…] (zmq-wire.md §1.3), from and seq (any seq
// when seq < 0).
func (h *harness) zurlStream(id []byte, seq int64) *zhttp.Packet {
	h.t.Helper()
	select {
	case m := <-h.zDealer.Recv():
		if len(m) != 2 || len(m[0]) != 0 {
			h.t.Fatalf("zurl-in-stream message %q", m)
		}
		p, err := zhttp.Parse(m[1])
		if err != nil {
			h.t.Fatalf("zurl-in-stream packet: %v", err)
		}
		if string(p.ID) != string(id) || string(p.From) != h.id || (seq >= 0 && p.Seq != seq) {
			h.t.Fatalf("zurl-in-stream packet %s, want id %q seq %d", describe(p), id, seq)
		}
		return p
	case <-time.After(waitFor):
		h.t.Fatalf("no packet on zurl-in-stream (want seq %d)", seq)
	}
	return nil
}

func (h *harness) noneToZurlStream() {
	h.t.Helper()
	select {
	case m := <-h.zDealer.Recv():
		h.t.Fatalf("unexpected packet to zurl: %q", m)
	case <-time.After(quiet):
	}
}

// zp builds a zurl packet for the proxy's outbound session id at seq.
func zp(id []byte, seq int64, typ string) *zhttp.Packet {
	p := zhttp.New()
	p.From = []byte(zurlFrom)
	p.ID = id
	p.Seq = seq
	p.Type = typ
	return p
}

// zurlSend publishes a zurl reply "<proxy-id> T…".
func (h *harness) zurlSend(p *zhttp.Packet) {
	h.t.Helper()
	select {
	case h.zPub.Send() <- zsock.Message{zhttp.PubFrame([]byte(h.id), p)}:
	case <-time.After(waitFor):
		h.t.Fatal("z-pub queue full")
	}
}

func zurlResponse(id []byte, seq, code int64, reason string, headers []zhttp.Header, body string, more bool) *zhttp.Packet {
	p := zp(id, seq, zhttp.TypeData)
	p.Code, p.Reason, p.Headers, p.Body, p.More = code, reason, headers, []byte(body), more
	return p
}

// --- handler side ---

// acceptCall is one ZRPC request the proxy sent to the fake handler.
type acceptCall struct {
	peer []byte // the proxy DEALER's routing id at our ROUTER
	raw  []byte
	req  tnetstring.Dict
	id   []byte
	args tnetstring.Dict
}

func (h *harness) expectAccept() *acceptCall {
	h.t.Helper()
	select {
	case m := <-h.hRouter.Recv():
		return h.parseZRPC(m, "accept")
	case <-time.After(waitFor):
		h.t.Fatal("no accept call")
	}
	return nil
}

// reply answers an accept call with a success value.
func (h *harness) reply(c *acceptCall, value any) {
	h.t.Helper()
	h.replyRaw(c, tnetstring.Dict{{Key: "id", Value: c.id}, {Key: "success", Value: true}, {Key: "value", Value: value}})
}

func (h *harness) replyRaw(c *acceptCall, d tnetstring.Dict) {
	h.t.Helper()
	b := tnetstring.MustEncode(d)
	select {
	case h.hRouter.Send() <- zsock.Message{c.peer, nil, b}:
	case <-time.After(waitFor):
		h.t.Fatal("h-router queue full")
	}
}

// sendRetry pushes a retry packet (1.36 framing: one bare tnetstring frame).
func (h *harness) sendRetry(b []byte) {
	h.t.Helper()
	select {
	case h.hPush.Send() <- zsock.Message{b}:
	case <-time.After(waitFor):
		h.t.Fatal("h-push queue full")
	}
}

// --- helpers ---

func describe(p *zhttp.Packet) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "{from %q id %q seq %d", p.From, p.ID, p.Seq)
	if p.Type != "" {
		fmt.Fprintf(&sb, " type %s", p.Type)
	}
	if p.Condition != "" {
		fmt.Fprintf(&sb, " condition %s", p.Condition)
	}
	if p.Code >= 0 {
		fmt.Fprintf(&sb, " code %d %q headers %v", p.Code, p.Reason, p.Headers)
	}
	if p.Body != nil {
		b := p.Body
		if len(b) > 80 {
			b = b[:80]
		}
		fmt.Fprintf(&sb, " body %q (%d bytes)", b, len(p.Body))
	}
	if p.Credits >= 0 {
		fmt.Fprintf(&sb, " credits %d", p.Credits)
	}
	if p.More {
		sb.WriteString(" more")
	}
	sb.WriteString("}")
	return sb.String()
}

func headerNames(hs []zhttp.Header) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.Name
	}
	return out
}

// pairs turns a tnetstring header list into headers.
func pairs(t *testing.T, v any) []zhttp.Header {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("headers are %T", v)
	}
	var out []zhttp.Header
	for _, e := range list {
		p, ok := e.([]any)
		if !ok || len(p) != 2 {
			t.Fatalf("header entry %v", e)
		}
		n, _ := p[0].([]byte)
		val, _ := p[1].([]byte)
		out = append(out, zhttp.Header{Name: string(n), Value: string(val)})
	}
	return out
}

func headerOf(hs []zhttp.Header, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// fromProxyAnySeq returns the next packet for id whatever its seq.
func (h *harness) fromProxyAnySeq(id []byte) *zhttp.Packet {
	h.t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case m := <-h.cm.sub.Recv():
			if p := h.cm.parse(m); string(p.ID) == string(id) {
				return p
			}
		case <-deadline:
			h.t.Fatalf("no packet for %q", id)
		}
	}
}

// canon turns a decoded tnetstring value into maps, slices and strings so
// that two values compare with reflect.DeepEqual whatever their key order
// (the C++ encoder's order is random, zmq-wire.md §1.1).
func canon(v any) any {
	switch x := v.(type) {
	case tnetstring.Dict:
		m := make(map[string]any, len(x))
		for _, f := range x {
			m[f.Key] = canon(f.Value)
		}
		return m
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = canon(e)
		}
		return out
	case []byte:
		return string(x)
	}
	return v
}

// diffCanon lists the differences between two canonical values.
func diffCanon(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %#v, want a dict", path, got)}
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing (want %#v)", path, k, wv))
				continue
			}
			out = append(out, diffCanon(path+"."+k, gv, wv)...)
		}
		for k, gv := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s.%s: unexpected %#v", path, k, gv))
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, diffCanon(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	}
	if got != want {
		return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
	}
	return nil
}

// headerValues maps over a canonical header list, replacing values.
func mapHeaders(v any, f func(name, value string) string) {
	list, _ := v.([]any)
	for _, e := range list {
		if p, ok := e.([]any); ok && len(p) == 2 {
			n, _ := p[0].(string)
			val, _ := p[1].(string)
			p[1] = f(n, val)
		}
	}
}
