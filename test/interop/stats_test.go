package interop

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

// slowBackend answers "hello\n" at once, or on /slow when released.
func slowBackend(t *testing.T) (addr string, release func()) {
	t.Helper()
	ch := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-ch:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "hello\n")
	}))
	closed := false
	release = func() {
		if !closed {
			closed = true
			close(ch)
		}
	}
	t.Cleanup(srv.Close)
	t.Cleanup(release)
	return strings.TrimPrefix(srv.URL, "http://"), release
}

// checkMergedStats runs requests through a deployment and checks, on the
// handler's stats socket and Prometheus endpoint, that the proxy's
// packets were merged: conn packets forwarded, requests counted; then
// that the handler's conncheck knows a passthrough request only the proxy
// holds (the handler asks the proxy over proxy-command).
func checkMergedStats(t *testing.T, d *deployment, handlerProm int, release func()) {
	t.Helper()
	sub := testutil.NewStatsSub(t, "ipc://"+filepath.Join(d.dir, "run", "pushpin-stats"))
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) {
		t.Helper()
		resp := testutil.GetOK(t, c, mustRequest(t, d.url(path)), 10*time.Second)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	testutil.Eventually(t, 20*time.Second, func() error {
		get("/warm")
		if len(sub.Read(300*time.Millisecond)) == 0 {
			return fmt.Errorf("no stats yet")
		}
		return nil
	})
	sub.Read(500 * time.Millisecond)
	promURL := fmt.Sprintf("http://127.0.0.1:%d/", handlerProm)
	base := testutil.Prometheus(t, promURL, "request_received")
	const n = 4
	for range n {
		get("/plain")
	}
	sub.Until(15*time.Second, func(ps []testutil.StatsPacket) bool {
		added, gone := map[string]bool{}, map[string]bool{}
		var counted int64
		for _, p := range ps {
			id, _ := p.D.Bytes("id")
			switch p.Type {
			case "conn":
				if p.D.Bool("unavailable") {
					gone[string(id)] = true
				} else {
					added[string(id)] = true
				}
			case "counts":
				c, _ := p.D.Int("requests-received")
				counted += c
			}
		}
		return len(added) == n && len(gone) == n && counted == n
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := testutil.Prometheus(t, promURL, "request_received"); got != base+n {
			return fmt.Errorf("handler request_received %d, want %d", got, base+n)
		}
		return nil
	})

	slowDone := make(chan struct{})
	go func() {
		defer close(slowDone)
		if resp, err := http.Get(d.url("/slow")); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	var slowID string
	sub.Until(10*time.Second, func(ps []testutil.StatsPacket) bool {
		for _, p := range ps {
			if id, _ := p.D.Bytes("id"); p.Type == "conn" && !p.D.Bool("unavailable") {
				slowID = string(id)
			}
		}
		return slowID != ""
	})
	cmd := fmt.Sprintf("tcp://127.0.0.1:%d", 5563+d.portOffset)
	testutil.Eventually(t, 15*time.Second, func() error {
		if got := testutil.ConnCheck(t, cmd, slowID, "condure:nope"); len(got) != 1 || got[0] != slowID {
			return fmt.Errorf("conncheck during the request: %q, want [%s]", got, slowID)
		}
		return nil
	})
	release()
	<-slowDone
	testutil.Eventually(t, 15*time.Second, func() error {
		if got := testutil.ConnCheck(t, cmd, slowID); len(got) != 0 {
			return fmt.Errorf("conncheck after the request: %q", got)
		}
		return nil
	})
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// The real pushpin-handler consumes tack-proxy's stats packets unchanged
// and asks tack-proxy's command socket about connections it does not hold.
func TestInteropProxyStatsWithPushpinHandler(t *testing.T) {
	requirePushpin(t)
	be, release := slowBackend(t)
	d := newDeployment(t)
	handlerProm := testutil.FreePort(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"handler.prometheus_port":     fmt.Sprint(handlerProm),
		"proxy.stats_report_interval": "1",
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")
	checkMergedStats(t, d, handlerProm, release)
}

// tack-handler merges the real pushpin-proxy's stats and asks it about
// connections it does not hold.
func TestInteropHandlerStatsWithPushpinProxy(t *testing.T) {
	requirePushpin(t)
	be, release := slowBackend(t)
	d := newDeployment(t)
	handlerProm := testutil.FreePort(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"handler.prometheus_port": fmt.Sprint(handlerProm),
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-handler": filepath.Join(binDir, "tack-handler")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")
	checkMergedStats(t, d, handlerProm, release)
}
