package interop

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"tack/internal/testutil"
	"testing"
	"time"
)

// gripBackend answers /stream with a stream hold on channel "s1" and /lp
// with a response hold on "lp1" (timeout 5 s, the minimum).
func gripBackend(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		switch {
		case r.URL.Path == "/warm":
			h.Set("Grip-Hold", "stream")
			h.Set("Grip-Channel", r.URL.Query().Get("channel"))
			io.WriteString(w, "[open]\n")
		case strings.HasPrefix(r.URL.Path, "/stream"):
			h.Set("Grip-Hold", "stream")
			h.Set("Grip-Channel", "s1")
			io.WriteString(w, "[open]\n")
		case strings.HasPrefix(r.URL.Path, "/lp"):
			h.Set("Grip-Hold", "response")
			h.Set("Grip-Channel", "lp1")
			h.Set("Grip-Timeout", "5")
			h.Set("X-Origin", "kept")
			io.WriteString(w, "timeout\n")
		default:
			io.WriteString(w, "plain\n")
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// Pushpin's runner, condure, pushpin-proxy and zurl with tack-handler in
// place of pushpin-handler: stream and response holds, publishes and the
// hold timeout, end to end through the real proxy's accept hand-off.
func TestInteropHandlerGRIPUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := gripBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "* "+be+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-handler": filepath.Join(binDir, "tack-handler")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")
	d.waitGripPath(t, "/warm")
	// The real proxy answers 500 at once while the handler is still
	// connecting to its accept socket: wait until a hold is accepted.
	req, _ := http.NewRequest("GET", d.url("/stream"), nil)
	testutil.GetOK(t, http.DefaultClient, req, 10*time.Second).Body.Close()

	runGRIPScenarios(t, d)
}

// runGRIPScenarios checks stream and response holds, publishes and the
// hold timeout through a running deployment.
func runGRIPScenarios(t *testing.T, d *deployment) {
	t.Run("stream", func(t *testing.T) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conn, "GET /stream HTTP/1.1\r\nHost: example\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Grip-Hold") != "" || resp.Header.Get("Content-Type") != "text/plain" {
			t.Fatalf("stream head: %d %v", resp.StatusCode, resp.Header)
		}
		rd := bufio.NewReader(resp.Body)
		line, err := rd.ReadString('\n')
		if err != nil || line != "[open]\n" {
			t.Fatalf("initial body %q: %v", line, err)
		}
		// The subscription is in place once the hold is accepted; publish
		// until the first item comes through (a publish racing the hold is
		// simply not delivered).
		got := make(chan string, 1)
		go func() {
			l, _ := rd.ReadString('\n')
			got <- l
		}()
		deadline := time.Now().Add(15 * time.Second)
		for {
			d.publish(t, `{"items":[{"channel":"s1","formats":{"http-stream":{"content":"hello stream\n"}}}]}`)
			select {
			case l := <-got:
				if l != "hello stream\n" {
					t.Fatalf("published line %q", l)
				}
				// Several items in one publish (tack-handler coalesces them
				// into one packet per client), then close.
				item := func(c string) string {
					return `{"channel":"s1","formats":{"http-stream":{"content":"` + c + `\n"}}}`
				}
				d.publish(t, `{"items":[`+item("a")+`,`+item("b")+`,`+item("c")+
					`,{"channel":"s1","formats":{"http-stream":{"action":"close"}}}]}`)
				// Only repeats of the first publish may precede them.
				rest, err := io.ReadAll(rd)
				if err != nil || strings.ReplaceAll(string(rest), "hello stream\n", "") != "a\nb\nc\n" {
					t.Fatalf("after the batch and close %q: %v", rest, err)
				}
				return
			case <-time.After(300 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("published item never arrived")
			}
		}
	})

	t.Run("response", func(t *testing.T) {
		type result struct {
			code int
			hdr  http.Header
			body string
			err  error
		}
		res := make(chan result, 1)
		go func() {
			c := &http.Client{Timeout: 30 * time.Second}
			resp, err := c.Get(d.url("/lp"))
			if err != nil {
				res <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			res <- result{resp.StatusCode, resp.Header, string(b), err}
		}()
		deadline := time.Now().Add(15 * time.Second)
		for {
			d.publish(t, `{"items":[{"channel":"lp1","formats":{"http-response":{"code":201,"body":"published\n"}}}]}`)
			select {
			case r := <-res:
				if r.err != nil {
					t.Fatal(r.err)
				}
				if r.code != 201 || r.body != "published\n" || r.hdr.Get("X-Origin") != "kept" {
					t.Fatalf("long-poll answer %d %q %v", r.code, r.body, r.hdr)
				}
				return
			case <-time.After(300 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("long-poll never answered by publish")
			}
		}
	})

	t.Run("timeout", func(t *testing.T) {
		c := &http.Client{Timeout: 30 * time.Second}
		start := time.Now()
		resp, err := c.Get(d.url("/lp?t=1"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "timeout\n" || resp.ContentLength != int64(len(b)) {
			t.Fatalf("timeout answer %d %q len %d", resp.StatusCode, b, resp.ContentLength)
		}
		if el := time.Since(start); el < 4*time.Second {
			t.Fatalf("answered after %v, before the 5 s timeout", el)
		}
	})
}
