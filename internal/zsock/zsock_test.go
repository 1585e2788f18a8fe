package zsock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func msg(parts ...string) Message {
	m := make(Message, len(parts))
	for i, p := range parts {
		m[i] = []byte(p)
	}
	return m
}

func equalMsg(a, b Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func errno(err error) zmq.Errno {
	var e zmq.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

func TestPushPull(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "pp")
	rs := startAll(t, c,
		Options{Name: "pull", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{ep}},
		Options{Name: "push", Type: zmq.PUSH, Direction: SendOnly, Connect: []string{ep}},
	)
	pull, push := rs[0].s, rs[1].s
	if pull.Send() != nil || push.Recv() != nil {
		t.Fatal("one-way sockets must not have the other direction's channel")
	}
	const n = 200
	for i := range n {
		sendWithin(t, push.Send(), msg(fmt.Sprintf("m-%d", i)), waitFor)
	}
	// Frames are carried as they are, empty ones included.
	multi := msg("a", "", "c")
	sendWithin(t, push.Send(), multi, waitFor)
	for i := range n {
		got := recvWithin(t, pull.Recv(), waitFor)
		if want := msg(fmt.Sprintf("m-%d", i)); !equalMsg(got, want) {
			t.Fatalf("message %d: got %q, want %q", i, got, want)
		}
	}
	if got := recvWithin(t, pull.Recv(), waitFor); !equalMsg(got, multi) {
		t.Fatalf("multipart: got %q, want %q", got, multi)
	}
}

func TestPubSubTopics(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "ps")
	rs := startAll(t, c,
		Options{Name: "pub", Type: zmq.PUB, Direction: SendOnly, Bind: []string{ep}},
		// zhttp SUBs subscribe to "<instance> " with the trailing space (§1.3).
		Options{Name: "sub", Type: zmq.SUB, Direction: RecvOnly, Connect: []string{ep}, Subscribe: []string{"condure "}},
	)
	pub, sub := rs[0].s, rs[1].s
	// A PUB drops what it sends before the subscription arrives: probe until
	// one gets through.
	eventually(t, waitFor, func() error {
		sendWithin(t, pub.Send(), msg("condure probe"), waitFor)
		select {
		case <-sub.Recv():
			return nil
		case <-time.After(10 * time.Millisecond):
			return errNotYet
		}
	})
	for _, s := range []string{"condure2 not mine", "other x", "condure last"} {
		sendWithin(t, pub.Send(), msg(s), waitFor)
	}
	for {
		got := recvWithin(t, sub.Recv(), waitFor)
		if len(got) != 1 || !bytes.HasPrefix(got[0], []byte("condure ")) {
			t.Fatalf("received %q, which does not match topic %q", got, "condure ")
		}
		if string(got[0]) == "condure last" {
			break
		}
	}
}

// routerA opens a ROUTER "a-1" (binds, ROUTER_MANDATORY, send-only) and
// returns it with its endpoint.
func routerA(t *testing.T, c *Context, timeout time.Duration, onDrop func(Message, error)) (*running, string) {
	t.Helper()
	ep := ipc(ipcDir(t), "rr")
	a := start(t, open(t, c, Options{Name: "a", Type: zmq.ROUTER, Direction: SendOnly, Identity: "a-1",
		RouterMandatory: true, Bind: []string{ep}, SendTimeout: timeout, OnDrop: onDrop}))
	return a, ep
}

func routerB(t *testing.T, c *Context, id, ep string) *running {
	t.Helper()
	return start(t, open(t, c, Options{Name: "b-" + id, Type: zmq.ROUTER, Direction: RecvOnly, Identity: id, Connect: []string{ep}}))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestRouterMandatory(t *testing.T) {
	t.Run("unknown identity dropped after SendTimeout without spinning", func(t *testing.T) {
		c := newContext(t)
		onDrop, drops := dropSink(8)
		const timeout = 300 * time.Millisecond
		a, ep := routerA(t, c, timeout, onDrop)
		// Another peer is connected: a ROUTER_MANDATORY socket then reports
		// POLLOUT all the time, which made the retry loop spin.
		b := routerB(t, c, "b-1", ep)
		sendWithin(t, a.s.Send(), msg("b-1", "", "hello"), waitFor)
		if got := recvWithin(t, b.s.Recv(), waitFor); !equalMsg(got, msg("a-1", "", "hello")) {
			t.Fatalf("b received %q", got)
		}

		cpu0, t0 := cpuTime(), time.Now()
		m := msg("ghost", "", "lost")
		sendWithin(t, a.s.Send(), m, waitFor)
		var d drop
		select {
		case d = <-drops:
		case <-time.After(waitFor):
			t.Fatal("no drop reported")
		}
		wall, cpu := d.at.Sub(t0), cpuTime()-cpu0
		if !equalMsg(d.m, m) {
			t.Errorf("dropped %q, want %q", d.m, m)
		}
		if !errors.Is(d.err, ErrDropped) || errno(d.err) != zmq.Errno(syscall.EHOSTUNREACH) {
			t.Errorf("drop error %v: want ErrDropped wrapping EHOSTUNREACH", d.err)
		}
		if wall < timeout-20*time.Millisecond {
			t.Errorf("dropped after %v, before SendTimeout %v", wall, timeout)
		}
		if cpu > wall/2 {
			t.Errorf("retrying for %v used %v of CPU: busy loop", wall, cpu)
		}
		t.Logf("dropped after %v using %v CPU", wall, cpu)
	})

	t.Run("identity connecting later is retried until it arrives", func(t *testing.T) {
		c := newContext(t)
		onDrop, drops := dropSink(8)
		a, ep := routerA(t, c, waitFor, onDrop)
		sendWithin(t, a.s.Send(), msg("late-1", "", "for you"), waitFor)
		// Let the owner take it and fail at least once before the peer exists.
		eventually(t, waitFor, func() error {
			if len(a.s.send) != 0 {
				return errNotYet
			}
			return nil
		})
		b := routerB(t, c, "late-1", ep)
		if got := recvWithin(t, b.s.Recv(), waitFor); !equalMsg(got, msg("a-1", "", "for you")) {
			t.Fatalf("late peer received %q", got)
		}
		if len(drops) != 0 {
			t.Fatalf("unexpected drop: %v", (<-drops).err)
		}
	})

	t.Run("connected identities receive with the sender identity", func(t *testing.T) {
		c := newContext(t)
		onDrop, drops := dropSink(8)
		a, ep := routerA(t, c, waitFor, onDrop)
		bs := []*running{routerB(t, c, "w-1", ep), routerB(t, c, "w-2", ep)}
		for i := range 20 {
			for j := range bs {
				sendWithin(t, a.s.Send(), msg(fmt.Sprintf("w-%d", j+1), "", fmt.Sprintf("p%d", i)), waitFor)
			}
		}
		for i := range 20 {
			for j, b := range bs {
				want := msg("a-1", "", fmt.Sprintf("p%d", i))
				if got := recvWithin(t, b.s.Recv(), waitFor); !equalMsg(got, want) {
					t.Fatalf("w-%d message %d: got %q, want %q", j+1, i, got, want)
				}
			}
		}
		if len(drops) != 0 {
			t.Fatalf("unexpected drop: %v", (<-drops).err)
		}
	})
}

func TestRouterPeerGone(t *testing.T) {
	c := newContext(t)
	onDrop, drops := dropSink(8)
	const timeout = 300 * time.Millisecond
	ep := ipc(ipcDir(t), "gone")
	disc := make(chan struct{}, 8)
	a := start(t, open(t, c, Options{Name: "a", Type: zmq.ROUTER, Direction: SendOnly, Identity: "a-1",
		RouterMandatory: true, Bind: []string{ep}, SendTimeout: timeout, OnDrop: onDrop,
		OnDisconnect: func() { disc <- struct{}{} }}))
	b := routerB(t, c, "b-1", ep)
	live := routerB(t, c, "live-1", ep)
	for _, peer := range []*running{b, live} {
		id := strings.TrimPrefix(peer.s.Name(), "b-")
		sendWithin(t, a.s.Send(), msg(id, "", "hello"), waitFor)
		if got := recvWithin(t, peer.s.Recv(), waitFor); !equalMsg(got, msg("a-1", "", "hello")) {
			t.Fatalf("%s received %q", id, got)
		}
	}

	// The peer closes its socket: OnDisconnect reports it.
	b.stop(t)
	select {
	case <-disc:
	case <-time.After(waitFor):
		t.Fatal("no disconnect reported")
	}
	if len(drops) != 0 {
		t.Fatal("drop before any send")
	}
	// libzmq reports the disconnect just before it closes the pipe (connmgr
	// waits probeDelay likewise).
	time.Sleep(50 * time.Millisecond)

	// The first message to it waits SendTimeout; the next ones are dropped
	// at once, and a live peer is not affected.
	t0 := time.Now()
	for i := range 3 {
		sendWithin(t, a.s.Send(), msg("b-1", "", fmt.Sprint("lost", i)), waitFor)
	}
	sendWithin(t, a.s.Send(), msg("live-1", "", "still here"), waitFor)
	for i := range 3 {
		select {
		case d := <-drops:
			if !equalMsg(d.m, msg("b-1", "", fmt.Sprint("lost", i))) || !errors.Is(d.err, ErrDropped) {
				t.Fatalf("drop %d: %q %v", i, d.m, d.err)
			}
		case <-time.After(waitFor):
			t.Fatalf("drop %d not reported", i)
		}
	}
	if wall := time.Since(t0); wall >= 2*timeout {
		t.Errorf("three messages to a gone peer took %v to drop; want one SendTimeout (%v)", wall, timeout)
	}
	if got := recvWithin(t, live.s.Recv(), waitFor); !equalMsg(got, msg("a-1", "", "still here")) {
		t.Fatalf("live peer received %q", got)
	}

	// Any peer that connects voids the memory (it might have taken the
	// gone identity): the next message to b-1 is tried for SendTimeout
	// again before it is dropped.
	routerB(t, c, "c-1", ep)
	eventually(t, waitFor, func() error { // its handshake is seen
		if a.s.Peers() != 2 {
			return errNotYet
		}
		return nil
	})
	t0 = time.Now()
	sendWithin(t, a.s.Send(), msg("b-1", "", "tried again"), waitFor)
	select {
	case d := <-drops:
		if wall := d.at.Sub(t0); wall < timeout-20*time.Millisecond {
			t.Errorf("dropped after %v: the memory of the gone peer outlived a new connection", wall)
		}
	case <-time.After(waitFor):
		t.Fatal("drop not reported")
	}
}

// TestRouterFirstPeerWait: a monitored ROUTER_MANDATORY socket none of
// whose connections has completed a handshake waits longer than
// SendTimeout for its peer (a loaded machine at start-up), instead of
// dropping the first follow-ups of a session as if the peer were gone.
func TestRouterFirstPeerWait(t *testing.T) {
	c := newContext(t)
	onDrop, drops := dropSink(8)
	const timeout = 100 * time.Millisecond
	ep := ipc(ipcDir(t), "first")
	a := start(t, open(t, c, Options{Name: "a", Type: zmq.ROUTER, Direction: SendOnly, Identity: "a-1",
		RouterMandatory: true, Bind: []string{ep}, SendTimeout: timeout, OnDrop: onDrop,
		OnDisconnect: func() {}}))
	sendWithin(t, a.s.Send(), msg("late-1", "", "early"), waitFor)
	time.Sleep(5 * timeout)
	b := routerB(t, c, "late-1", ep)
	if got := recvWithin(t, b.s.Recv(), waitFor); !equalMsg(got, msg("a-1", "", "early")) {
		t.Fatalf("late peer received %q", got)
	}
	if len(drops) != 0 {
		t.Fatalf("dropped while the first peer was connecting: %v", (<-drops).err)
	}
}

// TestRouterPeerFull: a ROUTER_MANDATORY peer that is connected but
// reads more slowly than we write (its queue at the HWM, EAGAIN) gets
// FullTimeout, not SendTimeout, before a message to it is dropped; one
// that stays full that long is then taken as gone (connmgr: a handler
// busy with a publish to 100,000 streams had sessions closed after 50 ms).
func TestRouterPeerFull(t *testing.T) {
	const (
		sendTimeout = 50 * time.Millisecond
		size        = 256 << 10 // fills the ipc socket buffers in a few messages
		count       = 16
	)
	setup := func(t *testing.T, full time.Duration) (*running, *running, chan drop) {
		c := newContext(t)
		onDrop, drops := dropSink(count)
		ep := ipc(ipcDir(t), "full")
		a := start(t, open(t, c, Options{Name: "a", Type: zmq.ROUTER, Direction: SendOnly, Identity: "a-1",
			RouterMandatory: true, Bind: []string{ep}, SndHWM: 1, SendTimeout: sendTimeout, FullTimeout: full,
			OnDrop: onDrop, OnDisconnect: func() {}}))
		// The peer's owner stops reading while its one-message Go queue is
		// full, so its libzmq queue (RCVHWM 1) and then ours fill up.
		b := start(t, open(t, c, Options{Name: "b", Type: zmq.ROUTER, Direction: RecvOnly, Identity: "b-1",
			Connect: []string{ep}, RcvHWM: 1, QueueLen: 1}))
		sendWithin(t, a.s.Send(), msg("b-1", "", "hello"), waitFor)
		recvWithin(t, b.s.Recv(), waitFor)
		return a, b, drops
	}
	payload := func(i int) string { return fmt.Sprintf("%02d", i) + strings.Repeat("x", size) }

	t.Run("slow peer catches up within FullTimeout: nothing dropped", func(t *testing.T) {
		a, b, drops := setup(t, waitFor)
		for i := range count {
			sendWithin(t, a.s.Send(), msg("b-1", "", payload(i)), waitFor)
		}
		// Stalled for several SendTimeouts.
		time.Sleep(8 * sendTimeout)
		if len(drops) != 0 {
			d := <-drops
			t.Fatalf("a slow but connected peer lost messages (%d): %.20q %v", len(drops)+1, d.m, d.err)
		}
		for i := range count {
			got := recvWithin(t, b.s.Recv(), waitFor)
			if len(got) != 3 || string(got[2][:2]) != fmt.Sprintf("%02d", i) {
				t.Fatalf("message %d: got %.20q", i, got)
			}
		}
	})

	t.Run("peer full for FullTimeout: dropped, then taken as gone", func(t *testing.T) {
		const full = 300 * time.Millisecond
		a, _, drops := setup(t, full)
		t0 := time.Now()
		for i := range count {
			sendWithin(t, a.s.Send(), msg("b-1", "", payload(i)), waitFor)
		}
		// Some messages fit in the queues; the others are dropped.
		var first, last drop
		n := 0
	collect:
		for {
			wait := waitFor
			if n > 0 {
				wait = full
			}
			select {
			case d := <-drops:
				if n == 0 {
					first = d
				}
				last = d
				n++
			case <-time.After(wait):
				if n == 0 {
					t.Fatal("no drop reported")
				}
				break collect
			}
		}
		t.Logf("%d of %d dropped, first after %v, last after %v", n, count, first.at.Sub(t0), last.at.Sub(t0))
		if !errors.Is(first.err, ErrDropped) || errno(first.err) != zmq.Errno(syscall.EAGAIN) {
			t.Errorf("first drop error %v: want ErrDropped wrapping EAGAIN", first.err)
		}
		if wall := first.at.Sub(t0); wall < full-20*time.Millisecond {
			t.Errorf("first drop after %v, before FullTimeout %v", wall, full)
		}
		if n > 1 && last.at.Sub(first.at) >= full {
			t.Errorf("the messages queued behind took %v more to drop: each waited FullTimeout again", last.at.Sub(first.at))
		}
	})
}

// echoServer runs a two-way ROUTER that answers every [id, "", payload]
// with the same envelope, blocking on Send() when it is full.
func echoServer(t testing.TB, c *Context, ep string, queue int) *running {
	t.Helper()
	srv := start(t, open(t, c, Options{Name: "srv", Type: zmq.ROUTER, Direction: TwoWay, Bind: []string{ep}, QueueLen: queue}))
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for m := range srv.s.Recv() { // closed when Run returns
			select {
			case srv.s.Send() <- m:
			case <-quit:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(quit)
		srv.stop(t)
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Error("echo goroutine did not end")
		}
	})
	return srv
}

func TestDealerRouterRoundTrip(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "dr")
	echoServer(t, c, ep, 0)
	cli := start(t, open(t, c, Options{Name: "cli", Type: zmq.DEALER, Direction: TwoWay, Identity: "c-1", Connect: []string{ep}}))

	roundTrip := func(payload string) {
		t.Helper()
		sendWithin(t, cli.s.Send(), msg("", payload), waitFor)
		if got := recvWithin(t, cli.s.Recv(), waitFor); !equalMsg(got, msg("", payload)) {
			t.Fatalf("reply %q, want %q", got, msg("", payload))
		}
	}
	roundTrip("warm-up") // connection set-up is not part of the latency
	const n = 200
	begin := time.Now()
	for i := range n {
		roundTrip(fmt.Sprintf("req-%d", i))
	}
	avg := time.Since(begin) / n
	t.Logf("average round trip %v (TwoWayPoll %v)", avg, TwoWayPoll)
	if avg > 50*time.Millisecond {
		t.Errorf("average round trip %v, want < 50ms (TwoWayPoll %v per hop)", avg, TwoWayPoll)
	}
}

// TestTwoWayBurstNoDeadlock: a request handler that blocks on a full Send()
// while the owner waits for room on a full Recv() must not deadlock.
func TestTwoWayBurstNoDeadlock(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "bd")
	echoServer(t, c, ep, 4)
	cli := start(t, open(t, c, Options{Name: "cli", Type: zmq.DEALER, Direction: TwoWay, Connect: []string{ep}}))
	const n = 2000
	got := make(chan int, 1)
	go func() {
		count := 0
		for range cli.s.Recv() {
			count++
			if count == n {
				break
			}
		}
		got <- count
	}()
	for i := range n {
		sendWithin(t, cli.s.Send(), msg("", fmt.Sprintf("r%d", i)), waitFor)
	}
	select {
	case k := <-got:
		if k != n {
			t.Fatalf("got %d replies, want %d", k, n)
		}
	case <-time.After(waitFor):
		t.Fatal("replies stopped: owner and handler deadlocked")
	}
}

func TestOnDropNoPeer(t *testing.T) {
	dir := ipcDir(t)
	tests := []struct {
		name string
		opts Options
	}{
		{"bound PUSH with no peer", Options{Bind: []string{ipc(dir, "nobody")}}},
		{"immediate PUSH connected to nothing", Options{Connect: []string{ipc(dir, "absent")}, Immediate: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newContext(t)
			onDrop, drops := dropSink(4)
			const timeout = 50 * time.Millisecond
			o := tt.opts
			o.Name, o.Type, o.Direction, o.SendTimeout, o.OnDrop = "push", zmq.PUSH, SendOnly, timeout, onDrop
			p := start(t, open(t, c, o))
			t0 := time.Now()
			m := msg("undeliverable")
			if !p.s.TrySend(m) {
				t.Fatal("TrySend refused on an empty queue")
			}
			select {
			case d := <-drops:
				if !equalMsg(d.m, m) {
					t.Errorf("dropped %q, want %q", d.m, m)
				}
				if !errors.Is(d.err, ErrDropped) || errno(d.err) != zmq.Errno(syscall.EAGAIN) {
					t.Errorf("drop error %v: want ErrDropped wrapping EAGAIN", d.err)
				}
				if el := d.at.Sub(t0); el < timeout-10*time.Millisecond {
					t.Errorf("dropped after %v, before SendTimeout %v", el, timeout)
				}
			case <-time.After(waitFor):
				t.Fatal("no drop reported")
			}
		})
	}
}

func TestTrySendAndChannels(t *testing.T) {
	c := newContext(t)
	dir := ipcDir(t)
	push := open(t, c, Options{Name: "push", Type: zmq.PUSH, Direction: SendOnly, Bind: []string{ipc(dir, "q")}, QueueLen: 2})
	pull := open(t, c, Options{Name: "pull", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{ipc(dir, "r")}})
	if push.Name() != "push" {
		t.Errorf("Name() = %q", push.Name())
	}
	if !push.TrySend(msg("1")) || !push.TrySend(msg("2")) {
		t.Fatal("TrySend refused below QueueLen")
	}
	if push.TrySend(msg("3")) {
		t.Fatal("TrySend accepted beyond QueueLen")
	}
	if pull.Send() != nil || pull.TrySend(msg("x")) {
		t.Fatal("receive-only socket accepted a send")
	}
	if push.Subscribe("x") || push.Unsubscribe("x") {
		t.Fatal("Subscribe accepted without Control")
	}
	// Run owns closing; run and stop both so the context can close.
	start(t, push)
	start(t, pull)
}

func TestOpenErrors(t *testing.T) {
	dir := ipcDir(t)
	c := newContext(t)
	busy := start(t, open(t, c, Options{Name: "busy", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{"tcp://127.0.0.1:*"}}))
	inUse, err := busy.s.sock.GetLastEndpoint() // read by the test while the owner polls: a plain getsockopt
	if err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, strings.Repeat("x", 108-len(dir)-1)) // 108 bytes
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"address in use", Options{Type: zmq.PUSH, Direction: SendOnly, Bind: []string{inUse}}, "bind " + inUse},
		{"bad transport", Options{Type: zmq.PUSH, Direction: SendOnly, Bind: []string{"nope://x"}}, "bind nope://x"},
		{"bad connect", Options{Type: zmq.PUSH, Direction: SendOnly, Bind: []string{ipc(dir, "ok")}, Connect: []string{"tcp://"}}, "connect tcp://"},
		{"ipc bind path of 108 bytes", Options{Type: zmq.PULL, Direction: RecvOnly, Bind: []string{"ipc://" + long}}, "107 bytes"},
		{"ipc connect path of 108 bytes", Options{Type: zmq.PUSH, Direction: SendOnly, Connect: []string{"ipc://" + long}}, "connect ipc://"},
		{"identity too long", Options{Type: zmq.DEALER, Direction: TwoWay, Identity: strings.Repeat("i", 256)}, "set identity"},
		{"subscribe on a PUSH", Options{Type: zmq.PUSH, Direction: SendOnly, Subscribe: []string{"x"}}, "subscribe"},
		{"no direction", Options{Type: zmq.PUSH}, "invalid direction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A context of its own: closing it returns only if Open left
			// nothing open.
			c2, err := NewContext()
			if err != nil {
				t.Fatal(err)
			}
			tt.opts.Name = "under-test"
			s, err := c2.Open(tt.opts, zerologNop)
			if err == nil || s != nil {
				t.Fatalf("Open succeeded; want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "under-test: ") {
				t.Errorf("error %q: want the socket name and %q", err, tt.want)
			}
			closeContext(t, c2)
		})
	}
	if _, err := os.Stat(long); !os.IsNotExist(err) {
		t.Errorf("rejected ipc path exists: %v", err)
	}
}

func TestIPCPaths(t *testing.T) {
	c := newContext(t)
	dir := ipcDir(t)
	t.Run("107 bytes is the longest accepted", func(t *testing.T) {
		path := filepath.Join(dir, strings.Repeat("y", 107-len(dir)-1))
		if len(path) != 107 {
			t.Fatalf("path is %d bytes", len(path))
		}
		start(t, open(t, c, Options{Name: "max", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{"ipc://" + path}}))
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("bound path: %v", err)
		}
	})
	t.Run("missing directories are created and the mode applied", func(t *testing.T) {
		path := filepath.Join(dir, "a", "b", "s")
		start(t, open(t, c, Options{Name: "mode", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{"ipc://" + path}, IPCFileMode: 0o600}))
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("IPCFileMode is ignored for tcp", func(t *testing.T) {
		start(t, open(t, c, Options{Name: "tcp", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{"tcp://127.0.0.1:*"}, IPCFileMode: 0o600}))
	})
	t.Run("only the first bind spec is bound", func(t *testing.T) {
		first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
		start(t, open(t, c, Options{Name: "two", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{"ipc://" + first, "ipc://" + second}}))
		if _, err := os.Stat(first); err != nil {
			t.Errorf("first: %v", err)
		}
		if _, err := os.Stat(second); !os.IsNotExist(err) {
			t.Errorf("second spec was bound too: %v", err)
		}
	})
}

func TestControlSubscribe(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "ctl")
	rs := startAll(t, c,
		Options{Name: "xpub", Type: zmq.XPUB, Direction: TwoWay, Bind: []string{ep}},
		Options{Name: "sub", Type: zmq.SUB, Direction: RecvOnly, Connect: []string{ep}, Subscribe: []string{"init "}, Control: true},
	)
	xpub, sub := rs[0].s, rs[1].s
	expect := func(want string) {
		t.Helper()
		if got := recvWithin(t, xpub.Recv(), waitFor); !equalMsg(got, msg(want)) {
			t.Fatalf("xpub received %q, want %q", got, want)
		}
	}
	expect("\x01init ")
	if !sub.Subscribe("t1 ") {
		t.Fatal("Subscribe refused")
	}
	expect("\x01t1 ")
	sendWithin(t, xpub.Send(), msg("t1 hello"), waitFor)
	if got := recvWithin(t, sub.Recv(), waitFor); !equalMsg(got, msg("t1 hello")) {
		t.Fatalf("sub received %q", got)
	}
	if !sub.Unsubscribe("t1 ") {
		t.Fatal("Unsubscribe refused")
	}
	expect("\x00t1 ")
	// The XPUB has applied the unsubscription before it let us read it.
	sendWithin(t, xpub.Send(), msg("t1 gone"), waitFor)
	sendWithin(t, xpub.Send(), msg("init still"), waitFor)
	if got := recvWithin(t, sub.Recv(), waitFor); !equalMsg(got, msg("init still")) {
		t.Fatalf("sub received %q after unsubscribing", got)
	}
}

func drainClosed(t *testing.T, ch <-chan Message) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("recv channel not closed after Run returned")
		}
	}
}

func TestShutdown(t *testing.T) {
	const limit = 500 * time.Millisecond
	dir := ipcDir(t)
	n := 0
	ep := func() string { n++; return ipc(dir, fmt.Sprintf("s%d", n)) }
	// fill starts a PUSH that sends k messages to spec.
	fill := func(t *testing.T, c *Context, spec string, k int) {
		p := start(t, open(t, c, Options{Name: "filler", Type: zmq.PUSH, Direction: SendOnly, Connect: []string{spec}}))
		for i := range k {
			sendWithin(t, p.s.Send(), msg(fmt.Sprint(i)), waitFor)
		}
	}
	tests := []struct {
		name  string
		opts  func() Options
		setup func(t *testing.T, c *Context, r *running) // brings the owner into the state under test
		drops bool
	}{
		{name: "send-only idle", opts: func() Options {
			return Options{Type: zmq.PUSH, Direction: SendOnly, Bind: []string{ep()}}
		}, setup: func(t *testing.T, c *Context, r *running) {
			pull := start(t, open(t, c, Options{Name: "peer", Type: zmq.PULL, Direction: RecvOnly, Connect: r.s.opts.Bind}))
			sendWithin(t, r.s.Send(), msg("one"), waitFor)
			recvWithin(t, pull.s.Recv(), waitFor)
		}},
		{name: "send-only waiting for room", drops: true, opts: func() Options {
			return Options{Type: zmq.PUSH, Direction: SendOnly, Bind: []string{ep()}, SendTimeout: time.Hour}
		}, setup: func(t *testing.T, c *Context, r *running) {
			sendWithin(t, r.s.Send(), msg("stuck"), waitFor)
			eventually(t, waitFor, func() error {
				if len(r.s.send) != 0 {
					return errNotYet
				}
				return nil
			})
		}},
		{name: "ROUTER waiting for an unknown peer", drops: true, opts: func() Options {
			return Options{Type: zmq.ROUTER, Direction: SendOnly, RouterMandatory: true, Bind: []string{ep()}, SendTimeout: time.Hour}
		}, setup: func(t *testing.T, c *Context, r *running) {
			sendWithin(t, r.s.Send(), msg("ghost", "", "x"), waitFor)
			eventually(t, waitFor, func() error {
				if len(r.s.send) != 0 {
					return errNotYet
				}
				return nil
			})
		}},
		{name: "recv-only idle", opts: func() Options {
			return Options{Type: zmq.PULL, Direction: RecvOnly, Bind: []string{ep()}}
		}, setup: func(t *testing.T, c *Context, r *running) {
			fill(t, c, r.s.opts.Bind[0], 1)
			recvWithin(t, r.s.Recv(), waitFor) // the owner is back in its PollInterval wait
		}},
		{name: "recv-only with a full recv channel", opts: func() Options {
			return Options{Type: zmq.PULL, Direction: RecvOnly, Bind: []string{ep()}, QueueLen: 1}
		}, setup: func(t *testing.T, c *Context, r *running) {
			fill(t, c, r.s.opts.Bind[0], 10)
			eventually(t, waitFor, func() error {
				if len(r.s.recv) != 1 {
					return errNotYet
				}
				return nil
			})
		}},
		{name: "recv-only SUB with Control", opts: func() Options {
			return Options{Type: zmq.SUB, Direction: RecvOnly, Bind: []string{ep()}, Control: true}
		}, setup: func(t *testing.T, c *Context, r *running) {
			r.s.Subscribe("x")
			eventually(t, waitFor, func() error { // the owner took it
				if len(r.s.ctrl) != 0 {
					return errNotYet
				}
				return nil
			})
		}},
		{name: "two-way idle", opts: func() Options {
			return Options{Type: zmq.DEALER, Direction: TwoWay, Bind: []string{ep()}}
		}, setup: func(t *testing.T, c *Context, r *running) {
			peer := start(t, open(t, c, Options{Name: "peer", Type: zmq.DEALER, Direction: TwoWay, Connect: r.s.opts.Bind}))
			sendWithin(t, peer.s.Send(), msg("", "ping"), waitFor)
			recvWithin(t, r.s.Recv(), waitFor)
			sendWithin(t, r.s.Send(), msg("", "pong"), waitFor)
			recvWithin(t, peer.s.Recv(), waitFor)
		}},
		{name: "two-way with a full recv channel", opts: func() Options {
			return Options{Type: zmq.PULL, Direction: TwoWay, Bind: []string{ep()}, QueueLen: 1}
		}, setup: func(t *testing.T, c *Context, r *running) {
			fill(t, c, r.s.opts.Bind[0], 10)
			eventually(t, waitFor, func() error {
				if len(r.s.recv) != 1 {
					return errNotYet
				}
				return nil
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newContext(t) // closed after the owner and any filler stopped
			onDrop, drops := dropSink(4)
			o := tt.opts()
			o.Name, o.OnDrop = "under-test", onDrop
			r := start(t, open(t, c, o))
			if tt.setup != nil {
				tt.setup(t, c, r)
			}
			if took := r.stop(t); took > limit {
				t.Errorf("Run returned %v after cancel, want < %v", took, limit)
			}
			if r.s.recv != nil {
				drainClosed(t, r.s.Recv())
			}
			if tt.drops {
				select {
				case d := <-drops:
					if !errors.Is(d.err, ErrDropped) {
						t.Errorf("drop error %v does not wrap ErrDropped", d.err)
					}
				default:
					t.Error("the message being written at cancel was not reported to OnDrop")
				}
			}
		})
	}
}

// TestDrainOnCancel: what is queued when ctx ends is still written.
func TestDrainOnCancel(t *testing.T) {
	tests := []struct {
		name     string
		sender   Options
		receiver Options
		envelope []string // frames the receiver sees before the payload
	}{
		{"send-only PUSH", Options{Type: zmq.PUSH, Direction: SendOnly},
			Options{Type: zmq.PULL, Direction: RecvOnly}, nil},
		{"two-way DEALER", Options{Type: zmq.DEALER, Direction: TwoWay, Identity: "d-1"},
			Options{Type: zmq.ROUTER, Direction: RecvOnly}, []string{"d-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newContext(t)
			ep := ipc(ipcDir(t), "drain")
			ro := tt.receiver
			ro.Name, ro.Bind = "receiver", []string{ep}
			recv := start(t, open(t, c, ro))
			so := tt.sender
			so.Name, so.Connect, so.QueueLen = "sender", []string{ep}, 64
			so.Linger = 2 * time.Second // libzmq keeps the drained messages this long
			onDrop, drops := dropSink(64)
			so.OnDrop = onDrop
			s := open(t, c, so)
			const n = 50
			for i := range n {
				if !s.TrySend(msg(fmt.Sprintf("final-%d", i))) {
					t.Fatal("queue full")
				}
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // ends before the loop ever runs: only drainOnce writes
			begin := time.Now()
			if err := s.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(begin); took > 500*time.Millisecond {
				t.Errorf("Run took %v with ctx already done", took)
			}
			for i := range n {
				want := msg(append(append([]string{}, tt.envelope...), fmt.Sprintf("final-%d", i))...)
				if got := recvWithin(t, recv.s.Recv(), waitFor); !equalMsg(got, want) {
					t.Fatalf("message %d: got %q, want %q", i, got, want)
				}
			}
			if len(drops) != 0 {
				t.Fatalf("drained message dropped: %v", (<-drops).err)
			}
		})
	}
}

func TestContextCloseAfterRuns(t *testing.T) {
	c, err := NewContext()
	if err != nil {
		t.Fatal(err)
	}
	dir := ipcDir(t)
	rs := []*running{
		start(t, open(t, c, Options{Name: "pull", Type: zmq.PULL, Direction: RecvOnly, Bind: []string{ipc(dir, "a")}})),
		start(t, open(t, c, Options{Name: "push", Type: zmq.PUSH, Direction: SendOnly, Connect: []string{ipc(dir, "a")}, Linger: 500 * time.Millisecond})),
		start(t, open(t, c, Options{Name: "pub", Type: zmq.PUB, Direction: SendOnly, Bind: []string{ipc(dir, "b")}, Linger: 500 * time.Millisecond})),
		start(t, open(t, c, Options{Name: "sub", Type: zmq.SUB, Direction: RecvOnly, Connect: []string{ipc(dir, "b")}, Control: true})),
		start(t, open(t, c, Options{Name: "router", Type: zmq.ROUTER, Direction: TwoWay, Bind: []string{ipc(dir, "c")}})),
		start(t, open(t, c, Options{Name: "dealer", Type: zmq.DEALER, Direction: TwoWay, Connect: []string{ipc(dir, "c")}})),
	}
	sendWithin(t, rs[1].s.Send(), msg("x"), waitFor)
	recvWithin(t, rs[0].s.Recv(), waitFor)
	for _, r := range rs {
		r.stop(t)
	}
	begin := time.Now()
	closeContext(t, c)
	if took := time.Since(begin); took > time.Second {
		t.Errorf("Context.Close took %v", took)
	}
}
