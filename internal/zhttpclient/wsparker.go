package zhttpclient

import (
	"sync"

	"golang.org/x/sys/unix"

	"tack/internal/epoll"
)

// An idle backend WebSocket costs no goroutine: when its reader finds no
// byte buffered or waiting in the socket, it parks the connection
// (wsPark.park) and returns; the parker watches the parked sockets on one
// epoll instance (one-shot: re-armed at each park, when epoll also checks
// the socket's current readiness, so no byte that arrived meanwhile is
// missed) and starts a new reader when one becomes readable or hangs up.
// A cancelled session (client cancel, activity timeout, shutdown) is woken
// the same way and finds its connection closed. A goroutine stack is the
// largest part of an idle session's cost.
//
// A stale event (a descriptor closed and its number reused by another
// connection between epoll_wait and the dispatch) at worst wakes that other
// connection, whose reader peeks, finds nothing and parks again. A TLS
// connection is not parked (decrypted bytes can wait in crypto/tls where
// epoll cannot see them); its reader waits in the netpoller.

type wsParker struct {
	poll *epoll.Poller

	mu   sync.Mutex // guards byFD
	byFD map[int32]*wsPark

	done chan struct{}
}

func newWSParker() (*wsParker, error) {
	poll, err := epoll.New()
	if err != nil {
		return nil, err
	}
	return &wsParker{poll: poll, byFD: map[int32]*wsPark{}, done: make(chan struct{})}, nil
}

// run dispatches readiness until stop.
func (p *wsParker) run() {
	defer close(p.done)
	buf := make([]unix.EpollEvent, 256)
	for {
		ready, stopped, err := p.poll.Wait(buf, -1)
		if stopped || err != nil {
			return
		}
		for _, ev := range ready {
			p.mu.Lock()
			k := p.byFD[ev.Fd]
			p.mu.Unlock()
			if k != nil {
				k.wake()
			}
		}
	}
}

// stop ends run and releases the descriptors; called once no session is
// left.
func (p *wsParker) stop() {
	p.poll.Stop()
	<-p.done
	p.poll.Close()
}

// wsPark is a session's parking state. mu guards every field below it.
type wsPark struct {
	p      *wsParker
	fd     int
	resume func() // starts a reader goroutine

	mu     sync.Mutex
	added  bool // registered with the parker
	parked bool // no reader runs: the parker will start one
	closed bool // the connection is closed or closing: no more parks
}

// park hands the connection to the parker; false when it cannot be
// parked (closed, or epoll refused), and the reader must wait itself. On
// true the caller's goroutine must touch the session no more.
func (k *wsPark) park() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	const events = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT
	arm := k.p.poll.Mod
	if !k.added {
		arm = k.p.poll.Add
		k.p.mu.Lock()
		k.p.byFD[int32(k.fd)] = k
		k.p.mu.Unlock()
	}
	k.parked = true // before arming: an event may come at once
	if err := arm(k.fd, events); err != nil {
		k.parked = false
		if !k.added {
			k.forgetLocked()
		}
		return false
	}
	k.added = true
	return true
}

// wake starts a reader if the connection is parked.
func (k *wsPark) wake() {
	k.mu.Lock()
	if !k.parked {
		k.mu.Unlock()
		return
	}
	k.parked = false
	k.mu.Unlock()
	k.resume()
}

// close stops parking, removes the descriptor from the parker before it
// is closed (so that its number, once reused, is not watched for this
// session), closes the connection, and wakes a parked session so that
// its reader finds the connection closed.
func (k *wsPark) close(closeConn func()) {
	k.mu.Lock()
	k.closed = true
	k.forgetLocked()
	closeConn()
	k.mu.Unlock()
	k.wake()
}

func (k *wsPark) forgetLocked() {
	if k.added {
		_ = k.p.poll.Del(k.fd)
		k.added = false
	}
	k.p.mu.Lock()
	if k.p.byFD[int32(k.fd)] == k {
		delete(k.p.byFD, int32(k.fd))
	}
	k.p.mu.Unlock()
}
