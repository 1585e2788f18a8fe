package interop

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

// zwsRun starts a deployment whose WebSocket route is `* zhttp/<base>`
// answered by a zhttp server backend speaking WebSocket mode: it accepts
// with 101 and echoes each message with "echo:" prepended. It returns
// the first packet's URI and keys and what the client got back.
func zwsRun(t *testing.T, pushpin bool) (string, []string, string) {
	const from = "interop-zws"
	d, pull, router, pub := zbackendDeploy(t, pushpin, from)

	// The proxy's PUSH may not be connected yet: dial until the
	// handshake reaches the backend.
	type dialed struct {
		c   interface{ Close() error }
		err error
	}
	var first *zhttp.Packet
	var keys []string
	connCh := make(chan dialed, 1)
	deadline := time.After(20 * time.Second)
	go func() { c, err := d.wsDial(t, "/chat"); connCh <- dialed{c, err} }()
	for first == nil {
		select {
		case m := <-pull.Recv():
			p, err := zhttp.Parse(m[0])
			if err != nil {
				t.Fatal(err)
			}
			first, keys = p, packetKeys(t, m[0])
		case r := <-connCh:
			if r.err == nil {
				t.Fatal("handshake answered before reaching the backend")
			}
			time.Sleep(100 * time.Millisecond)
			go func() { c, err := d.wsDial(t, "/chat"); connCh <- dialed{c, err} }()
		case <-deadline:
			t.Fatal("no WebSocket request at the backend")
		}
	}
	seq := int64(0)
	send := func(r *zhttp.Packet) {
		r.From, r.ID, r.Seq = []byte(from), first.ID, seq
		seq++
		pub.Send() <- zsock.Message{zhttp.PubFrame(first.From, r)}
	}
	acc := zhttp.New()
	acc.Code, acc.Reason, acc.Credits = 101, "Switching Protocols", 100000
	send(acc)
	var r dialed
	select {
	case r = <-connCh:
	case <-time.After(20 * time.Second):
		t.Fatal("client handshake not answered")
	}
	if r.err != nil {
		t.Fatalf("client handshake: %v", r.err)
	}
	conn := r.c.(interface {
		Close() error
		Read([]byte) (int, error)
		Write([]byte) (int, error)
	})
	if err := wsutil.WriteClientMessage(conn, ws.OpText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	for {
		var m zsock.Message
		select {
		case m = <-router.Recv():
		case <-time.After(20 * time.Second):
			t.Fatal("client message never reached the backend")
		}
		p, err := zhttp.Parse(m[len(m)-1])
		if err != nil {
			t.Fatal(err)
		}
		if p.Type == zhttp.TypeData && string(p.Body) == "hi" {
			break
		}
	}
	e := zhttp.New()
	e.Body = []byte("echo:hi")
	send(e)
	got, _, err := wsutil.ReadServerData(conn)
	if err != nil {
		t.Fatal(err)
	}
	return first.URI, keys, string(got)
}

// TestInteropZhttpWebSocket: a WebSocket routed to a zhttp/ target runs
// on the target's sockets in zhttp WebSocket mode, as with pushpin-proxy.
func TestInteropZhttpWebSocket(t *testing.T) {
	requirePushpin(t)
	keys := map[bool][]string{}
	for _, pushpin := range []bool{true, false} {
		name := map[bool]string{true: "pushpin", false: "tack"}[pushpin]
		t.Run(name, func(t *testing.T) {
			uri, k, got := zwsRun(t, pushpin)
			if !strings.HasPrefix(uri, "ws://") || !strings.HasSuffix(uri, "/chat") || got != "echo:hi" {
				t.Fatalf("uri %q, client got %q", uri, got)
			}
			keys[pushpin] = k
		})
	}
	if !slices.Equal(keys[false], keys[true]) {
		t.Errorf("first packet fields: tack %v, pushpin %v", keys[false], keys[true])
	}
}
