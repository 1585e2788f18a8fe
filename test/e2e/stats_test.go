package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

// TestE2EProxyStats counts requests and connections through tack-proxy's
// stats socket, the handler's merged stats and both Prometheus endpoints,
// asks the handler's command socket about a passthrough request the proxy
// holds, and reads the request log lines.
func TestE2EProxyStats(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello\n")
	}))
	t.Cleanup(be.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	bePort := strings.TrimPrefix(be.URL, "http://127.0.0.1:")
	proxyProm := testutil.FreePort(t)
	handlerProm := testutil.FreePort(t)
	s := startSuite(t, suiteOptions{
		routes: fmt.Sprintf("stats.example,id=statsroute 127.0.0.1:%s\nquiet.example,log_level=1 127.0.0.1:%s\n* 127.0.0.1:%s\n", bePort, bePort, bePort),
		proxy: map[string]string{"prometheus_port": fmt.Sprintf("127.0.0.1:%d", proxyProm), "prometheus_prefix": "tk_",
			"stats_report_interval": "1"},
		handler: map[string]string{"prometheus_port": fmt.Sprint(handlerProm)},
	})
	proxySub := testutil.NewStatsSub(t, "ipc://"+filepath.Join(s.dir, "run", "pushpin-proxy-stats"))
	handlerSub := testutil.NewStatsSub(t, "ipc://"+filepath.Join(s.dir, "run", "pushpin-stats"))
	get := func(host, path string) {
		t.Helper()
		req, _ := http.NewRequest("GET", s.url(path), nil)
		if host != "" {
			req.Host = host
		}
		resp := testutil.GetOK(t, &http.Client{Timeout: 10 * time.Second}, req, 10*time.Second)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Beat the slow joiner on both SUBs, then let the warm-up settle.
	testutil.Eventually(t, 20*time.Second, func() error {
		get("", "/warm")
		if len(proxySub.Read(300*time.Millisecond)) == 0 || len(handlerSub.Read(300*time.Millisecond)) == 0 {
			return fmt.Errorf("no stats yet")
		}
		return nil
	})
	proxySub.Read(500 * time.Millisecond)
	handlerSub.Read(500 * time.Millisecond)
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", proxyProm)
	handlerURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", handlerProm)
	proxyBase := testutil.Prometheus(t, proxyURL, "tk_request_received")
	handlerBase := testutil.Prometheus(t, handlerURL, "request_received")

	for range 3 {
		get("", "/plain")
	}
	get("stats.example", "/routed")
	get("quiet.example", "/quiet")
	const n = 5

	// The proxy: a conn packet and a conn unavailable per request, 5
	// requests-received, activity for the routed request under its id,
	// and a report for the route.
	added, gone := map[string]bool{}, map[string]bool{}
	var counted, routedActivity int64
	proxySub.Until(15*time.Second, func(ps []testutil.StatsPacket) bool {
		added, gone, counted, routedActivity = map[string]bool{}, map[string]bool{}, 0, 0
		report := false
		for _, p := range ps {
			from, _ := p.D.Bytes("from")
			if !strings.HasPrefix(string(from), "proxy_") {
				t.Fatalf("packet from %q", from)
			}
			route, _ := p.D.Bytes("route")
			switch p.Type {
			case "conn":
				id, _ := p.D.Bytes("id")
				if p.D.Bool("unavailable") {
					gone[string(id)] = true
				} else if ttl, _ := p.D.Int("ttl"); ttl == 120 {
					added[string(id)] = true
				}
			case "counts":
				c, _ := p.D.Int("requests-received")
				counted += c
			case "activity":
				if string(route) == "statsroute" {
					c, _ := p.D.Int("count")
					routedActivity += c
				}
			case "report":
				if string(route) == "statsroute" {
					if b, _ := p.D.Int("client-content-bytes-sent"); b == 6 {
						report = true
					}
				}
			}
		}
		return len(added) == n && len(gone) == n && counted == n && routedActivity == 1 && report
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := testutil.Prometheus(t, proxyURL, "tk_request_received"); got != proxyBase+n {
			return fmt.Errorf("proxy request_received %d, want %d", got, proxyBase+n)
		}
		// The handler merges the proxy's counts into its own.
		if got := testutil.Prometheus(t, handlerURL, "request_received"); got != handlerBase+n {
			return fmt.Errorf("handler request_received %d, want %d", got, handlerBase+n)
		}
		return nil
	})
	// The handler forwards the proxy's conn packets under its own from.
	handlerSub.Until(5*time.Second, func(ps []testutil.StatsPacket) bool {
		seen := 0
		for _, p := range ps {
			id, _ := p.D.Bytes("id")
			if from, _ := p.D.Bytes("from"); p.Type == "conn" && strings.HasPrefix(string(from), "handler_") && added[string(id)] {
				seen++
			}
		}
		return seen >= 2*n
	})

	// A passthrough request the proxy still holds: counted as connected,
	// and known to the handler's conncheck through the proxy.
	slowDone := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.url("/slow"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		slowDone <- err
	}()
	var slowID string
	proxySub.Until(10*time.Second, func(ps []testutil.StatsPacket) bool {
		for _, p := range ps {
			if id, _ := p.D.Bytes("id"); p.Type == "conn" && !p.D.Bool("unavailable") {
				slowID = string(id)
			}
		}
		return slowID != ""
	})
	// The gauges are Pushpin's: the routes' connection maxima of the
	// current report period, so at least this request.
	if got := testutil.Prometheus(t, proxyURL, "tk_connection_connected"); got < 1 {
		t.Errorf("proxy connection_connected %d during a request", got)
	}
	if got := testutil.Prometheus(t, handlerURL, "connection_connected"); got < 1 {
		t.Errorf("handler connection_connected %d during a proxy's request", got)
	}
	cmdSpec := fmt.Sprintf("tcp://127.0.0.1:%d", 5563+s.portOffset)
	if got := testutil.ConnCheck(t, cmdSpec, slowID, "condure:nope"); len(got) != 1 || got[0] != slowID {
		t.Fatalf("conncheck during the request: %q, want [%s]", got, slowID)
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	proxySub.Until(10*time.Second, func(ps []testutil.StatsPacket) bool {
		for _, p := range ps {
			if id, _ := p.D.Bytes("id"); p.Type == "conn" && p.D.Bool("unavailable") && string(id) == slowID {
				return true
			}
		}
		return false
	})
	if got := testutil.ConnCheck(t, cmdSpec, slowID); len(got) != 0 {
		t.Fatalf("conncheck after the request: %q", got)
	}

	// Request lines as pushpin-proxy 1.36 writes them; quiet.example's
	// route has log_level=1, which hides its line.
	out := s.runner.Output()
	ts := `\[INFO\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[proxy\] `
	target := regexp.QuoteMeta("127.0.0.1:" + bePort)
	for _, want := range []string{
		ts + regexp.QuoteMeta(fmt.Sprintf("GET http://127.0.0.1:%d/plain -> ", s.httpPort)) + target + ` code=200 6\n`,
		ts + `GET http://stats\.example/routed -> ` + target + ` route=statsroute code=200 6\n`,
		ts + regexp.QuoteMeta(fmt.Sprintf("GET http://127.0.0.1:%d/slow -> ", s.httpPort)) + target + ` code=200 6\n`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no line matching %s in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "quiet.example") {
		t.Errorf("a log_level=1 route's request was logged:\n%s", out)
	}
}

// TestE2EJSONLogs: with [runner] log_format=json every process logs JSON,
// and a request line keeps Pushpin's text as its message beside fields.
func TestE2EJSONLogs(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi\n") }))
	t.Cleanup(be.Close)
	s := startSuite(t, suiteOptions{
		routes: "* " + strings.TrimPrefix(be.URL, "http://") + "\n",
		runner: map[string]string{"log_format": "json"},
	})
	resp, err := http.Get(s.url("/json?x=1"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	line := s.runner.WaitFor(t, `(?m)^\{.*"kind":"request".*json\?x=1.*\}$`, 10*time.Second)[0]
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	want := fmt.Sprintf("GET http://127.0.0.1:%d/json?x=1 -> %s code=200 3", s.httpPort, strings.TrimPrefix(be.URL, "http://"))
	if m["message"] != want || m["service"] != "proxy" || m["level"] != "info" || m["code"] != 200.0 ||
		m["bytes"] != 3.0 || m["status"] != "response" || m["method"] != "GET" {
		t.Fatalf("request line %v, want message %q", m, want)
	}
	for _, l := range strings.Split(strings.TrimSpace(s.runner.Output()), "\n") {
		if !json.Valid([]byte(l)) {
			t.Errorf("not a JSON line: %q", l)
		}
	}
}
