package e2e

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"tack/internal/testutil"
)

// stalledWS opens a WebSocket to path whose client reads nothing after the
// handshake, with a small receive buffer (set before connecting, so that
// the TCP window stays small).
func stalledWS(t *testing.T, s *suite, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if resp := sendWSHandshake(t, conn, path); resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("stalled client's handshake: %d", resp.StatusCode)
	}
	conn.SetDeadline(time.Time{})
	return conn
}

// TestE2EWebSocketStalledClientDrops: a WebSocket client that stops
// reading while publishes flood its channel loses messages (as in Pushpin,
// a published message the connection cannot take now is dropped), but the
// drops are logged with its connection id and counted: ws_message_dropped
// (and message_dropped) on the proxy's and the handler's Prometheus
// endpoints, client-messages-dropped in the handler's stats reports. A
// client on the same channel that reads gets every message, in order.
func TestE2EWebSocketStalledClientDrops(t *testing.T) {
	proxyProm := testutil.FreePort(t)
	handlerProm := testutil.FreePort(t)
	s := startSuite(t, suiteOptions{
		proxy:   map[string]string{"prometheus_port": fmt.Sprintf("127.0.0.1:%d", proxyProm), "stats_report_interval": "1"},
		handler: map[string]string{"prometheus_port": fmt.Sprintf("127.0.0.1:%d", handlerProm)},
	})
	handlerSub := testutil.NewStatsSub(t, "ipc://"+filepath.Join(s.dir, "run", "pushpin-stats"))
	proxyURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", proxyProm)
	handlerURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", handlerProm)

	stalledWS(t, s, "/ws?channel=flood")
	reader := dialWS(t, s, "/ws?channel=flood")
	waitSubscribed(t, s, reader, "flood")

	// Each publish waits until the reading client has the message, so
	// that it is never the one behind; the stalled one fills its socket
	// buffers and connmgr's credits, then loses what follows.
	payload := strings.Repeat("x", 64<<10)
	seq := 0
	publish := func() {
		t.Helper()
		msg := fmt.Sprintf("%06d%s", seq, payload)
		publishJSON(t, s, wsMessageItem("flood", `{"content":"`+msg+`"}`))
		reader.expect(t, ws.OpText, []byte(msg))
		seq++
	}
	for testutil.Prometheus(t, proxyURL, "ws_message_dropped") == 0 {
		if seq >= 1000 { // 64 MB: far beyond any socket buffer
			t.Fatalf("no drop after %d messages of %d bytes", seq, len(payload))
		}
		for range 10 {
			publish()
		}
	}
	t.Logf("first drop after %d messages", seq)
	// The reading client keeps getting everything.
	for range 10 {
		publish()
	}

	s.runner.WaitFor(t, `WARN.*websocket: message to the client dropped: .* cid=\S+`, 10*time.Second)
	testutil.Eventually(t, 15*time.Second, func() error {
		ws, all := testutil.Prometheus(t, handlerURL, "ws_message_dropped"), testutil.Prometheus(t, handlerURL, "message_dropped")
		if ws == 0 || all < ws {
			return fmt.Errorf("handler ws_message_dropped %d, message_dropped %d", ws, all)
		}
		return nil
	})
	if n := testutil.Prometheus(t, proxyURL, "message_dropped"); n == 0 {
		t.Fatal("proxy message_dropped is 0")
	}
	handlerSub.Until(15*time.Second, func(ps []testutil.StatsPacket) bool {
		for _, p := range ps {
			if n, _ := p.D.Int("client-messages-dropped"); p.Type == "report" && n > 0 {
				return true
			}
		}
		return false
	})
}
