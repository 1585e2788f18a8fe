package zsock

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

func TestTrackPeers(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "peers")
	d := start(t, open(t, c, Options{Name: "dealer", Type: zmq.DEALER, Direction: TwoWay, Bind: []string{ep}, TrackPeers: true}))
	if n := d.s.Peers(); n != 0 {
		t.Fatalf("peers before anyone connected: %d", n)
	}
	r := start(t, open(t, c, Options{Name: "router", Type: zmq.ROUTER, Direction: TwoWay, Connect: []string{ep}}))
	eventually(t, 5*time.Second, func() error {
		if n := d.s.Peers(); n != 1 {
			return fmt.Errorf("peers %d, want 1", n)
		}
		return nil
	})
	r.stop(t)
	eventually(t, 5*time.Second, func() error {
		if n := d.s.Peers(); n != 0 {
			return fmt.Errorf("peers %d after the peer left, want 0", n)
		}
		return nil
	})
}

// TestTrackPeersEarlyConnect: a peer already connecting when the socket
// binds (the handler retries its connect to the proxy's accept socket
// every 100 ms until the proxy starts) and completing its handshake at
// once is counted: the monitor is in place before the bind. It was
// attached after, and a handshake in between left Peers at 0 for good.
func TestTrackPeersEarlyConnect(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "early")
	start(t, open(t, c, Options{Name: "router", Type: zmq.ROUTER, Direction: TwoWay, Connect: []string{ep}}))
	d := start(t, open(t, c, Options{Name: "dealer", Type: zmq.DEALER, Direction: TwoWay, Bind: []string{ep}, TrackPeers: true,
		// Time for the waiting peer to connect and handshake right after the bind.
		afterOpen: func() { time.Sleep(300 * time.Millisecond) }}))
	eventually(t, 5*time.Second, func() error {
		if n := d.s.Peers(); n != 1 {
			return fmt.Errorf("peers %d, want 1", n)
		}
		return nil
	})
}

// TestTrackPeersProbe: a connection that ends before its handshake (a
// probe of the endpoint, a peer dying while connecting) does not take a
// connected peer out of the count; it did, and the proxy then answered
// every GRIP hold "Accept service unavailable." with a handler connected.
func TestTrackPeersProbe(t *testing.T) {
	c := newContext(t)
	ep := ipc(ipcDir(t), "probe")
	d := start(t, open(t, c, Options{Name: "dealer", Type: zmq.DEALER, Direction: TwoWay, Bind: []string{ep}, TrackPeers: true}))
	start(t, open(t, c, Options{Name: "router", Type: zmq.ROUTER, Direction: TwoWay, Connect: []string{ep}}))
	eventually(t, 5*time.Second, func() error {
		if n := d.s.Peers(); n != 1 {
			return fmt.Errorf("peers %d, want 1", n)
		}
		return nil
	})
	nc, err := net.Dial("unix", strings.TrimPrefix(ep, "ipc://"))
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	eventually(t, 5*time.Second, func() error {
		if d.s.disconnects.Load() == 0 {
			return errors.New("probe disconnect not seen yet")
		}
		return nil
	})
	if n := d.s.Peers(); n != 1 {
		t.Fatalf("peers %d after a probe connection, want 1", n)
	}
}
