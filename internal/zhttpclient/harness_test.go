package zhttpclient

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// The scenario tests run against the in-process service. With
// TACK_ZHTTP_TARGET=/path/to/binary they run against that binary instead
// (the real zurl, or bin/tack-zhttp-client), started with a generated
// config file exactly as the Pushpin runner starts zurl; tests that check
// a deliberate deviation from zurl skip themselves then.
const targetEnv = "TACK_ZHTTP_TARGET"

const waitFor = 10 * time.Second

var targetSeq atomic.Int64

type target struct {
	id       string
	in       string
	inStream string
	out      string
	inReq    string
	svc      *Service // nil for an external binary
}

func external() string { return os.Getenv(targetEnv) }

// skipExternal marks a test of tack-only behaviour.
func skipExternal(t testing.TB, why string) {
	t.Helper()
	if bin := external(); bin != "" && !strings.Contains(filepath.Base(bin), "tack") {
		t.Skipf("%s: %s", bin, why)
	}
}

// needInProcess marks a test that reaches into the service (timers, CA).
func needInProcess(t testing.TB, why string) {
	t.Helper()
	if bin := external(); bin != "" {
		t.Skipf("%s: %s", bin, why)
	}
}

func testLogger(t testing.TB) zerolog.Logger {
	level := zerolog.DebugLevel
	if _, bench := t.(*testing.B); bench {
		level = zerolog.WarnLevel
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
}

// startTarget starts a zhttp-client with ipc sockets in a fresh temp dir.
// mod may change the config (and, in-process, the service's timers).
func startTarget(t testing.TB, mod func(*Config), svcMod ...func(*Service)) *target {
	t.Helper()
	if testing.Short() {
		t.Skip("service test (sockets, backends); -short runs unit tests only")
	}
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := DefaultConfig()
	cfg.InstanceID = fmt.Sprintf("zhcli-test_%d_%d", os.Getpid(), targetSeq.Add(1))
	cfg.InSpec = "ipc://" + dir + "/in"
	cfg.InStreamSpec = "ipc://" + dir + "/in-stream"
	cfg.OutSpec = "ipc://" + dir + "/out"
	cfg.InReqSpec = "ipc://" + dir + "/req"
	if mod != nil {
		mod(&cfg)
	}
	tg := &target{id: cfg.InstanceID, in: cfg.InSpec, inStream: cfg.InStreamSpec, out: cfg.OutSpec, inReq: cfg.InReqSpec}
	if bin := external(); bin != "" {
		startExternal(t, bin, dir, &cfg)
		return tg
	}
	svc, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range svcMod {
		f(svc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("service did not stop")
		}
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(waitFor):
		t.Fatal("service not ready")
	}
	tg.svc = svc
	return tg
}

// writeConfig renders cfg as a zurl.conf.
func writeConfig(path string, cfg *Config) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[General]\ninstance_id=%s\n", cfg.InstanceID)
	fmt.Fprintf(&b, "in_spec=%s\nin_stream_spec=%s\nout_spec=%s\nin_req_spec=%s\n", cfg.InSpec, cfg.InStreamSpec, cfg.OutSpec, cfg.InReqSpec)
	fmt.Fprintf(&b, "defpolicy=%s\nallow=%s\ndeny=%s\n", cfg.DefPolicy, strings.Join(cfg.Allow, ","), strings.Join(cfg.Deny, ","))
	if cfg.MaxOpenRequests > 0 {
		fmt.Fprintf(&b, "max_open_requests=%d\n", cfg.MaxOpenRequests)
	}
	fmt.Fprintf(&b, "buffer_size=%d\ntimeout=%d\n", cfg.BufferSize, int(cfg.Timeout/time.Second))
	fmt.Fprintf(&b, "in_hwm=%d\nout_hwm=%d\n", cfg.InHWM, cfg.OutHWM)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

type testLogWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startExternal(t testing.TB, bin, dir string, cfg *Config) {
	t.Helper()
	conf := filepath.Join(dir, "zurl.conf")
	if err := writeConfig(conf, cfg); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config="+conf, "--loglevel=2")
	lw := &testLogWriter{t: t}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	eventually(t, waitFor, func() error {
		if _, err := os.Stat(strings.TrimPrefix(cfg.OutSpec, "ipc://")); err != nil {
			return err
		}
		return nil
	})
}

// eventually polls f until it succeeds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakeClient plays the proxy: PUSH to in_spec, ROUTER to in_stream_spec,
// SUB on out_spec subscribed to "<from> ", DEALER to in_req_spec.
type fakeClient struct {
	t      testing.TB
	from   string
	server string
	zctx   *zsock.Context
	push   *zsock.Socket
	router *zsock.Socket
	sub    *zsock.Socket
	dealer *zsock.Socket
	queued map[string][]*zhttp.Packet
	raw    map[string][][]byte
}

var clientSeq atomic.Int64

func newFakeClient(t testing.TB, tg *target) *fakeClient {
	t.Helper()
	return newFakeClientHWM(t, tg, 100000)
}

// newFakeClientHWM is newFakeClient with the SUB's RCVHWM set to subHWM.
func newFakeClientHWM(t testing.TB, tg *target, subHWM int) *fakeClient {
	t.Helper()
	zctx, err := zsock.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClient{
		t: t, from: fmt.Sprintf("fake-proxy_%d_%d", os.Getpid(), clientSeq.Add(1)), server: tg.id, zctx: zctx,
		queued: map[string][]*zhttp.Packet{}, raw: map[string][][]byte{},
	}
	log := testLogger(t).With().Str(logging.FieldComponent, "fake-client").Logger()
	open := func(o zsock.Options) *zsock.Socket {
		s, err := zctx.Open(o, log)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	c.push = open(zsock.Options{Name: "push", Type: zmq.PUSH, Direction: zsock.SendOnly, Connect: []string{tg.in}, SendTimeout: waitFor})
	c.router = open(zsock.Options{Name: "router", Type: zmq.ROUTER, Direction: zsock.SendOnly, Connect: []string{tg.inStream},
		Identity: c.from, RouterMandatory: true, SendTimeout: waitFor})
	c.sub = open(zsock.Options{Name: "sub", Type: zmq.SUB, Direction: zsock.RecvOnly, Connect: []string{tg.out},
		Subscribe: []string{c.from + " "}, RcvHWM: subHWM})
	socks := []*zsock.Socket{c.push, c.router, c.sub}
	if tg.inReq != "" {
		c.dealer = open(zsock.Options{Name: "dealer", Type: zmq.DEALER, Direction: zsock.TwoWay, Connect: []string{tg.inReq}, SendTimeout: waitFor})
		socks = append(socks, c.dealer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range socks {
		wg.Go(func() { _ = s.Run(ctx) })
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = zctx.Close()
	})
	c.warmUp()
	return c
}

// warmUp waits until both the ROUTER → DEALER path and the PUB → SUB path
// work: an unknown-id follow-up is answered with a cancel.
func (c *fakeClient) warmUp() {
	c.t.Helper()
	deadline := time.Now().Add(waitFor)
	for n := 0; ; n++ {
		id := fmt.Sprintf("warmup-%d", n)
		p := zhttp.New()
		p.From, p.ID, p.Seq, p.Type, p.Credits = []byte(c.from), []byte(id), 1, zhttp.TypeCredit, 1
		c.follow(p)
		if got := c.tryNext(id, 50*time.Millisecond); got != nil {
			// Drop answers to earlier attempts that may still arrive.
			for k := range c.queued {
				delete(c.queued, k)
			}
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("fake client: server never answered the warm-up")
		}
	}
}

// request sends a first packet built by f on the PUSH socket.
func (c *fakeClient) request(p *zhttp.Packet) {
	c.t.Helper()
	if p.From == nil {
		p.From = []byte(c.from)
	}
	c.pushRaw(p.Encode())
}

func (c *fakeClient) pushRaw(b []byte) {
	c.t.Helper()
	select {
	case c.push.Send() <- zsock.Message{b}:
	case <-time.After(waitFor):
		c.t.Fatal("push queue full")
	}
}

// follow sends a follow-up packet through the ROUTER to the server.
func (c *fakeClient) follow(p *zhttp.Packet) {
	c.t.Helper()
	if p.From == nil {
		p.From = []byte(c.from)
	}
	c.followRaw(p.Encode())
}

func (c *fakeClient) followRaw(b []byte) {
	c.t.Helper()
	select {
	case c.router.Send() <- zsock.Message{[]byte(c.server), {}, b}:
	case <-time.After(waitFor):
		c.t.Fatal("router queue full")
	}
}

// readSub reads one SUB frame and files it under its id.
func (c *fakeClient) readSub(timeout time.Duration) bool {
	select {
	case m, ok := <-c.sub.Recv():
		if !ok {
			return false
		}
		if len(m) != 1 {
			c.t.Fatalf("SUB message with %d parts", len(m))
		}
		dest, payload, err := zhttp.SplitPubFrame(m[0])
		if err != nil || string(dest) != c.from {
			c.t.Fatalf("bad PUB frame %q", m[0])
		}
		p, _, _, err := decode(payload)
		if err != nil {
			c.t.Fatalf("undecodable reply %q: %v", payload, err)
		}
		id := string(p.ID)
		for _, e := range p.IDs {
			id = string(e.ID)
		}
		c.queued[id] = append(c.queued[id], p)
		c.raw[id] = append(c.raw[id], payload)
		return true
	case <-time.After(timeout):
		return false
	}
}

func (c *fakeClient) tryNext(id string, timeout time.Duration) *zhttp.Packet {
	deadline := time.Now().Add(timeout)
	for len(c.queued[id]) == 0 {
		left := time.Until(deadline)
		if left <= 0 || !c.readSub(left) {
			if len(c.queued[id]) == 0 {
				return nil
			}
		}
	}
	p := c.queued[id][0]
	c.queued[id] = c.queued[id][1:]
	return p
}

// next returns the next reply for id.
func (c *fakeClient) next(id string) *zhttp.Packet {
	c.t.Helper()
	p := c.tryNext(id, waitFor)
	if p == nil {
		c.t.Fatalf("no reply for %s within %v", id, waitFor)
	}
	return p
}

// lastRaw returns the raw payload of the packet most recently returned
// for id.
func (c *fakeClient) lastRaw(id string) []byte {
	r := c.raw[id]
	return r[len(r)-1-len(c.queued[id])]
}

// expectSilence asserts that nothing arrives for id for d.
func (c *fakeClient) expectSilence(id string, d time.Duration) {
	c.t.Helper()
	if p := c.tryNext(id, d); p != nil {
		c.t.Fatalf("unexpected packet for %s: %+v", id, p)
	}
}

// reqMode sends one req-mode request through the DEALER and returns the
// reply payload.
func (c *fakeClient) reqMode(payload []byte) []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if !c.dealer.SendWait(ctx, zsock.Message{{}, payload}) {
		c.t.Fatal("dealer queue full")
	}
	select {
	case m := <-c.dealer.Recv():
		if len(m) != 2 || len(m[0]) != 0 {
			c.t.Fatalf("req reply framing: %q", m)
		}
		return m[1]
	case <-time.After(waitFor):
		c.t.Fatal("no req-mode reply")
	}
	return nil
}

// newRequest returns a stream-mode GET request for uri.
func (c *fakeClient) newRequest(id, method, uri string) *zhttp.Packet {
	p := zhttp.New()
	p.From, p.ID, p.Seq = []byte(c.from), []byte(id), 0
	p.Method, p.URI = method, uri
	p.Stream = true
	p.Credits = 200000
	return p
}

// response collects the reply to a request after its ack: the head packet,
// the concatenated body and every data packet. It checks that seq numbers
// continue from after and that each packet carries our from/id.
type response struct {
	head    *zhttp.Packet
	body    []byte
	packets []*zhttp.Packet
	errCond string
}

func (c *fakeClient) readResponse(id string, seq int64) *response {
	c.t.Helper()
	r := &response{}
	for {
		p := c.next(id)
		if p.Seq != seq {
			c.t.Fatalf("%s: seq %d, want %d (%+v)", id, p.Seq, seq, p)
		}
		seq++
		if string(p.From) != c.server {
			c.t.Fatalf("%s: from %q, want %q", id, p.From, c.server)
		}
		switch p.Type {
		case zhttp.TypeKeepAlive, zhttp.TypeCredit:
			continue
		case zhttp.TypeError:
			r.errCond = p.Condition
			return r
		case zhttp.TypeData:
		default:
			c.t.Fatalf("%s: unexpected %s packet", id, p.Type)
		}
		if r.head == nil {
			if p.Code < 0 {
				c.t.Fatalf("%s: first data packet has no code: %+v", id, p)
			}
			r.head = p
		}
		r.packets = append(r.packets, p)
		r.body = append(r.body, p.Body...)
		if !p.More {
			return r
		}
	}
}

func headerValue(hs []zhttp.Header, name string) (string, bool) {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return h.Value, true
		}
	}
	return "", false
}

// dict decodes a `T` payload for raw field checks.
func dict(t testing.TB, payload []byte) tnetstring.Dict {
	t.Helper()
	if !bytes.HasPrefix(payload, []byte("T")) {
		t.Fatalf("not a T payload: %q", payload)
	}
	d, err := tnetstring.DecodeDict(payload[1:])
	if err != nil {
		t.Fatal(err)
	}
	return d
}
