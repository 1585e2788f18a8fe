package zsock

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// rawSub connects a SUB socket owned by the test to ep with a small
// RCVHWM and subscribes to topic; it is closed before the context.
func rawSub(t *testing.T, c *Context, ep, topic string) *zmq.Socket {
	t.Helper()
	sub, err := c.zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	for _, err := range []error{sub.SetLinger(0), sub.SetRcvhwm(10), sub.SetSubscribe(topic), sub.Connect(ep)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return sub
}

// recvRaw reads one message from sub within waitFor.
func recvRaw(t *testing.T, sub *zmq.Socket) Message {
	t.Helper()
	if err := sub.SetRcvtimeo(waitFor); err != nil {
		t.Fatal(err)
	}
	m, err := sub.RecvMessageBytes(0)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return m
}

// TestNoDropWaitsForSlowSubscriber: a burst larger than the whole path to
// a subscriber (SNDHWM, the kernel's socket buffers, its RCVHWM) while it
// reads nothing arrives complete and in order once it reads: with NoDrop
// the owner holds the message the pipe has no room for and retries. A
// plain PUB or XPUB drops what does not fit, unseen (a zhttp-client's
// replies to a proxy busy with a burst of opens: "bad seq").
func TestNoDropWaitsForSlowSubscriber(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "nodrop")
	onDrop, drops := dropSink(16)
	pub := start(t, open(t, c, Options{Name: "xpub", Type: zmq.XPUB, Direction: SendOnly, AwaitSubscriber: true,
		NoDrop: true, Bind: []string{ep}, SndHWM: 10, SendTimeout: time.Minute, QueueLen: 64, OnDrop: onDrop})).s
	sub := rawSub(t, c, ep, "a ")
	sendWithin(t, pub.Send(), msg("a start"), waitFor)
	if got := recvRaw(t, sub); !equalMsg(got, msg("a start")) {
		t.Fatalf("received %q", got)
	}

	const n = 3000 // × 1 KiB: well beyond the unix socket buffers
	pad := bytes.Repeat([]byte("x"), 1024)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := range n {
			select {
			case pub.Send() <- Message{fmt.Appendf(nil, "a %d ", i), pad}:
			case <-time.After(waitFor):
				t.Errorf("message %d not taken", i)
				return
			}
		}
	}()
	// The subscriber reads nothing until the owner is stuck on a full
	// pipe with the Go queue full behind it.
	deadline := time.Now().Add(waitFor)
	for len(pub.Send()) < cap(pub.Send()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for i := range n {
		got := recvRaw(t, sub)
		if want := fmt.Sprintf("a %d ", i); len(got) != 2 || string(got[0]) != want {
			t.Fatalf("message %d: got %q, want %q (earlier ones lost)", i, got[0], want)
		}
	}
	<-sent
	select {
	case d := <-drops:
		t.Fatalf("dropped %q: %v", d.m[0], d.err)
	default:
	}
}

// TestNoDropStalledSubscriber: a subscriber that never reads costs one
// SendTimeout; the message that timed out goes to OnDrop, and so do the
// following ones to the same topic, each tried once without waiting,
// until one gets through.
func TestNoDropStalledSubscriber(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "stalled")
	onDrop, drops := dropSink(4096)
	const timeout = 300 * time.Millisecond
	pub := start(t, open(t, c, Options{Name: "xpub", Type: zmq.XPUB, Direction: SendOnly, AwaitSubscriber: true,
		NoDrop: true, Bind: []string{ep}, SndHWM: 10, SendTimeout: timeout, QueueLen: 64, OnDrop: onDrop})).s
	sub := rawSub(t, c, ep, "a ")
	sendWithin(t, pub.Send(), msg("a start"), waitFor)
	if got := recvRaw(t, sub); !equalMsg(got, msg("a start")) {
		t.Fatalf("received %q", got)
	}
	pad := bytes.Repeat([]byte("x"), 1024)
	// Fill the path until a message is dropped after SendTimeout.
	var first drop
	for i := 0; ; i++ {
		sendWithin(t, pub.Send(), Message{fmt.Appendf(nil, "a %d ", i), pad}, waitFor)
		select {
		case first = <-drops:
		default:
			if i < 100000 {
				continue
			}
			t.Fatal("no drop")
		}
		break
	}
	if !errors.Is(first.err, ErrDropped) {
		t.Fatalf("drop error %v", first.err)
	}
	// The topic is stalled: 200 more cost far less than a timeout each.
	begin := time.Now()
	for i := range 200 {
		sendWithin(t, pub.Send(), Message{fmt.Appendf(nil, "a more %d ", i), pad}, waitFor)
	}
	for range 200 {
		select {
		case <-drops:
		case <-time.After(waitFor):
			t.Fatal("a message to the stalled topic was not dropped")
		}
	}
	if d := time.Since(begin); d > 20*timeout {
		t.Fatalf("200 messages to a stalled topic took %v", d)
	}
	// Once the subscriber reads, messages get through again.
	got := make(chan struct{})
	go func() {
		defer close(got)
		sub.SetRcvtimeo(waitFor)
		for {
			m, err := sub.RecvMessageBytes(0)
			if err != nil {
				t.Errorf("receive: %v", err)
				return
			}
			if bytes.HasPrefix(m[0], []byte("a again")) {
				return
			}
		}
	}()
	for i := 0; ; i++ {
		sendWithin(t, pub.Send(), msg(fmt.Sprintf("a again %d", i)), waitFor)
		select {
		case <-got:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if i > 100 {
			t.Fatal("nothing got through after the subscriber read")
		}
	}
}
