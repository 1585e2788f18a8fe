package interop

import (
	"bufio"
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

// sharedBackend counts requests per path and holds each until its
// path's release channel is closed.
type sharedBackend struct {
	hits    map[string]*atomic.Int64
	release map[string]chan struct{}
	once    map[string]*sync.Once
}

func newSharedBackend(t *testing.T, paths ...string) (*sharedBackend, string) {
	b := &sharedBackend{hits: map[string]*atomic.Int64{}, release: map[string]chan struct{}{}, once: map[string]*sync.Once{}}
	for _, p := range paths {
		b.hits[p], b.release[p], b.once[p] = new(atomic.Int64), make(chan struct{}), new(sync.Once)
		t.Cleanup(func() { b.open(p) })
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := b.hits[r.URL.Path]; n != nil {
			n.Add(1)
			select {
			case <-b.release[r.URL.Path]:
			case <-r.Context().Done():
				return
			}
		}
		if r.URL.Path == "/hold" {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Grip-Hold", "stream")
			w.Header().Set("Grip-Channel", "shared")
			io.WriteString(w, "[open]\n")
			return
		}
		io.WriteString(w, "shared body\n")
	}))
	t.Cleanup(srv.Close)
	return b, strings.TrimPrefix(srv.URL, "http://")
}

func (b *sharedBackend) open(path string) { b.once[path].Do(func() { close(b.release[path]) }) }

// sharedGets sends n identical GETs for path while the backend holds the
// first one (the others go once it reached the backend), then lets the
// backend answer; client runs each request.
func (b *sharedBackend) sharedGets(t *testing.T, path string, n int, client func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { client(0) })
	testutil.Eventually(t, 10*time.Second, func() error {
		if b.hits[path].Load() == 0 {
			return fmt.Errorf("backend not reached yet")
		}
		return nil
	})
	for i := 1; i < n; i++ {
		wg.Go(func() { client(i) })
	}
	// Give the others time to reach the proxy and its inspect call.
	time.Sleep(time.Second)
	b.open(path)
	wg.Wait()
	if got := b.hits[path].Load(); got != 1 {
		t.Fatalf("backend saw %d requests for %d identical clients on %s, want 1", got, n, path)
	}
}

// checkShareAll sends identical GETs while the backend holds the first
// one: with [handler] share_all the handler's inspect answer makes the
// proxy send one backend request and give its response to every client.
// A shared GRIP stream hold puts every client on the channel (one accept
// call with every request).
func checkShareAll(t *testing.T, links string) {
	t.Helper()
	b, target := newSharedBackend(t, "/shared", "/hold")
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{"handler.share_all": "true"})
	writeRoutes(t, d.dir, "* "+target+"\n")
	d.startPushpin(t, conf, links)
	testutil.WarmInspect(t, func(n int) string { return d.url(fmt.Sprintf("/ready?n=%d", n)) })

	const clients = 3
	results := make([]string, clients)
	b.sharedGets(t, "/shared", clients, func(i int) {
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(d.url("/shared?a=1"))
		if err != nil {
			results[i] = err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results[i] = fmt.Sprintf("%d %s", resp.StatusCode, body)
	})
	for i, r := range results {
		if r != "200 shared body\n" {
			t.Fatalf("client %d got %q", i, r)
		}
	}

	lines := make([]chan string, clients)
	b.sharedGets(t, "/hold", clients, func(i int) {
		lines[i] = make(chan string, 4)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(d.url("/hold?a=1"))
		if err != nil {
			lines[i] <- err.Error()
			return
		}
		t.Cleanup(func() { resp.Body.Close() })
		br := bufio.NewReader(resp.Body)
		go func() {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				lines[i] <- l
			}
		}()
	})
	for i, ch := range lines {
		select {
		case l := <-ch:
			if l != "[open]\n" {
				t.Fatalf("stream %d: %q", i, l)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: no initial response", i)
		}
	}
	// Every client was in the same accept call: once one gets a published
	// line, all are subscribed.
	testutil.Eventually(t, 10*time.Second, func() error {
		d.publish(t, `{"items":[{"channel":"shared","formats":{"http-stream":{"content":"hello\n"}}}]}`)
		select {
		case l := <-lines[0]:
			if l != "hello\n" {
				t.Fatalf("stream 0: %q", l)
			}
			return nil
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("no published line yet")
		}
	})
	for i, ch := range lines[1:] {
		select {
		case l := <-ch:
			if l != "hello\n" {
				t.Fatalf("stream %d: %q", i+1, l)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream %d: no published line", i+1)
		}
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

// tack-proxy asks the real pushpin-handler, whose share_all answers make
// it share identical requests.
func TestInteropShareAllTackProxy(t *testing.T) {
	requirePushpin(t)
	checkShareAll(t, symlinkDir(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")}))
}
