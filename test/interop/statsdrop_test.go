package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/testutil"
	"tack/pkg/tnetstring"
)

// TestInteropProxyReportDroppedField: the real pushpin-handler 1.36 takes
// a report packet carrying tack-proxy's client-messages-dropped field like
// any other: it merges the report's 1.36 counters into its own report,
// ignores the extra field and keeps serving. (tack-handler with the real
// pushpin-proxy, whose reports lack the field: TestInteropHandlerStatsWithPushpinProxy.)
func TestInteropProxyReportDroppedField(t *testing.T) {
	requirePushpin(t)
	d := newDeployment(t)
	handlerProm := testutil.FreePort(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.services":               "pushpin-handler",
		"handler.prometheus_port":       fmt.Sprint(handlerProm),
		"handler.stats_report_interval": "1",
	})
	// tack-proxy's stats socket, played by the test: the handler connects.
	if err := os.MkdirAll(filepath.Join(d.dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	pub, err := zmq.NewSocket(zmq.PUB)
	if err != nil {
		t.Fatal(err)
	}
	pub.SetLinger(0)
	defer pub.Close()
	if err := pub.Bind("ipc://" + filepath.Join(d.dir, "run", "pushpin-proxy-stats")); err != nil {
		t.Fatal(err)
	}
	sub := testutil.NewStatsSub(t, "ipc://"+filepath.Join(d.dir, "run", "pushpin-stats"))
	d.startPushpin(t, conf, "")

	report := "report T" + string(tnetstring.MustEncode(tnetstring.Dict{
		{Key: "from", Value: "proxy_test"}, {Key: "connections", Value: int64(0)}, {Key: "minutes", Value: int64(0)},
		{Key: "received", Value: int64(0)}, {Key: "sent", Value: int64(0)}, {Key: "http-response-sent", Value: int64(0)},
		{Key: "duration", Value: int64(1000)}, {Key: "client-header-bytes-received", Value: int64(4321)},
		{Key: "client-messages-dropped", Value: int64(5)},
	}))
	// Sent until the handler's own report shows the counter (the SUB
	// joins late); the field must not be passed on.
	var merged tnetstring.Dict
	testutil.Eventually(t, 30*time.Second, func() error {
		if _, err := pub.Send(report, 0); err != nil {
			return err
		}
		for _, p := range sub.Read(1500 * time.Millisecond) {
			if n, _ := p.D.Int("client-header-bytes-received"); p.Type == "report" && n >= 4321 {
				merged = p.D
				return nil
			}
		}
		return fmt.Errorf("no report with the proxy's counter yet")
	})
	if _, ok := merged.Int("client-messages-dropped"); ok {
		t.Fatalf("pushpin-handler passed the field on: %v", merged)
	}
	testutil.Prometheus(t, fmt.Sprintf("http://127.0.0.1:%d/", handlerProm), "request_received")
	if d.proc.Exited() {
		t.Fatalf("pushpin ended:\n%s", d.proc.Output())
	}
	for _, line := range strings.Split(d.proc.Output(), "\n") {
		if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERR") {
			t.Fatalf("pushpin-handler complained: %s", line)
		}
	}
}
