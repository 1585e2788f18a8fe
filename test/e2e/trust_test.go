package e2e

import (
	"io"
	"net/http"
	"testing"
	"time"

	"tack/internal/grip"
)

// TestE2EUpstreamTrust (PX-12, PX-13, PX-15, PX-16): a client whose
// Grip-Sig verifies with upstream_key is another GRIP proxy: its Grip-*
// headers and its own Grip-Sig reach the backend, x_forwarded_for_trusted
// applies, and GRIP answers go back to it uninterpreted. A bad or expired
// signature is an ordinary client. Also orig_headers with
// orig_headers_need_mark, cdn_loop and accept_pushpin_route. Checked
// against Pushpin 1.36 (cdn_loop is 1.37+).
func TestE2EUpstreamTrust(t *testing.T) {
	be := newBackend(t)
	echoHandler := be.Config.Handler
	mux := http.NewServeMux()
	mux.Handle("/", echoHandler)
	mux.HandleFunc("/grip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "response")
		w.Header().Set("Grip-Channel", "up")
		io.WriteString(w, "for the upstream proxy\n")
	})
	be.Config.Handler = mux
	s := startSuite(t, suiteOptions{
		routes: "* " + be.hostPort() + "\nid=orig,orig_headers " + be.hostPort() + "\n",
		proxy: map[string]string{
			"upstream_key":            "upkey",
			"x_forwarded_for":         "truncate:0,append",
			"x_forwarded_for_trusted": "truncate:1",
			"orig_headers_need_mark":  "X-Secret",
			"cdn_loop":                "tack",
			"accept_pushpin_route":    "true",
		},
	})
	sign := func(key string, at time.Time) string {
		tok, err := grip.SignToken("up", grip.NewSecretKey([]byte(key)), at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign("upkey", time.Now())
	request := func(path, sig string, extra ...string) *http.Request {
		req, _ := http.NewRequest("GET", s.url(path), nil)
		req.Header.Set("Grip-Foo", "bar")
		req.Header.Set("X-Forwarded-For", "1.1.1.1, 2.2.2.2")
		req.Header.Set("CDN-Loop", "front")
		if sig != "" {
			req.Header.Set("Grip-Sig", sig)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			req.Header.Set(extra[i], extra[i+1])
		}
		return req
	}
	get := func(req *http.Request) echo {
		t.Helper()
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return getEcho(t, resp)
	}

	t.Run("trusted", func(t *testing.T) {
		e := get(request("/", good))
		h := e.Headers
		if h.Get("Grip-Sig") != good || h.Get("Grip-Foo") != "bar" || h.Get("Grip-Feature") != "" {
			t.Errorf("Grip-Sig ours=%v Grip-Foo=%q Grip-Feature=%q", h.Get("Grip-Sig") != good, h.Get("Grip-Foo"), h.Get("Grip-Feature"))
		}
		if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "2.2.2.2" {
			t.Errorf("X-Forwarded-For %q, want truncate:1 of the trusted rule", got)
		}
		if got := h.Get("CDN-Loop"); got != "front, tack" {
			t.Errorf("CDN-Loop %q", got)
		}
	})
	for name, sig := range map[string]string{
		"bad signature": sign("wrong", time.Now()),
		"expired":       sign("upkey", time.Now().Add(-2*time.Hour)),
		"none":          "",
	} {
		t.Run(name, func(t *testing.T) {
			e := get(request("/", sig))
			h := e.Headers
			if h.Get("Grip-Sig") == "" || h.Get("Grip-Sig") == sig || h.Get("Grip-Foo") != "" || h.Get("Grip-Feature") == "" {
				t.Errorf("not treated as untrusted: Grip-Sig %q Grip-Foo %q Grip-Feature %q", h.Get("Grip-Sig"), h.Get("Grip-Foo"), h.Get("Grip-Feature"))
			}
			if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("X-Forwarded-For %q, want the peer only (truncate:0,append)", got)
			}
		})
	}
	// A signature that does not verify is logged with the request id.
	s.runner.WaitFor(t, `Grip-Sig does not verify with upstream_key.*rid=`, 10*time.Second)
	t.Run("trusted GRIP answer passes through", func(t *testing.T) {
		a := getAnswer(t, request("/grip", good), 10*time.Second)
		if a.code != 200 || a.body != "for the upstream proxy\n" || a.header.Get("Grip-Hold") != "response" || a.header.Get("Grip-Channel") != "up" {
			t.Fatalf("got %d %q %v", a.code, a.body, a.header)
		}
	})
	t.Run("orig_headers by Pushpin-Route", func(t *testing.T) {
		e := get(request("/", "", "Pushpin-Route", "orig", "X-Secret", "s", "eb9bf0f5-X-Secret", "marked", "X-A", "1"))
		h := e.Headers
		want := map[string]string{
			"X-A": "1", "Eb9bf0f5-X-A": "1", "X-Secret": "s", "Eb9bf0f5-X-Secret": "marked",
			"Eb9bf0f5-Pushpin-Route": "orig", "Pushpin-Route": "",
		}
		for k, v := range want {
			if got := h.Values(k); (v == "" && len(got) != 0) || (v != "" && (len(got) != 1 || got[0] != v)) {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
	})
	t.Run("unknown Pushpin-Route", func(t *testing.T) {
		req := request("/", "", "Pushpin-Route", "nosuch")
		if a := getAnswer(t, req, 10*time.Second); a.code != 502 || a.body != "No route for host: 127.0.0.1\n" {
			t.Fatalf("got %d %q", a.code, a.body)
		}
	})
}
