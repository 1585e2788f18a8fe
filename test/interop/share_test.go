package interop

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tack/internal/testutil"
)

// checkShareAll sends identical GETs while the backend holds the first
// one: with [handler] share_all the handler's inspect answer makes the
// proxy send one backend request and give its response to every client.
func checkShareAll(t *testing.T, links string) {
	t.Helper()
	var hits atomic.Int64
	release := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/shared" {
			hits.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "shared body\n")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{"handler.share_all": "true"})
	writeRoutes(t, d.dir, "* "+strings.TrimPrefix(srv.URL, "http://")+"\n")
	d.startPushpin(t, conf, links)
	// Distinct URIs: with share_all every identical GET would share. The
	// proxy skips inspect after a failed call (its handler was not yet
	// connected) until a later call succeeds, so warm it up with a few
	// requests in a row (Pushpin's ZrpcChecker).
	n, ok := 0, 0
	testutil.Eventually(t, 30*time.Second, func() error {
		n++
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(d.url(fmt.Sprintf("/ready?n=%d", n)))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			ok++
		}
		if ok < 5 {
			time.Sleep(200 * time.Millisecond)
			return fmt.Errorf("%d requests answered", ok)
		}
		return nil
	})

	const clients = 3
	type result struct {
		code int
		body string
		err  error
	}
	results := make(chan result, clients)
	get := func() {
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(d.url("/shared?a=1"))
		if err != nil {
			results <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- result{code: resp.StatusCode, body: string(b)}
	}
	go get()
	testutil.Eventually(t, 10*time.Second, func() error {
		if hits.Load() == 0 {
			return fmt.Errorf("backend not reached yet")
		}
		return nil
	})
	for range clients - 1 {
		go get()
	}
	// Give the others time to reach the proxy and its inspect call.
	time.Sleep(time.Second)
	once.Do(func() { close(release) })
	for range clients {
		r := <-results
		if r.err != nil || r.code != 200 || r.body != "shared body\n" {
			t.Fatalf("client got %d %q %v", r.code, r.body, r.err)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Fatalf("backend saw %d requests for %d identical clients, want 1", got, clients)
	}
}

// The real Pushpin shares identical requests with share_all: the premise
// of the test below.
func TestInteropShareAllPushpin(t *testing.T) {
	requirePushpin(t)
	checkShareAll(t, "")
}

// tack-handler's inspect answers carry the sharing key, so the real
// pushpin-proxy shares identical requests behind it.
func TestInteropShareAllTackHandler(t *testing.T) {
	requirePushpin(t)
	checkShareAll(t, symlinkDir(t, map[string]string{"pushpin-handler": filepath.Join(binDir, "tack-handler")}))
}
