package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
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

// slowStream is a held stream read through a small socket buffer, one
// line per slowLineDelay while slow is set, and at full speed after.
type slowStream struct {
	slow  atomic.Bool
	warm  chan struct{} // closed at the first "warm\n" line
	items atomic.Int64  // "item ..." lines
	err   atomic.Value  // the read error that ended the stream
}

const slowLineDelay = 5 * time.Millisecond // 1 KiB lines: 200 KiB/s

func openSlowStream(t *testing.T, url string) *slowStream {
	t.Helper()
	d := &net.Dialer{}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			err = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return conn, err
	}}}
	br, closeBody := openStreamWith(t, c, url, "[open]\n")
	t.Cleanup(closeBody)
	ss := &slowStream{warm: make(chan struct{})}
	ss.slow.Store(true)
	go func() {
		warmed := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				ss.err.Store(err)
				return
			}
			switch {
			case strings.HasPrefix(l, "item "):
				ss.items.Add(1)
			case l == "warm\n" && !warmed:
				warmed = true
				close(ss.warm)
			}
			if ss.slow.Load() {
				time.Sleep(slowLineDelay)
			}
		}
	}()
	return ss
}

// floodItem is item k: about 1 KiB with the newline.
func floodItem(k int) string {
	return fmt.Sprintf("item %d %s\n", k, strings.Repeat("x", 1000))
}

// handlerMem reads a memory figure of the handler in KiB: VmRSS (resident
// now) or VmHWM (peak resident).
func handlerMem(t *testing.T, s *suite, field string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "run", "*handler*.pid"))
	if len(files) != 1 {
		t.Fatalf("handler pid files %q", files)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pidOf(t, filepath.Base(files[0]))))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + field + `:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no %s in %q", field, b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// floodGrowth bounds how much the handler's peak memory may exceed its
// memory before a flood of floodItems items of 1 KiB: what the bounded
// queues hold, well below the flood's size.
const (
	floodItems  = 60000
	floodGrowth = 40 << 10 // KiB
)

// flood publishes floodItems items to a channel with publish (one message
// each, as fast as it goes) while its only client reads slowly, so the
// engine holds the inputs back and the input's bounded queue overflows.
// Every item is then either delivered or counted in Prometheus
// message_dropped, the drops are warned about (warnRE), and the handler's
// memory stays within floodGrowth of where it was.
func flood(t *testing.T, s *suite, prom, channel string, publish func(content string), warnRE string) {
	t.Helper()
	ss := openSlowStream(t, s.url("/stream?ch="+channel))
	deadline := time.Now().Add(20 * time.Second)
	for warmed := false; !warmed; {
		publish("warm\n")
		select {
		case <-ss.warm:
			warmed = true
		case <-time.After(300 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("warm-up item never arrived: not subscribed")
			}
		}
	}
	base := testutil.Prometheus(t, prom, "message_dropped")
	rss := handlerMem(t, s, "VmRSS")
	const n = floodItems
	for k := range n {
		publish(floodItem(k))
	}
	s.runner.WaitFor(t, warnRE, 20*time.Second)
	ss.slow.Store(false)
	var got, dropped int64
	testutil.Eventually(t, 60*time.Second, func() error {
		got, dropped = ss.items.Load(), testutil.Prometheus(t, prom, "message_dropped")-base
		if got+dropped != int64(n) {
			return fmt.Errorf("delivered %d + message_dropped %d != %d published (stream error %v)", got, dropped, n, ss.err.Load())
		}
		return nil
	})
	// and stays so: no late item, no late count
	time.Sleep(1500 * time.Millisecond)
	if g, d := ss.items.Load(), testutil.Prometheus(t, prom, "message_dropped")-base; g != got || d != dropped {
		t.Fatalf("after settling: delivered %d (was %d), message_dropped %d (was %d)", g, got, d, dropped)
	}
	if dropped == 0 || got == 0 {
		t.Fatalf("delivered %d, dropped %d: the flood did not overflow the input", got, dropped)
	}
	peak := handlerMem(t, s, "VmHWM")
	t.Logf("%s: %d items of 1 KiB: %d delivered, %d dropped; handler RSS %d KiB before, peak %d KiB",
		channel, n, got, dropped, rss, peak)
	if peak-rss > floodGrowth {
		t.Errorf("handler memory grew from %d KiB to a peak of %d KiB during a flood of %d KiB: not bounded by the queues",
			rss, peak, n)
	}
}

// TestE2EPublishFloodDrops: a publisher floods the NATS input, then the
// SUB input, faster than the channel's client reads. The engine holds the
// inputs back, their bounded queues overflow, and every item is either
// delivered or counted in the handler's Prometheus message_dropped; each
// input warns about its drops; the handler's memory stays flat.
func TestE2EPublishFloodDrops(t *testing.T) {
	be := scaleBackend(t)
	srv := testutil.NATSServer(t, 0)
	promPort := testutil.FreePort(t)
	subSpec := "ipc://" + filepath.Join(testutil.ShortTempDir(t), "sub")
	h := map[string]string{"push_in_nats_url": srv.ClientURL(), "push_in_sub_specs": subSpec,
		"prometheus_port": fmt.Sprintf("127.0.0.1:%d", promPort)}
	for k, v := range unlimited {
		h[k] = v
	}
	s := startInstance(t, 1, be, h)
	prom := fmt.Sprintf("http://127.0.0.1:%d/metrics", promPort)

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	flood(t, s, prom, "flood-nats", func(content string) {
		if err := nc.Publish("tack.flood-nats", []byte(streamItem("flood-nats", content))); err != nil {
			t.Fatal(err)
		}
		if content == "warm\n" {
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}, `\[WARN\].*\[handler\] nats input queue full, messages dropped .*dropped=\d+ dropped_total=\d+ input=nats subject=tack\.flood-nats`)

	// A PUB that never drops itself (no send HWM), so that every item it
	// sends reaches the SUB input. It sends at most 10,000 items a second,
	// 50 times what the client reads: the SUB input drains its socket
	// faster than that even on a loaded machine, so the input's bounded
	// queue does the dropping. (A publisher faster than the input's reading
	// fills libzmq's receive queue first: Pushpin's HWM of 101,000
	// messages, memory that grows with the message size.)
	pub := newXPUB(t)
	if err := pub.SetSndhwm(0); err != nil {
		t.Fatal(err)
	}
	if err := pub.Connect(subSpec); err != nil {
		t.Fatal(err)
	}
	sent := 0
	flood(t, s, prom, "flood-sub", func(content string) {
		if _, err := pub.SendMessage("flood-sub", "J"+streamItem("flood-sub", content)); err != nil {
			t.Fatal(err)
		}
		if sent++; sent%100 == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}, `\[WARN\].*\[handler\] publishers outrun the clients: SUB item dropped .*channel=flood-sub`)
}
