package proxy

import (
	"context"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/testutil"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// commandClient is a DEALER on the proxy's command socket, as the 1.36
// handler's proxy control client connects.
type commandClient struct {
	t    *testing.T
	sock *zsock.Socket
}

func (h *harness) commandClient() *commandClient {
	h.t.Helper()
	so, err := h.zctx.Open(zsock.Options{Name: "cmd-dealer", Type: zmq.DEALER, Direction: zsock.TwoWay,
		Connect: []string{h.cfg.CommandSpec}, SendTimeout: waitFor}, zerolog.Nop())
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = so.Run(ctx); close(done) }()
	// Stopped before the proxy (cleanups run last-registered first).
	h.t.Cleanup(func() { cancel(); <-done })
	return &commandClient{t: h.t, sock: so}
}

// call sends one request and returns the reply dict.
func (c *commandClient) call(req string) tnetstring.Dict {
	c.t.Helper()
	if !c.sock.SendWait(context.Background(), zsock.Message{nil, []byte(req)}) {
		c.t.Fatal("command request not queued")
	}
	select {
	case m := <-c.sock.Recv():
		if len(m) != 2 || len(m[0]) != 0 {
			c.t.Fatalf("reply with %d frames", len(m))
		}
		d, err := tnetstring.DecodeDict(m[1])
		if err != nil {
			c.t.Fatal(err)
		}
		return d
	case <-time.After(waitFor):
		c.t.Fatalf("no reply to %s", req)
	}
	return nil
}

// zrpcRequest encodes a ZRPC request (args left out when nil).
func zrpcRequest(id, method string, args tnetstring.Dict) string {
	d := tnetstring.Dict{{Key: "id", Value: id}, {Key: "method", Value: method}}
	if args != nil {
		d = append(d, tnetstring.Field{Key: "args", Value: args})
	}
	return string(tnetstring.MustEncode(d))
}

func idsArgs(ids ...any) tnetstring.Dict { return tnetstring.Dict{{Key: "ids", Value: ids}} }

func withStats(dir string) func(*Config) {
	return func(c *Config) {
		c.StatsSpec = "ipc://" + dir + "/proxy-stats"
		c.CommandSpec = "ipc://" + dir + "/proxy-command"
		c.StatsReportInterval = 10 * time.Second
		c.StatsConnectionTTL = 120 * time.Second
	}
}

// TestProxyCommandConncheck: conncheck answers with the ids of requests
// the proxy holds (a passthrough request while it waits for the backend,
// and a request handed to the handler while it lingers), and not of
// finished or unknown ones (zmq-wire.md §4.7; request bytes as the 1.36
// handler sends them, capture §A.7).
func TestProxyCommandConncheck(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, mod: withStats(dir)})
	c := h.commandClient()

	p := h.newRequest("GET", "http://example.com/slow", nil)
	p.ID = []byte("0-0-9")
	id, z := h.proxied(p)
	r := c.call("111:4:args,34:3:ids,24:13:condure:0-0-9,4:nope,]}2:id,36:fae313b0-f900-4297-ba8a-d00776f2a82f,6:method,9:conncheck,}")
	if id, _ := r.Bytes("id"); string(id) != "fae313b0-f900-4297-ba8a-d00776f2a82f" || !r.Bool("success") {
		t.Fatalf("reply %v", r)
	}
	if l, _ := r.List("value"); len(l) != 1 || string(l[0].([]byte)) != "condure:0-0-9" {
		t.Fatalf("conncheck value %v, want [condure:0-0-9]", l)
	}

	// The response ends the request: the id is gone.
	h.zurlSend(zurlResponse(z.ID, 0, 200, "OK", []zhttp.Header{{Name: "Content-Length", Value: "2"}}, "ok", false))
	h.fromProxy(id, 1)
	r = c.call(zrpcRequest("c2", "conncheck", idsArgs([]byte("condure:0-0-9"), []byte("nope"))))
	if l, ok := r.List("value"); !ok || len(l) != 0 {
		t.Fatalf("conncheck after the response: %v", r)
	}

	// A held request lingers in the table after the handler accepted it.
	id2, z2 := h.proxied(h.captureRequest())
	h.zurlSend(captureHold(z2.ID, 0, "Sun, 22 Nov 2026 10:48:12 GMT"))
	h.reply(h.handoff(id2, 1, 1), tnetstring.Dict{{Key: "accepted", Value: true}})
	r = c.call(zrpcRequest("c3", "conncheck", idsArgs([]byte("condure:1-0-1"))))
	if l, _ := r.List("value"); len(l) != 1 {
		t.Fatalf("conncheck of an accepted request: %v", r)
	}

	for _, tc := range []struct{ req, cond string }{
		{zrpcRequest("c4", "conncheck", nil), condBadFormat},
		{zrpcRequest("c5", "conncheck", idsArgs(int64(1))), condBadFormat},
		{zrpcRequest("c6", "refresh", tnetstring.Dict{{Key: "cid", Value: "x"}}), condItemNotFound},
		{zrpcRequest("c7", "report", tnetstring.Dict{{Key: "stats", Value: tnetstring.Dict{}}}), condServiceUnavailable},
		{"27:2:id,2:c8,6:method,5:bogus,}", condMethodNotFound},
	} {
		r := c.call(tc.req)
		cond, _ := r.Bytes("condition")
		if r.Bool("success") || string(cond) != tc.cond {
			t.Errorf("%s: reply %v, want condition %s", tc.req, r, tc.cond)
		}
	}
}

// TestProxyCommandNoStats: without stats conncheck is service-unavailable.
func TestProxyCommandNoStats(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9"}, mod: func(c *Config) {
		c.CommandSpec = "ipc://" + dir + "/proxy-command"
	}})
	r := h.commandClient().call(zrpcRequest("c1", "conncheck", idsArgs()))
	if cond, _ := r.Bytes("condition"); r.Bool("success") || string(cond) != condServiceUnavailable {
		t.Fatalf("reply %v", r)
	}
}
