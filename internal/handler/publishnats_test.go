package handler

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"tack/internal/testutil"
)

// natsPublisher connects a plain NATS client to srv.
func natsPublisher(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// natsSubs returns a function that waits until srv's clients hold n
// subscriptions.
func natsSubs(t *testing.T, srv *server.Server) func(n int) {
	return func(n int) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			if got := testutil.NATSSubjects(t, srv); len(got) != n {
				return fmt.Errorf("server has subscriptions %q, want %d", got, n)
			}
			return nil
		})
	}
}

func startNATSInput(t *testing.T, url string, eng engineAPI, chans *channelSet, st *statsCollector) *natsInput {
	t.Helper()
	in, err := newNATSInput(InputsConfig{NATSURL: url, NATSSubjectPrefix: DefaultNATSSubjectPrefix}, eng, chans, st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "nats", in.Run)
	return in
}

// TestNATSInputSubscriptions: the input subscribes to tack.<channel> for
// exactly the channels with listeners, reads every payload format (the SUB
// frames and a bare publish-API JSON item), takes the channel from the
// subject, and drops garbage with a count.
func TestNATSInputSubscriptions(t *testing.T) {
	srv := testutil.NATSServer(t, 0)
	subs := natsSubs(t, srv)
	eng := &fakeEngine{}
	chans := newChannelSet()
	chans.Add("early")
	in := startNATSInput(t, srv.ClientURL(), eng, chans, nil)
	subs(1)
	chans.Add("chan.x")
	chans.Add("bad channel") // no valid subject: warned, not subscribed
	chans.Add("")
	subs(2)

	pub := natsPublisher(t, srv.ClientURL())
	for _, m := range [][2]string{
		{"tack.early", `{"channel":"other","formats":{"http-stream":{"content":"1"}}}`},
		{"tack.chan.x", `J{"formats":{"http-stream":{"content":"2"}}}`},
		{"tack.early", "garbage"},
		{"tack.chan.x", "T" + tnetItem},
		{"tack.nobody", `{"formats":{"http-stream":{"content":"unheard"}}}`},
		{"tack.early", tnetItem},
	} {
		if err := pub.Publish(m[0], []byte(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	items := waitItems(t, eng, 4)
	want := [][2]string{{"early", "1"}, {"chan.x", "2"}, {"chan.x", "x"}, {"early", "x"}}
	if len(items) != len(want) {
		t.Fatalf("items = %+v", items)
	}
	// Two subjects: ordered within each, not across.
	got := map[string][]string{}
	for _, it := range items {
		got[it.Channel] = append(got[it.Channel], streamContent(it))
	}
	if fmt.Sprint(got["early"]) != "[1 x]" || fmt.Sprint(got["chan.x"]) != "[2 x]" {
		t.Fatalf("items by channel = %v", got)
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := in.Dropped(); n != 1 {
			return fmt.Errorf("dropped %d, want 1 (garbage)", n)
		}
		return nil
	})

	chans.Remove("early")
	chans.Remove("chan.x")
	subs(0)
}

// TestNATSInputReconnect: a NATS server that goes away and comes back on
// the same port gets the input's subscriptions again, and items flow.
func TestNATSInputReconnect(t *testing.T) {
	srv := testutil.NATSServer(t, 0)
	subs := natsSubs(t, srv)
	_, portS, _ := net.SplitHostPort(srv.Addr().String())
	port, _ := strconv.Atoi(portS)
	url := srv.ClientURL()
	eng := &fakeEngine{}
	chans := newChannelSet()
	chans.Add("a")
	startNATSInput(t, url, eng, chans, nil)
	subs(1)

	srv.Shutdown()
	srv.WaitForShutdown()
	chans.Add("b") // while the server is away
	srv2 := testutil.NATSServer(t, port)
	natsSubs(t, srv2)(2)
	pub := natsPublisher(t, url)
	for _, ch := range []string{"a", "b"} {
		if err := pub.Publish("tack."+ch, []byte(tnetItem)); err != nil {
			t.Fatal(err)
		}
	}
	items := waitItems(t, eng, 2)
	if len(items) != 2 {
		t.Fatalf("items = %+v", items)
	}
}

// TestNATSInputStartsWithoutServer: a handler whose NATS server is not up
// yet starts, and subscribes once the server appears.
func TestNATSInputStartsWithoutServer(t *testing.T) {
	port := testutil.FreePort(t)
	eng := &fakeEngine{}
	chans := newChannelSet()
	chans.Add("a")
	startNATSInput(t, fmt.Sprintf("nats://127.0.0.1:%d", port), eng, chans, nil)
	srv := testutil.NATSServer(t, port)
	natsSubs(t, srv)(1)
}

// TestNATSInputFlood: while the engine takes nothing, a flood beyond the
// bounded queue is dropped, counted (input and message_dropped) and the
// queue stays at its bound; then items flow again.
func TestNATSInputFlood(t *testing.T) {
	srv := testutil.NATSServer(t, 0)
	subs := natsSubs(t, srv)
	eng := &fakeEngine{gate: make(chan struct{})}
	chans := newChannelSet()
	chans.Add("a")
	cfg := Config{PrometheusPort: "1"}
	st := newStatsCollector(&cfg, testLogger(t))
	in := startNATSInput(t, srv.ClientURL(), eng, chans, st)
	subs(1)
	pub := natsPublisher(t, srv.ClientURL())
	const n = 5 * natsQueueLen
	for range n {
		if err := pub.Publish("tack.a", []byte(tnetItem)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if d := in.Dropped(); d < n-natsQueueLen-2 {
			return fmt.Errorf("dropped %d, want at least %d", d, n-natsQueueLen-2)
		}
		return nil
	})
	if q := len(in.msgs); q > natsQueueLen {
		t.Errorf("queue holds %d, bound %d", q, natsQueueLen)
	}
	checkCounted := func() {
		t.Helper()
		st.mu.Lock()
		counted := st.totals.deliveryDropped
		st.mu.Unlock()
		if uint64(counted) != in.Dropped() {
			t.Errorf("message_dropped %d, input dropped %d", counted, in.Dropped())
		}
	}
	checkCounted()
	close(eng.gate)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := uint64(len(eng.items())) + in.Dropped(); got != n {
			return fmt.Errorf("delivered+dropped = %d, want %d", got, n)
		}
		return nil
	})
	// The item held up in the engine during the drops does not count
	// them again when it goes through.
	checkCounted()
}

func TestNATSRedactURL(t *testing.T) {
	got := redactNATSURL("nats://u:secret@a:4222,nats://b:4222")
	if got != "nats://u:xxxxx@a:4222,nats://b:4222" {
		t.Errorf("redacted %q", got)
	}
}
