package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// answersBackend serves the GRIP answers of TestInteropProxyAnswersWithPushpin.
func answersBackend(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/warm":
			h.Set("Content-Type", "text/plain")
			h.Set("Grip-Hold", "stream")
			h.Set("Grip-Channel", r.URL.Query().Get("channel"))
			io.WriteString(w, "[open]\n")
		case "/not-json":
			h.Set("Content-Type", "application/grip-instruct")
			io.WriteString(w, "not json")
		case "/instruct-response":
			h.Set("Content-Type", "application/grip-instruct")
			io.WriteString(w, `{"response":{"code":201,"body":"hi\n"}}`)
		case "/big":
			h.Set("Content-Type", "text/plain")
			h.Set("Grip-Hold", "stream")
			h.Set("Grip-Channel", "big")
			io.WriteString(w, strings.Repeat("b", 150000))
		case "/lp":
			h.Set("Content-Type", "text/plain")
			h.Set("Grip-Hold", "response")
			h.Set("Grip-Channel", "lp")
			io.WriteString(w, "timeout\n")
		default:
			io.WriteString(w, "plain\n")
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// tack-proxy with Pushpin 1.36's condure and handler: refused hand-offs
// answered through the real condure, a large stream hold sent by the proxy
// and continued by the real handler (response-sent), and a JSON-P long
// poll wrapped by the real handler from the accept fields.
func TestInteropProxyAnswersWithPushpin(t *testing.T) {
	requirePushpin(t)
	be := answersBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "*,aco "+be+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")
	d.waitGripPath(t, "/warm")
	c := &http.Client{Timeout: 20 * time.Second}

	for path, want := range map[string]string{
		"/not-json":          "502 Error while proxying to origin.\n",
		"/instruct-response": "201 hi\n",
	} {
		resp, err := c.Get(d.url(path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := fmt.Sprintf("%d %s", resp.StatusCode, b); got != want {
			t.Errorf("%s: got %q, want %q", path, got, want)
		}
	}

	resp, err := c.Get(d.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	initial := make([]byte, 150000)
	if _, err := io.ReadFull(br, initial); err != nil || resp.StatusCode != 200 {
		t.Fatalf("large initial body: %d %v", resp.StatusCode, err)
	}
	line := make(chan string, 1)
	go func() {
		l, _ := br.ReadString('\n')
		line <- l
	}()
	publishUntil(t, d, `{"items":[{"channel":"big","formats":{"http-stream":{"content":"more\n"}}}]}`, line, "more\n")
	resp.Body.Close()

	lp := make(chan string, 1)
	go func() {
		resp, err := c.Get(d.url("/lp?callback=cb"))
		if err != nil {
			lp <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lp <- resp.Header.Get("Content-Type") + " " + string(b)
	}()
	got := publishUntil(t, d, `{"items":[{"channel":"lp","formats":{"http-response":{"body":"published\n"}}}]}`, lp, "")
	const prefix = "application/javascript /**/cb("
	if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, ");\n") {
		t.Fatalf("JSON-P long poll got %q", got)
	}
	var x struct {
		Code int    `json:"code"`
		Body string `json:"body"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(got, prefix), ");\n")), &x); err != nil || x.Code != 200 || x.Body != "published\n" {
		t.Fatalf("JSON-P argument %q: %v", got, err)
	}
}

// publishUntil publishes body until got yields a value (which must be
// want unless want is empty) and returns it.
func publishUntil(t *testing.T, d *deployment, body string, got <-chan string, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		d.publish(t, body)
		select {
		case v := <-got:
			if want != "" && v != want {
				t.Fatalf("got %q, want %q", v, want)
			}
			return v
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("publish never arrived")
		}
	}
}
