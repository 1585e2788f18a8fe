package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// clientEndBound is how long a client may wait, after the process holding
// its request died, for a well-formed end (README "Restarts and signals").
const clientEndBound = 5 * time.Second

// pidOf reads a service's pid file in the suite's run directory.
func (s *suite) pidOf(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, "run", file))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %q", file, b)
	}
	return pid
}

// waitRestarted waits until the runner has started a new process for the
// pid file (after old died) and returns its pid.
func (s *suite) waitRestarted(t *testing.T, file string, old int) int {
	t.Helper()
	var pid int
	testutil.Eventually(t, 15*time.Second, func() error {
		b, _ := os.ReadFile(filepath.Join(s.dir, "run", file))
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if pid == 0 || pid == old {
			return fmt.Errorf("%s not restarted yet", file)
		}
		return nil
	})
	return pid
}

func kill(t *testing.T, pid int, sig syscall.Signal) time.Time {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	return time.Now()
}

// heldStream reads a held stream's lines in the background until it ends.
type heldStream struct {
	lines chan string
	end   chan bodyEnd // nil error: a clean end (final chunk)
}

func watchStream(br *bufio.Reader) *heldStream {
	h := &heldStream{lines: make(chan string, 64), end: make(chan bodyEnd, 1)}
	go func() {
		for {
			l, err := br.ReadString('\n')
			if l != "" {
				h.lines <- l
			}
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				h.end <- bodyEnd{err, time.Now()}
				return
			}
		}
	}()
	return h
}

// warmUp publishes "warm-up" lines on channel test until one arrives: the
// subscription is made just after the hand-off, so early publishes may
// find no subscriber.
func (s *suite) warmUp(t *testing.T, h *heldStream) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		s.postPublish(t, `{"items":[`+streamItem("test", fmt.Sprintf("warm-up %d\n", i))+`]}`)
		select {
		case <-h.lines:
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
	t.Fatal("stream never received a publish")
}

// streamPublish publishes content on channel test and waits for it on h
// (late warm-up lines are skipped).
func (s *suite) streamPublish(t *testing.T, h *heldStream, content string) {
	t.Helper()
	s.postPublish(t, `{"items":[`+streamItem("test", content)+`]}`)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-h.lines:
			if strings.HasPrefix(l, "warm-up ") {
				continue
			}
			if l != content {
				t.Fatalf("stream got %q, want %q", l, content)
			}
			return
		case e := <-h.end:
			t.Fatalf("stream ended (%v) before %q", e.err, content)
		case <-timeout:
			t.Fatalf("stream never got %q", content)
		}
	}
}

// bodyEnd is how and when a body ended.
type bodyEnd struct {
	err error
	at  time.Time
}

// readEnd reads r to its end in the background.
func readEnd(r io.Reader) <-chan bodyEnd {
	ch := make(chan bodyEnd, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		ch <- bodyEnd{err, time.Now()}
	}()
	return ch
}

// pollEnd is a long-poll's "<status> <body>" (or error) and its time.
type pollEnd struct {
	res string
	at  time.Time
}

// longPoll starts a GET in the background.
func longPoll(u string) <-chan pollEnd {
	ch := make(chan pollEnd, 1)
	got := make(chan string, 1)
	go func() {
		getInto(u, got)
		ch <- pollEnd{<-got, time.Now()}
	}()
	return ch
}

// waitAccepted waits until the proxy has logged the hand-off of a request
// for path to the handler (its request line ends in accept): the handler holds it then.
func (s *suite) waitAccepted(t *testing.T, path string) {
	t.Helper()
	// Pushpin's request line: "GET <uri> -> <target> accept".
	s.runner.WaitFor(t, `GET \S*`+regexp.QuoteMeta(path)+` -> \S+ accept`, 10*time.Second)
}

func TestE2EHandlerKillEndsHeldClients(t *testing.T) {
	s := startSuite(t, suiteOptions{})
	br, closeStream := openStream(t, s.url("/stream"), "[stream opened]\n")
	defer closeStream()
	held := watchStream(br)
	s.warmUp(t, held)
	poll := longPoll(s.url("/response"))
	s.waitAccepted(t, "/response")
	s.streamPublish(t, held, "before\n")

	old := s.pidOf(t, "pushpin-handler.pid")
	streamEnd := held.end
	killed := kill(t, old, syscall.SIGKILL)

	select {
	case e := <-streamEnd:
		if e.err != nil {
			t.Errorf("stream ended with %v, want a clean end (final chunk)", e.err)
		}
		t.Logf("stream ended %v after kill -9 of the handler", e.at.Sub(killed).Round(time.Millisecond))
		if d := e.at.Sub(killed); d > clientEndBound {
			t.Errorf("stream ended %v after the kill, want < %v", d, clientEndBound)
		}
	case <-time.After(clientEndBound + 5*time.Second):
		t.Fatal("stream still open after the handler was killed")
	}
	select {
	case p := <-poll:
		if !strings.HasPrefix(p.res, "502 ") {
			t.Errorf("long-poll got %q, want a 502", p.res)
		}
		t.Logf("long-poll answered %v after kill -9 of the handler", p.at.Sub(killed).Round(time.Millisecond))
		if d := p.at.Sub(killed); d > clientEndBound {
			t.Errorf("long-poll answered %v after the kill, want < %v", d, clientEndBound)
		}
	case <-time.After(clientEndBound + 5*time.Second):
		t.Fatal("long-poll unanswered after the handler was killed")
	}

	// The runner's restart serves new holds.
	s.waitRestarted(t, "pushpin-handler.pid", old)
	s.waitReady(t)
	br2, closeStream2 := openStream(t, s.url("/stream"), "[stream opened]\n")
	defer closeStream2()
	expectLine(t, br2, "after\n", func() { s.postPublish(t, `{"items":[`+streamItem("test", "after\n")+`]}`) })
}

func TestE2EHandlerTermAnswersHeldClients(t *testing.T) {
	s := startSuite(t, suiteOptions{})
	br, closeStream := openStream(t, s.url("/stream"), "[stream opened]\n")
	defer closeStream()
	held := watchStream(br)
	s.warmUp(t, held)
	poll := longPoll(s.url("/response"))
	s.waitAccepted(t, "/response")
	s.streamPublish(t, held, "before\n")

	streamEnd := held.end
	stopped := kill(t, s.pidOf(t, "pushpin-handler.pid"), syscall.SIGTERM)
	select {
	case e := <-streamEnd:
		if e.err != nil {
			t.Errorf("stream ended with %v, want a clean end (final chunk)", e.err)
		}
		if d := e.at.Sub(stopped); d > clientEndBound {
			t.Errorf("stream ended %v after SIGTERM, want < %v", d, clientEndBound)
		}
	case <-time.After(clientEndBound + 5*time.Second):
		t.Fatal("stream still open after the handler stopped")
	}
	select {
	case p := <-poll:
		// The test handler's timeout response (grip-reference: /response).
		if p.res != "200 nothing for now\n" {
			t.Errorf("long-poll got %q, want the timeout response", p.res)
		}
		if d := p.at.Sub(stopped); d > clientEndBound {
			t.Errorf("long-poll answered %v after SIGTERM, want < %v", d, clientEndBound)
		}
	case <-time.After(clientEndBound + 5*time.Second):
		t.Fatal("long-poll unanswered after the handler stopped")
	}
}

// TestE2EKillEndsPassthrough: kill -9 of the proxy, or of the zhttp
// client fetching from the backend, ends a proxied response in flight
// promptly, and the restarted process serves.
func TestE2EKillEndsPassthrough(t *testing.T) {
	for _, pidFile := range []string{"pushpin-proxy.pid", "zurl.pid"} {
		t.Run(strings.TrimSuffix(pidFile, ".pid"), func(t *testing.T) { testKillEndsPassthrough(t, pidFile) })
	}
}

func testKillEndsPassthrough(t *testing.T, pidFile string) {
	release := make(chan struct{})
	be := newBackendWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if r.URL.Path != "/slow" {
			io.WriteString(w, "quick\n")
			return
		}
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select { // the rest never comes while the test runs
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})

	resp, err := http.Get(s.url("/slow"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); l != "first\n" {
		t.Fatalf("first line %q (%v)", l, err)
	}
	old := s.pidOf(t, pidFile)
	end := readEnd(br)
	killed := kill(t, old, syscall.SIGKILL)
	select {
	case e := <-end:
		// A proxied body cut short must not look complete: the
		// connection closes without the final chunk.
		if !errors.Is(e.err, io.ErrUnexpectedEOF) {
			t.Errorf("passthrough ended with %v, want an unexpected EOF", e.err)
		}
		t.Logf("passthrough ended %v after kill -9 (%s)", e.at.Sub(killed).Round(time.Millisecond), pidFile)
		if d := e.at.Sub(killed); d > clientEndBound {
			t.Errorf("passthrough ended %v after the kill, want < %v", d, clientEndBound)
		}
	case <-time.After(clientEndBound + 5*time.Second):
		t.Fatal("passthrough still open after the kill")
	}

	s.waitRestarted(t, pidFile, old)
	testutil.Eventually(t, 15*time.Second, func() error {
		r, err := http.Get(s.url("/quick"))
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if r.StatusCode != 200 || string(b) != "quick\n" {
			return fmt.Errorf("%d %q", r.StatusCode, b)
		}
		return nil
	})
}

// TestE2EHangup sends SIGHUP to the runner and to each process under it
// while a stream is held: nothing ends, a publish after each HUP arrives,
// and the log files renamed before the HUP are reopened (the following
// lines go to new files), as log rotation needs.
func TestE2EHangup(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	base := testutil.FreePortBlock(t, 5)
	s := &suite{dir: dir, httpPort: base + 4, portOffset: base - 5560}
	conf := writeConfig(t, dir, s.httpPort, s.portOffset, suiteOptions{})
	// Without --merge-output: each process logs to <logdir>/<name>.log,
	// condure's output through the runner.
	s.runner = testutil.Start(t, dir, nil, filepath.Join(binDir, "tack"), "--config", conf)
	s.waitReady(t)
	br, closeStream := openStream(t, s.url("/stream"), "[stream opened]\n")
	defer closeStream()
	held := watchStream(br)
	s.warmUp(t, held)

	logDir := filepath.Join(dir, "log")
	logs := []string{"condure.log", "pushpin-proxy.log", "pushpin-handler.log", "zurl.log"}
	pidFiles := []string{"condure.pid", "pushpin-proxy.pid", "pushpin-handler.pid", "zurl.pid"}
	pids := map[string]int{}
	for _, f := range pidFiles {
		pids[f] = s.pidOf(t, f)
	}
	fileHas := func(name, text string) func() error {
		return func() error {
			b, _ := os.ReadFile(filepath.Join(logDir, name))
			if !strings.Contains(string(b), text) {
				return fmt.Errorf("%s: no %q in %q", name, text, b)
			}
			return nil
		}
	}

	// Rotation: rename, then SIGHUP the runner.
	for _, l := range logs {
		if err := os.Rename(filepath.Join(logDir, l), filepath.Join(logDir, l+".1")); err != nil {
			t.Fatal(err)
		}
	}
	s.runner.Signal(syscall.SIGHUP)
	for name, text := range map[string]string{
		"pushpin-handler.log":   "log file reopened",
		"pushpin-handler.log.1": "reloading",
		"pushpin-proxy.log":     "routes loaded",
		"pushpin-proxy.log.1":   "reloading",
		"zurl.log":              "log file reopened",
		"zurl.log.1":            "reloading",
	} {
		testutil.Eventually(t, 10*time.Second, fileHas(name, text))
	}
	s.streamPublish(t, held, "after runner HUP\n")

	// Each process on its own (logrotate's postrotate may signal any).
	// condure's output goes through the runner into the reopened file.
	kill(t, pids["condure.pid"], syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, fileHas("condure.log", "reloading"))
	s.streamPublish(t, held, "after connmgr HUP\n")
	for _, f := range []string{"pushpin-proxy.pid", "pushpin-handler.pid", "zurl.pid"} {
		kill(t, pids[f], syscall.SIGHUP)
		time.Sleep(300 * time.Millisecond)
		s.streamPublish(t, held, "after "+f+" HUP\n")
	}
	for _, f := range pidFiles {
		if got := s.pidOf(t, f); got != pids[f] {
			t.Errorf("%s: pid %d became %d: the process was restarted", f, pids[f], got)
		}
	}
	if out := s.runner.Output(); strings.Contains(out, "Exited") {
		t.Errorf("a process exited on SIGHUP:\n%s", out)
	}
}
