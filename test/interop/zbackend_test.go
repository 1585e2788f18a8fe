package interop

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/testutil"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// packetKeys returns the sorted keys of a zhttp packet's tnetstring dict.
func packetKeys(t *testing.T, b []byte) []string {
	t.Helper()
	d, err := tnetstring.DecodeDict(b[1:])
	if err != nil {
		t.Fatalf("packet %q: %v", b, err)
	}
	var keys []string
	for _, f := range d {
		keys = append(keys, f.Key)
	}
	slices.Sort(keys)
	return keys
}

// zreqRun starts a deployment (the real Pushpin, or tack) whose only route
// is `* zhttpreq/<spec>` answered by a REP backend, sends a GET and a POST
// and returns the keys of the request packets the backend received.
func zreqRun(t *testing.T, pushpin bool) [][]string {
	spec := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	// A ROUTER answering REP-style (envelope, empty frame, payload): a REP
	// behind zsock's owner goroutine could be asked to receive again before
	// its answer was sent ("cannot be accomplished in current state").
	rep := testutil.Sockets(t, zsock.Options{Name: "rep", Type: zmq.ROUTER, Direction: zsock.TwoWay, Connect: []string{spec}})[0]
	var keys [][]string
	var mu sync.Mutex
	go func() {
		for m := range rep.Recv() {
			if len(m) < 2 {
				continue
			}
			env, body := m[:len(m)-1], m[len(m)-1]
			reply := func(b []byte) { rep.Send() <- append(append(zsock.Message{}, env...), b) }
			p, err := zhttp.Parse(body)
			if err != nil {
				reply([]byte("bad"))
				continue
			}
			mu.Lock()
			keys = append(keys, packetKeys(t, body))
			mu.Unlock()
			r := zhttp.New()
			r.ID, r.Code, r.Reason = p.ID, 200, "OK"
			r.Headers = []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}
			r.Body = []byte(fmt.Sprintf("%s %s %d\n", p.Method, p.URI, len(p.Body)))
			reply(r.Encode())
		}
	}()
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "* zhttpreq/"+spec+"\n")
	if pushpin {
		d.startPushpin(t, conf, "")
	} else {
		d.startTack(t, conf)
	}
	d.waitReady(t, "/ready")
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Post(d.url("/post"), "text/plain", strings.NewReader("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("POST http://127.0.0.1:%d/post 10\n", d.httpPort); resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("POST: %d %q, want %q", resp.StatusCode, b, want)
	}
	mu.Lock()
	defer mu.Unlock()
	return [][]string{keys[0], keys[len(keys)-1]}
}

// TestInteropZhttpreqBackend: a REP backend sees the same request packets
// (field names) from tack-proxy as from pushpin-proxy 1.36, and its
// answers reach the client through both.
func TestInteropZhttpreqBackend(t *testing.T) {
	requirePushpin(t)
	want := zreqRun(t, true)
	got := zreqRun(t, false)
	for i, name := range []string{"GET", "POST"} {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("%s request fields: tack %v, pushpin %v", name, got[i], want[i])
		}
	}
	if !slices.Contains(want[1], "body") || slices.Contains(want[0], "seq") {
		t.Errorf("pushpin's fields changed: %v", want)
	}
}

// zbackendDeploy starts a deployment (Pushpin's or tack's) whose routes
// are /ready/ to the test handler and everything else to `zhttp/<base>`,
// answered by a zhttp server backend with identity from: its PULL, ROUTER
// and XPUB connected to the proxy's three binds, returned once the proxy
// subscribed and the deployment is ready.
func zbackendDeploy(t *testing.T, pushpin bool, from string) (*deployment, *zsock.Socket, *zsock.Socket, *zsock.Socket) {
	t.Helper()
	base := "ipc://" + filepath.Join(testutil.ShortTempDir(t), "zs")
	socks := testutil.Sockets(t,
		zsock.Options{Name: "pull", Type: zmq.PULL, Direction: zsock.RecvOnly, Connect: []string{base + "-out"}},
		zsock.Options{Name: "router", Type: zmq.ROUTER, Direction: zsock.RecvOnly, Connect: []string{base + "-out-stream"}, Identity: from},
		zsock.Options{Name: "pub", Type: zmq.XPUB, Direction: zsock.TwoWay, Connect: []string{base + "-in"}})
	pub := socks[2]
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "*,path_beg=/ready/ test\n* zhttp/"+base+"\n")
	if pushpin {
		d.startPushpin(t, conf, "")
	} else {
		d.startTack(t, conf)
	}
	// The proxy's SUB subscribes to "<its from> " on our PUB.
	select {
	case m := <-pub.Recv():
		if len(m) != 1 || m[0][0] != 1 || !strings.HasSuffix(string(m[0]), " ") {
			t.Fatalf("subscription %q", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy never subscribed")
	}
	d.waitReady(t, "/ready/")
	return d, socks[0], socks[1], pub
}

// zstreamRun runs a GET through zbackendDeploy's deployment and returns
// the keys of the first packet the backend got.
func zstreamRun(t *testing.T, pushpin bool) []string {
	const from = "interop-backend"
	d, pull, _, pub := zbackendDeploy(t, pushpin, from)
	// The proxy's PUSH may not have its connection to our PULL yet (the
	// subscription above came over another socket): pushpin-proxy then
	// answers 502 at once. Ask again until a request reaches the backend.
	var got chan string
	var m zsock.Message
	deadline := time.After(20 * time.Second)
	for m == nil {
		got = make(chan string, 1)
		go getInto(d.url("/x"), got)
		select {
		case m = <-pull.Recv():
		case a := <-got:
			if !strings.HasPrefix(a, "502 ") {
				t.Fatalf("client got %q before any request reached the backend", a)
			}
			time.Sleep(100 * time.Millisecond)
		case <-deadline:
			t.Fatal("no request at the backend")
		}
	}
	var keys []string
	{
		p, err := zhttp.Parse(m[0])
		if err != nil {
			t.Fatal(err)
		}
		keys = packetKeys(t, m[0])
		send := func(r *zhttp.Packet, seq int64) {
			r.From, r.ID, r.Seq = []byte(from), p.ID, seq
			pub.Send() <- zsock.Message{zhttp.PubFrame(p.From, r)}
		}
		ka := zhttp.New()
		ka.Type = zhttp.TypeKeepAlive
		send(ka, 0)
		r := zhttp.New()
		r.Code, r.Reason, r.Body = 200, "OK", []byte("streamed\n")
		r.Headers = []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}
		send(r, 1)
	}
	if a := <-got; a != "200 streamed\n" {
		t.Fatalf("client got %q", a)
	}
	return keys
}

// getInto GETs u and sends "<status> <body>", or the error, to got.
func getInto(u string, got chan<- string) {
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		got <- err.Error()
		return
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got <- fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// TestInteropZhttpBackend: a zhttp/ server backend sees the same first
// packet (field names) from tack-proxy as from pushpin-proxy 1.36.
func TestInteropZhttpBackend(t *testing.T) {
	requirePushpin(t)
	want := zstreamRun(t, true)
	got := zstreamRun(t, false)
	if !slices.Equal(got, want) {
		t.Errorf("first packet fields: tack %v, pushpin %v", got, want)
	}
}
