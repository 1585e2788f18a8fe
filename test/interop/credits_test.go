package interop

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestInteropConnmgrCreditsUnderPushpin: tack-connmgr as condure under
// Pushpin 1.36's runner, proxy and handler. Many streams take items far
// larger than the connection buffer (the credits the handler starts with),
// so every item waits for fresh credits from tack-connmgr, granted once per
// tick for all that was written. pushpin-handler announces no ext.multi,
// so it gets one credit packet per session (the list form goes to peers
// that announce it, as tack-handler does). Every stream must receive every
// item, whole and in order.
func TestInteropConnmgrCreditsUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := gripBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.condure_bin": filepath.Join(binDir, "tack-connmgr"),
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startPushpin(t, conf, "")
	d.waitReady(t, "/ready")
	d.waitGripPath(t, "/warm")

	const (
		streams = 12
		items   = 24
		size    = 20000 // > the default 8192-byte buffer: several grants per item
	)
	readers := make([]*bufio.Reader, streams)
	for i := range readers {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", d.httpPort))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		fmt.Fprintf(conn, "GET /stream/%d HTTP/1.1\r\nHost: example\r\n\r\n", i)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d head: %v", i, err)
		}
		br := bufio.NewReader(resp.Body)
		if l, err := br.ReadString('\n'); l != "[open]\n" {
			t.Fatalf("stream %d initial body %q: %v", i, l, err)
		}
		readers[i] = br
	}
	// pushpin-handler sends the initial body once it has accepted the
	// hold and subscribed the channel: every stream is subscribed now.
	item := func(n int) string { return fmt.Sprintf("%03d:", n) + strings.Repeat("x", size) + "\n" }
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i, br := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := 0
			for next < items {
				l, err := br.ReadString('\n')
				if err != nil {
					errs <- fmt.Errorf("stream %d: after %d items: %v", i, next, err)
					return
				}
				if want := item(next); l != want {
					errs <- fmt.Errorf("stream %d: item %d: got %.10q (%d bytes)", i, next, l, len(l))
					return
				}
				next++
			}
		}()
	}
	for n := range items {
		d.publish(t, `{"items":[{"channel":"s1","formats":{"http-stream":{"content":"`+strings.TrimSuffix(item(n), "\n")+`\n"}}}]}`)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
