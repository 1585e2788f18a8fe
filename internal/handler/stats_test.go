package handler

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// statsSub connects a SUB to the handler's stats socket.
func statsSub(t *testing.T, h *harness) *zmq.Socket {
	t.Helper()
	s, err := h.zctx.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLinger(0)
	s.SetSubscribe("")
	if err := s.Connect("ipc://" + filepath.Join(h.dir, "stats")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// expectStats reads stats packets until one of type typ satisfies ok.
func expectStats(t *testing.T, s *zmq.Socket, typ string, ok func(tnetstring.Dict) bool) tnetstring.Dict {
	t.Helper()
	deadline := time.Now().Add(hWait)
	poller := zmq.NewPoller()
	poller.Add(s, zmq.POLLIN)
	for time.Now().Before(deadline) {
		polled, err := poller.Poll(100 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(polled) == 0 {
			continue
		}
		m, err := s.RecvMessageBytes(0)
		if err != nil || len(m) != 1 {
			t.Fatalf("stats message %q: %v", m, err)
		}
		at := strings.IndexByte(string(m[0]), ' ')
		if at < 0 || m[0][at+1] != 'T' {
			t.Fatalf("stats frame %q", m[0])
		}
		d, err := tnetstring.DecodeDict(m[0][at+2:])
		if err != nil {
			t.Fatal(err)
		}
		if string(m[0][:at]) == typ && ok(d) {
			if from, _ := d.Bytes("from"); string(from) != "handler_test" {
				t.Fatalf("%s from %q", typ, from)
			}
			return d
		}
	}
	t.Fatalf("no %s stats packet", typ)
	return nil
}

func str(d tnetstring.Dict, k string) string { b, _ := d.Bytes(k); return string(b) }

func TestStatsPackets(t *testing.T) {
	var proxyStats *zmq.Socket
	h := startHarness(t, func(c *Config) {
		dir := filepath.Dir(strings.TrimPrefix(c.AcceptSpecs[0], "ipc://"))
		c.StatsSpec = "ipc://" + filepath.Join(dir, "stats")
		c.ProxyStatsSpecs = []string{"ipc://" + filepath.Join(dir, "proxy-stats")}
		c.StatsReportInterval = time.Second
		c.PrometheusPort = "ipc://" + filepath.Join(dir, "prom")
		c.PrometheusPrefix = "pushpin_"
	})
	sub := statsSub(t, h)
	var err error
	if proxyStats, err = h.zctx.NewSocket(zmq.PUB); err != nil {
		t.Fatal(err)
	}
	proxyStats.SetLinger(0)
	defer proxyStats.Close()
	if err := proxyStats.Bind("ipc://" + filepath.Join(h.dir, "proxy-stats")); err != nil {
		t.Fatal(err)
	}
	// Wait for both subscriptions: the report packet proves ours, a
	// repeated proxy packet proves the handler's.
	expectStats(t, sub, "report", func(tnetstring.Dict) bool { return true })

	act := "activity T" + string(tnetstring.MustEncode(tnetstring.Dict{{Key: "count", Value: int64(3)}, {Key: "from", Value: "proxy_1"}}))
	deadline := time.Now().Add(hWait)
	got := false
	for !got && time.Now().Before(deadline) {
		proxyStats.SendMessage(act)
		poller := zmq.NewPoller()
		poller.Add(sub, zmq.POLLIN)
		for {
			polled, _ := poller.Poll(200 * time.Millisecond)
			if len(polled) == 0 {
				break
			}
			m, _ := sub.RecvMessageBytes(0)
			if strings.HasPrefix(string(m[0]), "activity ") {
				d, _ := tnetstring.DecodeDict(m[0][len("activity T"):])
				if n, _ := d.Int("count"); n >= 3 && str(d, "from") == "handler_test" {
					got = true
					break
				}
			}
		}
	}
	if !got {
		t.Fatal("proxy activity not merged")
	}
	conn := "conn T" + string(tnetstring.MustEncode(tnetstring.Dict{
		{Key: "id", Value: "condure:1-0-1"}, {Key: "type", Value: "http"}, {Key: "peer-address", Value: "127.0.0.1"},
		{Key: "ttl", Value: int64(120)}, {Key: "from", Value: "proxy_1"}}))
	proxyStats.SendMessage(conn)
	expectStats(t, sub, "conn", func(d tnetstring.Dict) bool { return str(d, "id") == "condure:1-0-1" && !d.Bool("unavailable") })

	h.sendAccept(acceptArgs("1-0-1", 2, 200000, streamResponse()))
	h.expectAccepted()
	d := expectStats(t, sub, "sub", func(d tnetstring.Dict) bool { return str(d, "channel") == "test" })
	if str(d, "mode") != "stream" || d.Bool("unavailable") {
		t.Fatalf("sub %v", d)
	}
	if n, _ := d.Int("subscribers"); n != 1 {
		t.Fatalf("sub %v", d)
	}
	if ttl, _ := d.Int("ttl"); ttl != 60 {
		t.Fatalf("sub %v", d)
	}
	h.expectPacket()
	h.expectPacket()
	it := pubStream("test", "x")
	it.ID = "pub-1"
	h.publish(it)
	d = expectStats(t, sub, "message", func(tnetstring.Dict) bool { return true })
	if str(d, "channel") != "test" || str(d, "item-id") != "pub-1" || str(d, "transport") != "http-stream" {
		t.Fatalf("message %v", d)
	}
	if n, _ := d.Int("count"); n != 1 {
		t.Fatalf("message %v", d)
	}
	h.sendStream(zhttpIn("1-0-1", 2, zhttp.TypeCancel))
	// Unsubscribed first, then disconnected (Pushpin doFinish order).
	expectStats(t, sub, "sub", func(d tnetstring.Dict) bool { return str(d, "channel") == "test" && d.Bool("unavailable") })
	expectStats(t, sub, "conn", func(d tnetstring.Dict) bool { return str(d, "id") == "condure:1-0-1" && d.Bool("unavailable") })
	d = expectStats(t, sub, "report", func(d tnetstring.Dict) bool { n, _ := d.Int("sent"); return n > 0 })
	if n, _ := d.Int("received"); n != 1 {
		t.Fatalf("report %v", d)
	}

	// A 1.36 proxy's report (no drop field) and two of tack-proxy's, with
	// WebSocket messages dropped: the drops are added up into our report
	// and into Prometheus.
	report := func(fields ...tnetstring.Field) string {
		d := tnetstring.Dict{{Key: "from", Value: "proxy_1"}, {Key: "connections", Value: int64(0)}, {Key: "minutes", Value: int64(0)},
			{Key: "duration", Value: int64(1000)}, {Key: "client-messages-sent", Value: int64(7)}}
		return "report T" + string(tnetstring.MustEncode(append(d, fields...)))
	}
	proxyStats.SendMessage(report())
	proxyStats.SendMessage(report(tnetstring.Field{Key: "client-messages-dropped", Value: int64(3)}))
	proxyStats.SendMessage(report(tnetstring.Field{Key: "client-messages-dropped", Value: int64(2)}))
	d = expectStats(t, sub, "report", func(d tnetstring.Dict) bool { n, _ := d.Int("client-messages-sent"); return n > 0 })
	if n, _ := d.Int("client-messages-dropped"); n != 5 {
		t.Fatalf("report %v: client-messages-dropped %d, want 5", d, n)
	}
	if n, _ := d.Int("client-messages-sent"); n != 21 {
		t.Fatalf("report %v: client-messages-sent %d, want 21", d, n)
	}

	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", filepath.Join(h.dir, "prom"))
	}}}
	resp, err := c.Get("http://prom/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"# HELP pushpin_message_sent Number of messages sent to clients\n# TYPE pushpin_message_sent counter\npushpin_message_sent 1\n",
		"pushpin_message_received 1\n",
		"# TYPE pushpin_connection_connected gauge\n",
		"pushpin_message_dropped 5\n",
		"# TYPE pushpin_ws_message_dropped counter\npushpin_ws_message_dropped 5\n",
	} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
}
