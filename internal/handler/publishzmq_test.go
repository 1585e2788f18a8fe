package handler

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/grip"
	"tack/internal/testutil"
	"tack/pkg/tnetstring"
)

// testSocket opens a raw libzmq socket for the test goroutine (the test is
// its only user) and closes it at cleanup.
func testSocket(t *testing.T, typ zmq.Type) *zmq.Socket {
	t.Helper()
	s, err := zmq.NewSocket(typ)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRcvtimeo(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSndtimeo(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// waitItems polls until eng holds n items.
func waitItems(t *testing.T, eng *fakeEngine, n int) []grip.Item {
	t.Helper()
	var items []grip.Item
	testutil.Eventually(t, 5*time.Second, func() error {
		if items = eng.items(); len(items) < n {
			return fmt.Errorf("%d items published, want %d", len(items), n)
		}
		return nil
	})
	return items
}

func streamContent(it grip.Item) string {
	if it.HTTPStream == nil {
		return ""
	}
	return string(it.HTTPStream.Content)
}

const tnetItem = "61:7:channel,1:a,7:formats,33:11:http-stream,14:7:content,1:x,}}}"

func TestPullInput(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{}
	p, err := newPullInput(zctx, InputsConfig{PullSpec: "tcp://127.0.0.1:0"}, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "pull", p.Run)

	push := testSocket(t, zmq.PUSH)
	if err := push.Connect(p.Spec()); err != nil {
		t.Fatal(err)
	}
	good := []string{
		`J{"channel":"j","formats":{"http-stream":{"content":"1"}}}`,
		"T61:7:channel,1:t,7:formats,33:11:http-stream,14:7:content,1:2,}}}",
		"61:7:channel,1:b,7:formats,33:11:http-stream,14:7:content,1:3,}}}",
		`J{"channel":"bin","formats":{"http-stream":{"content-bin":"NA=="}}}`,
	}
	// Pushpin 1.36 crashes on some of these; every one must be dropped.
	bad := []string{
		"",
		"J",
		"T",
		"J{",
		`J{"channel":"a"`,
		"Jxx",
		"J[]",
		"J{}",
		`J{"channel":"a"}`,
		`J{"items":[]}`,
		`J{"channel":"a","formats":{"http-stream":{"action":"zz"}}}`,
		"T0:}",
		"T61:7:channel,1:a,7:formats,33:11:http-stream,14:7:content,1:x,}}",  // truncated
		"61:7:channel,1:a,7:formats,33:11:http-stream,14:7:content,1:x,}}}}", // trailing byte
		"999999999999:x",
		"5:abc",
		"\x00\xff\xfe",
		"T4:1:x,]",
		"T3:1:x,}",
		tnetItem[:30],
	}
	for i, m := range append(bad, good...) {
		if _, err := push.Send(m, 0); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	// a two-frame message is not a PULL item either
	if _, err := push.SendMessage("a", tnetItem); err != nil {
		t.Fatal(err)
	}
	if _, err := push.Send(tnetItem, 0); err != nil {
		t.Fatal(err)
	}
	items := waitItems(t, eng, len(good)+1)
	want := [][2]string{{"j", "1"}, {"t", "2"}, {"b", "3"}, {"bin", "4"}, {"a", "x"}}
	if len(items) != len(want) {
		t.Fatalf("%d items, want %d: %+v", len(items), len(want), items)
	}
	for i, w := range want {
		if items[i].Channel != w[0] || streamContent(items[i]) != w[1] {
			t.Errorf("item %d = %q/%q, want %q/%q", i, items[i].Channel, streamContent(items[i]), w[0], w[1])
		}
	}
	if got := p.Dropped(); got != uint64(len(bad)+1) {
		t.Errorf("Dropped() = %d, want %d", got, len(bad)+1)
	}
}

func TestPullInputQueueFull(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{}
	eng.setErr(ErrQueueFull)
	p, err := newPullInput(zctx, InputsConfig{PullSpec: "tcp://127.0.0.1:0"}, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "pull", p.Run)
	push := testSocket(t, zmq.PUSH)
	if err := push.Connect(p.Spec()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := push.Send(tnetItem, 0); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := p.Dropped(); n != 5 {
			return fmt.Errorf("dropped %d, want 5", n)
		}
		return nil
	})
	eng.setErr(nil)
	if _, err := push.Send(tnetItem, 0); err != nil {
		t.Fatal(err)
	}
	waitItems(t, eng, 1)
}

// TestPullInputBackpressure: while the engine holds the inputs back the
// PULL input waits instead of dropping, and nothing is lost.
func TestPullInputBackpressure(t *testing.T) {
	zctx := newZctx(t)
	gate := make(chan struct{})
	eng := &fakeEngine{gate: gate}
	p, err := newPullInput(zctx, InputsConfig{PullSpec: "tcp://127.0.0.1:0"}, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "pull", p.Run)
	push := testSocket(t, zmq.PUSH)
	if err := push.Connect(p.Spec()); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := 0; i < n; i++ {
		if _, err := push.Send(fmt.Sprintf(`J{"channel":"a","formats":{"http-stream":{"content":"%d"}}}`, i), 0); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(eng.items()); got != 0 || p.Dropped() != 0 {
		t.Fatalf("held back: %d published, %d dropped", got, p.Dropped())
	}
	close(gate)
	items := waitItems(t, eng, n)
	for i, it := range items {
		if streamContent(it) != fmt.Sprint(i) {
			t.Fatalf("item %d is %q", i, streamContent(it))
		}
	}
	if p.Dropped() != 0 {
		t.Fatalf("dropped %d", p.Dropped())
	}
}

func TestPullInputBindError(t *testing.T) {
	zctx := newZctx(t)
	if _, err := newPullInput(zctx, InputsConfig{PullSpec: "bogus://x"}, &fakeEngine{}, testLogger(t)); err == nil {
		t.Error("bogus spec: no error")
	}
}

// recvSub reads one subscription message from an XPUB socket.
func recvSub(t *testing.T, x *zmq.Socket) string {
	t.Helper()
	b, err := x.RecvBytes(0)
	if err != nil {
		t.Fatalf("xpub: no subscription message: %v", err)
	}
	return string(b)
}

// TestSubInputSubscriptions drives the SUB input from an XPUB publisher: it
// must see exactly the channels of the channel set, as \x01channel and
// \x00channel, and a publisher connecting late must learn the current set.
func TestSubInputSubscriptions(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{}
	chans := newChannelSet()
	s, err := newSubInput(zctx, InputsConfig{SubSpecs: []string{"tcp://127.0.0.1:0"}}, eng, chans, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "sub", s.Run)

	x := testSocket(t, zmq.XPUB)
	if err := x.Connect(s.Spec()); err != nil {
		t.Fatal(err)
	}
	chans.Add("chan")
	if got := recvSub(t, x); got != "\x01chan" {
		t.Fatalf("subscription %q, want \\x01chan", got)
	}

	// The frame names the channel; the body's own channel is ignored.
	send := func(channel, payload string) {
		t.Helper()
		if _, err := x.SendMessage(channel, payload); err != nil {
			t.Fatal(err)
		}
	}
	send("chanx", `J{"formats":{"http-stream":{"content":"prefix match"}}}`) // "chan" matches by prefix: dropped
	send("chan", "not an item")                                              // dropped
	send("chan", `J{"channel":"other","formats":{"http-stream":{"content":"1"}}}`)
	send("chan", "T"+string(tnetstring.MustEncode(tnetstring.Dict{{Key: "formats", Value: tnetstring.Dict{
		{Key: "http-stream", Value: tnetstring.Dict{{Key: "content", Value: []byte("2")}}}}}})))
	items := waitItems(t, eng, 2)
	if len(items) != 2 || items[0].Channel != "chan" || streamContent(items[0]) != "1" ||
		items[1].Channel != "chan" || streamContent(items[1]) != "2" {
		t.Fatalf("items = %+v", items)
	}
	if got := s.Dropped(); got != 2 {
		t.Errorf("Dropped() = %d, want 2 (prefix match and garbage)", got)
	}

	chans.Remove("chan")
	if got := recvSub(t, x); got != "\x00chan" {
		t.Fatalf("unsubscription %q, want \\x00chan", got)
	}

	chans.Add("a")
	chans.Add("b")
	chans.Add("") // never a topic: it would match everything
	got := []string{recvSub(t, x), recvSub(t, x)}
	sort.Strings(got)
	if got[0] != "\x01a" || got[1] != "\x01b" {
		t.Fatalf("subscriptions %q, want \\x01a and \\x01b", got)
	}

	late := testSocket(t, zmq.XPUB)
	if err := late.Connect(s.Spec()); err != nil {
		t.Fatal(err)
	}
	got = []string{recvSub(t, late), recvSub(t, late)}
	sort.Strings(got)
	if got[0] != "\x01a" || got[1] != "\x01b" {
		t.Fatalf("late publisher got %q, want \\x01a and \\x01b", got)
	}
	// nothing else (no "" subscription) is pending on either publisher
	for _, p := range []struct {
		s    *zmq.Socket
		name string
	}{{x, "first"}, {late, "late"}} {
		if err := p.s.SetRcvtimeo(100 * time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if b, err := p.s.RecvBytes(0); err == nil {
			t.Errorf("%s publisher got unexpected %q", p.name, b)
		}
	}
}

// TestSubInputConnect: with push_in_sub_connect the SUB socket connects to a
// publisher's bound XPUB.
func TestSubInputConnect(t *testing.T) {
	zctx := newZctx(t)
	x := testSocket(t, zmq.XPUB)
	if err := x.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, err := x.GetLastEndpoint()
	if err != nil {
		t.Fatal(err)
	}
	eng := &fakeEngine{}
	chans := newChannelSet()
	chans.Add("early") // present before the input starts
	s, err := newSubInput(zctx, InputsConfig{SubSpecs: []string{ep}, SubConnect: true}, eng, chans, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Spec() != "" {
		t.Errorf("Spec() = %q for a connecting socket, want \"\"", s.Spec())
	}
	runInput(t, "sub", s.Run)
	if got := recvSub(t, x); got != "\x01early" {
		t.Fatalf("subscription %q, want \\x01early", got)
	}
	if _, err := x.SendMessage("early", tnetItem); err != nil {
		t.Fatal(err)
	}
	items := waitItems(t, eng, 1)
	if items[0].Channel != "early" {
		t.Errorf("channel %q, want the frame's", items[0].Channel)
	}
}

func TestSubInputQueueFull(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{}
	eng.setErr(ErrQueueFull)
	chans := newChannelSet()
	s, err := newSubInput(zctx, InputsConfig{SubSpecs: []string{"tcp://127.0.0.1:0"}}, eng, chans, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "sub", s.Run)
	x := testSocket(t, zmq.XPUB)
	if err := x.Connect(s.Spec()); err != nil {
		t.Fatal(err)
	}
	chans.Add("a")
	recvSub(t, x)
	for i := 0; i < 3; i++ {
		if _, err := x.SendMessage("a", tnetItem); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := s.Dropped(); n != 3 {
			return fmt.Errorf("dropped %d, want 3", n)
		}
		return nil
	})
}

func TestInputsRateLog(t *testing.T) {
	r := newRateLog(testLogger(t), time.Second)
	t0 := time.Unix(1000, 0)
	if r.Warn(t0) == nil {
		t.Fatal("first warning suppressed")
	}
	for i := 1; i <= 3; i++ {
		if r.Warn(t0.Add(time.Duration(i)*100*time.Millisecond)) != nil {
			t.Fatalf("warning %d within the interval let through", i)
		}
	}
	if r.Warn(t0.Add(time.Second)) == nil || r.suppressed != 0 {
		t.Fatal("warning after the interval suppressed")
	}
}

func TestPullParseItemFrameErrors(t *testing.T) {
	for _, f := range []string{"J{}", "Jx", "T1:x", "x"} {
		if _, err := parseItemFrame([]byte(f), ""); err == nil {
			t.Errorf("parseItemFrame(%q): no error", f)
		}
	}
	// An unknown action has Pushpin's empty message; the error still says
	// what kind of problem it is.
	_, err := parseItemFrame([]byte(`J{"channel":"a","formats":{"http-stream":{"action":"zz"}}}`), "")
	if err == nil || err.Error() != "invalid format: " {
		t.Errorf("unknown action: %v", err)
	}
	var fe *grip.FormatError
	if errors.As(err, &fe) {
		t.Errorf("error %v should not expose the bare grip error", err)
	}
}

// FuzzParseItemFrame: no PULL or SUB payload makes the decoder panic.
func FuzzParseItemFrame(f *testing.F) {
	for _, s := range []string{
		tnetItem, "T" + tnetItem, `J{"channel":"a","formats":{"http-stream":{"content":"x"}}}`,
		"J", "T", "", "0:~", "T4:1:x,]", "12:", "J[[[[[[", "T2:0:]]",
		`J{"channel":"a","formats":{"ws-message":{"content-bin":"AA=="},"http-response":{"body-patch":[1],"headers":[["a","b"]]}}}`,
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "ch")
	}
	f.Fuzz(func(t *testing.T, frame []byte, channel string) {
		it, err := parseItemFrame(frame, channel)
		if err == nil && channel != "" && it.Channel != channel {
			t.Errorf("channel %q, want the frame's %q", it.Channel, channel)
		}
	})
}

// TestSubInputFloodCounted: while the engine holds the inputs back, the
// SUB input keeps reading (its subscriptions still follow the channel
// set) and drops what its bounded queue cannot hold, counted in
// message_dropped, instead of leaving libzmq to drop unseen. Everything
// sent is either delivered, in order, or counted.
func TestSubInputFloodCounted(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{gate: make(chan struct{})}
	chans := newChannelSet()
	cfg := Config{PrometheusPort: "1"}
	st := newStatsCollector(&cfg, testLogger(t))
	s, err := newSubInput(zctx, InputsConfig{SubSpecs: []string{"tcp://127.0.0.1:0"}}, eng, chans, st, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "sub", s.Run)
	x := testSocket(t, zmq.XPUB)
	// The publisher queues without bound, so that every drop is the input's.
	if err := x.SetSndhwm(0); err != nil {
		t.Fatal(err)
	}
	if err := x.Connect(s.Spec()); err != nil {
		t.Fatal(err)
	}
	chans.Add("a")
	if got := recvSub(t, x); got != "\x01a" {
		t.Fatalf("subscription %q", got)
	}
	const n = 5 * subQueueLen
	for i := range n {
		if _, err := x.SendMessage("a", fmt.Sprintf(`J{"formats":{"http-stream":{"content":"%d"}}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, func() error {
		if d := s.Dropped(); d < n-subQueueLen-2 {
			return fmt.Errorf("dropped %d, want at least %d", d, n-subQueueLen-2)
		}
		return nil
	})
	// Still following the channel set while held back.
	chans.Add("b")
	if got := recvSub(t, x); got != "\x01b" {
		t.Fatalf("subscription while held back %q", got)
	}
	st.mu.Lock()
	counted := st.totals.deliveryDropped
	st.mu.Unlock()
	if uint64(counted) != s.Dropped() {
		t.Errorf("message_dropped %d, input dropped %d", counted, s.Dropped())
	}
	close(eng.gate)
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := uint64(len(eng.items())) + s.Dropped(); got != n {
			return fmt.Errorf("delivered+dropped = %d, want %d", got, n)
		}
		return nil
	})
	prev := -1
	for _, it := range eng.items() {
		v, _ := strconv.Atoi(streamContent(it))
		if v <= prev {
			t.Fatalf("item %d after %d: out of order", v, prev)
		}
		prev = v
	}
}
