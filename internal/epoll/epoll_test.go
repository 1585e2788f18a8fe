package epoll

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitReady waits (bounded) and returns the ready descriptors.
func waitReady(t *testing.T, p *Poller, msec int) []int32 {
	t.Helper()
	buf := make([]unix.EpollEvent, 8)
	ready, stopped, err := p.Wait(buf, msec)
	if err != nil || stopped {
		t.Fatalf("wait: stopped %v, %v", stopped, err)
	}
	var fds []int32
	for _, ev := range ready {
		fds = append(fds, ev.Fd)
	}
	return fds
}

// A one-shot registration reports readiness once; Mod re-arms it and
// reports what is already readable; Del stops it; Stop ends Wait.
func TestPollerOneShot(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var sv [2]int
	if sv, err = unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sv[0])
	defer unix.Close(sv[1])
	const ev = unix.EPOLLIN | unix.EPOLLONESHOT
	if err := p.Add(sv[0], ev); err != nil {
		t.Fatal(err)
	}
	if fds := waitReady(t, p, 0); len(fds) != 0 {
		t.Fatalf("ready before any byte: %v", fds)
	}
	unix.Write(sv[1], []byte("x"))
	if fds := waitReady(t, p, 5000); len(fds) != 1 || fds[0] != int32(sv[0]) {
		t.Fatalf("ready %v, want [%d]", fds, sv[0])
	}
	if fds := waitReady(t, p, 0); len(fds) != 0 {
		t.Fatalf("one-shot reported twice: %v", fds)
	}
	if err := p.Mod(sv[0], ev); err != nil { // the byte is still unread
		t.Fatal(err)
	}
	if fds := waitReady(t, p, 5000); len(fds) != 1 {
		t.Fatalf("re-armed with a byte unread: ready %v", fds)
	}
	if err := p.Mod(sv[0], ev); err != nil {
		t.Fatal(err)
	}
	if err := p.Del(sv[0]); err != nil {
		t.Fatal(err)
	}
	if fds := waitReady(t, p, 0); len(fds) != 0 {
		t.Fatalf("ready after Del: %v", fds)
	}
	done := make(chan bool)
	go func() {
		_, stopped, _ := p.Wait(make([]unix.EpollEvent, 8), -1)
		done <- stopped
	}()
	p.Stop()
	select {
	case stopped := <-done:
		if !stopped {
			t.Fatal("Wait returned without stopped")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not end Wait")
	}
}
