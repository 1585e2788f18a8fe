package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// jsonpCall splits "/**/cb(<arg>);\n" and returns <arg>.
func jsonpCall(t *testing.T, body, cb string) string {
	t.Helper()
	if !strings.HasPrefix(body, "/**/"+cb+"(") || !strings.HasSuffix(body, ");\n") {
		t.Fatalf("not a JSON-P call of %s: %q", cb, body)
	}
	return strings.TrimSuffix(strings.TrimPrefix(body, "/**/"+cb+"("), ");\n")
}

// jsonpExtended is the argument of an extended-mode JSON-P response.
type jsonpExtended struct {
	Code    int               `json:"code"`
	Reason  string            `json:"reason"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

func parseExtended(t *testing.T, a clientAnswer, cb string) jsonpExtended {
	t.Helper()
	if a.code != 200 || a.header.Get("Content-Type") != "application/javascript" {
		t.Fatalf("JSON-P answer %d %q: %q", a.code, a.header.Get("Content-Type"), a.body)
	}
	var x jsonpExtended
	if err := json.Unmarshal([]byte(jsonpCall(t, a.body, cb)), &x); err != nil {
		t.Fatalf("extended argument %q: %v", a.body, err)
	}
	return x
}

// TestE2ECrossOrigin (CL-01..03): auto cross-origin on passthrough, proxy
// made and GRIP held responses: CORS headers, JSON-P request rewriting and
// response wrapping (extended, basic, streamed), Pushpin's 400 texts.
// Formats checked against Pushpin 1.36.
func TestE2ECrossOrigin(t *testing.T) {
	be := newBackend(t)
	mux := http.NewServeMux()
	mux.Handle("/", be.Config.Handler)
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Plain", "1")
		io.WriteString(w, "hello\n")
	})
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "response")
		w.Header().Set("Grip-Channel", "co")
		w.Header().Set("Grip-Timeout", "1")
		io.WriteString(w, "timeout\n")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "stream")
		w.Header().Set("Grip-Channel", "co")
		io.WriteString(w, "open\n")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		// "é" split across two writes: the extended encoding must not
		// break it.
		w.Header().Set("Content-Type", "text/plain")
		for _, part := range []string{"caf\xc3", "\xa9 \"quoted\"\n", "<end>\n"} {
			io.WriteString(w, part)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
		}
	})
	mux.HandleFunc("/not-json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grip-instruct")
		io.WriteString(w, "not json")
	})
	be.Config.Handler = mux
	hp := be.hostPort()
	s := startSuite(t, suiteOptions{
		routes: "*,aco " + hp + "\nid=basic,aco,jsonp_mode=basic " + hp + "\nid=body,aco,jsonp_body=data,jsonp_defcb=dcb " + hp + "\n",
		proxy:  map[string]string{"accept_pushpin_route": "true"},
	})
	get := func(path string, hdr ...string) clientAnswer {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url(path), nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return getAnswer(t, req, 15*time.Second)
	}
	checkCORS := func(t *testing.T, h http.Header, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	}

	t.Run("CORS passthrough", func(t *testing.T) {
		a := get("/plain", "Origin", "http://x.example", "Access-Control-Request-Headers", "X-A, X-B")
		if a.code != 200 || a.body != "hello\n" {
			t.Fatalf("got %d %q", a.code, a.body)
		}
		checkCORS(t, a.header, map[string]string{
			"Access-Control-Allow-Methods": "OPTIONS, HEAD, GET, POST, PUT, DELETE",
			"Access-Control-Allow-Headers": "X-A, X-B", "Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Origin": "http://x.example", "Access-Control-Max-Age": "3600",
		})
		if exp := a.header.Get("Access-Control-Expose-Headers"); !strings.Contains(exp, "X-Plain") || strings.Contains(exp, "Content-Type") {
			t.Errorf("Access-Control-Expose-Headers %q", exp)
		}
	})
	t.Run("CORS on held stream", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.url("/stream"), nil)
		req.Header.Set("Origin", "http://o.example")
		resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		checkCORS(t, resp.Header, map[string]string{"Access-Control-Allow-Origin": "http://o.example", "Access-Control-Allow-Credentials": "true"})
	})
	t.Run("JSON-P extended", func(t *testing.T) {
		a := get("/plain?callback=cb")
		if !strings.HasPrefix(a.body, `/**/cb({"code": 200, "reason": "OK", "headers": {`) {
			t.Errorf("layout %q", a.body)
		}
		x := parseExtended(t, a, "cb")
		if x.Code != 200 || x.Reason != "OK" || x.Body != "hello\n" || x.Headers["X-Plain"] != "1" {
			t.Errorf("argument %+v", x)
		}
		if a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", a.header.Get("Cache-Control"))
		}
	})
	t.Run("JSON-P basic", func(t *testing.T) {
		a := get("/plain?callback=cb", "Pushpin-Route", "basic")
		if a.code != 200 || a.body != "/**/cb(hello);\n" || a.header.Get("Content-Type") != "application/javascript" {
			t.Fatalf("got %d %q %v", a.code, a.body, a.header)
		}
	})
	t.Run("JSON-P request rewrite", func(t *testing.T) {
		q := url.Values{"_method": {"POST"}, "_headers": {`{"X-H":"v","Host":"evil"}`}, "_body": {"hey"}}
		x := parseExtended(t, get("/echo?callback=cb&"+q.Encode()), "cb")
		var e echo
		if err := json.Unmarshal([]byte(x.Body), &e); err != nil {
			t.Fatalf("echo %q: %v", x.Body, err)
		}
		if e.Method != "POST" || e.URI != "/echo" || e.Headers.Get("X-H") != "v" || e.Length != 3 || e.Headers.Get("Accept") != "*/*" {
			t.Errorf("backend saw %+v", e)
		}
	})
	t.Run("JSON-P body parameter and default callback", func(t *testing.T) {
		x := parseExtended(t, get("/echo?data=%7B%22a%22%3A1%7D&x=1", "Pushpin-Route", "body"), "dcb")
		var e echo
		if err := json.Unmarshal([]byte(x.Body), &e); err != nil {
			t.Fatalf("echo %q: %v", x.Body, err)
		}
		if e.Method != "GET" || e.URI != "/echo?x=1" || e.Headers.Get("Content-Type") != "application/json" || e.Length != 7 {
			t.Errorf("backend saw %+v", e)
		}
	})
	t.Run("JSON-P streamed", func(t *testing.T) {
		a := get("/slow?callback=cb")
		x := parseExtended(t, a, "cb")
		if x.Code != 200 || x.Body != "café \"quoted\"\n<end>\n" {
			t.Errorf("argument %+v", x)
		}
		if a.header.Get("Content-Length") != "" {
			t.Errorf("streamed JSON-P has Content-Length %q", a.header.Get("Content-Length"))
		}
	})
	t.Run("JSON-P proxy error", func(t *testing.T) {
		a := get("/not-json?callback=cb")
		want := `/**/cb({"code": 502, "reason": "Bad Gateway", "headers": {"Content-Length":"32","Content-Type":"text/plain"}, "body": "Error while proxying to origin.\n"});` + "\n"
		if a.code != 200 || a.body != want {
			t.Fatalf("got %d %q", a.code, a.body)
		}
	})
	t.Run("JSON-P held response", func(t *testing.T) {
		x := parseExtended(t, get("/poll?callback=cb"), "cb")
		if x.Code != 200 || x.Body != "timeout\n" {
			t.Errorf("argument %+v", x)
		}
		if a := get("/poll?callback=cb", "Pushpin-Route", "basic"); a.body != "/**/cb(timeout);\n" {
			t.Errorf("basic held: %q", a.body)
		}
	})
	for _, tc := range []struct{ name, query, text string }{
		{"empty callback", "callback=", "Invalid callback parameter.\n"},
		{"markup in callback", "callback=%3Cscript%3E", "Invalid callback parameter.\n"},
		{"bad _method", "callback=cb&_method=%01", "Invalid _method parameter.\n"},
		{"_headers not an object", "callback=cb&_headers=%5B1%5D", "Invalid _headers parameter.\n"},
		{"_headers not strings", "callback=cb&_headers=%7B%22a%22%3A1%7D", "Invalid _headers parameter.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := get("/plain?"+tc.query, "Origin", "http://o")
			if a.code != 400 || a.body != tc.text {
				t.Fatalf("got %d %q", a.code, a.body)
			}
			checkCORS(t, a.header, map[string]string{"Access-Control-Allow-Origin": "http://o"})
		})
	}
	s.runner.WaitFor(t, `bad JSON-P request.*reason="Invalid callback parameter\."`, 10*time.Second)
	// Other clients are untouched by the bad requests.
	if a := get("/plain"); a.code != 200 || a.body != "hello\n" {
		t.Fatalf("after: %d %q", a.code, a.body)
	}
}
