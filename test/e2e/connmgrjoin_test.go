package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// joinClientTimeout is shorter than connmgr's 10 s wait for a server's
// first packet (then 503), so a first packet lost on its way to a new
// connection manager shows as a client timeout.
const joinClientTimeout = 8 * time.Second

// joinRequest makes request i of goroutine g on a new connection: a plain
// answer (the proxy's first packet to the connection manager) or, every
// other time, a GRIP stream (the handler's first packet), and checks it.
func joinRequest(c *http.Client, u func(string) string, g, i int) error {
	if i%2 == 0 {
		path := fmt.Sprintf("/plain/after-%d-%d", g, i)
		resp, err := c.Get(u(path))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if want := "answer " + path + "\n"; err != nil || resp.StatusCode != 200 || string(b) != want {
			return fmt.Errorf("GET %s: %d %q (%v)", path, resp.StatusCode, b, err)
		}
		return nil
	}
	path := fmt.Sprintf("/stream/after-%d-%d?ch=join", g, i)
	resp, err := c.Get(u(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	l, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != 200 || l != "[open]\n" {
		return fmt.Errorf("GET %s: %d %q (%v)", path, resp.StatusCode, l, err)
	}
	return nil
}

// TestE2EConnmgrRestartFirstRequests: when the runner restarts a killed
// connection manager (connmgr_count=2), proxy and handler connect to its
// new sockets while clients already reach it (the port is shared). Its
// first requests, hammered from the moment it is restarted, all get their
// answers (from the proxy) and stream heads (from the handler) at once:
// no first packet is lost to a ZeroMQ connection not yet up (slow joiner).
func TestE2EConnmgrRestartFirstRequests(t *testing.T) {
	s := startConnmgrsSuite(t, 2, "/stream/")
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: joinClientTimeout}
	// Both instances serve (start-up has the same window; retried here).
	for i := 0; len(servedBy(s.runner.Output(), "/plain/before-")) < 2; i++ {
		if i == 100 {
			t.Fatalf("not both connection managers served: %v", servedBy(s.runner.Output(), "/plain/before-"))
		}
		testutil.Eventually(t, 20*time.Second, func() error {
			return getOK(c, s.url(fmt.Sprintf("/plain/before-%d", i)))
		})
	}

	old := s.pidOf(t, "condure-1.pid")
	kill(t, old, syscall.SIGKILL)
	s.waitRestarted(t, "condure-1.pid", old)

	// Four clients, new connections one after another, until the new
	// condure-1 has served 40 of them.
	const want = 40
	done := make(chan struct{})
	var mu sync.Mutex
	var failures []string
	var slowest time.Duration
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				err := joinRequest(c, s.url, g, i)
				d := time.Since(start)
				mu.Lock()
				slowest = max(slowest, d)
				if err != nil {
					failures = append(failures, fmt.Sprintf("%v after %v", err, d.Round(time.Millisecond)))
				}
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for servedBy(s.runner.Output(), "/plain/after-")["condure-1"]+servedBy(s.runner.Output(), "/stream/after-")["condure-1"] < want {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	out := s.runner.Output()
	plain, streams := servedBy(out, "/plain/after-"), servedBy(out, "/stream/after-")
	t.Logf("after the restart: plain %v, streams %v; slowest answer %v", plain, streams, slowest)
	if len(failures) > 0 {
		t.Fatalf("%d requests failed after condure-1 restarted, first: %q", len(failures), failures[:min(len(failures), 5)])
	}
	if plain["condure-1"]+streams["condure-1"] < want || streams["condure-1"] == 0 {
		t.Fatalf("the restarted condure-1 served %d plain requests and %d streams, want %d in all", plain["condure-1"], streams["condure-1"], want)
	}
}
