package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tack/internal/testutil"
)

// heldBackend counts requests per path and holds each one until release
// is closed, then answers with answer.
type heldBackend struct {
	hits    sync.Map // path → *atomic.Int64
	release chan struct{}
	once    sync.Once
}

func (b *heldBackend) count(path string) int64 {
	v, _ := b.hits.LoadOrStore(path, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

func (b *heldBackend) handler(answer func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, _ := b.hits.LoadOrStore(r.URL.Path, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		answer(w, r)
	}
}

func (b *heldBackend) open() { b.once.Do(func() { close(b.release) }) }

// sharedGets starts n identical requests for path while the backend holds
// the first: one first, the others once it reached the backend; then the
// backend answers. Each client's result goes to its function.
func sharedGets(t *testing.T, s *suite, b *heldBackend, path string, n int, client func(i int)) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Go(func() { client(0) })
	testutil.Eventually(t, 10*time.Second, func() error {
		if b.count(path) == 0 {
			return fmt.Errorf("backend not reached yet")
		}
		return nil
	})
	for i := 1; i < n; i++ {
		wg.Go(func() { client(i) })
	}
	// Time for the others to reach the proxy and its inspect call.
	time.Sleep(time.Second)
	b.open()
	wg.Wait()
}

// TestE2EShareAll: with [handler] share_all, identical concurrent GETs
// reach the backend once and every client gets the answer; a shared GRIP
// stream hold puts every client on the channel.
func TestE2EShareAll(t *testing.T) {
	plain := &heldBackend{release: make(chan struct{})}
	hold := &heldBackend{release: make(chan struct{})}
	t.Cleanup(plain.open)
	t.Cleanup(hold.open)
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ready\n") })
	mux.Handle("/plain", plain.handler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "shared body\n")
	}))
	mux.Handle("/hold", hold.handler(holdStream))
	be := newBackendWith(t, mux)
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n", handler: map[string]string{"share_all": "true"}})
	testutil.WarmInspect(t, func(n int) string { return s.url(fmt.Sprintf("/ready?n=%d", n)) })

	const clients = 3
	t.Run("Plain", func(t *testing.T) {
		results := make([]string, clients)
		sharedGets(t, s, plain, "/plain", clients, func(i int) {
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(s.url("/plain?a=1"))
			if err != nil {
				results[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results[i] = fmt.Sprintf("%d %s", resp.StatusCode, b)
		})
		for i, r := range results {
			if r != "200 shared body\n" {
				t.Errorf("client %d got %q", i, r)
			}
		}
		if got := plain.count("/plain"); got != 1 {
			t.Fatalf("backend saw %d requests for %d identical clients, want 1", got, clients)
		}
	})

	t.Run("StreamHold", func(t *testing.T) {
		readers := make([]*bufio.Reader, clients)
		var mu sync.Mutex
		var failures []string
		sharedGets(t, s, hold, "/hold", clients, func(i int) {
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(s.url("/hold?ch=shared"))
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				return
			}
			t.Cleanup(func() { resp.Body.Close() })
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if resp.StatusCode != 200 || line != "[open]\n" {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("client %d: %d %q %v", i, resp.StatusCode, line, err))
				mu.Unlock()
				return
			}
			readers[i] = br
		})
		if len(failures) > 0 {
			t.Fatalf("streams: %q", failures)
		}
		if got := hold.count("/hold"); got != 1 {
			t.Fatalf("backend saw %d requests for %d identical clients, want 1", got, clients)
		}
		// Every client was handed over in the same accept call, so all
		// are subscribed once the first gets a published line.
		pub := func() {
			s.postPublish(t, `{"items":[{"channel":"shared","formats":{"http-stream":{"content":"hello\n"}}}]}`)
		}
		expectLine(t, readers[0], "hello\n", pub)
		for i, br := range readers[1:] {
			got := make(chan string, 1)
			go func() {
				l, _ := br.ReadString('\n')
				got <- l
			}()
			select {
			case l := <-got:
				if l != "hello\n" {
					t.Errorf("client %d got %q", i+1, l)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("client %d got no published line", i+1)
			}
		}
	})
}

// lineReader feeds a stream's lines to a channel.
func lineReader(br *bufio.Reader) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			ch <- l
		}
	}()
	return ch
}

// TestE2EShareNextLinkAuto: two streams whose next link is fetched at
// once (a hint) share one backend request: the handler's next-link
// requests carry auto-share, and tack-proxy asks it for their key.
func TestE2EShareNextLinkAuto(t *testing.T) {
	next := &heldBackend{release: make(chan struct{})}
	t.Cleanup(next.open)
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ready\n") })
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "stream")
		w.Header().Set("Grip-Channel", "nl")
		w.Header().Set("Grip-Link", "</nl-next>; rel=next; timeout=120")
		io.WriteString(w, "[open]\n")
	})
	mux.Handle("/nl-next", next.handler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "next\n")
	}))
	be := newBackendWith(t, mux)
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})
	testutil.WarmInspect(t, func(n int) string { return s.url(fmt.Sprintf("/ready?n=%d", n)) })

	var lines []<-chan string
	for i := range 2 {
		br, closeStream := openStream(t, s.url(fmt.Sprintf("/start?i=%d", i)), "[open]\n")
		t.Cleanup(closeStream)
		lines = append(lines, lineReader(br))
	}
	// Both subscribed: a published line reached each.
	seen := make([]bool, len(lines))
	testutil.Eventually(t, 10*time.Second, func() error {
		s.postPublish(t, `{"items":[{"channel":"nl","formats":{"http-stream":{"content":"sub\n"}}}]}`)
		deadline := time.After(200 * time.Millisecond)
		for {
			select {
			case <-lines[0]:
				seen[0] = true
			case <-lines[1]:
				seen[1] = true
			case <-deadline:
				if seen[0] && seen[1] {
					return nil
				}
				return fmt.Errorf("subscribed: %v", seen)
			}
		}
	})
	// Drain the extra "sub" lines.
	quiet := time.After(500 * time.Millisecond)
drain:
	for {
		select {
		case <-lines[0]:
		case <-lines[1]:
		case <-quiet:
			break drain
		}
	}
	s.postPublish(t, `{"items":[{"channel":"nl","formats":{"http-stream":{"action":"hint"}}}]}`)
	testutil.Eventually(t, 10*time.Second, func() error {
		if next.count("/nl-next") == 0 {
			return fmt.Errorf("next link not fetched yet")
		}
		return nil
	})
	time.Sleep(time.Second) // the other fetch reaches the proxy
	next.open()
	for i, ch := range lines {
		select {
		case l := <-ch:
			if l != "next\n" {
				t.Errorf("stream %d got %q", i, l)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("stream %d got no next-link body", i)
		}
	}
	if got := next.count("/nl-next"); got != 1 {
		t.Fatalf("backend saw %d next-link requests for 2 streams, want 1", got)
	}
}
