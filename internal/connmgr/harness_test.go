package connmgr

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// refBin, when set (TACK_CONNMGR_REF=/usr/bin/condure), makes the harness
// run that binary instead of our Service, so the same scenarios check the
// real condure's behaviour. Tests of tack-only behaviour skip in that mode.
var refBin = os.Getenv("TACK_CONNMGR_REF")

const waitFor = 5 * time.Second

// fakeClock is the engine clock; tests move it forward to reach the 45 s
// keep-alive and 60 s expiry at once.
type fakeClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Add(f.off)
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.off += d
	f.mu.Unlock()
}

// harness is one connection manager under test.
type harness struct {
	t     testing.TB
	addr  string
	base  string
	id    string
	clock *fakeClock
	svc   *Service
	once  sync.Once
	stopF func() error
}

func startConnmgr(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := DefaultConfig()
	cfg.Listen = []Listener{{Addr: "127.0.0.1:0", Stream: true}}
	cfg.ZClientStream = []string{"ipc://" + dir + "/c"}
	cfg.Tick = 5 * time.Millisecond
	cfg.ShutdownGrace = time.Second
	clock := &fakeClock{}
	cfg.Now = clock.Now
	if mod != nil {
		mod(&cfg)
	}
	h := &harness{t: t, base: cfg.ZClientStream[0], id: cfg.ID, clock: clock}
	if refBin != "" {
		h.startRef(cfg)
		t.Cleanup(func() { h.stop() })
		return h
	}
	level := zerolog.DebugLevel
	if _, bench := t.(*testing.B); bench {
		level = zerolog.WarnLevel
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(level).With().Timestamp().Logger()
	svc, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	h.addr = svc.Addrs()[0].String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	h.stopF = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return fmt.Errorf("Run did not return")
		}
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Error(err)
		}
	})
	return h
}

func (h *harness) stop() error {
	var err error
	h.once.Do(func() { err = h.stopF() })
	return err
}

// startRef runs the reference binary with the flags Pushpin's runner uses.
func (h *harness) startRef(cfg Config) {
	t := h.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	ln.Close()
	cmd := exec.Command(refBin, "--log-level=3", "--listen="+h.addr+",stream",
		"--zclient-stream="+h.base, fmt.Sprintf("--buffer-size=%d", cfg.BufferSize))
	w := zerolog.NewTestWriter(t)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.stopF = func() error {
		cmd.Process.Signal(os.Interrupt)
		return cmd.Wait()
	}
	eventually(t, waitFor, func() error {
		c, err := net.Dial("tcp", h.addr)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// tackOnly skips tests of behaviour that differs from condure on purpose.
func (h *harness) tackOnly(why string) {
	if refBin != "" {
		h.t.Skip("tack-only behaviour: " + why)
	}
}

func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", d, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeServer plays the proxy: PULL, ROUTER and PUB connected to the
// connection manager's binds, as the capture method of zmq-wire.md §7.5.
// The PUB is an XPUB so that we can wait for the SUB's subscription.
type fakeServer struct {
	t      testing.TB
	h      *harness
	from   string
	zctx   *zsock.Context
	pull   *zsock.Socket
	rtr    *zsock.Socket
	pub    *zsock.Socket
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

func newFakeServer(t testing.TB, h *harness, from string) *fakeServer {
	t.Helper()
	zctx, err := zsock.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, h: h, from: from, zctx: zctx}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	out, stream, in, _ := StreamSpecs(h.base)
	open := func(o zsock.Options) *zsock.Socket {
		s, err := zctx.Open(o, log)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f.pull = open(zsock.Options{Name: "fake-pull", Type: zmq.PULL, Direction: zsock.RecvOnly, Connect: []string{out}})
	f.rtr = open(zsock.Options{Name: "fake-router", Type: zmq.ROUTER, Direction: zsock.RecvOnly, Connect: []string{stream}, Identity: from})
	// Unlimited: a test floods it and must not lose packets to the HWM.
	f.pub = open(zsock.Options{Name: "fake-pub", Type: zmq.XPUB, Direction: zsock.TwoWay, Connect: []string{in}, Linger: 500 * time.Millisecond, SndHWM: zsock.Unlimited})
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	for _, s := range []*zsock.Socket{f.pull, f.rtr, f.pub} {
		f.wg.Go(func() { s.Run(ctx) })
	}
	t.Cleanup(f.close)
	select {
	case m := <-f.pub.Recv():
		if want := "\x01" + h.id + " "; string(m[0]) != want {
			t.Fatalf("subscription %q, want %q", m[0], want)
		}
	case <-time.After(waitFor):
		t.Fatal("no subscription from the connection manager")
	}
	return f
}

func (f *fakeServer) close() {
	if f.closed {
		return
	}
	f.closed = true
	f.cancel()
	f.wg.Wait()
	f.zctx.Close()
}

// first returns the next first packet from the PULL socket.
func (f *fakeServer) first() (*zhttp.Packet, []byte) {
	f.t.Helper()
	select {
	case m := <-f.pull.Recv():
		if len(m) != 1 {
			f.t.Fatalf("PULL message with %d frames", len(m))
		}
		p, err := zhttp.Parse(m[0])
		if err != nil {
			f.t.Fatalf("first packet: %v", err)
		}
		return p, m[0]
	case <-time.After(waitFor):
		f.t.Fatal("no first packet")
	}
	return nil, nil
}

// stream returns the next packet from the ROUTER socket and the sender's
// identity.
func (f *fakeServer) stream() (*zhttp.Packet, []byte, []byte) {
	f.t.Helper()
	select {
	case m := <-f.rtr.Recv():
		if len(m) != 3 || len(m[1]) != 0 {
			f.t.Fatalf("ROUTER message %q", m)
		}
		p, err := zhttp.Parse(m[2])
		if err != nil {
			f.t.Fatalf("stream packet: %v", err)
		}
		return p, m[2], m[0]
	case <-time.After(waitFor):
		f.t.Fatal("no stream packet")
	}
	return nil, nil, nil
}

// expectType returns the next stream packet and checks its type.
func (f *fakeServer) expectType(typ string) *zhttp.Packet {
	f.t.Helper()
	p, _, _ := f.stream()
	if p.Type != typ {
		f.t.Fatalf("stream packet type %q, want %q (%+v)", p.Type, typ, p)
	}
	return p
}

// noStream asserts that nothing arrives on the ROUTER for d.
func (f *fakeServer) noStream(d time.Duration) {
	f.t.Helper()
	select {
	case m := <-f.rtr.Recv():
		f.t.Fatalf("unexpected stream message %q", m)
	case <-time.After(d):
	}
}

// send publishes p to the connection manager.
func (f *fakeServer) send(p *zhttp.Packet) {
	f.t.Helper()
	if p.From == nil {
		p.From = []byte(f.from)
	}
	select {
	case f.pub.Send() <- zsock.Message{zhttp.PubFrame([]byte(f.h.id), p)}:
	case <-time.After(waitFor):
		f.t.Fatal("PUB queue full")
	}
}

// packet builds a server packet for session id at seq.
func (f *fakeServer) packet(id []byte, seq int64) *zhttp.Packet {
	p := zhttp.New()
	p.From = []byte(f.from)
	p.ID = id
	p.Seq = seq
	return p
}

func (f *fakeServer) respond(id []byte, seq int64, code int64, headers []zhttp.Header, body string, more bool) {
	p := f.packet(id, seq)
	p.Code, p.Reason, p.Headers, p.Body, p.More = code, "OK", headers, []byte(body), more
	f.send(p)
}

// warm makes sure all three links carry traffic before a test starts (a
// fresh PUSH has no peer until the PULL's connect completes; we answer
// 503 meanwhile). It runs one streamed exchange so that the ROUTER link
// is used too.
func (f *fakeServer) warm() {
	f.t.Helper()
	eventually(f.t, waitFor, func() error {
		c := dial(f.t, f.h)
		defer c.Close()
		fmt.Fprintf(c, "GET /warmup HTTP/1.1\r\nHost: warm\r\n\r\n")
		var p *zhttp.Packet
		select {
		case m := <-f.pull.Recv():
			p, _ = zhttp.Parse(m[0])
		case <-time.After(time.Second): // a 503 never reaches the PULL
		}
		br := bufio.NewReader(c)
		if p == nil {
			readHTTP(f.t, br)
			return fmt.Errorf("no first packet yet")
		}
		f.respond(p.ID, 0, 200, nil, "a", true)
		if _, raw, _ := f.stream(); raw == nil {
			return fmt.Errorf("no credit")
		}
		f.send(f.packet(p.ID, 1))
		head, body := readHTTP(f.t, br)
		if !strings.HasPrefix(head, "HTTP/1.1 200") || body != "a" {
			return fmt.Errorf("warm-up got %q %q", head, body)
		}
		return nil
	})
}

func dial(t testing.TB, h *harness) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(waitFor))
	t.Cleanup(func() { c.Close() })
	return c
}

// readHead reads a response head (through the blank line).
func readHead(t testing.TB, br *bufio.Reader) string {
	t.Helper()
	var sb strings.Builder
	for {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			t.Fatalf("reading head after %q: %v", sb.String(), err)
		}
		if line == "\r\n" {
			return sb.String()
		}
	}
}

// readHTTP reads one response with a Content-Length or chunked body and
// returns the head and the decoded body.
func readHTTP(t testing.TB, br *bufio.Reader) (string, string) {
	t.Helper()
	head := readHead(t, br)
	lower := strings.ToLower(head)
	switch {
	case strings.Contains(lower, "transfer-encoding: chunked"):
		var body strings.Builder
		for {
			var n int
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			fmt.Sscanf(line, "%x", &n)
			if n == 0 {
				br.ReadString('\n')
				return head, body.String()
			}
			b := make([]byte, n+2)
			if _, err := io.ReadFull(br, b); err != nil {
				t.Fatal(err)
			}
			body.Write(b[:n])
		}
	case strings.Contains(lower, "content-length: "):
		i := strings.Index(lower, "content-length: ")
		var n int
		fmt.Sscanf(lower[i+len("content-length: "):], "%d", &n)
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatal(err)
		}
		return head, string(b)
	}
	return head, ""
}

// expectClosed asserts the server closes the connection with nothing more
// than want written.
func expectClosed(t testing.TB, br *bufio.Reader, want string) {
	t.Helper()
	b, err := io.ReadAll(br)
	if err != nil && !isReset(err) {
		t.Fatalf("reading to EOF: %v (got %q)", err, b)
	}
	if string(b) != want {
		t.Fatalf("before close got %q, want %q", b, want)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func hdr(kv ...string) []zhttp.Header {
	var hs []zhttp.Header
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, zhttp.Header{Name: kv[i], Value: kv[i+1]})
	}
	return hs
}
