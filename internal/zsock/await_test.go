package zsock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
)

// TestAwaitSubscriber: what a zhttp server sends to a peer it has not
// finished connecting to (its SUB binds later, as a connmgr starting after
// the handler) arrives, per topic in order, once the peer subscribes; a
// plain PUB lost it (the handler's first packets of a handed-off session).
func TestAwaitSubscriber(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "aw")
	pub := start(t, open(t, c, Options{Name: "xpub", Type: zmq.XPUB, Direction: SendOnly, AwaitSubscriber: true,
		Connect: []string{ep}, SndHWM: Unlimited})).s
	for _, m := range []string{"a 1", "b 1", "a 2"} {
		sendWithin(t, pub.Send(), msg(m), waitFor)
	}
	// Give the owner time to take them: without the hold it would write
	// them to no peer (passing does not depend on this wait).
	time.Sleep(100 * time.Millisecond)
	sub := start(t, open(t, c, Options{Name: "sub", Type: zmq.SUB, Direction: RecvOnly, Bind: []string{ep},
		Subscribe: []string{"a "}, Control: true})).s
	expect := func(want string) {
		t.Helper()
		if got := recvWithin(t, sub.Recv(), waitFor); !equalMsg(got, msg(want)) {
			t.Fatalf("received %q, want %q", got, want)
		}
	}
	expect("a 1")
	expect("a 2")
	sendWithin(t, pub.Send(), msg("a 3"), waitFor)
	expect("a 3")
	// "b 1" still waits for its topic.
	sendWithin(t, pub.Send(), msg("b 2"), waitFor)
	if !sub.Subscribe("b ") {
		t.Fatal("Subscribe refused")
	}
	expect("b 1")
	expect("b 2")
}

// TestAwaitSubscriberBounds: a held message is dropped (OnDrop,
// ErrNoSubscriber) after HoldTimeout, and the oldest when QueueLen wait.
func TestAwaitSubscriberBounds(t *testing.T) {
	c := newContext(t)
	dir := ipcDir(t)
	drops := make(chan Message, 8)
	onDrop := func(m Message, err error) {
		if !errors.Is(err, ErrNoSubscriber) || !errors.Is(err, ErrDropped) {
			t.Errorf("drop error %v", err)
		}
		drops <- m
	}
	logged := make(logLines, 16)
	so, err := c.Open(Options{Name: "expiring", Type: zmq.XPUB, Direction: SendOnly, AwaitSubscriber: true,
		Connect: []string{ipc(dir, "none1")}, HoldTimeout: 200 * time.Millisecond, OnDrop: onDrop}, zerolog.New(logged))
	if err != nil {
		t.Fatal(err)
	}
	expired := start(t, so).s
	begin := time.Now()
	sendWithin(t, expired.Send(), msg("x 1"), waitFor)
	if got := recvWithin(t, drops, waitFor); !equalMsg(got, msg("x 1")) {
		t.Fatalf("dropped %q", got)
	}
	if d := time.Since(begin); d < 200*time.Millisecond {
		t.Fatalf("dropped after %v, before the hold timeout", d)
	}
	logged.waitFor(t, `"level":"warn","socket":"expiring","expired":1,`)

	full := start(t, open(t, c, Options{Name: "full", Type: zmq.XPUB, Direction: SendOnly, AwaitSubscriber: true,
		Connect: []string{ipc(dir, "none2")}, QueueLen: 2, HoldTimeout: time.Minute, OnDrop: onDrop})).s
	for _, m := range []string{"x 1", "x 2", "x 3"} {
		sendWithin(t, full.Send(), msg(m), waitFor)
	}
	if got := recvWithin(t, drops, waitFor); !equalMsg(got, msg("x 1")) {
		t.Fatalf("dropped %q, want the oldest", got)
	}
}

func TestAwaitSubscriberNeedsXPUB(t *testing.T) {
	c := newContext(t)
	for _, o := range []Options{
		{Name: "pub", Type: zmq.PUB, Direction: SendOnly, AwaitSubscriber: true},
		{Name: "xpub", Type: zmq.XPUB, Direction: TwoWay, AwaitSubscriber: true},
	} {
		if s, err := c.Open(o, zerolog.Nop()); err == nil {
			s.sock.Close()
			t.Errorf("%s: opened", o.Name)
		}
	}
}

// TestAwaitSubscriberNoAlloc: a message whose subscriber is known costs
// no allocation beyond a PUB's (the handler publishes every stream item
// through this path).
func TestAwaitSubscriberNoAlloc(t *testing.T) {
	s := &Socket{opts: Options{QueueLen: 4}, topics: map[string]struct{}{"condure ": {}}, waitingKeys: map[string]int{}}
	m := msg("condure T12:2:id,1:x,}")
	if n := testing.AllocsPerRun(100, func() {
		if s.hold(context.Background(), m) {
			t.Fatal("held a subscribed message")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per message", n)
	}
}

// logLines is a log destination that hands each line to the test (lines
// beyond its capacity are dropped).
type logLines chan string

func (l logLines) Write(p []byte) (int, error) {
	select {
	case l <- string(p):
	default:
	}
	return len(p), nil
}

// waitFor reads lines until one contains want.
func (l logLines) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		select {
		case line := <-l:
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no log line with %s", want)
		}
	}
}
