package connmgr

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Captured from condure 1.9.1 (zmq-wire.md §A.1).
const (
	capturedFirst  = "T323:4:from,7:condure,2:id,5:1-2-b,3:seq,1:0#3:ext,15:5:multi,4:true!}6:method,3:GET,3:uri,37:http://127.0.0.1:18001/path/x?a=1&b=2,7:headers,100:26:4:Host,15:127.0.0.1:18001,]29:10:User-Agent,11:curl/7.88.1,]15:6:Accept,3:*/*,]14:5:X-Foo,3:bar,]]7:credits,4:8192#6:stream,4:true!12:peer-address,9:127.0.0.1,9:peer-port,5:49186#}"
	capturedCredit = "T95:4:from,7:condure,2:id,5:1-2-b,3:seq,1:1#3:ext,15:5:multi,4:true!}4:type,6:credit,7:credits,1:6#}"
)

// recode re-encodes a captured packet with some fields replaced, giving the
// exact bytes condure would have sent for our id and port.
func recode(t *testing.T, captured string, set map[string]any) []byte {
	t.Helper()
	d, err := tnetstring.DecodeDict([]byte(captured[1:]))
	if err != nil {
		t.Fatal(err)
	}
	for i := range d {
		if v, ok := set[d[i].Key]; ok {
			d[i].Value = v
		}
	}
	out, err := tnetstring.Encode([]byte("T"), d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestConnmgrFirstPacket(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	fmt.Fprint(c, "GET /path/x?a=1&b=2 HTTP/1.1\r\nHost: 127.0.0.1:18001\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\nX-Foo: bar\r\n\r\n")
	p, raw := f.first()
	port := int64(c.LocalAddr().(*net.TCPAddr).Port)
	want := recode(t, capturedFirst, map[string]any{"id": p.ID, "peer-port": port})
	if !bytes.Equal(raw, want) {
		t.Errorf("first packet\n got %s\nwant %s", raw, want)
	}
	if len(p.ID) == 0 || len(p.ID) > zhttp.MaxID || p.Seq != 0 || p.More {
		t.Errorf("id %q seq %d more %v", p.ID, p.Seq, p.More)
	}
	f.respond(p.ID, 0, 200, hdr("Content-Type", "text/plain", "Content-Length", "5"), "hello", false)
	head, body := readHTTP(t, bufio.NewReader(c))
	if want := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"; head != want || body != "hello" {
		t.Errorf("response %q %q, want %q", head, body, want)
	}
}

func TestConnmgrResponseFraming(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	tests := []struct {
		name     string
		req      string
		headers  []zhttp.Header
		code     int64
		parts    []string // body of each packet; all but the last have more
		wantHead string
		wantBody string
		closes   bool
	}{
		{
			name:     "single packet without length gets Content-Length",
			req:      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			headers:  hdr("Content-Type", "text/plain"),
			code:     200,
			parts:    []string{"hi"},
			wantHead: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n",
			wantBody: "hi",
		},
		{
			name:     "server hop-by-hop headers are replaced",
			req:      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			headers:  hdr("Connection", "close", "Transfer-Encoding", "chunked", "X-A", "1", "Content-Length", "3"),
			code:     200,
			parts:    []string{"a", "bc"},
			wantHead: "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n",
			wantBody: "abc",
		},
		{
			name:     "204 has no body and no length",
			req:      "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			code:     204,
			parts:    []string{""},
			wantHead: "HTTP/1.1 204 OK\r\n\r\n",
		},
		{
			name:     "HTTP/1.0 keep-alive",
			req:      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			code:     200,
			parts:    []string{"ok"},
			wantHead: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n",
			wantBody: "ok",
		},
		{
			name:     "HTTP/1.1 close",
			req:      "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			code:     200,
			parts:    []string{"ok"},
			wantHead: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
			wantBody: "ok",
			closes:   true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, h)
			br := bufio.NewReader(c)
			fmt.Fprint(c, tc.req)
			p, _ := f.first()
			seq := int64(0)
			for i, part := range tc.parts {
				more := i < len(tc.parts)-1
				if i == 0 {
					f.respond(p.ID, seq, tc.code, tc.headers, part, more)
				} else {
					q := f.packet(p.ID, seq)
					q.Body, q.More = []byte(part), more
					f.send(q)
				}
				seq++
				if more {
					f.expectType(zhttp.TypeCredit)
				}
			}
			head, body := readHTTP(t, br)
			if head != tc.wantHead || body != tc.wantBody {
				t.Fatalf("got %q %q\nwant %q %q", head, body, tc.wantHead, tc.wantBody)
			}
			if tc.closes {
				expectClosed(t, br, "")
			}
		})
	}
}

func TestConnmgrChunkedCredits(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	f.respond(p.ID, 0, 200, hdr("Content-Type", "text/plain"), "hello\n", true)
	head := readHead(t, br)
	if want := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n"; head != want {
		t.Fatalf("head %q, want %q", head, want)
	}
	chunk := make([]byte, len("6\r\nhello\n\r\n"))
	io.ReadFull(br, chunk)
	if string(chunk) != "6\r\nhello\n\r\n" {
		t.Fatalf("chunk %q", chunk)
	}
	cp, raw, ident := f.stream()
	if want := recode(t, capturedCredit, map[string]any{"id": p.ID}); !bytes.Equal(raw, want) {
		t.Errorf("credit\n got %s\nwant %s", raw, want)
	}
	if refBin == "" && string(ident) != h.id {
		t.Errorf("ROUTER identity %q, want %q", ident, h.id)
	}
	if cp.Credits != 6 {
		t.Errorf("credits %d", cp.Credits)
	}
	q := f.packet(p.ID, 1)
	q.Body = []byte("world\n")
	f.send(q)
	rest, _ := io.ReadAll(io.LimitReader(br, int64(len("6\r\nworld\n\r\n0\r\n\r\n"))))
	if string(rest) != "6\r\nworld\n\r\n0\r\n\r\n" {
		t.Fatalf("rest %q", rest)
	}
}

// TestConnmgrUpload streams a 1 MB body: packets are at most buffer-size,
// never exceed the credits granted, carry `more` except the last.
func TestConnmgrUpload(t *testing.T) {
	const size = 1 << 20
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			h := startConnmgr(t, nil)
			f := newFakeServer(t, h, "proxy_45922")
			f.warm()
			body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
			res := make(chan error, 1)
			go func() {
				var r io.Reader = bytes.NewReader(body)
				if chunked {
					r = io.MultiReader(r) // hides the length: chunked
				}
				req, _ := http.NewRequest("POST", "http://"+h.addr+"/upload", r)
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if string(b) != "ok\n" {
						err = fmt.Errorf("response %q", b)
					}
				}
				http.DefaultClient.CloseIdleConnections()
				res <- err
			}()
			p, _ := f.first()
			if !p.More || p.Body != nil {
				t.Fatalf("first packet more=%v body=%q", p.More, p.Body)
			}
			if !chunked && p.Method != "POST" {
				t.Fatalf("method %q", p.Method)
			}
			granted, got, seq, outSeq := int64(5000), 0, int64(1), int64(0)
			g := f.packet(p.ID, outSeq)
			g.Type, g.Credits = zhttp.TypeCredit, granted
			f.send(g)
			outSeq++
			var received bytes.Buffer
			for {
				q, _, _ := f.stream()
				if q.Type != zhttp.TypeData {
					t.Fatalf("unexpected %q", q.Type)
				}
				if q.Seq != seq {
					t.Fatalf("seq %d, want %d", q.Seq, seq)
				}
				seq++
				if len(q.Body) > DefaultBufferSize {
					t.Fatalf("packet of %d bytes", len(q.Body))
				}
				got += len(q.Body)
				received.Write(q.Body)
				if int64(got) > granted {
					t.Fatalf("sent %d bytes with %d credits", got, granted)
				}
				if !q.More {
					break
				}
				if int64(got) == granted {
					g := f.packet(p.ID, outSeq)
					g.Type, g.Credits = zhttp.TypeCredit, 100000
					f.send(g)
					outSeq++
					granted += 100000
				}
			}
			if !bytes.Equal(received.Bytes(), body) {
				t.Fatalf("received %d bytes, want %d", received.Len(), len(body))
			}
			f.respond(p.ID, outSeq, 200, hdr("Content-Length", "3"), "ok\n", false)
			if err := <-res; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConnmgrExpectContinue(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	p, _ := f.first()
	g := f.packet(p.ID, 0)
	g.Type, g.Credits = zhttp.TypeCredit, 8192
	f.send(g)
	if head := readHead(t, br); head != "HTTP/1.1 100 Continue\r\n\r\n" {
		t.Fatalf("interim %q", head)
	}
	fmt.Fprint(c, "hello")
	q, _, _ := f.stream()
	if string(q.Body) != "hello" || q.More {
		t.Fatalf("body %q more %v", q.Body, q.More)
	}
	f.respond(p.ID, 1, 200, nil, "done", false)
	if _, body := readHTTP(t, br); body != "done" {
		t.Fatalf("body %q", body)
	}
}

func TestConnmgrKeepAliveRequests(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	ids := map[string]bool{}
	for i := range 3 {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		p, _ := f.first()
		if ids[string(p.ID)] || p.Seq != 0 {
			t.Fatalf("request %d: id %q reused or seq %d", i, p.ID, p.Seq)
		}
		ids[string(p.ID)] = true
		f.respond(p.ID, 0, 200, nil, strconv.Itoa(i), false)
		if _, body := readHTTP(t, br); body != strconv.Itoa(i) {
			t.Fatalf("request %d: body %q", i, body)
		}
	}
}

func TestConnmgrPipelined(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, path := range []string{"/a", "/b"} {
		p, _ := f.first()
		if !strings.HasSuffix(p.URI, path) {
			t.Fatalf("uri %q, want %s", p.URI, path)
		}
		f.respond(p.ID, 0, 200, hdr("Content-Type", "text/plain"), "first", true)
		f.expectType(zhttp.TypeCredit)
		q := f.packet(p.ID, 1)
		q.Body = []byte(path)
		f.send(q)
		if _, body := readHTTP(t, br); body != "first"+path {
			t.Fatalf("body %q", body)
		}
	}
}

func TestConnmgrHTTP10Stream(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /s HTTP/1.0\r\n\r\n")
	p, _ := f.first()
	if p.URI != "http://localhost/s" {
		t.Errorf("uri %q", p.URI)
	}
	f.respond(p.ID, 0, 200, hdr("Content-Type", "text/plain"), "abc", true)
	f.expectType(zhttp.TypeCredit)
	q := f.packet(p.ID, 1)
	q.Body = []byte("def")
	f.send(q)
	expectClosed(t, br, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabcdef")
}

func TestConnmgrHead(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	if p.Method != "HEAD" {
		t.Fatalf("method %q", p.Method)
	}
	f.respond(p.ID, 0, 200, hdr("Content-Length", "100"), "", false)
	if head := readHead(t, br); head != "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" {
		t.Fatalf("head %q", head)
	}
	// The connection carries on with no body bytes in between.
	fmt.Fprint(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ = f.first()
	f.respond(p.ID, 0, 200, nil, "next", false)
	if head, body := readHTTP(t, br); body != "next" {
		t.Fatalf("second response %q %q", head, body)
	}
}

func TestConnmgrClientDisconnect(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	f.respond(p.ID, 0, 200, nil, "x", true)
	readHead(t, br)
	f.expectType(zhttp.TypeCredit)
	c.Close()
	q := f.expectType(zhttp.TypeCancel)
	if !bytes.Equal(q.ID, p.ID) || q.Seq != 2 {
		t.Fatalf("cancel id %q seq %d", q.ID, q.Seq)
	}
}

// TestConnmgrServerEnds covers zmq-wire.md §A.2: condure closes the client
// without a response.
func TestConnmgrServerEnds(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	tests := []struct {
		name   string
		mutate func(p *zhttp.Packet)
		raw    func(id []byte) []byte
		cancel bool // tack answers with a cancel
	}{
		{name: "error", mutate: func(p *zhttp.Packet) { p.Type, p.Condition = zhttp.TypeError, zhttp.CondRemoteConnectionFailed }},
		{name: "cancel", mutate: func(p *zhttp.Packet) { p.Type = zhttp.TypeCancel }},
		{name: "bad seq", mutate: func(p *zhttp.Packet) { p.Seq, p.Code, p.Reason = 5, 200, "OK" }, cancel: true},
		{name: "unknown type", raw: func(id []byte) []byte {
			b := bogus(id)
			return []byte(fmt.Sprintf("T%d:%s", len(b)-1, b))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, h)
			br := bufio.NewReader(c)
			fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			p, _ := f.first()
			if tc.raw != nil {
				f.pub.Send() <- [][]byte{append([]byte(h.id+" "), tc.raw(p.ID)...)}
			} else {
				q := f.packet(p.ID, 0)
				tc.mutate(q)
				f.send(q)
			}
			expectClosed(t, br, "")
			if tc.cancel && refBin == "" {
				f.expectType(zhttp.TypeCancel)
			}
		})
	}
}

func bogus(id []byte) string {
	return fmt.Sprintf("4:from,10:proxy_test,2:id,%d:%s,3:seq,1:0#4:type,5:bogus,}", len(id), id)
}

// TestConnmgrHandoff follows zmq-wire.md §A.1 "Handoff from proxy to
// handler": proceed goes to the old owner, the new one continues the seq.
func TestConnmgrHandoff(t *testing.T) {
	h := startConnmgr(t, nil)
	proxy := newFakeServer(t, h, "proxy_h5944")
	proxy.warm()
	handler := newFakeServer(t, h, "handler_h5944")
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := proxy.first()
	proxy.respond(p.ID, 0, 200, hdr("Content-Type", "text/plain"), "first\n", true)
	readHead(t, br)
	if q := proxy.expectType(zhttp.TypeCredit); q.Seq != 1 || q.Credits != 6 {
		t.Fatalf("credit seq %d credits %d", q.Seq, q.Credits)
	}
	hs := proxy.packet(p.ID, 1)
	hs.Type = zhttp.TypeHandoffStart
	proxy.send(hs)
	if q := proxy.expectType(zhttp.TypeHandoffProceed); q.Seq != 2 || !q.Multi {
		t.Fatalf("proceed seq %d multi %v", q.Seq, q.Multi)
	}
	ka := handler.packet(p.ID, 2)
	ka.Type, ka.Multi = zhttp.TypeKeepAlive, true
	handler.send(ka)
	body := handler.packet(p.ID, 3)
	body.Body, body.More = []byte("second\n"), true
	handler.send(body)
	want := "6\r\nfirst\n\r\n7\r\nsecond\n\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
		t.Fatalf("body %q %v", got, err)
	}
	if refBin == "" {
		// A late packet from the old owner, once the new one has spoken,
		// is dropped, not a bad seq.
		stray := proxy.packet(p.ID, 4)
		stray.Type = zhttp.TypeKeepAlive
		proxy.send(stray)
	}
	if q := handler.expectType(zhttp.TypeCredit); q.Seq != 3 || q.Credits != 7 {
		t.Fatalf("credit to handler seq %d credits %d", q.Seq, q.Credits)
	}
	c.Close()
	if q := handler.expectType(zhttp.TypeCancel); q.Seq != 4 {
		t.Fatalf("cancel seq %d", q.Seq)
	}
	proxy.noStream(50 * time.Millisecond)
}

// TestConnmgrHandoffResume: the old owner takes the session back after
// handoff-proceed (Pushpin's proxy does when the handler refuses the
// accept) and its answer reaches the client.
func TestConnmgrHandoffResume(t *testing.T) {
	h := startConnmgr(t, nil)
	proxy := newFakeServer(t, h, "proxy_h5945")
	proxy.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := proxy.first()
	ka := proxy.packet(p.ID, 0)
	ka.Type = zhttp.TypeKeepAlive
	proxy.send(ka)
	hs := proxy.packet(p.ID, 1)
	hs.Type = zhttp.TypeHandoffStart
	proxy.send(hs)
	proxy.expectType(zhttp.TypeHandoffProceed)
	ka = proxy.packet(p.ID, 2)
	ka.Type = zhttp.TypeKeepAlive
	proxy.send(ka)
	proxy.respond(p.ID, 3, 502, hdr("Content-Type", "text/plain", "Content-Length", "32"), "Error while proxying to origin.\n", false)
	head, body := readHTTP(t, br)
	if !strings.HasPrefix(head, "HTTP/1.1 502") || body != "Error while proxying to origin.\n" {
		t.Fatalf("got %q %q", head, body)
	}
}

func TestConnmgrKeepAliveTimer(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("needs the injectable clock")
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	var ids [][]byte
	for range 2 {
		c := dial(t, h)
		fmt.Fprint(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
		p, _ := f.first()
		ka := f.packet(p.ID, 0)
		ka.Type, ka.Multi = zhttp.TypeKeepAlive, true
		f.send(ka)
		ids = append(ids, p.ID)
	}
	eventually(t, waitFor, func() error {
		if n := h.sessions(); n != 2 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
	h.clock.Advance(46 * time.Second)
	q, raw, _ := f.stream()
	if q.Type != zhttp.TypeKeepAlive || len(q.IDs) != 2 || !q.Multi {
		t.Fatalf("keep-alive %s", raw)
	}
	for _, e := range q.IDs {
		if e.Seq != 1 || !(bytes.Equal(e.ID, ids[0]) || bytes.Equal(e.ID, ids[1])) {
			t.Fatalf("keep-alive entry %q seq %d", e.ID, e.Seq)
		}
	}
	d, _ := tnetstring.DecodeDict(raw[1:])
	var keys []string
	for _, fl := range d {
		keys = append(keys, fl.Key)
	}
	if got := strings.Join(keys, ","); got != "from,id,ext,type" {
		t.Fatalf("keys %s", got)
	}
}

func TestConnmgrExpiry(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("needs the injectable clock")
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	f.respond(p.ID, 0, 200, nil, "x", true)
	readHead(t, br)
	f.expectType(zhttp.TypeCredit)
	h.clock.Advance(61 * time.Second)
	expectClosed(t, br, "1\r\nx\r\n")
}

func TestConnmgrHeadTooLarge(t *testing.T) {
	h := startConnmgr(t, func(c *Config) { c.BufferSize = 1024 })
	h.tackOnly("condure 1.9.1 closes the connection; connmgr 1.40+ answers 400")
	c := dial(t, h)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 2000))
	body := "Request header size exceeded limit of 1024 bytes.\n"
	want := fmt.Sprintf("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	expectClosed(t, bufio.NewReader(c), want)
}

func TestConnmgrBadRequest(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure 1.9.1 closes the connection; connmgr 1.40+ answers 400")
	for _, req := range []string{
		"GARBAGE\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
	} {
		c := dial(t, h)
		br := bufio.NewReader(c)
		fmt.Fprint(c, req)
		head, body := readHTTP(t, br)
		if !strings.HasPrefix(head, "HTTP/1.1 400 Bad Request\r\n") || !strings.HasPrefix(body, "Failed to parse request: ") {
			t.Errorf("%q: got %q %q", req, head, body)
		}
		expectClosed(t, br, "")
	}
}

func TestConnmgrNoServer(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure queues the request and waits")
	c := dial(t, h)
	br := bufio.NewReader(c)
	for range 2 { // the connection stays usable
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		head, body := readHTTP(t, br)
		if !strings.HasPrefix(head, "HTTP/1.1 503 ") || body != msgNoServer {
			t.Fatalf("got %q %q", head, body)
		}
	}
}

func TestConnmgrAckTimeout(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("condure waits for the 60 s expiry")
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	h.clock.Advance(DefaultAckTimeout + time.Second)
	head, body := readHTTP(t, br)
	if !strings.HasPrefix(head, "HTTP/1.1 503 ") || body != msgNoAck {
		t.Fatalf("got %q %q", head, body)
	}
	// A late answer is cancelled.
	ka := f.packet(p.ID, 0)
	ka.Type = zhttp.TypeKeepAlive
	f.send(ka)
	if q := f.expectType(zhttp.TypeCancel); !bytes.Equal(q.ID, p.ID) {
		t.Fatalf("cancel for %q", q.ID)
	}
}

func TestConnmgrShutdownCancels(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("in-process shutdown")
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	idle := dial(t, h)
	fmt.Fprint(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	p0, _ := f.first()
	f.respond(p0.ID, 0, 200, nil, "", false)
	readHTTP(t, bufio.NewReader(idle))
	var ids [][]byte
	var brs []*bufio.Reader
	for range 2 {
		c := dial(t, h)
		br := bufio.NewReader(c)
		fmt.Fprint(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
		p, _ := f.first()
		ka := f.packet(p.ID, 0)
		ka.Type, ka.Multi = zhttp.TypeKeepAlive, true
		f.send(ka)
		ids = append(ids, p.ID)
		brs = append(brs, br)
	}
	eventually(t, waitFor, func() error {
		if n := h.sessions(); n != 2 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("shutdown took %v", d)
	}
	q, raw, _ := f.stream()
	if q.Type != zhttp.TypeCancel || len(q.IDs) != 2 {
		t.Fatalf("cancel batch %s", raw)
	}
	for _, br := range brs {
		expectClosed(t, br, "")
	}
	expectClosed(t, bufio.NewReader(idle), "")
}

// TestConnmgrIdleHoldsNoBuffers: idle keep-alive connections and idle
// held responses pin no pooled reader or body buffer.
func TestConnmgrIdleHoldsNoBuffers(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("inspects Service internals")
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	const n = 20
	g0 := runtime.NumGoroutine()
	for i := range 2 * n {
		c := dial(t, h)
		br := bufio.NewReader(c)
		fmt.Fprint(c, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
		p, _ := f.first()
		g := f.packet(p.ID, 0)
		g.Type, g.Credits = zhttp.TypeCredit, 8192
		f.send(g)
		f.stream()     // the body
		more := i >= n // the second half stays held
		f.respond(p.ID, 1, 200, nil, "ok", more)
		if more {
			readHead(t, br)
			f.expectType(zhttp.TypeCredit)
		} else {
			readHTTP(t, br)
		}
	}
	eventually(t, waitFor, func() error {
		if r, ch := h.svc.readersOut.Load(), h.svc.chunksOut.Load(); r != 0 || ch != 0 {
			return fmt.Errorf("%d readers and %d chunks lent out", r, ch)
		}
		return nil
	})
	// One goroutine per connection, none per direction.
	if d := runtime.NumGoroutine() - g0; d > 2*n+2 {
		t.Errorf("%d goroutines for %d connections", d, 2*n)
	}
}

func (h *harness) sessions() int {
	if h.svc == nil {
		return -1
	}
	// Ask the engine's goroutine, which owns the table.
	res := make(chan int, 1)
	select {
	case h.svc.eng.probe <- res:
		return <-res
	case <-h.svc.eng.done:
		return -1
	}
}

// TestConnmgrEarlyResponse: the server answers before taking the body; the
// connection closes after the response, which still reaches the client.
func TestConnmgrEarlyResponse(t *testing.T) {
	h := startConnmgr(t, nil)
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("z", 30000))
	p, _ := f.first()
	f.respond(p.ID, 0, 413, hdr("Content-Length", "4"), "big\n", false)
	head, body := readHTTP(t, br)
	if !strings.HasPrefix(head, "HTTP/1.1 413 OK\r\n") || !strings.Contains(head, "Connection: close\r\n") || body != "big\n" {
		t.Fatalf("got %q %q", head, body)
	}
	expectClosed(t, br, "")
}

func TestConnmgrStreamTimeout(t *testing.T) {
	h := startConnmgr(t, func(c *Config) { c.StreamTimeout = 800 * time.Millisecond })
	h.tackOnly("sub-second --stream-timeout")
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	idle := dial(t, h)
	expectClosed(t, bufio.NewReader(idle), "")
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	f.respond(p.ID, 0, 200, nil, "x", true)
	f.expectType(zhttp.TypeCredit)
	if q := f.expectType(zhttp.TypeCancel); !bytes.Equal(q.ID, p.ID) {
		t.Fatalf("cancel for %q", q.ID)
	}
	readHead(t, br)
	expectClosed(t, br, "1\r\nx\r\n")
}

func TestConnmgrCreditOverrun(t *testing.T) {
	h := startConnmgr(t, func(c *Config) { c.BufferSize = 1024 })
	f := newFakeServer(t, h, "proxy_test")
	f.warm()
	c := dial(t, h)
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	p, _ := f.first()
	f.respond(p.ID, 0, 200, nil, strings.Repeat("o", 2000), true)
	expectClosed(t, bufio.NewReader(c), "")
	if refBin == "" {
		f.expectType(zhttp.TypeCancel)
	}
}

func TestConnmgrMaxConn(t *testing.T) {
	h := startConnmgr(t, func(c *Config) { c.StreamMaxConn = 1 })
	h.tackOnly("in-process limit")
	first := dial(t, h)
	fmt.Fprint(first, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	readHTTP(t, bufio.NewReader(first)) // 503: no server, but the connection stays
	second := dial(t, h)                // queued in the listen backlog
	fmt.Fprint(second, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(second)
	second.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("second connection served while the first is open")
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(waitFor))
	if head, _ := readHTTP(t, br); !strings.HasPrefix(head, "HTTP/1.1 503 ") {
		t.Fatalf("got %q", head)
	}
}

func TestConnmgrHeadRefused(t *testing.T) {
	h := startConnmgr(t, nil)
	h.tackOnly("503 without a server")
	c := dial(t, h)
	br := bufio.NewReader(c)
	fmt.Fprint(c, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	head := readHead(t, br)
	if !strings.HasPrefix(head, "HTTP/1.1 503 ") || !strings.Contains(head, fmt.Sprintf("Content-Length: %d\r\n", len(msgNoServer))) {
		t.Fatalf("head %q", head)
	}
	// No body after the HEAD response: the next bytes are the GET's.
	if head, body := readHTTP(t, br); !strings.HasPrefix(head, "HTTP/1.1 503 ") || body != msgNoServer {
		t.Fatalf("got %q %q", head, body)
	}
}

// TestConnmgrCreditsBatched: the credits of sessions that wrote the same
// amount to their clients since the last tick (a publish to many
// subscribers) go to a server that announced ext.multi as one list-form
// credit packet; a session owing another amount gets its own packet.
func TestConnmgrCreditsBatched(t *testing.T) {
	h := startConnmgr(t, func(c *Config) { c.Tick = 500 * time.Millisecond })
	h.tackOnly("condure grants credits one session at a time")
	f := newFakeServer(t, h, "handler_test")
	f.warm()
	// A tick can fall between the writes of one attempt (they take
	// milliseconds): then the grants are split, and the attempt is made
	// again with new sessions.
	for attempt := 1; ; attempt++ {
		bodies := []string{"hello\n", "hello\n", "hello\n", "hi\n"}
		ids := make([][]byte, len(bodies))
		readers := make([]*bufio.Reader, len(bodies))
		for i := range bodies {
			c := dial(t, h)
			readers[i] = bufio.NewReader(c)
			fmt.Fprint(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
			p, _ := f.first()
			ids[i] = p.ID
			q := f.packet(p.ID, 0)
			q.Code, q.Reason, q.Headers, q.More, q.Multi = 200, "OK", hdr("Content-Type", "text/plain"), true, true
			f.send(q)
			readHead(t, readers[i])
		}
		for i, b := range bodies {
			q := f.packet(ids[i], 1)
			q.Body, q.More = []byte(b), true
			f.send(q)
		}
		for i, b := range bodies {
			want := fmt.Sprintf("%x\r\n%s\r\n", len(b), b)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(readers[i], got); err != nil || string(got) != want {
				t.Fatalf("client %d read %q, %v", i, got, err)
			}
		}
		granted := map[string]int64{}
		var packets []*zhttp.Packet
		for len(granted) < len(bodies) {
			p := f.expectType(zhttp.TypeCredit)
			packets = append(packets, p)
			if p.IDs == nil {
				granted[string(p.ID)] += p.Credits
				continue
			}
			if !p.Multi {
				t.Errorf("list-form credit packet without ext.multi: %+v", p)
			}
			for _, e := range p.IDs {
				if e.Seq != 1 {
					t.Errorf("%s: seq %d in the list, want 1", e.ID, e.Seq)
				}
				granted[string(e.ID)] += p.Credits
			}
		}
		for i, b := range bodies {
			if granted[string(ids[i])] != int64(len(b)) {
				t.Errorf("%s granted %d, want %d", ids[i], granted[string(ids[i])], len(b))
			}
		}
		if len(packets) == 2 && len(packets[0].IDs)+len(packets[1].IDs) == 3 {
			return
		}
		if attempt == 3 {
			t.Fatalf("credits went out in %d packets, want one list of 3 and one single: %+v", len(packets), packets)
		}
		t.Logf("attempt %d: grants split over ticks (%d packets), again", attempt, len(packets))
	}
}
