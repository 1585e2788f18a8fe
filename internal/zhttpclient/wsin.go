package zhttpclient

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// wsIn reads a backend WebSocket connection through a WSReadBuffer reader
// borrowed from the service only while it holds unread bytes: between
// frames an idle websocket holds no buffer; it is parked (wsparker.go), or
// without a parker waits for the socket to become readable (a
// non-blocking MSG_PEEK in Go's netpoller). A TLS connection cannot be
// waited on without reading (its records are decrypted by the read), so it
// keeps its reader.
type wsIn struct {
	conn net.Conn
	raw  syscall.RawConn // nil: keep the reader (TLS)
	svc  *Service
	br   *bufio.Reader // borrowed; nil while idle
	park *wsPark       // nil: the reader waits in the netpoller (wsparker.go)
}

// errParked: the reader parked the connection; its goroutine returns.
var errParked = errors.New("websocket parked")

// newWSIn takes over br, the handshake's reader, which may already hold
// the first frames.
func newWSIn(s *Service, conn net.Conn, br *bufio.Reader) *wsIn {
	in := &wsIn{conn: conn, svc: s, br: br}
	if tc, ok := conn.(*net.TCPConn); ok {
		if raw, err := tc.SyscallConn(); err == nil {
			in.raw = raw
		}
	}
	return in
}

// reader returns the reader to read the next frame from, waiting for the
// connection to become readable when no bytes are buffered.
func (in *wsIn) reader() (*bufio.Reader, error) {
	if in.br != nil && (in.br.Buffered() > 0 || in.raw == nil) {
		return in.br, nil
	}
	in.release()
	if in.park != nil {
		ready, err := in.peek()
		if err != nil {
			return nil, err
		}
		if !ready && in.park.park() {
			return nil, errParked
		}
	}
	if err := in.waitReadable(); err != nil {
		return nil, err
	}
	in.br = in.svc.getWSReader(in.conn)
	return in.br, nil
}

// peek reports, without waiting, whether the socket has bytes or EOF (or
// an error) to read.
func (in *wsIn) peek() (bool, error) {
	ready := false
	err := in.raw.Control(func(fd uintptr) {
		ready = peekFD(fd)
	})
	return ready, err
}

// peekFD is a non-blocking MSG_PEEK of one byte: false when the socket
// has nothing to read yet.
func peekFD(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return !errors.Is(err, unix.EAGAIN)
	}
}

// waitReadable returns once the socket has bytes or EOF (or an error) to
// read, without reading them.
func (in *wsIn) waitReadable() error {
	if in.raw == nil {
		return nil
	}
	// false: wait for the netpoller, then peek again; true: bytes, EOF or
	// an error, which the read reports.
	return in.raw.Read(peekFD)
}

// release returns the reader to the service's pool.
func (in *wsIn) release() {
	if in.br != nil {
		in.svc.putWSReader(in.br)
		in.br = nil
	}
}

// getWSReader returns a pooled WSReadBuffer-sized reader onto r.
func (s *Service) getWSReader(r io.Reader) *bufio.Reader {
	if br, ok := s.wsReaders.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, WSReadBuffer)
}

// putWSReader returns br to the pool, dropping any unread bytes.
func (s *Service) putWSReader(br *bufio.Reader) {
	br.Reset(nil)
	s.wsReaders.Put(br)
}
