package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tack/internal/testutil"
)

// freeID picks a runner --id whose handler ports (5560..5563 + 10·id) are
// free and below the ephemeral range.
func freeID(t *testing.T) int {
	t.Helper()
	for try := 0; try < 500; try++ {
		id := 100 + (os.Getpid()+try*37)%2500
		ok := true
		for p := 5560; p <= 5563; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+10*id))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return id
		}
	}
	t.Fatal("no free --id")
	return 0
}

// Debian's /etc/pushpin/pushpin.conf, unmodified, with the runner flags a
// second instance would use (--id, --port, --route).
func TestE2EUnmodifiedDebianConfig(t *testing.T) {
	if _, err := os.Stat("/etc/pushpin/pushpin.conf"); err != nil {
		if !testutil.EnsurePushpin(t) {
			t.Skip("no /etc/pushpin/pushpin.conf: apt-get install -y pushpin")
		}
	}
	id := freeID(t)
	port := testutil.FreePort(t)
	for port >= 5560+10*id && port <= 5563+10*id {
		port = testutil.FreePort(t)
	}
	dir := testutil.ShortTempDir(t)
	p := testutil.Start(t, dir, nil, filepath.Join(binDir, "tack"),
		"--config", "/etc/pushpin/pushpin.conf", "--id", fmt.Sprint(id),
		"--port", fmt.Sprintf("127.0.0.1:%d", port), "--route", "* test", "--merge-output")
	c := &http.Client{Timeout: 2 * time.Second}
	var body []byte
	testutil.Eventually(t, 20*time.Second, func() error {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return err
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d %q", resp.StatusCode, body)
		}
		return nil
	})
	if string(body) != "Hello from the Pushpin test handler!\n" {
		t.Errorf("body %q", body)
	}
	p.Stop(10 * time.Second)
}
