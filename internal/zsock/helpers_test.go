package zsock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// waitFor bounds every wait in these tests; nothing sleeps a fixed time.
const waitFor = 5 * time.Second

// newContext returns a libzmq context that is closed at cleanup, after the
// sockets' cleanups (registered later) have stopped their owners; the
// cleanup fails the test if Close does not return promptly.
func newContext(t testing.TB) *Context {
	t.Helper()
	c, err := NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeContext(t, c) })
	return c
}

func closeContext(t testing.TB, c *Context) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("context close: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("context close did not return within %v (a socket left open?)", waitFor)
	}
}

// ipcDir returns a short temp dir for ipc endpoints (107-byte limit).
func ipcDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func ipc(dir, name string) string { return "ipc://" + filepath.Join(dir, name) }

func open(t testing.TB, c *Context, o Options) *Socket {
	t.Helper()
	s, err := c.Open(o, zerolog.Nop())
	if err != nil {
		t.Fatalf("open %s: %v", o.Name, err)
	}
	return s
}

// running is a socket whose owner loop runs until stop (or cleanup).
type running struct {
	s      *Socket
	cancel context.CancelFunc
	done   chan error
}

// start runs s.Run in a goroutine; cleanup stops it and waits.
func start(t testing.TB, s *Socket) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the owner and waits for Run; it returns how long Run took
// to return. Safe to call twice.
func (r *running) stop(t testing.TB) time.Duration {
	t.Helper()
	if r.done == nil {
		return 0
	}
	begin := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("%s: Run: %v", r.s.Name(), err)
		}
	case <-time.After(waitFor):
		t.Fatalf("%s: Run did not return within %v of cancel", r.s.Name(), waitFor)
	}
	r.done = nil
	return time.Since(begin)
}

// startAll opens and runs every option set, in order.
func startAll(t testing.TB, c *Context, opts ...Options) []*running {
	t.Helper()
	out := make([]*running, len(opts))
	for i, o := range opts {
		out[i] = start(t, open(t, c, o))
	}
	return out
}

func recvWithin(t testing.TB, ch <-chan Message, d time.Duration) Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("recv channel closed")
		}
		return m
	case <-time.After(d):
		t.Fatalf("nothing received within %v", d)
	}
	return nil
}

func sendWithin(t testing.TB, ch chan<- Message, m Message, d time.Duration) {
	t.Helper()
	select {
	case ch <- m:
	case <-time.After(d):
		t.Fatalf("send channel full for %v", d)
	}
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(time.Millisecond) // poll interval, not a wait for an event
	}
}

var zerologNop = zerolog.Nop()

var errNotYet = errors.New("not yet")

type drop struct {
	m   Message
	err error
	at  time.Time
}

// dropSink returns an OnDrop hook that never blocks and the channel it feeds.
func dropSink(n int) (func(Message, error), chan drop) {
	ch := make(chan drop, n)
	return func(m Message, err error) {
		select {
		case ch <- drop{m, err, time.Now()}:
		default:
		}
	}, ch
}
