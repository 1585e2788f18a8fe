package handler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/grip"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

const hWait = 5 * time.Second

// hClock is a clock whose time moves only when the test says so.
type hClock struct {
	mu     sync.Mutex // guards now and timers
	now    time.Time
	timers []*hTimer
}

type hTimer struct {
	clk    *hClock
	c      chan time.Time
	at     time.Time
	active bool
}

func newHClock() *hClock { return &hClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *hClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *hClock) NewTimer(d time.Duration) clockTimer {
	t := &hTimer{clk: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

func (t *hTimer) C() <-chan time.Time { return t.c }

func (t *hTimer) Reset(d time.Duration) {
	t.clk.mu.Lock()
	defer t.clk.mu.Unlock()
	select {
	case <-t.c:
	default:
	}
	t.at, t.active = t.clk.now.Add(d), true
	t.clk.fireLocked()
}

func (t *hTimer) Stop() {
	t.clk.mu.Lock()
	t.active = false
	t.clk.mu.Unlock()
}

// Advance moves time forward and fires the timers that became due.
func (c *hClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.fireLocked()
	c.mu.Unlock()
}

func (c *hClock) fireLocked() {
	for _, t := range c.timers {
		if t.active && !t.at.After(c.now) {
			t.active = false
			select {
			case t.c <- c.now:
			default:
			}
		}
	}
}

// harness is a Service under test with the test playing the proxy (accept
// DEALER, retry PULL) and condure (SUB on condure-in, ROUTER on
// condure-out-stream), all bound by the test.
type harness struct {
	t       testing.TB
	dir     string
	clock   *hClock
	svc     *Service
	zctx    *zmq.Context
	accept  *zmq.Socket
	cin     *zmq.Socket
	cstream *zmq.Socket
	retry   *zmq.Socket
	// The test plays the proxy's intreq server too.
	iin     *zmq.Socket // PULL: first packets of outbound requests
	istream *zmq.Socket // ROUTER (identity proxy_test): follow-ups
	iout    *zmq.Socket // PUB: replies
	// and its ws-control sockets (wssession_test.go)
	wsIn  *zmq.Socket // PULL at ws-control-in: from the handler
	wsOut *zmq.Socket // PUSH at ws-control-out: to the handler
	id    string
	seq   int // accept request counter
	stop  func()
	// stopRun stops the handler (as SIGTERM does) and leaves the test's
	// sockets open, to read what it sent while stopping.
	stopRun func()
}

func startHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	h := startHarnessCold(t, mod)
	h.warmUp()
	return h
}

// startHarnessCold is startHarness without the warm-up: the handler may
// still be connecting to the test's sockets.
func startHarnessCold(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: t, dir: dir, clock: newHClock(), id: "handler_test"}
	spec := func(name string) string { return "ipc://" + filepath.Join(dir, name) }
	if h.zctx, err = zmq.NewContext(); err != nil {
		t.Fatal(err)
	}
	sock := func(typ zmq.Type, name string) *zmq.Socket {
		s, err := h.zctx.NewSocket(typ)
		if err != nil {
			t.Fatal(err)
		}
		s.SetLinger(0)
		if err := s.Bind(spec(name)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	h.accept = sock(zmq.DEALER, "accept")
	h.cin = sock(zmq.SUB, "condure-in")
	h.cin.SetSubscribe("condure ")
	h.cstream = sock(zmq.ROUTER, "condure-out-stream")
	h.cstream.SetRouterMandatory(1)
	h.retry = sock(zmq.PULL, "retry")
	h.iin = sock(zmq.PULL, "intreq-in")
	h.istream, err = h.zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		t.Fatal(err)
	}
	h.istream.SetLinger(0)
	h.istream.SetIdentity("proxy_test")
	if err := h.istream.Bind(spec("intreq-in-stream")); err != nil {
		t.Fatal(err)
	}
	h.iout = sock(zmq.PUB, "intreq-out")
	h.wsIn = sock(zmq.PULL, "ws-control-in")
	h.wsOut = sock(zmq.PUSH, "ws-control-out")

	cfg := Config{
		InstanceID:                h.id,
		AcceptSpecs:               []string{spec("accept")},
		ConnmgrOutSpecs:           []string{spec("condure-in")},
		ConnmgrStreamSpecs:        []string{spec("condure-out-stream")},
		RetryOutSpecs:             []string{spec("retry")},
		IntreqOutSpecs:            []string{spec("intreq-in")},
		IntreqOutStream:           []string{spec("intreq-in-stream")},
		IntreqInSpecs:             []string{spec("intreq-out")},
		WSControlInSpecs:          []string{spec("ws-control-out")},
		WSControlOutSpecs:         []string{spec("ws-control-in")},
		SubscriptionLinger:        60 * time.Second,
		UpdateOnFirstSubscription: true,
		clock:                     h.clock,
	}
	if mod != nil {
		mod(&cfg)
	}
	lvl := zerolog.DebugLevel
	if _, bench := t.(*testing.B); bench {
		lvl = zerolog.WarnLevel // benchmarks measure, their logs are noise
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(lvl)
	if h.svc, err = New(cfg, log); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(ctx) }()
	var once, runOnce sync.Once
	h.stopRun = func() {
		runOnce.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	h.stop = func() {
		once.Do(func() {
			h.stopRun()
			for _, s := range []*zmq.Socket{h.accept, h.cin, h.cstream, h.retry, h.iin, h.istream, h.iout, h.wsIn, h.wsOut} {
				s.Close()
			}
			h.zctx.Term()
		})
	}
	t.Cleanup(h.stop)
	return h
}

// warmUp waits until the handler's PUB reaches our SUB and its ROUTER is
// routable from ours: PUB/SUB drops everything sent before the
// subscription arrives.
func (h *harness) warmUp() {
	h.t.Helper()
	deadline := time.Now().Add(hWait)
	for n := 0; ; n++ {
		rid := fmt.Sprintf("warm-%d", n)
		h.sendAccept(acceptArgs(rid, 0, 100, response(200, "OK", []string{"Grip-Hold", "response"}, "")))
		h.expectAccepted()
		if p := h.recvPacket(200 * time.Millisecond); p != nil {
			for i := 0; i <= n; i++ {
				rid := fmt.Sprintf("warm-%d", i)
				h.sendStream(zhttpIn(rid, 0, zhttp.TypeCancel))
				h.waitGone("condure:" + rid)
			}
			// Drain anything else the warm-up left.
			for h.recvPacket(50*time.Millisecond) != nil {
			}
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("handler PUB never reached the test SUB")
		}
	}
}

// waitGone polls until the connection id is no longer held.
func (h *harness) waitGone(conn string) {
	h.t.Helper()
	deadline := time.Now().Add(hWait)
	for len(h.svc.eng.ConnCheck([]string{conn})) > 0 {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s still held", conn)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitHeld polls until the connection id is held.
func (h *harness) waitHeld(conn string) {
	h.t.Helper()
	deadline := time.Now().Add(hWait)
	for len(h.svc.eng.ConnCheck([]string{conn})) == 0 {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s not held", conn)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// advance moves the handler's clock and gives the engine a moment to
// react: a round trip through its publish queue, which it serves in order.
func (h *harness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.sync()
}

// sync waits until the engine processed everything queued before it.
func (h *harness) sync() {
	h.t.Helper()
	done := make(chan struct{})
	select {
	case h.svc.eng.cmds <- cmdSync(done):
	case <-time.After(hWait):
		h.t.Fatal("engine command queue stuck")
	}
	select {
	case <-done:
	case <-time.After(hWait):
		h.t.Fatal("engine did not answer")
	}
}

func response(code int, reason string, headers []string, body string) tnetstring.Dict {
	hs := []any{}
	for i := 0; i+1 < len(headers); i += 2 {
		hs = append(hs, []any{headers[i], headers[i+1]})
	}
	return tnetstring.Dict{
		{Key: "code", Value: int64(code)},
		{Key: "reason", Value: reason},
		{Key: "headers", Value: hs},
		{Key: "body", Value: []byte(body)},
	}
}

// acceptArgs is an accept as the 1.36 proxy sends it (Captured §A.4),
// for one request with id rid, the given out-seq and credits.
func acceptArgs(rid string, outSeq, credits int64, resp tnetstring.Dict) tnetstring.Dict {
	rd := func(sig bool) tnetstring.Dict {
		hs := []any{
			[]any{"Host", "127.0.0.1:7999"},
			[]any{"User-Agent", "curl/7.88.1"},
			[]any{"Accept", "*/*"},
		}
		if sig {
			hs = append(hs, []any{"Grip-Sig", "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.e30.x"})
		}
		return tnetstring.Dict{
			{Key: "method", Value: "GET"},
			{Key: "uri", Value: "http://127.0.0.1:7999/stream?x=1"},
			{Key: "headers", Value: hs},
			{Key: "body", Value: []byte{}},
		}
	}
	return tnetstring.Dict{
		{Key: "requests", Value: []any{tnetstring.Dict{
			{Key: "rid", Value: tnetstring.Dict{{Key: "id", Value: rid}, {Key: "sender", Value: "condure"}}},
			{Key: "out-seq", Value: outSeq},
			{Key: "peer-address", Value: "127.0.0.1"},
			{Key: "logical-peer-address", Value: "127.0.0.1"},
			{Key: "out-credits", Value: credits},
			{Key: "in-seq", Value: int64(2)},
		}}},
		{Key: "response", Value: resp},
		{Key: "request-data", Value: rd(true)},
		{Key: "orig-request-data", Value: rd(false)},
		{Key: "inspect", Value: tnetstring.Dict{{Key: "no-proxy", Value: false}}},
		{Key: "route", Value: "*,*,*,*"},
		{Key: "trusted", Value: true},
	}
}

func (h *harness) sendAccept(args tnetstring.Dict) string {
	h.t.Helper()
	h.seq++
	id := fmt.Sprintf("acc-%d", h.seq)
	req := tnetstring.Dict{{Key: "id", Value: id}, {Key: "method", Value: "accept"}, {Key: "args", Value: args}}
	if _, err := h.accept.SendMessage([]byte{}, tnetstring.MustEncode(req)); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// acceptReply waits for the reply to the last accept.
func (h *harness) acceptReply() tnetstring.Dict {
	h.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(h.accept, zmq.POLLIN)
	polled, err := poller.Poll(hWait)
	if err != nil || len(polled) == 0 {
		h.t.Fatalf("no accept reply: %v", err)
	}
	m, err := h.accept.RecvMessageBytes(0)
	if err != nil || len(m) != 2 || len(m[0]) != 0 {
		h.t.Fatalf("bad accept reply %q: %v", m, err)
	}
	d, err := tnetstring.DecodeDict(m[1])
	if err != nil {
		h.t.Fatal(err)
	}
	if id, _ := d.Bytes("id"); string(id) != fmt.Sprintf("acc-%d", h.seq) {
		h.t.Fatalf("reply for %q", id)
	}
	return d
}

func (h *harness) expectAccepted() {
	h.t.Helper()
	d := h.acceptReply()
	v, _ := d.Dict("value")
	if !d.Bool("success") || !v.Bool("accepted") {
		h.t.Fatalf("accept reply %v", d)
	}
}

// recvPacket returns the next packet for condure, or nil after timeout.
func (h *harness) recvPacket(timeout time.Duration) *zhttp.Packet {
	h.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(h.cin, zmq.POLLIN)
	polled, err := poller.Poll(timeout)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(polled) == 0 {
		return nil
	}
	m, err := h.cin.RecvMessageBytes(0)
	if err != nil || len(m) != 1 {
		h.t.Fatalf("bad SUB message %q: %v", m, err)
	}
	dest, raw, err := zhttp.SplitPubFrame(m[0])
	if err != nil || string(dest) != "condure" {
		h.t.Fatalf("bad PUB frame %q: %v", m[0], err)
	}
	p, err := zhttp.Parse(raw)
	if err != nil {
		h.t.Fatalf("bad packet %q: %v", raw, err)
	}
	if string(p.From) != h.id {
		h.t.Fatalf("packet from %q", p.From)
	}
	return p
}

// expectPacket returns the next packet or fails.
func (h *harness) expectPacket() *zhttp.Packet {
	h.t.Helper()
	p := h.recvPacket(hWait)
	if p == nil {
		h.t.Fatal("no packet for condure")
	}
	return p
}

// expectNoPacket checks that nothing arrives for a short while.
func (h *harness) expectNoPacket() {
	h.t.Helper()
	if p := h.recvPacket(100 * time.Millisecond); p != nil {
		h.t.Fatalf("unexpected packet %+v", p)
	}
}

// zhttpIn builds a condure → handler packet.
func zhttpIn(rid string, seq int64, typ string) *zhttp.Packet {
	p := zhttp.New()
	p.From = []byte("condure")
	p.ID = []byte(rid)
	p.Seq = seq
	p.Type = typ
	p.Multi = true
	return p
}

// sendStream sends a packet through condure's ROUTER to the handler.
func (h *harness) sendStream(p *zhttp.Packet) {
	h.t.Helper()
	deadline := time.Now().Add(hWait)
	for {
		_, err := h.cstream.SendMessage(h.id, "", p.Encode())
		if err == nil {
			return
		}
		if zmq.AsErrno(err) != zmq.Errno(113) || time.Now().After(deadline) { // EHOSTUNREACH until connected
			h.t.Fatalf("send to handler: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recvRetry returns the next retry packet.
func (h *harness) recvRetry() tnetstring.Dict {
	h.t.Helper()
	poller := zmq.NewPoller()
	poller.Add(h.retry, zmq.POLLIN)
	polled, err := poller.Poll(hWait)
	if err != nil || len(polled) == 0 {
		h.t.Fatalf("no retry packet: %v", err)
	}
	m, err := h.retry.RecvMessageBytes(0)
	if err != nil || len(m) != 1 {
		h.t.Fatalf("bad retry message %q: %v", m, err)
	}
	d, err := tnetstring.DecodeDict(m[0])
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) publish(items ...grip.Item) {
	h.t.Helper()
	if err := h.svc.eng.Publish(items); err != nil {
		h.t.Fatal(err)
	}
	h.sync()
}

func pubStream(channel, content string) grip.Item {
	return grip.Item{Channel: channel, Size: -1, HTTPStream: &grip.HTTPStreamFormat{Content: []byte(content)}}
}

func pubResponse(channel string, code int, body string, headers ...grip.Header) grip.Item {
	return grip.Item{Channel: channel, Size: -1, HTTPResponse: &grip.HTTPResponseFormat{
		Code: code, Reason: grip.ReasonPhrase(code), Headers: headers, Body: []byte(body)}}
}

func cmdSync(done chan struct{}) engineCmd { return engineCmd{sync: done} }

// inEngine runs f in the engine goroutine.
func (h *harness) inEngine(f func(e *engine)) {
	h.t.Helper()
	done := make(chan struct{})
	h.svc.eng.cmds <- engineCmd{inspect: f, sync: done}
	<-done
}

// drainBody collects the bodies of the packets that arrive until a short
// silence.
func (h *harness) drainBody() []byte {
	h.t.Helper()
	var out []byte
	for p := h.recvPacket(hWait); p != nil; p = h.recvPacket(100 * time.Millisecond) {
		out = append(out, p.Body...)
	}
	return out
}

// waitEngine polls, in the engine goroutine, until cond holds.
func (h *harness) waitEngine(what string, cond func(e *engine) bool) {
	h.t.Helper()
	deadline := time.Now().Add(hWait)
	for {
		ok := false
		h.inEngine(func(e *engine) { ok = cond(e) })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("engine never reached: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitInSeq waits until the engine has read condure's packets up to seq.
func (h *harness) waitInSeq(rid string, next int64) {
	h.t.Helper()
	h.waitEngine(rid+" in-seq", func(e *engine) bool {
		s := e.sessions["condure\x00"+rid]
		return s != nil && s.z.InSeq >= next
	})
}
