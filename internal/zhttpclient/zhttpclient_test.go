package zhttpclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend returns an httptest server and counts its TCP connections.
func backend(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

var helloBody = "hello from backend\n"

func helloHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(helloBody)))
		io.WriteString(w, helloBody)
	})
	return mux
}

func TestZHTTPClientGet(t *testing.T) {
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("get-1", "GET", srv.URL+"/hello.txt")
	p.Headers = []zhttp.Header{{Name: "Accept", Value: "*/*"}}
	p.Multi = true
	c.request(p)

	ack := c.next("get-1")
	if ack.Type != zhttp.TypeKeepAlive || ack.Seq != 0 || string(ack.From) != c.server || !ack.Multi {
		t.Fatalf("ack = %+v, want keep-alive seq 0 with ext.multi", ack)
	}
	r := c.readResponse("get-1", 1)
	if r.errCond != "" {
		t.Fatalf("error %s", r.errCond)
	}
	if r.head.Code != 200 || r.head.Reason != "OK" {
		t.Fatalf("head = %d %q", r.head.Code, r.head.Reason)
	}
	if v, _ := headerValue(r.head.Headers, "Content-Length"); v != "19" {
		t.Fatalf("Content-Length = %q, want 19", v)
	}
	if string(r.body) != helloBody {
		t.Fatalf("body = %q", r.body)
	}
	for _, pk := range r.packets {
		if pk.Multi {
			t.Fatalf("only the ack carries ext.multi: %+v", pk)
		}
	}
}

func TestZHTTPClientCreditsRespected(t *testing.T) {
	const size = 50000
	const grant = 1000
	payload := bytes.Repeat([]byte("0123456789"), size/10)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(payload)
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("cr-1", "GET", srv.URL+"/big")
	p.Credits = grant
	c.request(p)
	if ack := c.next("cr-1"); ack.Type != zhttp.TypeKeepAlive {
		t.Fatalf("ack = %+v", ack)
	}
	granted, received := int64(grant), int64(0)
	outSeq := int64(1) // our follow-ups start at seq 1
	var body []byte
	gotHead := false
	silenceChecked := false
	for {
		pk := c.next("cr-1")
		if pk.Type != zhttp.TypeData {
			t.Fatalf("unexpected %+v", pk)
		}
		if pk.Code >= 0 {
			gotHead = true
		}
		received += int64(len(pk.Body))
		body = append(body, pk.Body...)
		if received > granted {
			t.Fatalf("received %d body bytes with only %d credits granted", received, granted)
		}
		if !pk.More {
			break
		}
		if received == granted {
			if !silenceChecked {
				// The window is exhausted: nothing may come until we grant.
				c.expectSilence("cr-1", 300*time.Millisecond)
				silenceChecked = true
			}
			cp := zhttp.New()
			cp.ID, cp.Seq, cp.Type, cp.Credits = []byte("cr-1"), outSeq, zhttp.TypeCredit, grant
			outSeq++
			c.follow(cp)
			granted += grant
		}
	}
	if !gotHead || !bytes.Equal(body, payload) {
		t.Fatalf("head=%v body %d bytes, want %d", gotHead, len(body), size)
	}
}

func TestZHTTPClientPostStreamed(t *testing.T) {
	const size = 1 << 20
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s %s", n, hex.EncodeToString(h.Sum(nil)), r.Header.Get("Transfer-Encoding")+strings.Join(r.TransferEncoding, ","))
	}))
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sum := sha256.Sum256(body)
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("post-1", "POST", srv.URL+"/upload")
	p.Headers = []zhttp.Header{{Name: "Content-Type", Value: "application/octet-stream"}}
	p.More = true
	c.request(p)

	ack := c.next("post-1")
	if ack.Type != zhttp.TypeCredit || ack.Credits != DefaultBufferSize || ack.Seq != 0 {
		t.Fatalf("ack = %+v, want credit %d seq 0", ack, DefaultBufferSize)
	}
	window := ack.Credits
	sent, seq := 0, int64(1)
	inSeq := int64(1)
	var credited int64
	var resp *response
	for resp == nil {
		for window > 0 && sent < size {
			n := min(int(window), 16384, size-sent)
			bp := zhttp.New()
			bp.ID, bp.Seq, bp.Body = []byte("post-1"), seq, body[sent:sent+n]
			sent += n
			bp.More = sent < size
			seq++
			window -= int64(n)
			c.follow(bp)
		}
		pk := c.next("post-1")
		if pk.Seq != inSeq {
			t.Fatalf("seq %d, want %d", pk.Seq, inSeq)
		}
		inSeq++
		switch {
		case pk.Type == zhttp.TypeCredit:
			window += pk.Credits
			credited += pk.Credits
		case pk.Type == zhttp.TypeData:
			c.queued["post-1"] = append([]*zhttp.Packet{pk}, c.queued["post-1"]...)
			resp = c.readResponse("post-1", pk.Seq)
		default:
			t.Fatalf("unexpected %+v", pk)
		}
	}
	if sent != size {
		t.Fatalf("response before the whole body was sent (%d/%d)", sent, size)
	}
	want := fmt.Sprintf("%d %s chunked", size, hex.EncodeToString(sum[:]))
	if resp.head.Code != 200 || string(resp.body) != want {
		t.Fatalf("response %d %q, want %q", resp.head.Code, resp.body, want)
	}
	if credited > size {
		t.Fatalf("credited %d > body %d", credited, size)
	}
}

func TestZHTTPClientHead(t *testing.T) {
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "12345")
		if r.Method != "HEAD" {
			w.Write(make([]byte, 12345))
		}
	}))
	c := newFakeClient(t, startTarget(t, nil))
	c.request(c.newRequest("head-1", "HEAD", srv.URL+"/x"))
	c.next("head-1") // ack
	r := c.readResponse("head-1", 1)
	if r.head == nil || r.head.Code != 200 || len(r.body) != 0 {
		t.Fatalf("response %+v", r)
	}
	if v, _ := headerValue(r.head.Headers, "Content-Length"); v != "12345" {
		t.Fatalf("Content-Length = %q", v)
	}
}

// closedAddr returns a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestZHTTPClientRefused(t *testing.T) {
	addr := closedAddr(t)
	c := newFakeClient(t, startTarget(t, nil))
	c.request(c.newRequest("ref-1", "GET", "http://"+addr+"/"))
	if ack := c.next("ref-1"); ack.Type != zhttp.TypeKeepAlive || ack.Seq != 0 {
		t.Fatalf("ack = %+v", ack)
	}
	e := c.next("ref-1")
	if e.Type != zhttp.TypeError || e.Condition != zhttp.CondRemoteConnectionFailed || e.Seq != 1 {
		t.Fatalf("got %+v, want remote-connection-failed at seq 1", e)
	}
}

func TestZHTTPClientPolicy(t *testing.T) {
	srv, _ := backend(t, helloHandler())
	u, _ := url.Parse(srv.URL)
	c := newFakeClient(t, startTarget(t, func(cfg *Config) {
		cfg.Deny = []string{"127.*", "10.*", "192.168.*", "*.local"}
	}))
	t.Run("uri host", func(t *testing.T) {
		c.t = t
		c.request(c.newRequest("pol-1", "GET", srv.URL+"/hello.txt"))
		e := c.next("pol-1")
		if e.Type != zhttp.TypeError || e.Condition != zhttp.CondPolicyViolation || e.Seq != 0 {
			t.Fatalf("got %+v, want policy-violation at seq 0", e)
		}
	})
	t.Run("connect-host", func(t *testing.T) {
		c.t = t
		p := c.newRequest("pol-2", "GET", "http://example.com/hello.txt")
		p.ConnectHost, p.ConnectPort = "127.0.0.1", mustPort(t, u)
		c.request(p)
		e := c.next("pol-2")
		if e.Type != zhttp.TypeError || e.Condition != zhttp.CondPolicyViolation || e.Seq != 0 {
			t.Fatalf("got %+v, want policy-violation at seq 0", e)
		}
	})
	t.Run("resolved address", func(t *testing.T) {
		c.t = t
		c.request(c.newRequest("pol-3", "GET", "http://localhost:"+u.Port()+"/hello.txt"))
		if ack := c.next("pol-3"); ack.Type != zhttp.TypeKeepAlive {
			t.Fatalf("ack = %+v", ack)
		}
		e := c.next("pol-3")
		if e.Type != zhttp.TypeError || e.Condition != zhttp.CondPolicyViolation || e.Seq != 1 {
			t.Fatalf("got %+v, want policy-violation at seq 1", e)
		}
	})
	t.Run("ignore-policies", func(t *testing.T) {
		c.t = t
		p := c.newRequest("pol-4", "GET", "http://localhost:"+u.Port()+"/hello.txt")
		p.IgnorePolicies = true
		c.request(p)
		c.next("pol-4")
		if r := c.readResponse("pol-4", 1); r.errCond != "" || string(r.body) != helloBody {
			t.Fatalf("response %+v", r)
		}
	})
}

func mustPort(t *testing.T, u *url.URL) int64 {
	n, err := strconv.ParseInt(u.Port(), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestZHTTPClientMaxSize(t *testing.T) {
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil))
	for _, stream := range []bool{false, true} {
		id := fmt.Sprintf("max-%v", stream)
		p := c.newRequest(id, "GET", srv.URL+"/hello.txt")
		p.Stream = stream
		p.MaxSize = 5
		c.request(p)
		if ack := c.next(id); ack.Type != zhttp.TypeKeepAlive {
			t.Fatalf("ack = %+v", ack)
		}
		e := c.next(id)
		if e.Type != zhttp.TypeError || e.Condition != zhttp.CondMaxSizeExceeded || e.Seq != 1 {
			t.Fatalf("stream=%v: got %+v, want max-size-exceeded", stream, e)
		}
	}
}

func TestZHTTPClientSessionTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("to-1", "GET", srv.URL+"/slow")
	p.Timeout = 300
	c.request(p)
	c.next("to-1")
	start := time.Now()
	e := c.next("to-1")
	if e.Type != zhttp.TypeError || e.Condition != zhttp.CondSessionTimeout {
		t.Fatalf("got %+v, want session-timeout", e)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("timeout after %v", d)
	}
}

func TestZHTTPClientCancel(t *testing.T) {
	canceled := make(chan struct{})
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first chunk\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(waitFor):
		}
	}))
	c := newFakeClient(t, startTarget(t, nil))
	c.request(c.newRequest("can-1", "GET", srv.URL+"/stream"))
	c.next("can-1") // ack
	var got []byte
	for !bytes.Contains(got, []byte("first chunk")) {
		pk := c.next("can-1")
		if pk.Type != zhttp.TypeData || !pk.More {
			t.Fatalf("unexpected %+v", pk)
		}
		got = append(got, pk.Body...)
	}
	cp := zhttp.New()
	cp.ID, cp.Seq, cp.Type = []byte("can-1"), 1, zhttp.TypeCancel
	c.follow(cp)
	select {
	case <-canceled:
	case <-time.After(waitFor):
		t.Fatal("backend request was not aborted")
	}
	// The session is gone: a credit now gets the unknown-id cancel. (zurl
	// drops packets that arrive before it has removed the finished
	// session, hence the retries.)
	deadline := time.Now().Add(waitFor)
	for seq := int64(2); ; seq++ {
		cr := zhttp.New()
		cr.ID, cr.Seq, cr.Type, cr.Credits = []byte("can-1"), seq, zhttp.TypeCredit, 10
		c.follow(cr)
		pk := c.tryNext("can-1", 100*time.Millisecond)
		if pk == nil && time.Now().Before(deadline) {
			continue
		}
		if pk == nil || pk.Type != zhttp.TypeCancel || pk.From != nil || pk.Seq != -1 {
			t.Fatalf("got %+v, want bare cancel", pk)
		}
		break
	}
}

func TestZHTTPClientUnknownID(t *testing.T) {
	c := newFakeClient(t, startTarget(t, nil))
	p := zhttp.New()
	p.ID, p.Seq, p.Type, p.Credits = []byte("unknown-id"), 1, zhttp.TypeCredit, 10
	c.follow(p)
	c.next("unknown-id")
	d := dict(t, c.lastRaw("unknown-id"))
	// Captured from zurl: T35:2:id,10:unknown-id,4:type,6:cancel,}
	if len(d) != 2 || string(mustBytes(t, d, "id")) != "unknown-id" || string(mustBytes(t, d, "type")) != "cancel" {
		t.Fatalf("got %v, want {id, type: cancel}", d)
	}
}

func mustBytes(t *testing.T, d tnetstring.Dict, k string) []byte {
	t.Helper()
	b, ok := d.Bytes(k)
	if !ok {
		t.Fatalf("missing %s in %v", k, d)
	}
	return b
}

func TestZHTTPClientBadSeq(t *testing.T) {
	started, canceled := make(chan struct{}), make(chan struct{})
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		_, err := io.Copy(io.Discard, r.Body)
		if err != nil || r.Context().Err() != nil {
			close(canceled)
			return
		}
		<-r.Context().Done()
		close(canceled)
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("seq-1", "POST", srv.URL+"/hello.txt")
	p.Headers = []zhttp.Header{{Name: "Content-Length", Value: "4"}}
	p.More, p.Credits = true, 1000
	c.request(p)
	if ack := c.next("seq-1"); ack.Type != zhttp.TypeCredit || ack.Seq != 0 {
		t.Fatalf("ack = %+v", ack)
	}
	select {
	case <-started:
	case <-time.After(waitFor):
		t.Fatal("request never reached the backend")
	}
	bp := zhttp.New()
	bp.ID, bp.Seq, bp.Body = []byte("seq-1"), 5, []byte("abcd")
	c.follow(bp)
	e := c.next("seq-1")
	if e.Type != zhttp.TypeCancel || e.Seq != 1 || string(e.From) != c.server {
		t.Fatalf("got %+v, want cancel at seq 1", e)
	}
	select {
	case <-canceled:
	case <-time.After(waitFor):
		t.Fatal("backend request was not aborted")
	}
}

func TestZHTTPClientUserData(t *testing.T) {
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part one\n")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part two\n")
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("ud-1", "GET", srv.URL+"/")
	p.UserData = tnetstring.Dict{{Key: "k", Value: []byte("v")}}
	c.request(p)
	n := 0
	for {
		pk := c.next("ud-1")
		d := dict(t, c.lastRaw("ud-1"))
		ud, ok := d.Dict("user-data")
		if !ok || string(mustBytes(t, ud, "k")) != "v" {
			t.Fatalf("packet %d without user-data: %v", n, d)
		}
		n++
		if pk.Type == zhttp.TypeData && !pk.More {
			break
		}
	}
	if n < 2 {
		t.Fatalf("only %d packets", n)
	}
}

func TestZHTTPClientJSON(t *testing.T) {
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil))
	c.pushRaw([]byte(`J{"from":"` + c.from + `","id":"json-1","seq":0,"method":"GET","uri":"` + srv.URL +
		`/hello.txt","headers":[],"stream":true,"credits":1000,"ignore-policies":true,"user-data":{"n":1}}`))
	ack := c.next("json-1")
	if raw := c.lastRaw("json-1"); raw[0] != 'J' || ack.Type != zhttp.TypeKeepAlive || ack.Seq != 0 {
		t.Fatalf("ack %q", raw)
	}
	r := c.readResponse("json-1", 1)
	if r.head.Code != 200 || string(r.body) != helloBody {
		t.Fatalf("response %+v", r)
	}
	raw := c.lastRaw("json-1")
	if raw[0] != 'J' || !bytes.Contains(raw, []byte(`"user-data":{"n":1}`)) || !bytes.Contains(raw, []byte(`hello from backend\n`)) {
		t.Fatalf("last reply %q", raw)
	}
}

func TestZHTTPClientReqMode(t *testing.T) {
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil))
	t.Run("get", func(t *testing.T) {
		p := zhttp.New()
		p.ID, p.Method, p.URI = []byte("req-1"), "GET", srv.URL+"/hello.txt"
		p.Headers = []zhttp.Header{{Name: "Accept", Value: "*/*"}}
		p.UserData = []byte("ud")
		d := dict(t, c.reqMode(p.Encode()))
		if _, ok := d.Get("from"); ok {
			t.Fatalf("req reply has from: %v", d)
		}
		code, _ := d.Int("code")
		seq, _ := d.Int("seq")
		if code != 200 || seq != 0 || string(mustBytes(t, d, "body")) != helloBody || string(mustBytes(t, d, "user-data")) != "ud" {
			t.Fatalf("reply %v", d)
		}
	})
	t.Run("streamed input refused", func(t *testing.T) {
		p := zhttp.New()
		p.ID, p.Method, p.URI, p.More = []byte("req-2"), "POST", srv.URL+"/hello.txt", true
		d := dict(t, c.reqMode(p.Encode()))
		if string(mustBytes(t, d, "condition")) != zhttp.CondBadRequest {
			t.Fatalf("reply %v", d)
		}
	})
	t.Run("websocket refused", func(t *testing.T) {
		p := zhttp.New()
		p.ID, p.URI = []byte("req-3"), "ws://127.0.0.1:1/"
		d := dict(t, c.reqMode(p.Encode()))
		if string(mustBytes(t, d, "condition")) != zhttp.CondBadRequest {
			t.Fatalf("reply %v", d)
		}
	})
	t.Run("max-size", func(t *testing.T) {
		p := zhttp.New()
		p.ID, p.Method, p.URI, p.MaxSize = []byte("req-4"), "GET", srv.URL+"/hello.txt", 3
		d := dict(t, c.reqMode(p.Encode()))
		if string(mustBytes(t, d, "condition")) != zhttp.CondMaxSizeExceeded {
			t.Fatalf("reply %v", d)
		}
	})
}

func TestZHTTPClientConnectionReuse(t *testing.T) {
	srv, conns := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil))
	for i := range 100 {
		id := fmt.Sprintf("reuse-%d", i)
		c.request(c.newRequest(id, "GET", srv.URL+"/hello.txt"))
		c.next(id)
		if r := c.readResponse(id, 1); string(r.body) != helloBody {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if n := conns.Load(); n > 3 {
		t.Fatalf("backend saw %d TCP connections for 100 sequential requests", n)
	}
}

func TestZHTTPClientMaxOpenRequests(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	c := newFakeClient(t, startTarget(t, func(cfg *Config) { cfg.MaxOpenRequests = 1 }))
	c.request(c.newRequest("mo-1", "GET", srv.URL+"/block"))
	c.next("mo-1")
	c.request(c.newRequest("mo-2", "GET", srv.URL+"/fast"))
	c.expectSilence("mo-2", 300*time.Millisecond)
	unblock()
	if r := c.readResponse("mo-1", 1); string(r.body) != "done" {
		t.Fatalf("mo-1 %+v", r)
	}
	if ack := c.next("mo-2"); ack.Type != zhttp.TypeKeepAlive {
		t.Fatalf("mo-2 ack %+v", ack)
	}
	if r := c.readResponse("mo-2", 1); string(r.body) != "done" {
		t.Fatalf("mo-2 %+v", r)
	}
}

func TestZHTTPClientBadRequests(t *testing.T) {
	c := newFakeClient(t, startTarget(t, nil))
	cases := []struct {
		name string
		mod  func(p *zhttp.Packet)
		cond string
	}{
		{"bad scheme", func(p *zhttp.Packet) { p.URI = "ftp://x/" }, zhttp.CondBadRequest},
		{"no uri", func(p *zhttp.Packet) { p.URI = "" }, zhttp.CondBadRequest},
		{"no method", func(p *zhttp.Packet) { p.Method = "" }, zhttp.CondBadRequest},
		{"more without seq 0", func(p *zhttp.Packet) { p.More, p.Seq = true, 3 }, zhttp.CondBadRequest},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			id := fmt.Sprintf("bad-%d", i)
			p := c.newRequest(id, "GET", "http://127.0.0.1:1/")
			tc.mod(p)
			c.request(p)
			e := c.next(id)
			if e.Type != zhttp.TypeError || e.Condition != tc.cond || e.Seq != 0 {
				t.Fatalf("got %+v, want %s at seq 0", e, tc.cond)
			}
		})
	}
}

func TestZHTTPClientHeaders(t *testing.T) {
	type seen struct {
		host, ua, ae, custom string
		hasUA, hasAE         bool
		names                []string
	}
	got := make(chan seen, 1)
	gz := func() []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte("compressed body"))
		zw.Close()
		return b.Bytes()
	}()
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{host: r.Host, custom: r.Header.Get("X-Custom")}
		s.ua, s.hasUA = r.Header.Get("User-Agent"), r.Header.Get("User-Agent") != ""
		_, s.hasAE = r.Header["Accept-Encoding"]
		s.ae = r.Header.Get("Accept-Encoding")
		got <- s
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(gz)))
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Write(gz)
	}))
	u, _ := url.Parse(srv.URL)
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("hdr-1", "GET", "http://example.com/x")
	p.ConnectHost, p.ConnectPort = "127.0.0.1", mustPort(t, u)
	p.Headers = []zhttp.Header{
		{Name: "Host", Value: "wrong.example"},
		{Name: "X-Custom", Value: "yes"},
		{Name: "Accept-Encoding", Value: "gzip"},
		{Name: "Connection", Value: "close"},
	}
	c.request(p)
	c.next("hdr-1")
	r := c.readResponse("hdr-1", 1)
	s := <-got
	if s.host != "example.com" || s.custom != "yes" {
		t.Fatalf("backend saw %+v", s)
	}
	if bin := external(); bin != "" && !strings.Contains(bin, "tack") {
		// zurl lets curl replace Accept-Encoding with its own list, decodes
		// the body, drops Content-Length and keeps Content-Encoding (the
		// 1.36 proxy removes it). tack passes the body through untouched.
		t.Logf("%s: backend saw %+v; response headers %v; body %q", bin, s, r.head.Headers, r.body)
		if string(r.body) != "compressed body" || s.ae == "" {
			t.Fatalf("zurl behaviour changed")
		}
		return
	}
	// Like zurl, tack asks for gzip itself and decodes it: the proxy (1.36
	// and ours) removes Content-Encoding from what the client gets.
	if string(r.body) != "compressed body" {
		t.Fatalf("body not decoded: %q", r.body)
	}
	if v, ok := headerValue(r.head.Headers, "Content-Encoding"); ok {
		t.Fatalf("Content-Encoding = %q after decoding", v)
	}
	var multi []string
	for _, h := range r.head.Headers {
		if strings.EqualFold(h.Name, "X-Multi") {
			multi = append(multi, h.Value)
		}
	}
	if strings.Join(multi, ",") != "a,b" {
		t.Fatalf("X-Multi = %v", multi)
	}
	if s.hasUA || s.ae != "gzip" {
		t.Fatalf("backend saw User-Agent %q / Accept-Encoding %q; want none / our own gzip", s.ua, s.ae)
	}
	if v, ok := headerValue(r.head.Headers, "Content-Length"); ok {
		t.Fatalf("Content-Length = %q for a decoded body", v)
	}
}

func TestZHTTPClientNonStream(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 300000)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(payload[:100000])
		w.(http.Flusher).Flush()
		w.Write(payload[100000:])
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("ns-1", "GET", srv.URL+"/")
	p.Stream = false
	p.Credits = 10
	c.request(p)
	c.next("ns-1")
	r := c.readResponse("ns-1", 1)
	if len(r.packets) != 1 || !bytes.Equal(r.body, payload) {
		t.Fatalf("%d packets, %d bytes", len(r.packets), len(r.body))
	}
}

func TestZHTTPClientFireAndForget(t *testing.T) {
	hit := make(chan string, 1)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hit <- string(b)
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("", "POST", srv.URL+"/ff")
	p.ID = nil
	p.Body = []byte("fire")
	c.request(p)
	select {
	case b := <-hit:
		if b != "fire" {
			t.Fatalf("body %q", b)
		}
	case <-time.After(waitFor):
		t.Fatal("fire-and-forget request never reached the backend")
	}
}

func TestZHTTPClientTLS(t *testing.T) {
	srv := httptest.NewTLSServer(helloHandler())
	t.Cleanup(srv.Close)
	c := newFakeClient(t, startTarget(t, nil))
	c.request(c.newRequest("tls-1", "GET", srv.URL+"/hello.txt"))
	c.next("tls-1")
	if e := c.next("tls-1"); e.Type != zhttp.TypeError || e.Condition != zhttp.CondTLSError {
		t.Fatalf("got %+v, want tls-error", e)
	}
	p := c.newRequest("tls-2", "GET", srv.URL+"/hello.txt")
	p.IgnoreTLSErrors = true
	c.request(p)
	c.next("tls-2")
	if r := c.readResponse("tls-2", 1); string(r.body) != helloBody {
		t.Fatalf("response %+v", r)
	}
}

func TestZHTTPClientTrustConnectHost(t *testing.T) {
	needInProcess(t, "needs the test CA")
	srv := httptest.NewTLSServer(helloHandler()) // certificate for 127.0.0.1 and example.com
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tg := startTarget(t, nil, func(s *Service) { s.ts.roots = certPool(srv) })
	c := newFakeClient(t, tg)
	p := c.newRequest("tch-1", "GET", "https://backend.invalid:"+u.Port()+"/hello.txt")
	p.ConnectHost, p.ConnectPort = "127.0.0.1", mustPort(t, u)
	c.request(p)
	c.next("tch-1")
	if e := c.next("tch-1"); e.Type != zhttp.TypeError || e.Condition != zhttp.CondTLSError {
		t.Fatalf("got %+v, want tls-error", e)
	}
	p = c.newRequest("tch-2", "GET", "https://backend.invalid:"+u.Port()+"/hello.txt")
	p.ConnectHost, p.ConnectPort, p.TrustConnectHost = "127.0.0.1", mustPort(t, u), true
	c.request(p)
	c.next("tch-2")
	if r := c.readResponse("tch-2", 1); r.errCond != "" || string(r.body) != helloBody {
		t.Fatalf("response %+v", r)
	}
}

func TestZHTTPClientRedirects(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/r1", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/hello.txt", http.StatusFound) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.Handle("/hello.txt", helloHandler())
	srv, _ := backend(t, mux)
	c := newFakeClient(t, startTarget(t, nil))

	c.request(c.newRequest("rd-0", "GET", srv.URL+"/r1"))
	c.next("rd-0")
	if r := c.readResponse("rd-0", 1); r.head.Code != 302 {
		t.Fatalf("without follow-redirects: %+v", r.head)
	}
	p := c.newRequest("rd-1", "GET", srv.URL+"/r1")
	p.FollowRedirects = true
	c.request(p)
	c.next("rd-1")
	if r := c.readResponse("rd-1", 1); r.head.Code != 200 || string(r.body) != helloBody {
		t.Fatalf("followed: %+v", r)
	}
	p = c.newRequest("rd-2", "GET", srv.URL+"/loop")
	p.FollowRedirects = true
	c.request(p)
	c.next("rd-2")
	if e := c.next("rd-2"); e.Type != zhttp.TypeError || e.Condition != "too-many-redirects" {
		t.Fatalf("loop: %+v", e)
	}
}

func TestZHTTPClientKeepAliveAndExpiry(t *testing.T) {
	needInProcess(t, "uses shortened timers")
	release := make(chan struct{})
	defer close(release)
	aborted := make(chan struct{})
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			close(aborted)
		case <-release:
		}
	}))
	tg := startTarget(t, nil, func(s *Service) {
		s.timers = timers{tick: 20 * time.Millisecond, keepAlive: 100 * time.Millisecond, expire: 600 * time.Millisecond}
	})
	c := newFakeClient(t, tg)
	c.request(c.newRequest("ka-1", "GET", srv.URL+"/hang"))
	c.next("ka-1") // ack
	for i := int64(1); i <= 2; i++ {
		if ka := c.next("ka-1"); ka.Type != zhttp.TypeKeepAlive || ka.Seq != i {
			t.Fatalf("got %+v, want keep-alive seq %d", ka, i)
		}
	}
	select {
	case <-aborted:
	case <-time.After(waitFor):
		t.Fatal("expired session's request was not aborted")
	}
	// Expiry is silent: only keep-alives sent before it may still arrive,
	// and afterwards the id is unknown.
	for pk := c.tryNext("ka-1", 300*time.Millisecond); pk != nil; pk = c.tryNext("ka-1", 300*time.Millisecond) {
		if pk.Type != zhttp.TypeKeepAlive {
			t.Fatalf("expiry sent %+v", pk)
		}
	}
	cr := zhttp.New()
	cr.ID, cr.Seq, cr.Type, cr.Credits = []byte("ka-1"), 1, zhttp.TypeCredit, 10
	c.follow(cr)
	if pk := c.next("ka-1"); pk.Type != zhttp.TypeCancel || pk.From != nil {
		t.Fatalf("got %+v, want bare cancel", pk)
	}
}

func certPool(srv *httptest.Server) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return pool
}

func TestZHTTPClientActivityTimeout(t *testing.T) {
	needInProcess(t, "uses a sub-second timeout")
	release := make(chan struct{})
	defer close(release)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "some")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	tg := startTarget(t, func(cfg *Config) { cfg.Timeout = 300 * time.Millisecond }, func(s *Service) {
		s.timers.tick = 20 * time.Millisecond
	})
	c := newFakeClient(t, tg)
	c.request(c.newRequest("act-1", "GET", srv.URL+"/"))
	c.next("act-1")
	r := c.readResponse("act-1", 1)
	if r.errCond != zhttp.CondSessionTimeout || string(r.body) != "some" {
		t.Fatalf("got %+v, want session-timeout after the first chunk", r)
	}
}

// A fast tick must not time out sessions whose worker has not run yet
// (the activity clock starts when the session is created).
func TestZHTTPClientFastTick(t *testing.T) {
	needInProcess(t, "uses a 1 ms tick")
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil, func(s *Service) { s.timers.tick = time.Millisecond }))
	for i := range 50 {
		id := fmt.Sprintf("tick-%d", i)
		c.request(c.newRequest(id, "GET", srv.URL+"/hello.txt"))
		c.next(id)
		if r := c.readResponse(id, 1); r.errCond != "" {
			t.Fatalf("%s: %s", id, r.errCond)
		}
	}
}

func TestZHTTPClientIPv6Literal(t *testing.T) {
	c := newFakeClient(t, startTarget(t, nil))
	c.request(c.newRequest("v6-1", "GET", "http://[::1]:1/"))
	c.next("v6-1")
	if e := c.next("v6-1"); e.Type != zhttp.TypeError || e.Condition != zhttp.CondRemoteConnectionFailed {
		t.Fatalf("got %+v, want remote-connection-failed (IPv6 without allow_ipv6)", e)
	}
}

func TestZHTTPClientSinglePacketBody(t *testing.T) {
	got := make(chan string, 1)
	srv, _ := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- fmt.Sprintf("%s %d %q %v", r.Method, r.ContentLength, b, r.TransferEncoding)
	}))
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("sb-1", "PUT", srv.URL+"/")
	p.Body = []byte("abc")
	c.request(p)
	if ack := c.next("sb-1"); ack.Type != zhttp.TypeKeepAlive {
		t.Fatalf("ack %+v", ack)
	}
	c.readResponse("sb-1", 1)
	if s := <-got; s != `PUT 3 "abc" []` {
		t.Fatalf("backend saw %s", s)
	}
}

func TestZHTTPClientHeadBeforeCredits(t *testing.T) {
	skipExternal(t, "zurl sends nothing until the client grants credits")
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, nil))
	p := c.newRequest("zc-1", "GET", srv.URL+"/hello.txt")
	p.Credits = 0
	c.request(p)
	c.next("zc-1")
	head := c.next("zc-1")
	if head.Code != 200 || !head.More || len(head.Body) != 0 {
		t.Fatalf("head %+v", head)
	}
	cp := zhttp.New()
	cp.ID, cp.Seq, cp.Type, cp.Credits = []byte("zc-1"), 1, zhttp.TypeCredit, 100
	c.follow(cp)
	if pk := c.next("zc-1"); pk.Seq != 2 || pk.More || string(pk.Body) != helloBody {
		t.Fatalf("body packet %+v", pk)
	}
}

// Many req-mode requests against a small max_open_requests: input is
// throttled while replies keep flowing on the same ROUTER.
func TestZHTTPClientReqModeBackPressure(t *testing.T) {
	srv, _ := backend(t, helloHandler())
	c := newFakeClient(t, startTarget(t, func(cfg *Config) { cfg.MaxOpenRequests = 4 }))
	const n = 300
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i := range n {
		p := zhttp.New()
		p.ID, p.Method, p.URI = []byte(fmt.Sprintf("rq-%d", i)), "GET", srv.URL+"/hello.txt"
		if !c.dealer.SendWait(ctx, zsock.Message{{}, p.Encode()}) {
			t.Fatal("dealer queue full")
		}
	}
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case m := <-c.dealer.Recv():
			d := dict(t, m[1])
			if code, _ := d.Int("code"); code != 200 {
				t.Fatalf("reply %v", d)
			}
			seen[string(mustBytes(t, d, "id"))] = true
		case <-ctx.Done():
			t.Fatalf("only %d of %d replies", len(seen), n)
		}
	}
}
