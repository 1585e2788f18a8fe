package interop

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"tack/internal/testutil"
)

// checkGrip opens a stream hold and a response hold on the test handler
// and publishes to both.
func (d *deployment) checkGrip(t *testing.T) {
	t.Helper()
	// The handler may still be connecting its sockets when the first
	// request arrives: wait until a hold is accepted.
	req, _ := http.NewRequest("GET", d.url("/stream?channel=s1"), nil)
	resp := testutil.GetOK(t, http.DefaultClient, req, 10*time.Second)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "[stream opened]\n" {
		t.Fatalf("stream start: %q %v (status %d)", line, err, resp.StatusCode)
	}
	if resp.Header.Get("Grip-Hold") != "" || resp.Header.Get("Grip-Channel") != "" {
		t.Errorf("client saw GRIP headers: %v", resp.Header)
	}
	got := make(chan string, 1)
	go func() {
		l, _ := r.ReadString('\n')
		got <- l
	}()
	// The subscription is made after the hand-off; publish until it lands.
	deadline := time.Now().Add(10 * time.Second)
	for {
		d.publish(t, `{"items":[{"channel":"s1","formats":{"http-stream":{"content":"hello stream\n"}}}]}`)
		select {
		case l := <-got:
			if l != "hello stream\n" {
				t.Fatalf("stream got %q", l)
			}
			goto response
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("published content never reached the stream")
		}
	}
response:
	done := make(chan string, 1)
	go func() {
		resp, err := http.Get(d.url("/response?channel=r1"))
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	deadline = time.Now().Add(10 * time.Second)
	for {
		d.publish(t, `{"items":[{"channel":"r1","formats":{"http-response":{"code":201,"body":"hello response\n"}}}]}`)
		select {
		case res := <-done:
			if res != "201 hello response\n" {
				t.Fatalf("response hold got %q", res)
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("published response never reached the long-poll")
		}
	}
}

// tack-proxy under Pushpin's runner with the real handler: GRIP hand-off.
func TestInteropProxyGripWithPushpinHandler(t *testing.T) {
	requirePushpin(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "* test\n")
	links := symlinkDir(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/")
	// No warm-up here: tack-proxy starts a hand-off only once a handler is
	// connected to its accept socket, which is what this test checks too.
	d.checkGrip(t)
}
