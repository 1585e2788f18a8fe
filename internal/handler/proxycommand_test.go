package handler

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/testutil"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// startConncheck runs the command server with a proxy command client
// connected to spec (a fake proxy's ROUTER, or nothing).
func startConncheck(t *testing.T, eng engineAPI, spec string) (*zmq.Socket, *zsock.Socket) {
	t.Helper()
	zctx := newZctx(t)
	c, err := newCommandInput(zctx, InputsConfig{CommandSpec: "tcp://127.0.0.1:0"}, zmqURIs{}, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	so, err := zctx.Open(zsock.Options{Name: "proxy-command", Type: zmq.DEALER, Direction: zsock.TwoWay,
		Connect: []string{spec}, SndHWM: hwmZRPC, RcvHWM: hwmZRPC, TrackPeers: true}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pc := newProxyCommand(so, testLogger(t))
	c.proxyCheck = pc.connCheck
	runInput(t, "proxy-command socket", so.Run)
	runInput(t, "proxy-command", pc.run)
	runInput(t, "command", c.Run)
	d := testSocket(t, zmq.DEALER)
	if err := d.Connect(c.Spec()); err != nil {
		t.Fatal(err)
	}
	return d, so
}

// fakeProxy answers one conncheck on its ROUTER with answer(ids asked).
func fakeProxy(t *testing.T, r *zmq.Socket, answer func(ids []any) tnetstring.Dict) <-chan []any {
	asked := make(chan []any, 1)
	go func() {
		m, err := r.RecvMessageBytes(0)
		if err != nil || len(m) != 3 || len(m[1]) != 0 {
			t.Errorf("proxy-command request %q: %v", m, err)
			close(asked)
			return
		}
		req, err := tnetstring.DecodeDict(m[2])
		if err != nil {
			t.Errorf("proxy-command request: %v", err)
			close(asked)
			return
		}
		method, _ := req.Bytes("method")
		args, _ := req.Dict("args")
		ids, _ := args.List("ids")
		if string(method) != "conncheck" {
			t.Errorf("method %q", method)
		}
		asked <- ids
		id, _ := req.Get("id")
		reply := append(tnetstring.Dict{{Key: "id", Value: id}}, answer(ids)...)
		if _, err := r.SendMessage(m[0], "", tnetstring.MustEncode(reply)); err != nil {
			t.Errorf("reply: %v", err)
		}
	}()
	return asked
}

// TestCommandConncheckAsksProxy: ids the handler does not hold are asked of
// the proxy (Pushpin's ConnCheckWorker), and the answer merges both; a
// failed proxy call is proxy-request-failed.
func TestCommandConncheckAsksProxy(t *testing.T) {
	r := testSocket(t, zmq.ROUTER)
	port := testutil.FreePort(t)
	spec := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	if err := r.Bind(spec); err != nil {
		t.Fatal(err)
	}
	// The fake proxy waits as long as the test may take to connect.
	if err := r.SetRcvtimeo(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	eng := &fakeEngine{live: map[string]bool{"held": true}}
	d, so := startConncheck(t, eng, spec)
	testutil.Eventually(t, 20*time.Second, func() error {
		if so.Peers() == 0 {
			return fmt.Errorf("proxy-command not connected")
		}
		return nil
	})
	ids := tnetstring.Dict{{Key: "ids", Value: []any{[]byte("held"), []byte("passthrough"), []byte("gone")}}}

	asked := fakeProxy(t, r, func(ids []any) tnetstring.Dict {
		return tnetstring.Dict{{Key: "success", Value: true}, {Key: "value", Value: []any{[]byte("passthrough")}}}
	})
	got := request(t, d, zreq("c1", "conncheck", ids))
	if !got.Bool("success") {
		t.Fatalf("reply %v", got)
	}
	if v, _ := got.List("value"); !reflect.DeepEqual(v, []any{[]byte("held"), []byte("passthrough")}) {
		t.Fatalf("conncheck value %q, want [held passthrough]", v)
	}
	if a := <-asked; !reflect.DeepEqual(a, []any{[]byte("passthrough"), []byte("gone")}) {
		t.Fatalf("proxy asked about %q, want [passthrough gone]", a)
	}

	// Only held ids: the proxy is not asked.
	got = request(t, d, zreq("c2", "conncheck", tnetstring.Dict{{Key: "ids", Value: []any{[]byte("held")}}}))
	if v, _ := got.List("value"); !got.Bool("success") || len(v) != 1 {
		t.Fatalf("held-only conncheck: %v", got)
	}

	fakeProxy(t, r, func([]any) tnetstring.Dict {
		return tnetstring.Dict{{Key: "success", Value: false}, {Key: "condition", Value: []byte("service-unavailable")}}
	})
	got = request(t, d, zreq("c3", "conncheck", ids))
	if cond, _ := got.Bytes("condition"); got.Bool("success") || string(cond) != condProxyRequestFailed {
		t.Fatalf("reply %v, want %s", got, condProxyRequestFailed)
	}
}

// TestCommandConncheckNoProxy: with no proxy connected the answer is
// proxy-request-failed at once, not after the 10 s timeout.
func TestCommandConncheckNoProxy(t *testing.T) {
	d, _ := startConncheck(t, &fakeEngine{live: map[string]bool{}}, fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)))
	start := time.Now()
	got := request(t, d, zreq("c1", "conncheck", tnetstring.Dict{{Key: "ids", Value: []any{[]byte("x")}}}))
	if cond, _ := got.Bytes("condition"); got.Bool("success") || string(cond) != condProxyRequestFailed {
		t.Fatalf("reply %v", got)
	}
	if time.Since(start) > proxyCommandTimeout/2 {
		t.Fatalf("answer took %v", time.Since(start))
	}
}
