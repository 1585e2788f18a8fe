package interop

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// Our runner, connmgr and proxy with the real pushpin-handler: when that
// handler is killed, tack-connmgr ends the clients it held within
// seconds (a stream with its final chunk, a long-poll with a 502), as it
// does for tack-handler; the probe it uses is plain keep-alives, which the
// real handler accepted while it was alive.
func TestInteropConnmgrEndsClientsOfKilledPushpinHandler(t *testing.T) {
	requirePushpin(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.handler_bin": "pushpin-handler",
	})
	writeRoutes(t, d.dir, "* test\n")
	d.startTack(t, conf)
	d.waitReady(t, "/")
	d.waitGripPath(t, "/stream")

	req, _ := http.NewRequest("GET", d.url("/stream?channel=k1"), nil)
	resp := testutil.GetOK(t, http.DefaultClient, req, 10*time.Second)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if l, err := br.ReadString('\n'); l != "[stream opened]\n" {
		t.Fatalf("stream start %q %v", l, err)
	}
	poll := make(chan string, 1)
	go func() {
		r, err := http.Get(d.url("/response?channel=k2"))
		if err != nil {
			poll <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		poll <- fmt.Sprintf("%d %s", r.StatusCode, b)
	}()
	// tack-proxy logs the hand-off in Pushpin's request line.
	d.proc.WaitFor(t, `GET \S*/response\?channel=k2 -> \S+ accept`, 10*time.Second)

	b, err := os.ReadFile(filepath.Join(d.dir, "run", "pushpin-handler.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	streamEnd := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		streamEnd <- err
	}()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	const bound = 5 * time.Second
	select {
	case err := <-streamEnd:
		if err != nil {
			t.Errorf("stream ended with %v, want its final chunk", err)
		}
	case <-time.After(bound):
		t.Fatal("stream still open after the real handler was killed")
	}
	select {
	case res := <-poll:
		if !strings.HasPrefix(res, "502 ") {
			t.Errorf("long-poll got %q, want a 502", res)
		}
	case <-time.After(bound):
		t.Fatal("long-poll unanswered after the real handler was killed")
	}
}
