package e2e

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"tack/internal/testutil"
)

// The NATS publish input as a user meets it (README, "Scaling"): the NATS
// server goes away and comes back, and a publisher floods it.

// natsPublish returns a publish function on a new NATS connection to url
// (flushed, so the server has each message when it returns).
func natsPublish(t *testing.T, url string) func(channel, content string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return func(channel, content string) {
		t.Helper()
		if err := nc.Publish("tack."+channel, []byte(streamItem(channel, content))); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// natsPort is the port srv listens on.
func natsPort(t *testing.T, srv *server.Server) int {
	t.Helper()
	_, p, err := net.SplitHostPort(srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// waitNATSSubjects waits until srv's clients hold exactly want (one entry
// per subscription, any order).
func waitNATSSubjects(t *testing.T, srv *server.Server, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	testutil.Eventually(t, 20*time.Second, func() error {
		got := testutil.NATSSubjects(t, srv)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("nats subscriptions %q, want %q", got, want)
		}
		return nil
	})
}

// expectQuiet checks that none of hs yields another line within d.
func expectQuiet(t *testing.T, d time.Duration, hs ...*heldStream) {
	t.Helper()
	time.Sleep(d)
	for k, h := range hs {
		select {
		case l := <-h.lines:
			t.Fatalf("client %d got extra %q", k, l)
		default:
		}
	}
}

// TestE2ENATSReconnect: two instances hold clients on one channel through
// NATS; the NATS server stops and comes back on the same port. Each
// handler logs the disconnect and the reconnect with its subscriptions
// restored, and one publish afterwards reaches every client exactly once —
// including a client that subscribed to a new channel while NATS was down,
// while one that left meanwhile leaves no subscription behind.
func TestE2ENATSReconnect(t *testing.T) {
	be := scaleBackend(t)
	srv := testutil.NATSServer(t, 0)
	port, url := natsPort(t, srv), srv.ClientURL()
	// Handler debug logs: the input's subscribe and unsubscribe lines.
	h, r := map[string]string{"push_in_nats_url": url}, map[string]string{"log_level": "2,pushpin-handler:3"}
	inst := []*suite{startInstanceWith(t, 1, be, h, r), startInstanceWith(t, 2, be, h, r)}
	f := openFleet(t, inst, natsPublish(t, url))
	// A client on a channel of its own, which leaves while NATS is down.
	_, closeGone := openStream(t, inst[1].url("/stream?ch=gone"), "[open]\n")
	t.Cleanup(closeGone)
	waitNATSSubjects(t, srv, []string{"tack." + scaleChannel, "tack." + scaleChannel,
		"tack.probe-0", "tack.probe-1", "tack.gone"})
	for _, s := range inst {
		s.runner.WaitFor(t, `\[handler\] nats connected.*input=nats.*server=nats://127\.0\.0\.1:`+fmt.Sprint(port), 10*time.Second)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	for _, s := range inst {
		s.runner.WaitFor(t, `\[WARN\].*\[handler\] nats disconnected, reconnecting.*input=nats`, 15*time.Second)
	}
	// While NATS is down: a new client on a new channel, one leaves.
	brLate, closeLate := openStream(t, inst[0].url("/stream?ch=late"), "[open]\n")
	t.Cleanup(closeLate)
	late := watchStream(brLate)
	closeGone()
	inst[0].runner.WaitFor(t, `\[handler\] subscribed channel=late .*input=nats subject=tack\.late`, 15*time.Second)
	inst[1].runner.WaitFor(t, `\[handler\] unsubscribed channel=gone .*input=nats`, 15*time.Second)

	srv2 := testutil.NATSServer(t, port)
	// Every subscription is back (the probes' too), "late" is new, "gone"
	// is not restored.
	waitNATSSubjects(t, srv2, []string{"tack." + scaleChannel, "tack." + scaleChannel,
		"tack.probe-0", "tack.probe-1", "tack.late"})
	inst[0].runner.WaitFor(t, `\[handler\] nats reconnected, subscriptions restored.*input=nats.*server=nats://127\.0\.0\.1:`+
		fmt.Sprint(port)+`.*subscriptions=3`, 10*time.Second)
	inst[1].runner.WaitFor(t, `\[handler\] nats reconnected, subscriptions restored.*input=nats.*server=nats://127\.0\.0\.1:`+
		fmt.Sprint(port)+`.*subscriptions=2`, 10*time.Second)

	pub := natsPublish(t, url)
	pub(scaleChannel, "after\n")
	pub("late", "late\n")
	f.expectNext(t, []int{0, 1}, "after\n")
	select {
	case l := <-late.lines:
		if l != "late\n" {
			t.Fatalf("late client got %q, want %q", l, "late\n")
		}
	case e := <-late.end:
		t.Fatalf("late client ended (%v)", e.err)
	case <-time.After(15 * time.Second):
		t.Fatal("late client never received the publish after the reconnect")
	}
	expectQuiet(t, 500*time.Millisecond, append(slices.Concat(f.clients...), late)...)
}
