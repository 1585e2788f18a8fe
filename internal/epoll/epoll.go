package epoll

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"
)

// Poller is an epoll instance with a stop eventfd. Add, Mod and Del may be
// called from any goroutine; Wait from one.
type Poller struct {
	epfd int
	evfd int
}

// New creates a poller.
func New() (*Poller, error) {
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
	return &Poller{epfd: epfd, evfd: evfd}, nil
}

// Add watches fd for events (EPOLLIN, EPOLLRDHUP, EPOLLET, EPOLLONESHOT...).
func (p *Poller) Add(fd int, events uint32) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
}

// Mod changes fd's events; it re-arms an EPOLLONESHOT registration, and
// epoll then reports a readiness the descriptor already has.
func (p *Poller) Mod(fd int, events uint32) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
}

// Del stops watching fd; call it before fd is closed, so that a reused
// descriptor number is not reported for the old owner.
func (p *Poller) Del(fd int) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// Wait waits up to msec milliseconds (-1: no limit) and returns the
// descriptors ready, within buf; stopped once Stop was called.
func (p *Poller) Wait(buf []unix.EpollEvent, msec int) (ready []unix.EpollEvent, stopped bool, err error) {
	n, err := unix.EpollWait(p.epfd, buf, msec)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil, false, nil
		}
		return nil, false, err
	}
	ready = buf[:0]
	for _, ev := range buf[:n] {
		if int(ev.Fd) == p.evfd {
			return nil, true, nil
		}
		ready = append(ready, ev)
	}
	return ready, false, nil
}

// Stop makes Wait report stopped, now and from then on.
func (p *Poller) Stop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(p.evfd, one[:])
}

// Close releases the descriptors, once Wait has returned stopped.
func (p *Poller) Close() {
	unix.Close(p.epfd)
	unix.Close(p.evfd)
}
