package handler

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"tack/internal/grip"
)

// startHTTPInput runs the publish API on a free 127.0.0.1 port.
func startHTTPInput(t *testing.T, eng engineAPI, mod func(*InputsConfig)) *httpInput {
	t.Helper()
	cfg := InputsConfig{HTTPEnabled: true, HTTPAddr: "127.0.0.1",
		MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize}
	if mod != nil {
		mod(&cfg)
	}
	h, err := newHTTPInput(cfg, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "http", h.Run)
	return h
}

// rawResponse is one reply read off the wire.
type rawResponse struct {
	code   int
	header http.Header
	body   string
}

// rawHTTP writes req as is on a new connection and reads one response.
func rawHTTP(t *testing.T, addr, req string) rawResponse {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return rawResponse{code: resp.StatusCode, header: resp.Header, body: string(b)}
}

// httpReq builds a raw request; a body gets a Content-Length unless a header
// line already starts with "Content-Length:" or "Transfer-Encoding:".
func httpReq(method, target, body string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: x\r\n", method, target)
	framed := false
	for _, h := range headers {
		b.WriteString(h + "\r\n")
		framed = framed || strings.HasPrefix(h, "Content-Length:") || strings.HasPrefix(h, "Transfer-Encoding:")
	}
	if !framed && (body != "" || method == "POST" || method == "PUT") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return b.String()
}

const (
	emptyItems = `{"items":[]}`
	oneItem    = `{"items":[{"channel":"a","formats":{"http-stream":{"content":"x"}}}]}`
)

// TestHTTPAnswers checks every status and text against what Pushpin 1.36
// answered to the same bytes (curl and raw sockets against a 1.36
// pushpin-handler), plus the deliberate deviations marked "ours".
func TestHTTPAnswers(t *testing.T) {
	eng := &fakeEngine{}
	h := startHTTPInput(t, eng, nil)
	addr := h.Addr().String()

	const (
		text = "text/plain"
		js   = "application/json"
		any  = "*" // body not compared (net/http's own text)
	)
	pad := func(total int) string {
		// a request whose header block is exactly total bytes
		base := "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nX-Pad: "
		return base + strings.Repeat("a", total-len(base)-4) + "\r\n\r\n" + emptyItems
	}
	tests := []struct {
		name  string
		req   string
		code  int
		body  string
		ctype string
		allow bool // expect Allow: POST
	}{
		{"GET /", httpReq("GET", "/", ""), 200, "Pushpin API\n", text, false},
		{"DELETE /", httpReq("DELETE", "/", ""), 200, "Pushpin API\n", text, false},
		{"POST / with body", httpReq("POST", "/", "x"), 200, "Pushpin API\n", text, false},
		{"GET // (one slash stripped)", httpReq("GET", "//", ""), 200, "Pushpin API\n", text, false},
		{"GET / json accept stays text", httpReq("GET", "/", "", "Accept: application/json"), 200, "Pushpin API\n", text, false},
		{"GET /?a=b", httpReq("GET", "/?a=b", ""), 404, "Not Found\n", text, false},
		{"publish", httpReq("POST", "/publish", emptyItems), 200, "Published\n", text, false},
		{"publish/", httpReq("POST", "/publish/", emptyItems), 200, "Published\n", text, false},
		{"publish one item", httpReq("POST", "/publish/", oneItem), 200, "Published\n", text, false},
		{"publish//", httpReq("POST", "/publish//", emptyItems), 404, "Not Found\n", text, false},
		{"publish/?a=b (quirk 14)", httpReq("POST", "/publish/?a=b", emptyItems), 404, "Not Found\n", text, false},
		{"publish?a=b (quirk 14)", httpReq("POST", "/publish?a=b", emptyItems), 404, "Not Found\n", text, false},
		{"PUBLISH", httpReq("POST", "/PUBLISH", emptyItems), 404, "Not Found\n", text, false},
		{"percent-encoded path", httpReq("POST", "/%70ublish", emptyItems), 404, "Not Found\n", text, false},
		{"absolute-form target", httpReq("POST", "http://x/publish", emptyItems), 404, "Not Found\n", text, false},
		{"GET /publish", httpReq("GET", "/publish", ""), 405, "Method not allowed: GET.\n", text, true},
		{"PUT /publish", httpReq("PUT", "/publish", emptyItems), 405, "Method not allowed: PUT.\n", text, true},
		{"OPTIONS /publish", httpReq("OPTIONS", "/publish", ""), 405, "Method not allowed: OPTIONS.\n", text, true},
		{"post lower case", httpReq("post", "/publish", emptyItems), 405, "Method not allowed: post.\n", text, true},
		{"FOO /publish", httpReq("FOO", "/publish", "", "Content-Length: 0"), 405, "Method not allowed: FOO.\n", text, true},
		{"GET /recover", httpReq("GET", "/recover", ""), 405, "Method not allowed: GET.\n", text, true},
		{"405 stays text with json accept", httpReq("GET", "/publish", "", "Accept: application/json"), 405, "Method not allowed: GET.\n", text, true},
		{"recover", httpReq("POST", "/recover", ""), 200, "Updated\n", text, false},
		{"recover/", httpReq("POST", "/recover/", ""), 200, "Updated\n", text, false},
		{"recover json", httpReq("POST", "/recover", "", "Accept: application/json"), 200, `{"message":"Updated"}` + "\n", js, false},
		{"recover ignores its body", httpReq("POST", "/recover", "garbage"), 200, "Updated\n", text, false},
		{"GET /nope", httpReq("GET", "/nope", ""), 404, "Not Found\n", text, false},
		{"POST /nope", httpReq("POST", "/nope", ""), 404, "Not Found\n", text, false},
		{"404 stays text with json accept", httpReq("GET", "/x", "", "Accept: application/json"), 404, "Not Found\n", text, false},

		// Body and item errors (grip.ParseItems texts).
		{"not json", httpReq("POST", "/publish", "abc"), 400, "Body is not valid JSON.\n", text, false},
		{"empty body", httpReq("POST", "/publish", ""), 400, "Body is not valid JSON.\n", text, false},
		{"null", httpReq("POST", "/publish", "null"), 400, "Body is not valid JSON.\n", text, false},
		{"number", httpReq("POST", "/publish", "5"), 400, "Body is not valid JSON.\n", text, false},
		{"string", httpReq("POST", "/publish", `"x"`), 400, "Body is not valid JSON.\n", text, false},
		{"trailing garbage", httpReq("POST", "/publish", emptyItems+"x"), 400, "Body is not valid JSON.\n", text, false},
		{"invalid utf-8", httpReq("POST", "/publish", "{\"items\":[],\"a\":\"\xff\"}"), 400, "Body is not valid JSON.\n", text, false},
		{"whitespace around json", httpReq("POST", "/publish", "  "+emptyItems+"  \n"), 200, "Published\n", text, false},
		{"array", httpReq("POST", "/publish", "[]"), 400, "Invalid format.\n", text, false},
		{"no items", httpReq("POST", "/publish", "{}"), 400, "Invalid format: object does not contain 'items'\n", text, false},
		{"items string", httpReq("POST", "/publish", `{"items":"x"}`), 400, "Invalid format: object contains 'items' with wrong type\n", text, false},
		{"items object", httpReq("POST", "/publish", `{"items":{}}`), 400, "Invalid format: object contains 'items' with wrong type\n", text, false},
		{"items null", httpReq("POST", "/publish", `{"items":null}`), 400, "Invalid format: object contains 'items' with wrong type\n", text, false},
		{"item not object", httpReq("POST", "/publish", `{"items":[1]}`), 400, "Invalid format: publish item object is not an object\n", text, false},
		{"item without channel", httpReq("POST", "/publish", `{"items":[{}]}`), 400, "Invalid format: publish item object does not contain 'channel'\n", text, false},
		{"second item bad (quirk 21)", httpReq("POST", "/publish", `{"items":[{"channel":"a","formats":{"http-stream":{"content":"x"}}},{"channel":"b"}]}`),
			400, "Invalid format: no formats specified\n", text, false},
		{"unknown action (quirk 2)", httpReq("POST", "/publish", `{"items":[{"channel":"a","formats":{"http-stream":{"action":"zz"}}}]}`),
			400, "Invalid format: \n", text, false},
		{"error stays text with json accept", httpReq("POST", "/publish", "{}", "Accept: application/json"), 400,
			"Invalid format: object does not contain 'items'\n", text, false},
		// ours: 1.36 answers 200 Published to these two.
		{"empty channel (ours)", httpReq("POST", "/publish", `{"items":[{"channel":"","formats":{"http-stream":{"content":"x"}}}]}`),
			400, "Invalid format: publish item object contains 'channel' with invalid value\n", text, false},
		{"invalid base64 (ours)", httpReq("POST", "/publish", `{"items":[{"channel":"a","formats":{"http-stream":{"content-bin":"!!!"}}}]}`),
			400, "Invalid format: 'http-stream' contains 'content-bin' with invalid value\n", text, false},

		// Accept negotiation: the last known type wins, parameters ignored.
		{"accept json", httpReq("POST", "/publish", emptyItems, "Accept: application/json"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept json, text", httpReq("POST", "/publish", emptyItems, "Accept: application/json, text/plain"), 200, "Published\n", text, false},
		{"accept text, json", httpReq("POST", "/publish", emptyItems, "Accept: text/plain, application/json"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept q ignored", httpReq("POST", "/publish", emptyItems, "Accept: text/plain;q=1, application/json;q=0.1"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept json;charset", httpReq("POST", "/publish", emptyItems, "Accept: application/json; charset=utf-8"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept application/*", httpReq("POST", "/publish", emptyItems, "Accept: application/*"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept *", httpReq("POST", "/publish", emptyItems, "Accept: *"), 200, "Published\n", text, false},
		{"accept */*", httpReq("POST", "/publish", emptyItems, "Accept: */*"), 200, "Published\n", text, false},
		{"accept text/*", httpReq("POST", "/publish", emptyItems, "Accept: text/*"), 200, "Published\n", text, false},
		{"accept spaces", httpReq("POST", "/publish", emptyItems, "Accept:   text/plain ,  application/json  "), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept xml, json", httpReq("POST", "/publish", emptyItems, "Accept: text/xml, application/json"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept json, xml", httpReq("POST", "/publish", emptyItems, "Accept: application/json, text/xml"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept browser", httpReq("POST", "/publish", emptyItems, "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"), 200, "Published\n", text, false},
		{"accept two headers", httpReq("POST", "/publish", emptyItems, "Accept: application/json", "Accept: text/xml"), 200, `{"message":"Published"}` + "\n", js, false},
		{"accept xml", httpReq("POST", "/publish", emptyItems, "Accept: text/xml"), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},
		{"accept empty", httpReq("POST", "/publish", emptyItems, "Accept: "), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},
		{"accept case-sensitive", httpReq("POST", "/publish", emptyItems, "Accept: Application/JSON"), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},
		{"406 before body errors", httpReq("POST", "/publish", "{}", "Accept: text/xml"), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},
		{"406 before routing: /", httpReq("GET", "/", "", "Accept: text/xml"), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},
		{"406 before routing: 404", httpReq("GET", "/nope", "", "Accept: text/xml"), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},
		{"406 before routing: 405", httpReq("GET", "/publish", "", "Accept: text/xml"), 406, "Not Acceptable. Supported formats are text/plain and application/json.\n", text, false},

		// Framing and limits.
		{"POST without length", "POST / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Request requires Content-Length.\n", text, false},
		{"PUT without length", "PUT / HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Request requires Content-Length.\n", text, false},
		{"publish without length", "POST /publish HTTP/1.1\r\nHost: x\r\n\r\n", 411, "Request requires Content-Length.\n", text, false},
		{"411 before 406", "POST /publish HTTP/1.1\r\nHost: x\r\nAccept: text/xml\r\n\r\n", 411, "Request requires Content-Length.\n", text, false},
		{"GET /publish without length", "GET /publish HTTP/1.1\r\nHost: x\r\n\r\n", 405, "Method not allowed: GET.\n", text, true},
		{"chunked", httpReq("POST", "/publish", "c\r\n"+emptyItems+"\r\n0\r\n\r\n", "Transfer-Encoding: chunked"), 411, "Request requires Content-Length.\n", text, false},
		{"GET chunked", httpReq("GET", "/", "0\r\n\r\n", "Transfer-Encoding: chunked"), 411, "Request requires Content-Length.\n", text, false},
		{"body too large", "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1000001\r\n\r\n", 400, "Request body too large.\n", text, false},
		{"body too large before 406", "POST /publish HTTP/1.1\r\nHost: x\r\nAccept: text/xml\r\nContent-Length: 2000000\r\n\r\n", 400, "Request body too large.\n", text, false},
		{"body at the limit", httpReq("POST", "/publish", emptyItems+strings.Repeat(" ", DefaultMaxBodySize-len(emptyItems))), 200, "Published\n", text, false},
		{"header block at the limit", pad(DefaultMaxHeadersSize), 200, "Published\n", text, false},
		{"header block over the limit", pad(DefaultMaxHeadersSize + 1), 400, "Request header too large.\n", text, false},
		{"header block far over the limit", pad(DefaultMaxHeadersSize + 3000), 400, "Request header too large.\n", text, false},
		// ours: beyond net/http's 4 KiB of slack it answers 431 itself
		// (Pushpin: 400 "Request header too large.").
		{"header block beyond the slack", pad(DefaultMaxHeadersSize + 5000), 431, any, "", false},
		{"HTTP/1.0", "POST /publish HTTP/1.0\r\nContent-Length: 12\r\n\r\n" + emptyItems, 200, "Published\n", text, false},
		{"LF line ends", "POST /publish HTTP/1.1\nHost: x\nContent-Length: 12\n\n" + emptyItems, 200, "Published\n", text, false},
		{"two equal lengths", "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\n" + emptyItems, 200, "Published\n", text, false},
		// net/http's own 400s: same status as Pushpin, its own text
		// (Pushpin: "Bad Content-Length." and "Failed to parse request
		// header.").
		{"bad length", "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400, any, "", false},
		{"negative length", "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, any, "", false},
		{"garbage request line", "HELLO\r\n\r\n", 400, any, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rawHTTP(t, addr, tt.req)
			if got.code != tt.code {
				t.Fatalf("status %d, want %d (body %q)", got.code, tt.code, got.body)
			}
			if tt.body == any {
				return
			}
			if got.body != tt.body {
				t.Errorf("body %q, want %q", got.body, tt.body)
			}
			if ct := got.header.Get("Content-Type"); ct != tt.ctype {
				t.Errorf("Content-Type %q, want %q", ct, tt.ctype)
			}
			if cl := got.header.Get("Content-Length"); cl != fmt.Sprint(len(tt.body)) {
				t.Errorf("Content-Length %q, want %d", cl, len(tt.body))
			}
			if allow := got.header.Get("Allow"); (allow == "POST") != tt.allow {
				t.Errorf("Allow %q, want it only on 405", allow)
			}
		})
	}
}

func TestHTTPPublishDelivers(t *testing.T) {
	eng := &fakeEngine{}
	h := startHTTPInput(t, eng, nil)
	body := `{"items":[{"channel":"a","id":"1","formats":{"http-stream":{"content":"x"}}},` +
		`{"channel":"b","formats":{"ws-message":{"content-bin":"AAE="}}}]}`
	if got := rawHTTP(t, h.Addr().String(), httpReq("POST", "/publish/", body)); got.code != 200 {
		t.Fatalf("status %d %q", got.code, got.body)
	}
	items := eng.items()
	if eng.batches() != 1 || len(items) != 2 {
		t.Fatalf("published %d batches, %d items; want one batch of two", eng.batches(), len(items))
	}
	if items[0].Channel != "a" || items[0].ID != "1" || string(items[0].HTTPStream.Content) != "x" {
		t.Errorf("item 0 = %+v", items[0])
	}
	if items[1].Channel != "b" || items[1].WSMessage == nil || string(items[1].WSMessage.Content) != "\x00\x01" ||
		items[1].WSMessage.Type != grip.WSBinary {
		t.Errorf("item 1 = %+v", items[1])
	}
	// A rejected batch publishes nothing; an empty one is not passed on.
	rawHTTP(t, h.Addr().String(), httpReq("POST", "/publish/", `{"items":[{"channel":"a","formats":{"http-stream":{"content":"x"}}},{}]}`))
	rawHTTP(t, h.Addr().String(), httpReq("POST", "/publish/", emptyItems))
	if eng.batches() != 1 {
		t.Errorf("published %d batches, want still 1", eng.batches())
	}
	rawHTTP(t, h.Addr().String(), httpReq("POST", "/recover", ""))
	if eng.recoverCount() != 1 {
		t.Errorf("recover called %d times, want 1", eng.recoverCount())
	}
}

func TestHTTPQueueFull(t *testing.T) {
	eng := &fakeEngine{}
	eng.setErr(ErrQueueFull)
	h := startHTTPInput(t, eng, nil)
	for _, r := range []string{httpReq("POST", "/publish", oneItem), httpReq("POST", "/recover", "")} {
		got := rawHTTP(t, h.Addr().String(), r)
		if got.code != 503 || got.body != textQueueFull || got.header.Get("Retry-After") != "1" {
			t.Errorf("got %d %q %v, want 503 %q with Retry-After", got.code, got.body, got.header, textQueueFull)
		}
	}
}

// TestHTTPPublishWaits: while the engine holds the inputs back, a POST
// waits for its items to be taken instead of failing or dropping them.
func TestHTTPPublishWaits(t *testing.T) {
	gate := make(chan struct{})
	eng := &fakeEngine{gate: gate}
	h := startHTTPInput(t, eng, nil)
	got := make(chan rawResponse, 1)
	go func() { got <- rawHTTP(t, h.Addr().String(), httpReq("POST", "/publish/", oneItem)) }()
	select {
	case r := <-got:
		t.Fatalf("answered %d %q while held back", r.code, r.body)
	case <-time.After(300 * time.Millisecond):
	}
	close(gate)
	select {
	case r := <-got:
		if r.code != 200 || len(eng.items()) != 1 {
			t.Fatalf("after the wait: %d %q, %d items", r.code, r.body, len(eng.items()))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after the engine took the items")
	}
}

// TestHTTPLimitsFromConfig: push_in_http_max_* take effect (they did not in
// 1.36, grip-reference §4.2).
func TestHTTPLimitsFromConfig(t *testing.T) {
	h := startHTTPInput(t, &fakeEngine{}, func(c *InputsConfig) { c.MaxBodySize = 20; c.MaxHeadersSize = 200 })
	addr := h.Addr().String()
	if got := rawHTTP(t, addr, httpReq("POST", "/publish", oneItem)); got.code != 400 || got.body != textBodyTooLarge {
		t.Errorf("body over 20: %d %q", got.code, got.body)
	}
	if got := rawHTTP(t, addr, httpReq("POST", "/publish", emptyItems)); got.code != 200 {
		t.Errorf("body under 20: %d %q", got.code, got.body)
	}
	if got := rawHTTP(t, addr, httpReq("POST", "/publish", emptyItems, "X-Pad: "+strings.Repeat("a", 200))); got.code != 400 || got.body != textHeaderTooLarge {
		t.Errorf("headers over 200: %d %q", got.code, got.body)
	}
}

// TestHTTPKeepAlive: unlike Pushpin, which closes after every reply, a
// connection carries several requests; error replies that leave the request
// body unread close it.
func TestHTTPKeepAlive(t *testing.T) {
	eng := &fakeEngine{}
	h := startHTTPInput(t, eng, nil)
	c, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		if _, err := io.WriteString(c, httpReq("POST", "/publish", oneItem)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != textPublished || resp.Close {
			t.Fatalf("request %d: %d %q close=%v", i, resp.StatusCode, b, resp.Close)
		}
	}
	if n := len(eng.items()); n != 3 {
		t.Errorf("%d items published, want 3", n)
	}
	if _, err := io.WriteString(c, "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || !resp.Close {
		t.Errorf("too large: %d close=%v, want 400 and Connection: close", resp.StatusCode, resp.Close)
	}
}

// TestHTTPExpectContinue: the interim 100 comes before the body is sent.
func TestHTTPExpectContinue(t *testing.T) {
	h := startHTTPInput(t, &fakeEngine{}, nil)
	c, err := net.Dial("tcp", h.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "POST /publish HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 12\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 100 {
		t.Fatalf("interim: %v %v", resp, err)
	}
	if _, err := io.WriteString(c, emptyItems); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != textPublished {
		t.Errorf("final: %d %q", resp.StatusCode, b)
	}
}

// TestHTTPHead: Pushpin also sends the body on HEAD; net/http (rightly)
// sends only the headers.
func TestHTTPHead(t *testing.T) {
	h := startHTTPInput(t, &fakeEngine{}, nil)
	got := rawHTTP(t, h.Addr().String(), "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
	if got.code != 200 || got.body != "" || got.header.Get("Content-Length") != "12" {
		t.Errorf("HEAD /: %d %q %v", got.code, got.body, got.header)
	}
}

func TestHTTPDisabled(t *testing.T) {
	if _, err := newHTTPInput(InputsConfig{}, &fakeEngine{}, testLogger(t)); err == nil {
		t.Error("newHTTPInput with the api off: no error")
	}
}

func TestHTTPBusyPort(t *testing.T) {
	h := startHTTPInput(t, &fakeEngine{}, nil)
	cfg := InputsConfig{HTTPEnabled: true, HTTPAddr: "127.0.0.1", HTTPPort: h.Addr().(*net.TCPAddr).Port}
	if _, err := newHTTPInput(cfg, &fakeEngine{}, testLogger(t)); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("busy port: %v", err)
	}
}

func TestHTTPNegotiate(t *testing.T) {
	tests := []struct {
		accept       []string
		asJSON, okay bool
	}{
		{nil, false, true},
		{[]string{""}, false, false},
		{[]string{"text/plain"}, false, true},
		{[]string{"application/json"}, true, true},
		{[]string{"application/json,,"}, true, true},
		{[]string{"image/png", "text/*"}, false, true},
		{[]string{"text/plain;q=0"}, false, true},
	}
	for _, tt := range tests {
		j, ok := negotiate(tt.accept)
		if j != tt.asJSON || ok != tt.okay {
			t.Errorf("negotiate(%q) = %v, %v; want %v, %v", tt.accept, j, ok, tt.asJSON, tt.okay)
		}
	}
}
