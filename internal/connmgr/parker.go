package connmgr

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"tack/internal/epoll"
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
	ep *epoll.Poller

	mu   sync.Mutex // guards byFD
	byFD map[int32]*conn

	done chan struct{}
}

func newParker() (*parker, error) {
	ep, err := epoll.New()
	if err != nil {
		return nil, err
	}
	return &parker{ep: ep, byFD: map[int32]*conn{}, done: make(chan struct{})}, nil
}

// add watches c's socket for readability, edge-triggered, for the
// connection's life. Called with c.mu held, once per connection.
func (p *parker) add(c *conn) error {
	p.mu.Lock()
	p.byFD[int32(c.fd)] = c
	p.mu.Unlock()
	if err := p.ep.Add(c.fd, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLET); err != nil {
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
	p.ep.Del(c.fd)
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
		ready, stopped, err := p.ep.Wait(events, int(parkSweep/time.Millisecond))
		if stopped || err != nil {
			return
		}
		for _, ev := range ready {
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
	p.ep.Stop()
	<-p.done
	p.ep.Close()
}
