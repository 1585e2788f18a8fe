package interop

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tack/internal/grip"
)

// intreqSigKey is the route's own signing key: next-link requests must be
// signed with it, not with pushpin.conf's sig_key=changeme.
const intreqSigKey = "intreq-route-key"

// nextSeen is what the backend saw of one /next request.
type nextSeen struct {
	query, host, sig, feature, last string
}

// nextLinkBackend answers /stream with a stream hold on "c" and a relative
// next link (same scheme/host/port as the client's request, so the real
// handler sets prefer-internal); /next?n=1 with "next-1\n", the hold and an
// absolute next link straight to the backend (a direct request); /next?n=2
// with "next-2\n" and no GRIP headers, which ends the client's response.
// Other paths (warm-up, readiness) get what gripBackend gives them.
// /stream also carries a gone link; POSTs to /gone are reported on gone
// (1.36 ignores gone links, tack-handler POSTs it when the request ends).
func nextLinkBackend(t *testing.T) (addr string, seen <-chan nextSeen, gone <-chan string) {
	t.Helper()
	ch := make(chan nextSeen, 16)
	goneCh := make(chan string, 4)
	var self string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain")
		switch r.URL.Path {
		case "/warm":
			h.Set("Grip-Hold", "stream")
			h.Set("Grip-Channel", r.URL.Query().Get("channel"))
			io.WriteString(w, "[open]\n")
		case "/stream":
			h.Set("Grip-Hold", "stream")
			h.Set("Grip-Channel", "c")
			h.Add("Grip-Link", "</next?n=1>; rel=next; timeout=30")
			h.Add("Grip-Link", "</gone?from=stream>; rel=gone")
			io.WriteString(w, "[open]\n")
		case "/gone":
			select {
			case goneCh <- r.Method + " " + r.URL.RequestURI():
			default:
			}
		case "/next":
			sig := r.Header.Get("Grip-Sig")
			s := nextSeen{query: r.URL.RawQuery, host: r.Host, sig: sig, feature: r.Header.Get("Grip-Feature"),
				last: r.Header.Get("Grip-Last")}
			select {
			case ch <- s:
			default:
			}
			switch r.URL.Query().Get("n") {
			case "1":
				h.Set("Grip-Hold", "stream")
				h.Set("Grip-Channel", "c")
				h.Set("Grip-Link", "<http://"+self+"/next?n=2>; rel=next; timeout=1")
				io.WriteString(w, "next-1\n")
			default:
				io.WriteString(w, "next-2\n")
			}
		default:
			io.WriteString(w, "plain\n")
		}
	}))
	t.Cleanup(srv.Close)
	self = strings.TrimPrefix(srv.URL, "http://")
	return self, ch, goneCh
}

// nextLinkScenario runs Pushpin's runner with the given PATH symlinks,
// opens /stream on nextLinkBackend and checks that the client gets the
// initial body and both next-link bodies, then the end of the response;
// each /next request must be signed under sigKey and carry the Host of its
// routing (through the route: the client's; direct: the link's). It
// returns the backend's gone-link channel.
func nextLinkScenario(t *testing.T, links map[string]string, sigKey string) <-chan string {
	t.Helper()
	requirePushpin(t)
	be, seen, gone := nextLinkBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "*,sig_key="+intreqSigKey+" "+be+"\n")
	d.startPushpin(t, conf, symlinkDir(t, links))
	d.waitReady(t, "/ready")
	d.waitGripPath(t, "/warm")

	c := &http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get(d.url("/stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Grip-Link") != "" || resp.Header.Get("Grip-Hold") != "" {
		t.Fatalf("stream head: %d %v", resp.StatusCode, resp.Header)
	}
	br := bufio.NewReader(resp.Body)
	for _, want := range []string{"[open]\n", "next-1\n", "next-2\n"} {
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("stream line %q (%v), want %q", line, err, want)
		}
	}
	// next-2 had no hold and no link: the handler ends the response.
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after next-2: %q %v", rest, err)
	}

	wantHosts := map[string]string{
		"n=1": fmt.Sprintf("127.0.0.1:%d", d.httpPort), // through the route: the URI host is kept
		"n=2": be,                                      // direct: the link's own host:port
	}
	key := grip.NewSecretKey([]byte(sigKey))
	for i := 0; i < 2; i++ {
		var s nextSeen
		select {
		case s = <-seen:
		case <-time.After(time.Second):
			t.Fatalf("backend saw %d next requests, want 2", i)
		}
		if !grip.ValidateToken(s.sig, key, time.Now()) {
			t.Errorf("next %s: Grip-Sig %q does not validate under %q", s.query, s.sig, sigKey)
		}
		if !strings.Contains(s.feature, "link:next") {
			t.Errorf("next %s: Grip-Feature %q", s.query, s.feature)
		}
		if want, ok := wantHosts[s.query]; !ok || s.host != want {
			t.Errorf("next %s: Host %q, want %q", s.query, s.host, want)
		}
		delete(wantHosts, s.query)
	}
	return gone
}

// Pushpin's runner, condure, zurl and the real 1.36 pushpin-handler with
// tack-proxy in place of pushpin-proxy: the handler fetches the next links
// of a stream hold through tack-proxy's intreq sockets (zmq-wire.md §4.8),
// once routed internally by route id (prefer-internal) and once directly to
// another host:port, and appends their bodies to the client's stream.
// tack-proxy signs them with the route's key, as 1.41 does.
func TestInteropIntreqNextLinksWithPushpinHandler(t *testing.T) {
	nextLinkScenario(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")}, intreqSigKey)
}

// The other way round: the real 1.36 pushpin-proxy with tack-handler in
// place of pushpin-handler. Our handler's outbound requests must be
// understood by the real proxy: it routes them (internally, then
// directly), signs them (with [proxy] sig_key: 1.36 ignores the route's
// key here, checked with Pushpin alone), and leaves their GRIP headers for
// us to follow; the gone link goes out through it when the response ends.
func TestInteropIntreqNextLinksWithTackHandler(t *testing.T) {
	gone := nextLinkScenario(t, map[string]string{"pushpin-handler": filepath.Join(binDir, "tack-handler")}, "changeme")
	select {
	case g := <-gone:
		if g != "POST /gone?from=stream" {
			t.Errorf("gone request %q", g)
		}
	case <-time.After(5 * time.Second):
		t.Error("gone link never requested")
	}
}
