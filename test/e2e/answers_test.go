package e2e

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// cannedAnswer is one fixed backend response.
type cannedAnswer struct {
	code    int
	headers [][2]string
	body    string
}

// cannedBackend answers each path with its canned response.
func cannedBackend(t *testing.T, answers map[string]cannedAnswer) string {
	t.Helper()
	return newBackendWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		for _, h := range a.headers {
			w.Header().Add(h[0], h[1])
		}
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
}

// clientAnswer is what a client received.
type clientAnswer struct {
	code   int
	header http.Header
	body   string
}

// getAnswer makes one request and returns the complete answer; it fails
// when none arrives within limit.
func getAnswer(t *testing.T, req *http.Request, limit time.Duration) clientAnswer {
	t.Helper()
	c := &http.Client{Timeout: limit}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: no answer after %v: %v", req.Method, req.URL, time.Since(start).Round(time.Millisecond), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", req.Method, req.URL, err)
	}
	return clientAnswer{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

const gripInstruct = "application/grip-instruct"

// TestE2EGripAnswersAtOnce: GRIP answers that hold nothing (a plain
// "response" instruct) and invalid instructions are answered at once, as
// Pushpin 1.36 does (checked against it): the instruct's response, or 502
// "Error while proxying to origin." Before the fix the client got nothing:
// connmgr dropped the proxy's packets after the refused hand-off.
func TestE2EGripAnswersAtOnce(t *testing.T) {
	ct := [2]string{"Content-Type", gripInstruct}
	be := cannedBackend(t, map[string]cannedAnswer{
		"/response":    {200, [][2]string{ct}, `{"response":{"code":201,"headers":{"X-A":"b"},"body":"hi\n"}}`},
		"/not-json":    {200, [][2]string{ct}, `not json`},
		"/bad-mode":    {200, [][2]string{ct}, `{"hold":{"mode":"bogus","channels":[{"name":"a"}]}}`},
		"/no-channels": {200, [][2]string{ct}, `{"hold":{"mode":"response"}}`},
		"/non-200":     {404, [][2]string{ct}, `{"response":{"body":"x"}}`},
		"/hold-bogus":  {200, [][2]string{{"Grip-Hold", "bogus"}, {"Grip-Channel", "a"}}, "x\n"},
		"/timeout-abc": {200, [][2]string{{"Grip-Hold", "response"}, {"Grip-Channel", "a"}, {"Grip-Timeout", "abc"}}, "x\n"},
	})
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})
	const proxyError = "Error while proxying to origin.\n"
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/response", 201, "hi\n"},
		{"/not-json", 502, proxyError},
		{"/bad-mode", 502, proxyError},
		{"/no-channels", 502, proxyError},
		{"/non-200", 502, proxyError},
		{"/hold-bogus", 502, proxyError},
		{"/timeout-abc", 502, proxyError},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			req, _ := http.NewRequest("GET", s.url(tc.path), nil)
			a := getAnswer(t, req, 10*time.Second)
			if a.code != tc.code || a.body != tc.body {
				t.Fatalf("got %d %q, want %d %q", a.code, a.body, tc.code, tc.body)
			}
			if tc.code == 201 && a.header.Get("X-A") != "b" {
				t.Errorf("X-A = %q", a.header.Get("X-A"))
			}
			if tc.code == 502 && a.header.Get("Content-Type") != "text/plain" {
				t.Errorf("Content-Type = %q", a.header.Get("Content-Type"))
			}
		})
	}
	// The suite still serves afterwards (no session left stuck).
	req, _ := http.NewRequest("GET", s.url("/response"), nil)
	if a := getAnswer(t, req, 10*time.Second); a.code != 201 {
		t.Fatalf("after: %d", a.code)
	}
}

// TestE2EGripLargeAnswers (PX-26): a stream hold whose initial body passes
// 100,000 bytes is sent by the proxy itself (Grip-* and Content-Length
// removed, Grip-Status applied) and then held by the handler, which
// delivers publishes after it; a response hold that large is a 502, as
// with Pushpin 1.36.
func TestE2EGripLargeAnswers(t *testing.T) {
	big := strings.Repeat("a", 150000)
	be := cannedBackend(t, map[string]cannedAnswer{
		"/stream": {200, [][2]string{{"Content-Type", "text/plain"}, {"Grip-Hold", "stream"},
			{"Grip-Channel", "big"}, {"Grip-Status", "203 Big"}}, big},
		"/response":       {200, [][2]string{{"Grip-Hold", "response"}, {"Grip-Channel", "big"}}, big},
		"/stream-buildid": {200, [][2]string{{"Grip-Hold", "stream"}, {"Grip-Channel", "big; filter=build-id"}}, big},
	})
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})

	for _, path := range []string{"/response", "/stream-buildid"} {
		req, _ := http.NewRequest("GET", s.url(path), nil)
		if a := getAnswer(t, req, 10*time.Second); a.code != 502 || a.body != "Error while proxying to origin.\n" {
			t.Fatalf("%s: got %d %q", path, a.code, a.body)
		}
	}

	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(s.url("/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 203 || resp.Status != "203 Big" {
		t.Fatalf("status %q", resp.Status)
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Errorf("content-length %d, transfer-encoding %v", resp.ContentLength, resp.TransferEncoding)
	}
	for k := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "grip-") {
			t.Errorf("client saw %s", k)
		}
	}
	br := bufio.NewReader(resp.Body)
	initial := make([]byte, len(big))
	if _, err := io.ReadFull(br, initial); err != nil || string(initial) != big {
		t.Fatalf("initial body: %v", err)
	}
	expectLine(t, br, "after\n", func() {
		s.postPublish(t, `{"items":[{"channel":"big","formats":{"http-stream":{"content":"after\n"}}}]}`)
	})
}

// TestE2EGripAnswersDebug: with the route's debug option, Pushpin 1.36
// sends the detailed reason instead of "Error while proxying to origin."
// (checked against it).
func TestE2EGripAnswersDebug(t *testing.T) {
	be := cannedBackend(t, map[string]cannedAnswer{
		"/not-json": {200, [][2]string{{"Content-Type", gripInstruct}}, `not json`},
		"/large":    {200, [][2]string{{"Grip-Hold", "response"}, {"Grip-Channel", "a"}}, strings.Repeat("a", 100001)},
	})
	s := startSuite(t, suiteOptions{routes: "*,debug " + be + "\n"})
	for path, want := range map[string]string{
		"/not-json": "Failed to parse accept instructions: failed to parse application/grip-instruct content as JSON\n",
		"/large":    "GRIP instruct response too large from " + be + "\n",
	} {
		req, _ := http.NewRequest("GET", s.url(path), nil)
		if a := getAnswer(t, req, 10*time.Second); a.code != 502 || a.body != want {
			t.Errorf("%s: got %d %q, want 502 %q", path, a.code, a.body, want)
		}
	}
}
