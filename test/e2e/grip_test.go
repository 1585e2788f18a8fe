package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/testutil"
	"tack/pkg/tnetstring"
)

// gripBackend answers with GRIP instructions.
func gripBackend(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", holdStream)
	mux.HandleFunc("/filtered", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "stream")
		w.Header().Set("Grip-Channel", r.URL.Query().Get("ch")+"; filter=var-subst; filter=skip-self")
		w.Header().Set("Grip-Set-Meta", "user="+r.URL.Query().Get("user"))
		io.WriteString(w, "[open]\n")
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Grip-Hold", "stream")
		w.Header().Set("Grip-Channel", r.URL.Query().Get("ch"))
		io.WriteString(w, ": welcome\n\n")
	})
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "response")
		w.Header().Set("Grip-Channel", r.URL.Query().Get("ch"))
		w.Header().Set("Grip-Timeout", "5")
		io.WriteString(w, "timed out\n")
	})
	srv := newBackendWith(t, mux)
	return srv
}

func newBackendWith(t *testing.T, h http.Handler) string {
	t.Helper()
	b := newBackend(t)
	b.Config.Handler = h
	return b.hostPort()
}

// holdStream answers with a stream hold on the channel in ?ch=, body
// "[open]\n".
func holdStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Grip-Hold", "stream")
	w.Header().Set("Grip-Channel", r.URL.Query().Get("ch"))
	io.WriteString(w, "[open]\n")
}

// openStream starts a held stream and returns a reader positioned after
// the first line, which must be want.
func openStream(t *testing.T, url, want string) (*bufio.Reader, func()) {
	t.Helper()
	return openStreamWith(t, http.DefaultClient, url, want)
}

// openStreamWith is openStream with a given client (TLS, unix socket).
func openStreamWith(t *testing.T, c *http.Client, url, want string) (*bufio.Reader, func()) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	resp := testutil.GetOK(t, c, req, 10*time.Second)
	for k := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "grip-") {
			t.Errorf("client saw %s", k)
		}
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != want {
		t.Fatalf("first line %q (%v), want %q", line, err, want)
	}
	return br, func() { resp.Body.Close() }
}

// expectLine publishes with pub until the stream yields want (the
// subscription is made just after the hand-off, so early publishes may
// find no subscriber).
func expectLine(t *testing.T, br *bufio.Reader, want string, pub func()) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		l, _ := br.ReadString('\n')
		got <- l
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pub()
		select {
		case l := <-got:
			if l != want {
				t.Fatalf("stream got %q, want %q", l, want)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("never received %q", want)
		}
	}
}

func (s *suite) postPublish(t *testing.T, body string) {
	t.Helper()
	resp, err := http.Post(s.publishURL(), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %q", resp.StatusCode, b)
	}
}

// getInto GETs u and sends "<status> <body>", or the error, to got.
func getInto(u string, got chan<- string) {
	resp, err := http.Get(u)
	if err != nil {
		got <- err.Error()
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got <- fmt.Sprintf("%d %s", resp.StatusCode, b)
}

func streamItem(ch, content string) string {
	b, _ := json.Marshal(map[string]any{"channel": ch, "formats": map[string]any{"http-stream": map[string]any{"content": content}}})
	return string(b)
}

func TestE2EGripStreamAndResponse(t *testing.T) {
	be := gripBackend(t)
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})

	br, done := openStream(t, s.url("/stream?ch=a1"), "[open]\n")
	defer done()
	expectLine(t, br, "over http\n", func() { s.postPublish(t, `{"items":[`+streamItem("a1", "over http\n")+`]}`) })

	// ZeroMQ PULL (J + JSON), then garbage that must not hurt the handler.
	push, _ := zmq.NewSocket(zmq.PUSH)
	defer push.Close()
	push.SetLinger(0)
	push.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5560+s.portOffset))
	push.SendBytes([]byte("T50:7:channel,2:a1,"), 0) // truncated tnetstring: crashes Pushpin 1.36
	push.SendBytes([]byte("garbage"), 0)
	expectLine(t, br, "over pull\n", func() { push.SendBytes([]byte("J"+streamItem("a1", "over pull\n")), 0) })

	// Command socket (ZRPC publish).
	req, _ := zmq.NewSocket(zmq.REQ)
	defer req.Close()
	req.SetLinger(0)
	req.SetRcvtimeo(5 * time.Second)
	req.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5563+s.portOffset))
	expectLine(t, br, "over command\n", func() {
		var item map[string]any
		json.Unmarshal([]byte(streamItem("a1", "over command\n")), &item)
		msg := tnetstring.MustEncode(tnetstring.Dict{
			{Key: "id", Value: "c1"}, {Key: "method", Value: "publish"},
			{Key: "args", Value: tnetstring.Dict{{Key: "items", Value: []any{toTnet(item)}}}},
		})
		req.SendBytes(msg, 0)
		reply, err := req.RecvBytes(0)
		if err != nil {
			t.Fatalf("command reply: %v", err)
		}
		if d, err := tnetstring.DecodeDict(reply); err != nil || !d.Bool("success") {
			t.Fatalf("command reply %q", reply)
		}
	})

	// ZeroMQ SUB input: an XPUB publisher sees the subscription to a1.
	xpub, _ := zmq.NewSocket(zmq.XPUB)
	defer xpub.Close()
	xpub.SetLinger(0)
	xpub.SetRcvtimeo(10 * time.Second)
	xpub.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5562+s.portOffset))
	for {
		ev, err := xpub.RecvBytes(0)
		if err != nil {
			t.Fatalf("XPUB saw no subscription: %v", err)
		}
		if string(ev) == "\x01a1" {
			break
		}
	}
	expectLine(t, br, "over sub\n", func() { xpub.SendMessage("a1", "J"+streamItem("a1", "over sub\n")) })

	// tack publish (pushpin-publish's equivalent).
	expectLine(t, br, "over cli\n", func() {
		cmd := exec.Command(filepath.Join(binDir, "tack"), "publish", "a1", "over cli")
		cmd.Env = append(cmd.Environ(), fmt.Sprintf("GRIP_URL=http://127.0.0.1:%d", 5561+s.portOffset))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tack publish: %v %s", err, out)
		}
	})

	// Filters: var-subst fills in the subscriber's meta; skip-self drops
	// the subscriber's own messages.
	fb, fdone := openStream(t, s.url("/filtered?ch=f1&user=alice"), "[open]\n")
	defer fdone()
	own := `{"channel":"f1","meta":{"sender":"alice"},"formats":{"http-stream":{"content":"own\n"}}}`
	other := `{"channel":"f1","meta":{"sender":"bob"},"formats":{"http-stream":{"content":"hi %(user)s\n"}}}`
	expectLine(t, fb, "hi alice\n", func() { s.postPublish(t, `{"items":[`+own+`,`+other+`]}`) })

	// Close action ends the response.
	s.postPublish(t, `{"items":[{"channel":"a1","formats":{"http-stream":{"action":"close"}}}]}`)
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after close: %q %v", rest, err)
	}

	// Long-polling: a publish answers; a silent channel times out with the
	// backend's own body.
	got := make(chan string, 2)
	poll := func(ch string) { getInto(s.url("/poll?ch="+ch), got) }
	go poll("p1")
	start := time.Now()
	go poll("p2")
	deadline := time.Now().Add(10 * time.Second)
	var first string
	for first == "" {
		s.postPublish(t, `{"items":[{"channel":"p1","formats":{"http-response":{"code":201,"body":"published\n"}}}]}`)
		select {
		case first = <-got:
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("long-poll never answered")
			}
		}
	}
	if first != "201 published\n" {
		t.Errorf("published long-poll got %q", first)
	}
	if second := <-got; second != "200 timed out\n" || time.Since(start) < 4*time.Second {
		t.Errorf("timed-out long-poll got %q after %v", second, time.Since(start))
	}
}

func TestE2EGripSSEAndTestHandler(t *testing.T) {
	be := gripBackend(t)
	// Readiness is checked on "/", which this routes file sends to the
	// backend: that also warms up the proxy's link to the zhttp client
	// (a PUB/SUB pair drops what is published before the subscription
	// has arrived, as Pushpin's does; zmq-wire.md §9 item 1).
	s := startSuite(t, suiteOptions{routes: "test.example test\n* " + be + "\n"})

	req, _ := http.NewRequest("GET", s.url("/events?ch=e1"), nil)
	resp := testutil.GetOK(t, http.DefaultClient, req, 10*time.Second)
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); l != ": welcome\n" {
		t.Fatalf("first line %q", l)
	}
	br.ReadString('\n')
	expectLine(t, br, "data: hello\n", func() { s.postPublish(t, `{"items":[`+streamItem("e1", "data: hello\n\n")+`]}`) })

	treq, _ := http.NewRequest("GET", s.url("/stream?channel=t1"), nil)
	treq.Host = "test.example"
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil || tresp.StatusCode != 200 {
		t.Fatalf("test handler stream: %v %v", err, tresp)
	}
	defer tresp.Body.Close()
	tb := bufio.NewReader(tresp.Body)
	if l, _ := tb.ReadString('\n'); l != "[stream opened]\n" {
		t.Fatalf("test stream first line %q", l)
	}
	expectLine(t, tb, "test handler\n", func() { s.postPublish(t, `{"items":[`+streamItem("t1", "test handler\n")+`]}`) })
}

// toTnet converts decoded JSON into values tnetstring can encode.
func toTnet(v any) any {
	switch x := v.(type) {
	case map[string]any:
		d := tnetstring.Dict{}
		for k, e := range x {
			d = append(d, tnetstring.Field{Key: k, Value: toTnet(e)})
		}
		return d
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toTnet(e)
		}
		return out
	case string:
		return []byte(x)
	case float64:
		return int64(x)
	}
	return v
}
