package connmgr

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenUnixPathClaim: a live socket is refused (nothing of it is
// touched), a stale one is replaced, a non-socket file is refused; the
// mode param is applied.
func TestListenUnixPathClaim(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := openListener(Listener{Addr: live, Local: true, Stream: true}, false); !errors.Is(err, ErrInUse) {
		t.Fatalf("live socket: %v", err)
	}
	if c, err := net.Dial("unix", live); err != nil {
		t.Fatalf("the live socket was disturbed: %v", err)
	} else {
		c.Close()
	}

	stale := filepath.Join(dir, "stale")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close() // the file stays, nobody accepts
	nl, err := openListener(Listener{Addr: stale, Local: true, Stream: true, Mode: 0o640}, false)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	defer nl.Close()
	if st, err := os.Stat(stale); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("mode: %v %v", st.Mode(), err)
	}

	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o644)
	if _, err := openListener(Listener{Addr: plain, Local: true, Stream: true}, false); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
}

// TestOpenListenerReusePort: with reusePort two listeners share a TCP
// port (what connmgr_count's instances do, TLS ports included: TLS is
// layered above the same listener); a listener without it still finds
// the port busy, and so does one with it when the holder did not set it.
func TestOpenListenerReusePort(t *testing.T) {
	l := Listener{Addr: "127.0.0.1:0", Stream: true}
	a, err := openListener(l, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	l.Addr = a.Addr().String()
	b, err := openListener(l, true)
	if err != nil {
		t.Fatalf("second reuse-port listener on %s: %v", l.Addr, err)
	}
	defer b.Close()
	if c, err := openListener(l, false); err == nil {
		c.Close()
		t.Fatalf("plain listener on shared %s succeeded", l.Addr)
	}
	plain, err := openListener(Listener{Addr: "127.0.0.1:0", Stream: true}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if c, err := openListener(Listener{Addr: plain.Addr().String(), Stream: true}, true); err == nil {
		c.Close()
		t.Fatalf("reuse-port listener on a plain listener's port succeeded")
	}
}
