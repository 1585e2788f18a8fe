package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// connmgrNames are the instances connmgr_count=3 starts.
var connmgrNames = []string{"condure", "condure-1", "condure-2"}

// servedBy counts, per connection manager, the requests for uri prefix
// it logged (debug "request" lines, prefixed with the instance name by
// the runner's merged output).
func servedBy(out, uriPrefix string) map[string]int {
	re := regexp.MustCompile(`\[(condure(?:-\d+)?)\] request .*uri=https?://[^/\s]+` + regexp.QuoteMeta(uriPrefix))
	n := map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			n[m[1]]++
		}
	}
	return n
}

// startConnmgrsSuite starts tack with count connection managers (their
// requests logged) in front of a backend that holds GRIP streams at
// streamPattern and answers "answer <path>" under /plain/.
func startConnmgrsSuite(t *testing.T, count int, streamPattern string) *suite {
	mux := http.NewServeMux()
	mux.HandleFunc(streamPattern, holdStream)
	mux.HandleFunc("/plain/", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "answer "+r.URL.Path+"\n")
	})
	be := newBackendWith(t, mux)
	return startSuite(t, suiteOptions{
		routes: "* " + be + "\n",
		runner: map[string]string{"connmgr_count": strconv.Itoa(count), "log_level": "2,condure:3"},
	})
}

// getOK gets u and wants a 200.
func getOK(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// TestE2EConnmgrCount: with connmgr_count=3 the runner starts three
// connection managers on the same port, each running Go on its share of
// the cores (GOMAXPROCS); clients spread over them get proxied answers and
// GRIP streams, one publish reaches every stream once, and killing one
// instance ends only its own clients while the runner restarts it.
func TestE2EConnmgrCount(t *testing.T) {
	s := startConnmgrsSuite(t, 3, "/stream")
	wantProcs := "GOMAXPROCS=" + strconv.Itoa(max(runtime.NumCPU()/3, 1))
	if v, ok := os.LookupEnv("GOMAXPROCS"); ok {
		wantProcs = "GOMAXPROCS=" + v // the environment's value wins
	}
	for _, f := range append(slices.Clone(connmgrNames), "pushpin-proxy") {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s.pidOf(t, f+".pid")))
		if err != nil {
			t.Fatal(err)
		}
		env := strings.Split(string(b), "\x00")
		if f == "pushpin-proxy" && os.Getenv("GOMAXPROCS") == "" {
			if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "GOMAXPROCS=") }) {
				t.Errorf("%s: GOMAXPROCS set, want Go's default", f)
			}
		} else if !slices.Contains(env, wantProcs) {
			t.Errorf("%s: no %s in its environment", f, wantProcs)
		}
	}

	// Plain answers, each on a new connection. waitReady saw one
	// instance reach the proxy; until the proxy is connected to the
	// others, they answer 503, or (a reply published before the proxy's
	// PUB reached an instance's SUB is lost, as with a lone connmgr at
	// start) wait for the 10 s ack timeout: short client timeouts, retried.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
	for i := range 30 {
		testutil.Eventually(t, 10*time.Second, func() error {
			resp, err := c.Get(s.url(fmt.Sprintf("/plain/%d", i)))
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("answer /plain/%d\n", i); resp.StatusCode != 200 || string(b) != want {
				return fmt.Errorf("GET /plain/%d: %d %q", i, resp.StatusCode, b)
			}
			return nil
		})
	}

	// Held streams, each its own connection.
	const n = 30
	streams := make([]*heldStream, n)
	for i := range streams {
		br, done := openStream(t, s.url("/stream?ch=test"), "[open]\n")
		t.Cleanup(done)
		streams[i] = watchStream(br)
	}
	out := s.runner.Output()
	for _, uri := range []string{"/plain/", "/stream"} {
		by := servedBy(out, uri)
		for _, name := range connmgrNames {
			if by[name] == 0 {
				t.Fatalf("%s served no %s request (%v); output:\n%s", name, uri, by, out)
			}
		}
	}
	byStream := servedBy(out, "/stream")
	t.Logf("streams per connmgr: %v", byStream)
	for _, h := range streams {
		s.warmUp(t, h)
	}
	s.postPublish(t, `{"items":[`+streamItem("test", "one\n")+`]}`)
	for i, h := range streams {
		expectOnce(t, i, h, "one\n")
	}

	// Kill condure-1: its streams end, the others still get publishes,
	// and the runner starts it again.
	old := s.pidOf(t, "condure-1.pid")
	kill(t, old, syscall.SIGKILL)
	s.waitRestarted(t, "condure-1.pid", old)
	// The killed process's sockets close at once; give the ends time to
	// reach the readers.
	time.Sleep(time.Second)
	var alive []*heldStream
	ended := 0
	for _, h := range streams {
		select {
		case <-h.end:
			ended++
		default:
			alive = append(alive, h)
		}
	}
	if ended != byStream["condure-1"] {
		t.Fatalf("%d streams ended, condure-1 held %d", ended, byStream["condure-1"])
	}
	s.postPublish(t, `{"items":[`+streamItem("test", "two\n")+`]}`)
	for i, h := range alive {
		expectOnce(t, i, h, "two\n")
	}
	// New clients are served again by all three.
	s.waitReady(t)
	for i := range 10 {
		testutil.Eventually(t, 10*time.Second, func() error {
			resp, err := c.Get(s.url(fmt.Sprintf("/plain/after-%d", i)))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("after restart: %d", resp.StatusCode)
			}
			return nil
		})
	}
	if by := servedBy(s.runner.Output(), "/plain/after-"); len(by) == 0 {
		t.Fatal("no request after the restart was logged")
	}
}

// expectOnce waits for want on h (skipping warm-up lines) and checks no
// second copy follows.
func expectOnce(t *testing.T, i int, h *heldStream, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-h.lines:
			if strings.HasPrefix(l, "warm-up ") {
				continue
			}
			if l != want {
				t.Fatalf("stream %d got %q, want %q", i, l, want)
			}
			select {
			case l := <-h.lines:
				t.Fatalf("stream %d got %q after %q", i, l, want)
			case <-time.After(50 * time.Millisecond):
			}
			return
		case e := <-h.end:
			t.Fatalf("stream %d ended (%v) before %q", i, e.err, want)
		case <-timeout:
			t.Fatalf("stream %d never got %q", i, want)
		}
	}
}

// TestE2EConnmgrCountTLSAndUnix: the TLS port is shared by all three
// connection managers too; the unix socket (which cannot be shared) is
// served by the first one only.
func TestE2EConnmgrCountTLSAndUnix(t *testing.T) {
	ca := testutil.NewCA(t)
	tlsPort := testutil.FreePort(t)
	files := map[string][]byte{}
	addIdentity(t, ca, files, fmt.Sprintf("default_%d", tlsPort), time.Now().Add(24*time.Hour), "127.0.0.1")
	be := listenerBackend(t, "be")
	s := startSuite(t, suiteOptions{
		routes: "* " + be + "\n",
		runner: map[string]string{
			"connmgr_count": "3", "log_level": "2,condure:3",
			"https_ports": fmt.Sprintf("127.0.0.1:%d", tlsPort),
			"local_ports": "{rundir}/{ipc_prefix}server",
		},
		files: files,
	})
	// Short timeouts, retried: see TestE2EConnmgrCount.
	tc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool},
	}}
	for i := range 30 {
		u := fmt.Sprintf("https://127.0.0.1:%d/tls/%d", tlsPort, i)
		testutil.Eventually(t, 10*time.Second, func() error {
			resp, err := tc.Get(u)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "be proto=https\n" {
				return fmt.Errorf("GET %s: %d %q", u, resp.StatusCode, b)
			}
			return nil
		})
	}
	path := filepath.Join(s.dir, "run", "pushpin-server")
	uc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	for i := range 5 {
		if code, body := getBody(t, uc, fmt.Sprintf("http://tack.local/unix/%d", i)); code != 200 || !strings.HasPrefix(body, "be ") {
			t.Fatalf("unix GET: %d %q", code, body)
		}
	}
	out := s.runner.Output()
	byTLS := servedBy(out, "/tls/")
	for _, name := range connmgrNames {
		if byTLS[name] == 0 {
			t.Fatalf("%s served no TLS request (%v)", name, byTLS)
		}
	}
	if byUnix := servedBy(out, "/unix/"); byUnix["condure"] != 5 || len(byUnix) != 1 {
		t.Fatalf("unix requests served by %v, want condure only", byUnix)
	}
}
