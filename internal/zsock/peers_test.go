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
