package broker

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/testutil"
)

func socket(t *testing.T, typ zmq.Type, connect string) *zmq.Socket {
	t.Helper()
	s, err := zmq.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRcvtimeo(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(connect); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBrokerForwards: subscriptions from two SUB peers reach an XPUB
// publisher upstream (once per channel), items reach only the subscribed
// peer, an unsubscription travels up when the last peer leaves, and the
// broker stops cleanly on cancel.
func TestBrokerForwards(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	xsub, xpub := "ipc://"+filepath.Join(dir, "in"), "ipc://"+filepath.Join(dir, "out")
	b, err := New(Config{XSub: []string{xsub}, XPub: []string{xpub}}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer cancel()

	pub := socket(t, zmq.XPUB, xsub)
	subA := socket(t, zmq.SUB, xpub)
	subB := socket(t, zmq.SUB, xpub)
	if err := subA.SetSubscribe("a"); err != nil {
		t.Fatal(err)
	}
	if got, err := pub.Recv(0); err != nil || got != "\x01a" {
		t.Fatalf("publisher got %q, %v; want \\x01a", got, err)
	}
	if err := subB.SetSubscribe("b"); err != nil {
		t.Fatal(err)
	}
	if got, err := pub.Recv(0); err != nil || got != "\x01b" {
		t.Fatalf("publisher got %q, %v; want \\x01b", got, err)
	}
	for _, ch := range []string{"a", "b"} {
		if _, err := pub.SendMessage(ch, "item-"+ch); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		s  *zmq.Socket
		ch string
	}{{subA, "a"}, {subB, "b"}} {
		m, err := c.s.RecvMessage(0)
		if err != nil || len(m) != 2 || m[0] != c.ch || m[1] != "item-"+c.ch {
			t.Fatalf("sub %s got %q, %v", c.ch, m, err)
		}
	}
	if err := subA.SetUnsubscribe("a"); err != nil {
		t.Fatal(err)
	}
	if got, err := pub.Recv(0); err != nil || got != "\x00a" {
		t.Fatalf("publisher got %q, %v; want \\x00a", got, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broker did not stop")
	}
}

func TestBrokerBadSpec(t *testing.T) {
	b, err := New(Config{XSub: []string{"tcp://127.0.0.1:notaport"}, XPub: []string{"inproc://x"}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Run(context.Background()); err == nil {
		t.Fatal("bad spec: no error")
	}
	if _, err := New(Config{}, zerolog.Nop()); err == nil {
		t.Fatal("no specs: no error")
	}
}
