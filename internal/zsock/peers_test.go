package zsock

import (
	"fmt"
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
