package connmgr

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// maxQueuedPieces bounds the body slices waiting in a mailbox; beyond it
// they are merged (their bytes are already bounded by the credit window).
const maxQueuedPieces = 64

// Lingering close bounds (Go's net/http waits 500 ms too).
const (
	lingerTime = 500 * time.Millisecond
	lingerMax  = 256 << 10
)

// aLongTimeAgo is the read deadline the engine sets to wake a parked
// connection (net.Conn: a deadline in the past unblocks a pending read).
var aLongTimeAgo = time.Unix(1, 0)

// mailbox is what the engine hands a connection: filled by deliver* (engine
// goroutine), emptied by take (connection goroutine), under conn.mu.
type mailbox struct {
	req       uint64 // exchange the mailbox belongs to
	credits   int    // request body bytes the server granted
	head      *zhttp.Packet
	body      [][]byte // response body pieces, in order (head's body first)
	bytes     int
	ended     bool // the last response packet arrived
	reject    int  // status of a response we generate (503)
	rejectMsg string
	abort     bool // close without (more) response

	// WebSocket (ws.go): frames for the client; wsEnd is a close code to
	// send after them before the connection ends (the session is gone);
	// overflow: more than maxQueuedFrames waited.
	frames   []wsFrame
	wsEnd    int
	overflow bool
}

// wire is a client connection: *net.TCPConn, *net.UnixConn or *tls.Conn.
type wire interface {
	net.Conn
	CloseWrite() error
}

// conn is one client connection (TCP, unix socket or TLS). Its goroutine
// runs serve; between requests a plain connection holds no buffer: it
// waits for readability with a 1-byte peek and borrows a pooled reader
// only while a request is being read. A TLS connection cannot peek below
// the TLS layer (decrypted bytes may wait inside tls.Conn), so it waits
// by reading into a borrowed reader and never detaches into the parker.
type conn struct {
	s        *Service
	nc       wire
	rc       syscall.RawConn // nil for TLS
	tc       *tls.Conn       // TLS only
	no       uint64
	peerIP   string
	peerPort int64
	br       *bufio.Reader // borrowed from the pool, nil when idle
	nreq     uint64
	peek     [1]byte
	// linger: we answered while request bytes were still unread; closing
	// at once would make the kernel reset the connection and the client
	// could lose our response (RFC 9112 §9.6).
	linger bool

	closeOnce sync.Once
	closed    chan struct{}
	wake      chan struct{} // capacity 1: "the mailbox changed"

	// mu guards mb, parked, idle and closing. The engine holds it for the
	// few instructions of a deliver*, the connection goroutine to take the
	// mailbox or change state. Nothing blocking happens under it, and it is
	// the only lock in the package besides Service.connsMu (never nested).
	mu     sync.Mutex
	mb     mailbox
	parked bool // in a readability wait the engine may interrupt
	// Detached (parker.go): the exchange waiting without a goroutine, the
	// socket's descriptor, whether the parker has it registered, and when
	// the stream timeout ends the wait.
	fd           int
	epollAdded   bool
	readableSeen bool      // a parker event came while the goroutine ran
	wdlSet       time.Time // when the write deadline was last moved (writeDeadline)
	parkedX      *exchange
	parkDeadline time.Time

	wakeDue bool // the mailbox changed and the engine will wake us (deliverLater)
	idle    bool // between requests
	closing bool // shutting down: no keep-alive
}

// newConn wraps an accepted connection; tc (a TLS listener's config)
// makes it a TLS server connection whose handshake serve runs first.
func newConn(s *Service, nc net.Conn, no uint64, tc *tls.Config) (*conn, error) {
	c := &conn{s: s, no: no, closed: make(chan struct{}), wake: make(chan struct{}, 1), fd: -1}
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		c.peerIP, c.peerPort = a.IP.String(), int64(a.Port)
	}
	if tc != nil {
		c.tc = tls.Server(nc, tc)
		c.nc = c.tc
		return c, nil
	}
	w, ok := nc.(interface {
		wire
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return nil, fmt.Errorf("unexpected connection type %T", nc)
	}
	rc, err := w.SyscallConn()
	if err != nil {
		return nil, err
	}
	c.nc, c.rc = w, rc
	rc.Control(func(fd uintptr) { c.fd = int(fd) })
	return c, nil
}

// handshake runs the TLS handshake under the handshake timeout; a failure
// is logged with the connection and the client is closed. A plain HTTP
// request on the TLS port gets a 400 saying so (as Go's net/http; condure
// just closes).
func (c *conn) handshake() bool {
	c.nc.SetDeadline(time.Now().Add(c.s.cfg.handshakeTimeout()))
	err := c.tc.Handshake()
	if err == nil {
		c.nc.SetDeadline(time.Time{})
		return true
	}
	var rhe tls.RecordHeaderError
	plain := errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader[:])
	if plain {
		rhe.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(rhe.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"+msgPlainOnTLS)
	}
	ev := c.s.log.Info().Str(logging.FieldConn, string(appendID(nil, c.no, 0))).Str(logging.FieldPeer, c.peerIP).Err(err)
	switch {
	case plain:
		ev.Msg("plain HTTP request on a TLS port")
	case errors.Is(err, os.ErrDeadlineExceeded):
		ev.Msg("TLS handshake timed out")
	default:
		ev.Msg("TLS handshake failed")
	}
	return false
}

// msgPlainOnTLS answers a plain HTTP request on a TLS port.
const msgPlainOnTLS = "Client sent an HTTP request to an HTTPS server.\n"

// looksLikeHTTP reports whether the first bytes of a connection are an
// HTTP/1.x method rather than a TLS record.
func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD", "POST", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC"} {
		if len(b) >= 4 && string(b[:4]) == m {
			return true
		}
	}
	return false
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.closed)
		// Out of the parker before the descriptor can be reused; a
		// detached exchange resumes to find the connection closed.
		c.mu.Lock()
		if c.epollAdded {
			c.s.parker.forget(c)
			c.epollAdded = false
		}
		c.resumeLocked(resumeClosed)
		c.mu.Unlock()
		c.nc.Close()
	})
}

// shutdown is called by the Service when it stops: an idle connection is
// closed now, a busy one after its current exchange.
func (c *conn) shutdown() {
	c.mu.Lock()
	c.closing = true
	idle := c.idle
	c.mu.Unlock()
	if idle {
		c.close()
	}
}

func (c *conn) setIdle(v bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v && c.closing {
		return false
	}
	c.idle = v
	return true
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// --- engine side: deliveries never block --------------------------------

func (c *conn) deliver(req uint64, f func(*mailbox)) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mb.req != req {
		return false
	}
	f(&c.mb)
	c.signalLocked()
	return true
}

// signalLocked tells the connection its mailbox changed: a detached
// exchange resumes in a new goroutine, a parked one is interrupted.
func (c *conn) signalLocked() {
	if c.resumeLocked(resumeMail) {
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	if c.parked {
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
}

// deliverLater changes the mailbox like deliver but leaves the wake-up
// to the engine (wakeNow), which wakes every connection it touched once it
// has no more server packets waiting: a burst of items for one client then
// leaves in one write instead of one write each. first reports that c was
// not waiting for a wake-up yet (the engine must remember it).
func (c *conn) deliverLater(req uint64, f func(*mailbox)) (ok, first bool) {
	if c == nil {
		return false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mb.req != req {
		return false, false
	}
	f(&c.mb)
	first = !c.wakeDue
	c.wakeDue = true
	return true, first
}

// wakeNow wakes the connection after deliverLater.
func (c *conn) wakeNow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.wakeDue {
		return
	}
	c.wakeDue = false
	c.signalLocked()
}

func addCredits(n int) func(*mailbox) { return func(mb *mailbox) { mb.credits += n } }

func addHead(p *zhttp.Packet) func(*mailbox) {
	return func(mb *mailbox) {
		mb.head = p
		mb.addBody(p.Body)
		mb.ended = !p.More
	}
}

func addBody(b []byte, more bool) func(*mailbox) {
	return func(mb *mailbox) {
		mb.addBody(b)
		mb.ended = !more
	}
}

func (c *conn) deliverReject(req uint64, code int, msg string) bool {
	return c.deliver(req, func(mb *mailbox) { mb.reject, mb.rejectMsg = code, msg })
}

// deliverAbort closes the client connection at once: condure answers a
// server error, cancel or protocol violation by dropping the client (§A.2).
func (c *conn) deliverAbort(req uint64) bool {
	if !c.deliver(req, func(mb *mailbox) { mb.abort = true }) {
		return false
	}
	c.close()
	return true
}

func (mb *mailbox) addBody(b []byte) {
	if len(b) == 0 {
		return
	}
	if len(mb.body) >= maxQueuedPieces {
		merged := make([]byte, 0, mb.bytes+len(b))
		for _, p := range mb.body {
			merged = append(merged, p...)
		}
		mb.body = append(mb.body[:0], merged)
	}
	mb.body = append(mb.body, b)
	mb.bytes += len(b)
}

// take empties the mailbox.
func (c *conn) take() mailbox {
	c.mu.Lock()
	mb := c.mb
	c.mb = mailbox{req: mb.req}
	c.mu.Unlock()
	return mb
}

// --- connection goroutine -------------------------------------------------

// serve runs the connection from its first request. It reports false
// when it detached (the connection lives on without a goroutine).
func (c *conn) serve() bool {
	if c.tc != nil && !c.handshake() {
		c.close()
		c.s.connDone(c)
		return true
	}
	return c.loop(nil, 0)
}

// loop serves requests; with x set it first resumes that detached
// exchange after why. It ends the connection (end) unless it detaches
// again, which it reports as false.
func (c *conn) loop(x *exchange, why resumeReason) bool {
	if x != nil {
		switch c.runFrom(x, why) {
		case outDetached:
			return false
		case outEnd:
			c.end()
			return true
		}
	}
	for {
		if c.br == nil || c.br.Buffered() == 0 {
			c.releaseReader()
			if !c.setIdle(true) {
				break
			}
			c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.StreamTimeout))
			st := c.waitReadable()
			c.setIdle(false)
			if st != rsData {
				break
			}
			if c.br == nil {
				c.br = c.s.getReader(c.nc)
			}
		}
		switch c.exchange() {
		case outDetached:
			return false
		case outEnd:
			c.end()
			return true
		}
	}
	c.end()
	return true
}

// outcome is how an exchange left the connection.
type outcome int

const (
	outEnd      outcome = iota // close the connection
	outNext                    // it can carry another request
	outDetached                // the exchange waits without a goroutine
)

func boolOut(keep bool) outcome {
	if keep {
		return outNext
	}
	return outEnd
}

// end closes the connection after its last exchange.
func (c *conn) end() {
	c.releaseReader()
	c.lingerClose()
	c.close()
	c.s.connDone(c)
}

// resumeReason says why a detached exchange resumes.
type resumeReason int

const (
	resumeMail     resumeReason = iota + 1 // the engine changed the mailbox
	resumeReadable                         // client bytes or EOF
	resumeTimeout                          // the stream timeout passed
	resumeClosed                           // the connection was closed
)

// tryDetach parks x without a goroutine when nothing is pending; the
// caller then returns all the way out of its goroutine.
func (c *conn) tryDetach(x *exchange) bool {
	if c.s.parker == nil || c.fd < 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.wake:
		// Mail arrived since the last take: keep going.
		c.wake <- struct{}{}
		return false
	default:
	}
	if c.closing || c.isClosedLocked() {
		return false
	}
	if c.readableSeen {
		// Client bytes or EOF arrived meanwhile (edge-triggered: no
		// second event): look at them first.
		c.readableSeen = false
		return false
	}
	if !c.epollAdded {
		if err := c.s.parker.add(c); err != nil {
			return false
		}
		c.epollAdded = true
	}
	c.parkedX = x
	c.parkDeadline = time.Now().Add(c.s.cfg.StreamTimeout)
	return true
}

func (c *conn) isClosedLocked() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// resumeLocked starts a goroutine for the detached exchange, if any.
func (c *conn) resumeLocked(why resumeReason) bool {
	x := c.parkedX
	if x == nil {
		return false
	}
	c.parkedX = nil
	go c.loop(x, why)
	return true
}

// wakeParked is the parker's event for c.
func (c *conn) wakeParked(why resumeReason) {
	c.mu.Lock()
	if !c.resumeLocked(why) {
		c.readableSeen = true
	}
	c.mu.Unlock()
}

// expireParked resumes c with a timeout once its stream timeout passed.
func (c *conn) expireParked(now time.Time) {
	c.mu.Lock()
	if c.parkedX != nil && !now.Before(c.parkDeadline) {
		c.resumeLocked(resumeTimeout)
	}
	c.mu.Unlock()
}

// lingerClose half-closes and discards input for a moment before the
// close, when a response was sent with request bytes still unread.
func (c *conn) lingerClose() {
	if !c.linger {
		return
	}
	c.nc.CloseWrite()
	c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	buf := c.s.getChunk()
	defer c.s.putChunk(buf)
	for total := 0; total < lingerMax; {
		n, err := c.nc.Read(*buf)
		total += n
		if err != nil {
			return
		}
	}
}

func (c *conn) releaseReader() {
	if c.br != nil {
		c.s.putReader(c.br)
		c.br = nil
	}
}

type readState int

const (
	rsData    readState = iota + 1 // bytes are waiting
	rsEOF                          // the client closed its side
	rsErr                          // connection error
	rsTimeout                      // the read deadline passed
	rsWake                         // the engine has mail
)

// waitReadable blocks until the socket is readable without reading: the
// netpoller parks the goroutine and a 1-byte MSG_PEEK tells data from EOF,
// so an idle connection pins no buffer.
func (c *conn) waitReadable() readState {
	if c.rc == nil {
		return c.waitReadableTLS()
	}
	st := rsErr
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd,
				uintptr(unsafe.Pointer(&c.peek[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			switch {
			case errno == syscall.EINTR:
				continue
			case errno == syscall.EAGAIN:
				return false // wait for the netpoller
			case errno != 0:
				st = rsErr
			case n == 0:
				st = rsEOF
			default:
				st = rsData
			}
			return true
		}
	})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return rsTimeout
		}
		return rsErr
	}
	return st
}

// waitReadableTLS waits for decrypted bytes by reading them into a
// borrowed reader (kept until they are consumed).
func (c *conn) waitReadableTLS() readState {
	if c.br == nil {
		c.br = c.s.getReader(c.nc)
	}
	_, err := c.br.Peek(1)
	switch {
	case err == nil:
		return rsData
	case errors.Is(err, os.ErrDeadlineExceeded):
		return rsTimeout
	case errors.Is(err, io.EOF):
		return rsEOF
	default:
		return rsErr
	}
}

// park waits for readability or mail from the engine, whichever comes first.
func (c *conn) park() readState { return c.parkUntil(time.Now().Add(c.s.cfg.StreamTimeout)) }

// parkUntil is park with the deadline dl.
func (c *conn) parkUntil(dl time.Time) readState {
	c.nc.SetReadDeadline(dl)
	c.mu.Lock()
	c.parked = true
	c.mu.Unlock()
	select {
	case <-c.wake:
		c.unpark()
		return rsWake
	default:
	}
	st := c.waitReadable()
	c.unpark()
	if st == rsTimeout && time.Now().Before(dl) {
		return rsWake
	}
	return st
}

func (c *conn) unpark() {
	c.mu.Lock()
	c.parked = false
	c.mu.Unlock()
	// Undo a wake-up deadline before any real read.
	c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.StreamTimeout))
}

// waitMail waits for the engine only (used while unread pipelined bytes
// make the socket permanently readable).
func (c *conn) waitMail() bool { return c.waitMailFor(c.s.cfg.StreamTimeout) }

// waitMailFor is waitMail with a timeout of d.
func (c *conn) waitMailFor(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.wake:
		return true
	case <-c.closed:
	case <-t.C:
	}
	return false
}

// exchange state of one request.
type exchange struct {
	id         string
	req        *http.Request
	isHead     bool
	proto11    bool
	persistent bool
	uploading  bool
	clLeft     int64 // request body bytes left, -1 = chunked
	budget     int   // credits for the request body
	expect100  bool
	started    bool
	rh         respHead
	sent       int64    // response body bytes written
	watch      bool     // watching the socket for EOF is useful
	live       bool     // the engine may still hold the session
	ws         *wsState // a WebSocket exchange (ws.go)
}

// exchange reads one request, runs it, and reports whether the connection
// can carry another.
func (c *conn) exchange() outcome {
	bufSize := c.s.cfg.BufferSize
	n, err := c.readHead()
	if err != nil {
		if errors.Is(err, errHeadTooLarge) {
			c.linger = true
			c.writeBytes(appendError(nil, true, http.StatusRequestHeaderFieldsTooLarge,
				fmt.Sprintf("Request header size exceeded limit of %d bytes.\n", bufSize), false))
		}
		return outEnd
	}
	raw, _ := c.br.Peek(n)
	hs, host, err := scanHeaders(string(raw))
	if err != nil {
		c.badRequest(err)
		return outEnd
	}
	req, err := http.ReadRequest(c.br)
	if err != nil {
		c.badRequest(err)
		return outEnd
	}
	if req.ProtoMajor != 1 {
		c.writeBytes(appendError(nil, true, http.StatusHTTPVersionNotSupported, "Only HTTP/1.x is supported.\n", false))
		return outEnd
	}
	x := &exchange{
		req:        req,
		isHead:     req.Method == http.MethodHead,
		proto11:    req.ProtoAtLeast(1, 1),
		persistent: !req.Close,
		uploading:  req.ContentLength != 0,
		clLeft:     req.ContentLength,
		watch:      true,
	}
	x.expect100 = x.uploading && x.proto11 && strings.EqualFold(req.Header.Get("Expect"), "100-continue")
	if isWebSocket(hs) {
		return c.startWS(x, req, hs, host)
	}
	uri := requestURI(host, req.RequestURI, c.tc != nil)
	if len(uri) > MaxURI {
		return boolOut(c.refuse(x, http.StatusRequestURITooLong, fmt.Sprintf("Request URI exceeded limit of %d bytes.\n", MaxURI)))
	}
	if !x.uploading {
		x.req = nil // keep nothing of the request while the response runs
		if c.br.Buffered() == 0 {
			c.releaseReader()
		}
	}

	p := zhttp.New()
	p.Method = req.Method
	p.More = x.uploading
	p.Stream = true
	return c.start(x, p, uri, hs, bufSize, false)
}

// start numbers a new exchange, completes its first packet (uri, headers,
// credits, peer) and hands it to the engine, then runs the exchange.
func (c *conn) start(x *exchange, p *zhttp.Packet, uri string, hs []zhttp.Header, credits int, ws bool) outcome {
	c.nreq++
	x.id = string(appendID(make([]byte, 0, 24), c.no, c.nreq))
	c.mu.Lock()
	c.mb = mailbox{req: c.nreq}
	c.mu.Unlock()

	p.URI = uri
	p.Headers = hs
	p.HasHeaders = true
	p.Credits = int64(credits)
	p.PeerAddress = c.peerIP
	p.PeerPort = c.peerPort
	if !c.send(connMsg{kind: msgStart, c: c, req: c.nreq, id: x.id, pkt: p, ws: ws}) {
		return boolOut(c.refuse(x, http.StatusServiceUnavailable, msgNoServer))
	}
	x.live = true
	return c.run(x)
}

// refuse answers a request ourselves before it reaches a server.
func (c *conn) refuse(x *exchange, code int, msg string) bool {
	keep := x.persistent && !x.uploading && !c.isClosing()
	c.linger = c.linger || x.uploading
	b := appendError(nil, x.proto11, code, msg, keep)
	if x.isHead {
		b = b[:len(b)-len(msg)]
	}
	if !c.writeBytes(b) {
		return false
	}
	return keep
}

func (c *conn) badRequest(err error) {
	c.linger = true
	c.writeBytes(appendError(nil, true, http.StatusBadRequest, "Failed to parse request: "+err.Error()+"\n", false))
}

// readHead waits until a whole request head is buffered and returns its
// length; a head that does not fit in --buffer-size is errHeadTooLarge.
func (c *conn) readHead() (int, error) {
	br := c.br
	// RFC 9112 §2.2: ignore empty lines before the request line.
	for {
		b, err := br.Peek(1)
		if err != nil {
			return 0, err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		br.Discard(1)
	}
	scanned := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if n := headEnd(buf, scanned-2); n >= 0 {
			return n, nil
		}
		scanned = len(buf)
		if len(buf) >= br.Size() {
			return 0, errHeadTooLarge
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return 0, err
		}
	}
}

// run drives one exchange until its response is complete or it fails.
func (c *conn) run(x *exchange) outcome { return c.runFrom(x, 0) }

// runFrom is run, resuming a detached exchange after why (0: fresh).
func (c *conn) runFrom(x *exchange, why resumeReason) outcome {
	if x.ws != nil {
		return c.runWS(x, why)
	}
	switch why {
	case resumeReadable:
		if !c.afterPark(x, c.park()) {
			return outEnd
		}
	case resumeTimeout, resumeClosed:
		c.gone(x)
		return outEnd
	}
	for {
		mb := c.take()
		if mb.abort {
			return outEnd
		}
		if mb.reject != 0 {
			x.live = false
			return boolOut(c.refuse(x, mb.reject, mb.rejectMsg))
		}
		x.budget += mb.credits
		if mb.head != nil || len(mb.body) > 0 || mb.ended {
			ok, done := c.writeResponse(x, &mb)
			if !ok {
				c.gone(x)
				return outEnd
			}
			if done {
				return boolOut(x.rh.persistent && !c.isClosing())
			}
		}
		if x.uploading && x.budget > 0 {
			if !c.upload(x) {
				c.gone(x)
				return outEnd
			}
			continue
		}
		if x.watch && (c.br == nil || c.br.Buffered() == 0) {
			if !x.uploading && c.tryDetach(x) {
				return outDetached // resumed later in a new goroutine
			}
			if !c.afterPark(x, c.park()) {
				return outEnd
			}
			continue
		}
		if !c.waitMail() {
			c.gone(x)
			return outEnd
		}
	}
}

// afterPark applies the result of a park; false means the exchange is
// over (the client went away).
func (c *conn) afterPark(x *exchange, st readState) bool {
	switch st {
	case rsWake:
	case rsData:
		// Pipelined bytes (or body we have no credits for): stop
		// watching until we consume them.
		x.watch = false
	default: // client closed, error or stream timeout
		c.gone(x)
		return false
	}
	return true
}

// gone tells the engine the client side is over (it then sends cancel).
func (c *conn) gone(x *exchange) {
	if x.live {
		x.live = false
		c.send(connMsg{kind: msgGone, c: c, req: c.nreq, id: x.id})
	}
}

func (c *conn) send(m connMsg) bool {
	select {
	case c.s.eng.in <- m:
		return true
	case <-c.s.eng.done:
		return false
	}
}

// upload sends the next piece of the request body: at most min(credits,
// --buffer-size) bytes per packet, never in the first packet (§6.3).
func (c *conn) upload(x *exchange) bool {
	if x.expect100 {
		x.expect100 = false
		if !c.writeBytes(continue100) {
			return false
		}
	}
	if c.br.Buffered() == 0 {
		switch c.park() {
		case rsWake:
			return true
		case rsData:
		default:
			return false
		}
	}
	lim := x.budget
	if lim > c.s.cfg.BufferSize {
		lim = c.s.cfg.BufferSize
	}
	if x.clLeft >= 0 && int64(lim) > x.clLeft {
		lim = int(x.clLeft)
	}
	buf := c.s.getChunk()
	n, err := x.req.Body.Read((*buf)[:lim])
	final := false
	switch {
	case err == io.EOF:
		final = true
	case err != nil:
		c.s.putChunk(buf)
		c.bodyError(x, err)
		return false
	}
	if x.clLeft >= 0 {
		x.clLeft -= int64(n)
		final = final || x.clLeft == 0
	}
	if n == 0 && !final {
		c.s.putChunk(buf)
		return true
	}
	x.budget -= n
	if !c.send(connMsg{kind: msgBody, c: c, req: c.nreq, id: x.id, chunk: buf, n: n, more: !final}) {
		c.s.putChunk(buf)
		return false
	}
	if final {
		x.uploading = false
		x.req = nil
		x.watch = true
		if c.br.Buffered() == 0 {
			c.releaseReader()
		}
	}
	return true
}

// bodyError answers a malformed request body with 400 when nothing was
// sent yet; a vanished client just ends the exchange.
func (c *conn) bodyError(x *exchange, err error) {
	var ne net.Error
	if x.started || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNRESET) {
		return
	}
	c.badRequest(err)
}

// writeResponse writes what the mailbox holds: the head (first time), body
// pieces framed as planned, and the end. It reports the body bytes written
// to the engine, which grants them back as credits (§2.7).
func (c *conn) writeResponse(x *exchange, mb *mailbox) (ok, done bool) {
	hb := c.s.getHeadBuf()
	defer c.s.putHeadBuf(hb)
	need := 64 + 20*len(mb.body)
	if mb.head != nil {
		need += 256 + len(mb.head.Reason)
		for _, h := range mb.head.Headers {
			need += len(h.Name) + len(h.Value) + 4
		}
	}
	if cap(*hb) < need {
		*hb = make([]byte, 0, need)
	}
	h := (*hb)[:0]
	bufs := make(net.Buffers, 0, 2+3*len(mb.body))
	if p := mb.head; p != nil {
		if x.uploading {
			// Early response: the rest of the body stays unread.
			x.uploading = false
			x.persistent = false
			c.linger = true
		}
		rh, err := planResponse(p, x.isHead, x.proto11, x.persistent && !c.isClosing())
		if err == nil {
			h, err = appendHead(h, p, rh, x.proto11)
		}
		if err != nil {
			c.s.log.Warn().Err(err).Str(logging.FieldRID, x.id).Msg("bad response from zhttp server")
			c.writeBytes(appendError(nil, x.proto11, http.StatusInternalServerError, "Failed to process request.\n", false))
			return false, false
		}
		x.rh, x.started = rh, true
		bufs = append(bufs, h)
	}
	if !x.started {
		// Body before head cannot happen (the engine sends the head first).
		return false, false
	}
	consumed := 0
	for _, b := range mb.body {
		consumed += len(b)
		switch x.rh.framing {
		case frameNone:
		case frameLength:
			if left := x.rh.length - x.sent; int64(len(b)) > left {
				b = b[:left] // more than announced: cut, then close
				x.rh.persistent = false
			}
			x.sent += int64(len(b))
			if len(b) > 0 {
				bufs = append(bufs, b)
			}
		case frameClose:
			bufs = append(bufs, b)
		case frameChunked:
			start := len(h)
			h = appendChunkHeader(h, len(b))
			bufs = append(bufs, h[start:], b, crlf)
		}
	}
	if mb.ended {
		switch {
		case x.rh.framing == frameChunked:
			bufs = append(bufs, lastChunk)
		case x.rh.framing == frameLength && x.sent < x.rh.length:
			x.rh.persistent = false // short body: closing tells the client
		case x.rh.framing == frameClose:
			x.rh.persistent = false
		}
	}
	if len(bufs) > 0 {
		c.writeDeadline()
		if c.tc != nil && len(bufs) > 1 {
			// No writev under TLS: one record (and one syscall) for what
			// would otherwise be a record per piece.
			bufs = net.Buffers{joinBuffers(bufs)}
		}
		if _, err := bufs.WriteTo(c.nc); err != nil {
			return false, false
		}
	}
	if mb.ended {
		x.live = false
		return true, true
	}
	if consumed > 0 {
		c.send(connMsg{kind: msgWrote, c: c, req: c.nreq, id: x.id, n: consumed})
	}
	return true, false
}

// joinBuffers copies bufs into one slice.
func joinBuffers(bufs net.Buffers) []byte {
	n := 0
	for _, b := range bufs {
		n += len(b)
	}
	out := make([]byte, 0, n)
	for _, b := range bufs {
		out = append(out, b...)
	}
	return out
}

// writeDeadline keeps a write deadline of about the stream timeout ahead,
// moving it only when a tenth of it has passed: a held stream writes often
// and the deadline only has to catch a client that stopped reading.
func (c *conn) writeDeadline() {
	now := time.Now()
	if now.Sub(c.wdlSet) < c.s.cfg.StreamTimeout/10 {
		return
	}
	c.wdlSet = now
	c.nc.SetWriteDeadline(now.Add(c.s.cfg.StreamTimeout))
}

// writeBytes writes b to the client with the stream timeout.
func (c *conn) writeBytes(b []byte) bool {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.StreamTimeout))
	_, err := c.nc.Write(b)
	return err == nil
}
