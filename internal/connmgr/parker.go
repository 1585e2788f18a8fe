package connmgr

import (
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A held response that is not moving costs no goroutine: its connection
// goroutine detaches (conn.tryDetach) and returns, leaving the exchange in
// the conn; the parker watches the socket on one epoll instance, and
// whichever comes first of mail from the engine (conn.wakeNow), client
// bytes or EOF (here), the stream timeout (here) or a close starts a new
// goroutine that resumes the exchange (conn.resume). A goroutine stack is
// the largest part of a held connection's cost, so this halves it.
//
// Go's own netpoller keeps the descriptor registered too; ours is a
// second, edge-triggered registration made at the first detach (no system
// call at the later ones) and removed before the descriptor is closed
// (conn.close), so a reused descriptor number never reaches the wrong
// connection. An event for a connection whose goroutine is running is
// remembered (conn.readableSeen) so that it does not detach past it.

// parkSweep is how often detached connections are checked for the stream
// timeout.
const parkSweep = time.Second

type parker struct {
	epfd int
	evfd int // eventfd: stop

	mu   sync.Mutex // guards byFD
	byFD map[int32]*conn

	done chan struct{}
}

func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	return &parker{epfd: epfd, evfd: evfd, byFD: map[int32]*conn{}, done: make(chan struct{})}, nil
}

// add watches c's socket for readability, edge-triggered, for the
// connection's life. Called with c.mu held, once per connection.
func (p *parker) add(c *conn) error {
	ev := &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd)}
	p.mu.Lock()
	p.byFD[int32(c.fd)] = c
	p.mu.Unlock()
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.fd, ev); err != nil {
		p.mu.Lock()
		delete(p.byFD, int32(c.fd))
		p.mu.Unlock()
		return err
	}
	return nil
}

// forget stops watching c's socket, before it is closed. Called with c.mu
// held.
func (p *parker) forget(c *conn) {
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	p.mu.Lock()
	if p.byFD[int32(c.fd)] == c {
		delete(p.byFD, int32(c.fd))
	}
	p.mu.Unlock()
}

// run waits for events until stop.
func (p *parker) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	nextSweep := time.Now().Add(parkSweep)
	for {
		n, err := unix.EpollWait(p.epfd, events, int(parkSweep/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			if int(ev.Fd) == p.evfd {
				return
			}
			p.mu.Lock()
			c := p.byFD[ev.Fd]
			p.mu.Unlock()
			if c != nil {
				c.wakeParked(resumeReadable)
			}
		}
		if now := time.Now(); !now.Before(nextSweep) {
			nextSweep = now.Add(parkSweep)
			p.sweep(now)
		}
	}
}

// sweep resumes the detached connections whose stream timeout passed.
func (p *parker) sweep(now time.Time) {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.byFD))
	for _, c := range p.byFD {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.expireParked(now)
	}
}

// stop ends run and releases the descriptors.
func (p *parker) stop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(p.evfd, one[:])
	<-p.done
	unix.Close(p.epfd)
	unix.Close(p.evfd)
}
