package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tack/internal/grip"
)

// echo is what the test backend reports about the request it received.
type echo struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Proto   string      `json:"proto"`
	Headers http.Header `json:"headers"`
	Host    string      `json:"host"`
	Length  int64       `json:"length"`
	SHA256  string      `json:"sha256"`
	TE      []string    `json:"te"`
}

// backend is an HTTP server playing the origin.
type backend struct {
	*httptest.Server
	conns atomic.Int64
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		e := echo{Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Headers: r.Header, Host: r.Host,
			Length: n, SHA256: hex.EncodeToString(h.Sum(nil)), TE: r.TransferEncoding}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Add("Set-Cookie", "a=1")
		w.Header().Add("Set-Cookie", "b=2")
		json.NewEncoder(w).Encode(e)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		writePattern(w, n)
	})
	mux.HandleFunc("/chunks", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/reset", func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	})
	b.Server = httptest.NewUnstartedServer(mux)
	b.Server.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *backend) hostPort() string { return strings.TrimPrefix(b.URL, "http://") }

// writePattern writes n bytes of a repeating pattern.
func writePattern(w io.Writer, n int) {
	buf := make([]byte, 64*1024)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	for n > 0 {
		k := min(n, len(buf))
		if _, err := w.Write(buf[:k]); err != nil {
			return
		}
		n -= k
	}
}

func patternSum(n int) string {
	h := sha256.New()
	writePattern(h, n)
	return hex.EncodeToString(h.Sum(nil))
}

func getEcho(t *testing.T, resp *http.Response) echo {
	t.Helper()
	defer resp.Body.Close()
	var e echo
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("status %d, bad echo %q: %v", resp.StatusCode, body, err)
	}
	return e
}

func TestE2EProxyPlain(t *testing.T) {
	be := newBackend(t)
	s := startSuite(t, suiteOptions{routes: "* " + be.hostPort() + "\n"})
	client := &http.Client{Timeout: 60 * time.Second}

	t.Run("methods", func(t *testing.T) {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
			req, _ := http.NewRequest(m, s.url("/m"), strings.NewReader("body"))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			if e := getEcho(t, resp); e.Method != m {
				t.Errorf("backend saw %q, want %q", e.Method, m)
			}
		}
	})
	t.Run("head", func(t *testing.T) {
		resp, err := client.Head(s.url("/big?n=1234"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != 1234 {
			t.Errorf("HEAD: status %d, content-length %d", resp.StatusCode, resp.ContentLength)
		}
	})
	t.Run("query byte-exact", func(t *testing.T) {
		const q = "/q/a%2Fb?x=1&y=%2F%20+z&&empty=&k"
		e := getEcho(t, mustDo(t, client, "GET", s.url(q), nil, nil))
		if e.URI != q {
			t.Errorf("backend saw %q, want %q", e.URI, q)
		}
	})
	t.Run("repeated and hop headers", func(t *testing.T) {
		h := http.Header{}
		h.Add("X-Multi", "one")
		h.Add("X-Multi", "two")
		h.Set("Grip-Sig", "forged")
		h.Set("Grip-Channel", "x")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Accept-Encoding", "br;q=1.0, x-client")
		resp := mustDo(t, client, "GET", s.url("/h"), h, nil)
		if got := resp.Header.Values("Set-Cookie"); len(got) != 2 {
			t.Errorf("client saw Set-Cookie %q, want two", got)
		}
		e := getEcho(t, resp)
		if got := e.Headers.Values("X-Multi"); len(got) != 2 || got[0] != "one" || got[1] != "two" {
			t.Errorf("backend saw X-Multi %q", got)
		}
		// The client's forged Grip-Sig is replaced by one signed with sig_key.
		key, _ := grip.ParseKey("changeme", "", nil)
		if sig := e.Headers.Get("Grip-Sig"); sig == "forged" || !grip.ValidateToken(sig, key, time.Now()) {
			t.Errorf("backend saw Grip-Sig %q, want a token signed with sig_key", sig)
		}
		if f := e.Headers.Get("Grip-Feature"); !strings.Contains(f, "link:next") {
			t.Errorf("backend saw Grip-Feature %q", f)
		}
		// The client's Accept-Encoding is dropped; the outbound client may
		// ask for (and decode) gzip itself, as zurl does.
		if ae := e.Headers.Get("Accept-Encoding"); strings.Contains(ae, "x-client") {
			t.Errorf("backend saw the client's Accept-Encoding %q", ae)
		}
		for _, name := range []string{"Grip-Channel", "Keep-Alive", "Connection"} {
			if v := e.Headers.Get(name); v != "" {
				t.Errorf("backend saw %s: %q, want it stripped", name, v)
			}
		}
		if e.Headers.Get("X-Forwarded-For") != "" {
			t.Errorf("default config added X-Forwarded-For %q", e.Headers.Get("X-Forwarded-For"))
		}
		if !strings.HasPrefix(e.Host, "127.0.0.1:") || e.Host != fmt.Sprintf("127.0.0.1:%d", s.httpPort) {
			t.Errorf("backend saw Host %q, want the client's", e.Host)
		}
	})
	t.Run("chunked request body", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < 100; i++ {
				pw.Write(bytes.Repeat([]byte("x"), 1000))
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", s.url("/up"), pr)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if e := getEcho(t, resp); e.Length != 100000 {
			t.Errorf("backend got %d bytes, want 100000", e.Length)
		}
	})
	t.Run("chunked response", func(t *testing.T) {
		resp := mustDo(t, client, "GET", s.url("/chunks"), nil, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"; string(body) != want {
			t.Errorf("body %q, want %q", body, want)
		}
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("transfer-encoding %v, want chunked", resp.TransferEncoding)
		}
	})
	t.Run("50MB download", func(t *testing.T) {
		for _, chunked := range []string{"", "&chunked=1"} {
			const n = 50 << 20
			resp := mustDo(t, client, "GET", s.url("/big?n="+strconv.Itoa(n)+chunked), nil, nil)
			h := sha256.New()
			got, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != patternSum(n) {
				t.Fatalf("download%s: %d bytes, err %v, checksum match %v", chunked, got, err, hex.EncodeToString(h.Sum(nil)) == patternSum(n))
			}
		}
	})
	t.Run("10MB upload", func(t *testing.T) {
		const n = 10 << 20
		var buf bytes.Buffer
		writePattern(&buf, n)
		resp := mustDo(t, client, "POST", s.url("/up"), nil, &buf)
		if e := getEcho(t, resp); e.Length != n || e.SHA256 != patternSum(n) {
			t.Errorf("backend got %d bytes (checksum ok: %v)", e.Length, e.SHA256 == patternSum(n))
		}
	})
	t.Run("keep-alive many requests", func(t *testing.T) {
		var reused atomic.Int64
		tr := &http.Transport{MaxConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := 0; i < 50; i++ {
			req, _ := http.NewRequest("GET", s.url("/k?i="+strconv.Itoa(i)), nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(info httptrace.GotConnInfo) {
					if info.Reused {
						reused.Add(1)
					}
				},
			}))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if e := getEcho(t, resp); e.URI != "/k?i="+strconv.Itoa(i) {
				t.Fatalf("request %d got %q", i, e.URI)
			}
		}
		if reused.Load() < 49 {
			t.Errorf("only %d of 50 requests reused the connection", reused.Load())
		}
	})
	t.Run("http/1.0", func(t *testing.T) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "GET /ten HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 || !bytes.Contains(body, []byte(`"uri":"/ten"`)) {
			t.Errorf("status %d, body %q, err %v", resp.StatusCode, body, err)
		}
	})
	t.Run("backend resets", func(t *testing.T) {
		resp := mustDo(t, client, "GET", s.url("/reset"), nil, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || string(body) != "Error while proxying to origin.\n" {
			t.Errorf("status %d body %q, want 502", resp.StatusCode, body)
		}
	})
	t.Run("connections pooled", func(t *testing.T) {
		before := be.conns.Load()
		for i := 0; i < 30; i++ {
			getEcho(t, mustDo(t, client, "GET", s.url("/pool"), nil, nil))
		}
		if opened := be.conns.Load() - before; opened > 5 {
			t.Errorf("30 sequential requests opened %d backend connections", opened)
		}
	})
}

func TestE2EBackendDown(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	be := newBackend(t)
	s := startSuite(t, suiteOptions{routes: "down.example " + dead + "\nfailover.example " + dead + " " + be.hostPort() + "\n* test\n"})
	client := &http.Client{Timeout: 20 * time.Second}
	req, _ := http.NewRequest("GET", s.url("/x"), nil)
	req.Host = "down.example"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 502 || string(body) != "Error while proxying to origin.\n" {
		t.Errorf("dead backend: status %d body %q", resp.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", s.url("/y"), nil)
	req.Host = "failover.example"
	if e := getEcho(t, mustDoReq(t, client, req)); e.URI != "/y" {
		t.Errorf("failover target got %q", e.URI)
	}
	// The suite keeps serving.
	resp = mustDo(t, client, "GET", s.url("/"), nil, nil)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "Hello from the Pushpin test handler!\n" {
		t.Errorf("after errors: %q", body)
	}
}

func TestE2EXForwardedFor(t *testing.T) {
	be := newBackend(t)
	s := startSuite(t, suiteOptions{routes: "* " + be.hostPort() + "\n",
		proxy: map[string]string{"x_forwarded_for": "truncate:0,append"}})
	h := http.Header{}
	h.Set("X-Forwarded-For", "10.9.9.9")
	e := getEcho(t, mustDo(t, http.DefaultClient, "GET", s.url("/xff"), h, nil))
	if got := e.Headers.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want exactly the peer", got)
	}
}

func TestE2ETestHandler(t *testing.T) {
	s := startSuite(t, suiteOptions{})
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/", 200, "Hello from the Pushpin test handler!\n"},
		{"/nope", 404, "no such test resource\n"},
	} {
		resp := mustDo(t, http.DefaultClient, "GET", s.url(tc.path), nil, nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(body) != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
	}
}

func TestE2EBadRequests(t *testing.T) {
	s := startSuite(t, suiteOptions{})
	raw := func(req string) (int, string) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, req)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return 0, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := raw("GARBAGE\r\n\r\n"); code != 400 {
		t.Errorf("malformed request: %d %q, want 400", code, body)
	}
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 10000) + "\r\n\r\n"
	if code, body := raw(big); code != 431 {
		t.Errorf("oversized header: %d %q, want 431", code, body)
	}
	// Still serving.
	if code, body := raw("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); code != 200 {
		t.Errorf("after bad input: %d %q", code, body)
	}
}

func mustDo(t *testing.T, c *http.Client, method, url string, h http.Header, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	return mustDoReq(t, c, req)
}

func mustDoReq(t *testing.T, c *http.Client, req *http.Request) *http.Response {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}
