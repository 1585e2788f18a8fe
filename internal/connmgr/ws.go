package connmgr

import (
	"compress/flate"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/gobwas/ws"

	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// WebSocket bounds (doc.go, "WebSockets").
const (
	// maxQueuedFrames bounds the frames waiting in a mailbox for the
	// client. Their bytes are bounded by our credits; this bounds their
	// count (a server could send empty messages without spending any).
	maxQueuedFrames = 1024
	// wsCloseWait is how long one side's close waits for the other's
	// answer (the client's after ours, the server's after the client's).
	wsCloseWait = 5 * time.Second
	// wsOverdraft is how far a server may exceed our credit window before
	// it is cancelled: condure grants credits for ping and pong payloads
	// too (Captured), and a server that does not count them may be ahead
	// of us by what its control frames carried.
	wsOverdraft = 4096
	// maxControl is RFC 6455 §5.5's limit on a control frame's payload.
	maxControl = 125
)

// Close codes we send ourselves (RFC 6455 §7.4.1, IANA registry).
const (
	closeGoingAway     = 1001
	closeProtocol      = 1002
	closeInvalidData   = 1007
	closeInternal      = 1011
	closeServerRestart = 1012
)

// wsFrame is a frame for the client, filled in by the engine: a message
// piece (text or binary, more = not its last piece), a ping, pong or close.
type wsFrame struct {
	op   ws.OpCode // OpText, OpBinary, OpPing, OpPong or OpClose
	more bool
	code int64 // close code, -1 none
	body []byte
}

// wsState is one WebSocket connection's state on the connection side.
type wsState struct {
	key      string // the client's Sec-WebSocket-Key, until the accept
	accepted bool

	// Client → server: the frame being read.
	inFrame  bool
	op       ws.OpCode // opcode of the frame being read
	fin      bool
	left     int64 // payload bytes of the frame still to read
	mask     [4]byte
	pos      int       // payload offset for unmasking
	msgOp    ws.OpCode // opcode of the message in progress, 0 none
	utf8Tail []byte    // an incomplete rune at the end of the text so far

	ctrl    frameHead // the control frame being read
	deflate bool      // permessage-deflate was negotiated (wsdeflate.go)
	infl    *inflater // decompressing a client message
	defl    *deflater // compressing a server message

	readable   bool // the socket was seen readable: one read will not block
	partial    bool // an incomplete frame head waits in the reader
	needBudget bool // payload waits for credits from the server
	// drained: the exchange detached with no unread bytes in the socket
	// (runWS). Bytes that arrive afterwards raise a parker event, which
	// resumes the exchange or, while a goroutine runs it, sets
	// conn.readableSeen (tryDetach looks at it): resumed by mail, the
	// exchange detaches again without peeking at the socket.
	drained bool

	// Server → client.
	outMsg    bool // a message to the client is in progress
	closeSent bool // we wrote a close frame to the client
	closeRecv bool // the client sent its close frame
	closeBy   time.Time
}

// startWS runs a WebSocket handshake request: it validates it, hands it
// to a zhttp server as a ws:// (wss:// on TLS) session (zmq-wire.md §2.12)
// and relays frames once the server accepts.
func (c *conn) startWS(x *exchange, req *http.Request, hs []zhttp.Header, host string) outcome {
	x.persistent = false
	if msg := checkHandshake(req); msg != "" {
		return boolOut(c.refuse(x, http.StatusBadRequest, msg))
	}
	uri := "ws" + strings.TrimPrefix(requestURI(host, req.RequestURI, c.tc != nil), "http")
	if len(uri) > MaxURI {
		return boolOut(c.refuse(x, http.StatusRequestURITooLong, fmt.Sprintf("Request URI exceeded limit of %d bytes.\n", MaxURI)))
	}
	x.ws = &wsState{key: req.Header.Get("Sec-WebSocket-Key")}
	if c.s.cfg.Compression {
		hs, x.ws.deflate = takeDeflateOffer(hs)
	}
	x.req, x.uploading, x.clLeft = nil, false, 0
	if c.br.Buffered() == 0 {
		c.releaseReader()
	}
	p := zhttp.New()
	p.Method = http.MethodGet
	return c.start(x, p, uri, hs, c.s.cfg.BufferSize, true)
}

// checkHandshake validates an opening handshake (RFC 6455 §4.2.1) and
// returns what is wrong with it, or "".
func checkHandshake(req *http.Request) string {
	switch {
	case req.Method != http.MethodGet:
		return "WebSocket handshake must use GET.\n"
	case !req.ProtoAtLeast(1, 1):
		return "WebSocket handshake requires HTTP/1.1.\n"
	case req.Header.Get("Sec-WebSocket-Version") != "13":
		return "Unsupported Sec-WebSocket-Version (want 13).\n"
	}
	key, err := base64.StdEncoding.DecodeString(req.Header.Get("Sec-WebSocket-Key"))
	if err != nil || len(key) != 16 {
		return "Missing or bad Sec-WebSocket-Key.\n"
	}
	return ""
}

// acceptKey computes Sec-WebSocket-Accept (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// appendAccept encodes the 101 response: the server's headers (those we
// set ourselves dropped), then Upgrade, Connection and
// Sec-WebSocket-Accept, in condure's order (Captured).
func appendAccept(dst []byte, p *zhttp.Packet, key string, deflate bool) ([]byte, error) {
	cp := *p
	cp.Headers = make([]zhttp.Header, 0, len(p.Headers))
	for _, h := range p.Headers {
		if strings.EqualFold(h.Name, "Sec-WebSocket-Accept") || strings.EqualFold(h.Name, "Content-Length") {
			continue
		}
		cp.Headers = append(cp.Headers, h)
	}
	dst, err := appendHead(dst, &cp, respHead{length: -1, persistent: true}, true)
	if err != nil {
		return dst, err
	}
	dst = dst[:len(dst)-2]
	if deflate {
		dst = append(dst, "Sec-WebSocket-Extensions: "+deflateAnswer+"\r\n"...)
	}
	dst = append(dst, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = append(dst, acceptKey(key)...)
	return append(dst, "\r\n\r\n"...), nil
}

// runWS drives a WebSocket exchange: the handshake's answer, then frames
// both ways until the close handshake, an error or the client leaving.
func (c *conn) runWS(x *exchange, why resumeReason) outcome {
	w := x.ws
	switch why {
	case resumeReadable:
		// The parker's edge may be for bytes an earlier goroutine already
		// read (the event is delivered after it detached): a read now
		// could block with mail waiting, so peek first.
		w.readable = c.rc != nil && c.pollReadable()
	case resumeTimeout, resumeClosed:
		c.gone(x)
		return outEnd
	}
	// A WebSocket that only gets messages (a publish to many) resumes for
	// each: skipping the peek saves a system call per message.
	drained := why == resumeMail && w.drained
	w.drained = false
	for {
		mb := c.take()
		if mb.abort {
			return outEnd
		}
		if mb.reject != 0 {
			x.live = false
			c.refuse(x, mb.reject, mb.rejectMsg)
			return outEnd
		}
		x.budget += mb.credits
		if mb.credits > 0 {
			w.needBudget = false
		}
		if mb.head != nil && !w.accepted {
			if mb.head.Code != http.StatusSwitchingProtocols {
				// Rejected (`error` condition `rejected`): that response.
				x.live = false
				mb.ended = true
				c.writeResponse(x, &mb)
				return outEnd
			}
			if !c.wsAccept(x, mb.head) {
				c.gone(x)
				return outEnd
			}
		}
		if len(mb.frames) > 0 || mb.wsEnd != 0 || mb.overflow {
			if !c.wsWrite(x, &mb) {
				return outEnd
			}
		}
		if w.closeSent && w.closeRecv {
			x.live = false
			return outEnd
		}
		if !w.accepted {
			if x.watch {
				if c.tryDetach(x) {
					return outDetached
				}
				if !c.afterPark(x, c.park()) {
					return outEnd
				}
			} else if !c.waitMail() {
				c.gone(x)
				return outEnd
			}
			continue
		}
		if w.closeSent && time.Now().After(w.closeBy) {
			c.s.log.Info().Str(logging.FieldConn, x.id).Msg("WebSocket client did not answer our close")
			c.gone(x)
			return outEnd
		}
		hasBytes := c.br != nil && c.br.Buffered() > 0
		if !w.closeRecv && !w.needBudget && (w.readable || (hasBytes && !w.partial) || w.infl != nil) {
			drained = false
			if !c.wsRead(x) {
				return outEnd
			}
			continue
		}
		if w.closeRecv || w.needBudget {
			// Nothing to read until the server answers or grants credits.
			wait := c.s.cfg.StreamTimeout
			if w.closeRecv {
				if w.closeBy.IsZero() {
					w.closeBy = time.Now().Add(wsCloseWait)
				}
				wait = time.Until(w.closeBy)
			}
			if wait <= 0 || !c.waitMailFor(wait) {
				if w.closeRecv {
					c.s.log.Info().Str(logging.FieldConn, x.id).Msg("zhttp server did not answer the client's WebSocket close")
				}
				c.gone(x)
				return outEnd
			}
			continue
		}
		if c.rc != nil && !drained && c.pollReadable() {
			// Unread bytes remain (the parker only sees new ones).
			w.readable = true
			continue
		}
		if !w.closeSent {
			// Set before: once detached, another goroutine may resume x.
			w.drained = c.rc != nil
			if c.tryDetach(x) {
				return outDetached
			}
			w.drained = false
		}
		drained = false
		dl := time.Now().Add(c.s.cfg.StreamTimeout)
		if w.closeSent {
			dl = w.closeBy
		}
		var st readState
		if c.tc != nil {
			st = c.parkTLS(dl)
		} else {
			st = c.parkUntil(dl)
		}
		switch st {
		case rsWake:
		case rsData:
			// New bytes: on TLS already in the reader, else one read away.
			w.partial, w.readable = false, c.tc == nil
		default:
			c.gone(x)
			return outEnd
		}
	}
}

// pollReadable reports, without waiting, whether the socket has bytes (or
// EOF) to read.
func (c *conn) pollReadable() bool {
	ready := false
	c.rc.Read(func(fd uintptr) bool {
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&c.peek[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		ready = errno != syscall.EAGAIN && (errno != 0 || n >= 0)
		return true
	})
	return ready
}

// parkTLS waits until more decrypted bytes than the reader holds arrive,
// or mail, or dl. A TLS connection cannot be peeked below the TLS layer,
// so it waits by reading into its reader (wsRead then never reads).
func (c *conn) parkTLS(dl time.Time) readState {
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
	if c.br == nil {
		c.br = c.s.getReader(c.nc)
	}
	_, err := c.br.Peek(c.br.Buffered() + 1)
	c.unpark()
	switch {
	case err == nil:
		return rsData
	case errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(dl):
		return rsWake
	case errors.Is(err, os.ErrDeadlineExceeded):
		return rsTimeout
	case errors.Is(err, io.EOF):
		return rsEOF
	default:
		return rsErr
	}
}

// wsAccept writes the 101 response.
func (c *conn) wsAccept(x *exchange, p *zhttp.Packet) bool {
	hb := c.s.getHeadBuf()
	defer c.s.putHeadBuf(hb)
	b, err := appendAccept((*hb)[:0], p, x.ws.key, x.ws.deflate)
	*hb = b[:0]
	if err != nil {
		c.s.log.Warn().Err(err).Str(logging.FieldRID, x.id).Msg("bad WebSocket accept from zhttp server")
		c.writeBytes(appendError(nil, true, http.StatusInternalServerError, "Failed to process request.\n", false))
		return false
	}
	if !c.writeBytes(b) {
		return false
	}
	x.ws.accepted, x.ws.key, x.started = true, "", true
	x.watch = true
	return true
}

// wsWrite writes the frames of the mailbox to the client and reports the
// payload bytes to the engine (which grants them back as credits). It
// reports false when the connection is over.
func (c *conn) wsWrite(x *exchange, mb *mailbox) bool {
	w := x.ws
	if mb.overflow {
		c.s.overflows.closed(x.id, time.Now())
		c.wsFail(x, closeInternal, "outbound queue full")
		return false
	}
	hb := c.s.getHeadBuf()
	defer c.s.putHeadBuf(hb)
	h := (*hb)[:0]
	if need := 14 * (len(mb.frames) + 1); cap(h) < need {
		h = make([]byte, 0, need)
	}
	bufs := make(net.Buffers, 0, 2*len(mb.frames)+1)
	consumed := 0
	var closeBody [maxControl]byte
	for _, f := range mb.frames {
		if w.closeSent {
			break // nothing may follow a close frame
		}
		op, fin, rsv1 := f.op, true, false
		body := f.body
		switch f.op {
		case ws.OpText, ws.OpBinary:
			if w.outMsg {
				op = ws.OpContinuation
			}
			fin = !f.more
			w.outMsg = f.more
			consumed += len(body)
			if w.deflate {
				if w.defl == nil {
					w.defl, rsv1 = c.s.getDeflater(), true
				}
				body = w.defl.compress(body, fin)
				if fin {
					c.s.putDeflater(w.defl)
					w.defl = nil
				}
			}
		case ws.OpPing, ws.OpPong:
			consumed += len(body)
		case ws.OpClose:
			body = closePayload(closeBody[:0], f.code, body)
			w.closeSent = true
			w.closeBy = time.Now().Add(wsCloseWait)
		}
		start := len(h)
		h = appendFrameHead(h, op, fin, len(body))
		if rsv1 {
			h[start] |= 0x40
		}
		bufs = append(bufs, h[start:])
		if len(body) > 0 {
			bufs = append(bufs, body)
		}
	}
	if mb.wsEnd != 0 && !w.closeSent {
		start := len(h)
		body := closePayload(closeBody[:0], int64(mb.wsEnd), nil)
		h = appendFrameHead(h, ws.OpClose, true, len(body))
		bufs = append(bufs, h[start:], body)
	}
	*hb = h[:0]
	if len(bufs) > 0 {
		c.writeDeadline()
		if c.tc != nil && len(bufs) > 1 {
			bufs = net.Buffers{joinBuffers(bufs)}
		}
		if _, err := bufs.WriteTo(c.nc); err != nil {
			c.gone(x)
			return false
		}
	}
	if mb.wsEnd != 0 {
		x.live = false // the engine already forgot the session
		c.linger = true
		return false
	}
	if consumed > 0 {
		c.send(connMsg{kind: msgWrote, c: c, req: c.nreq, id: x.id, n: consumed})
	}
	return true
}

// closePayload encodes a close frame's payload: no code, or the code and
// the reason cut to fit. Codes that must not be sent (1005, 1006, 1015,
// out of range) become an empty payload.
func closePayload(dst []byte, code int64, reason []byte) []byte {
	if code < 1000 || code > 4999 || code == 1005 || code == 1006 || code == 1015 {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	if len(reason) > maxControl-2 {
		reason = reason[:maxControl-2]
	}
	return append(dst, reason...)
}

// appendFrameHead encodes an unmasked frame head (server to client).
func appendFrameHead(dst []byte, op ws.OpCode, fin bool, n int) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, b0, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, b0, 127), uint64(n))
	}
}

// wsFail ends the connection for bad input or overload: a close frame
// with code, the server's session cancelled.
func (c *conn) wsFail(x *exchange, code int, reason string) {
	if !x.ws.closeSent {
		var b [maxControl]byte
		body := closePayload(b[:0], int64(code), []byte(reason))
		frame := appendFrameHead(make([]byte, 0, 4+len(body)), ws.OpClose, true, len(body))
		c.writeBytes(append(frame, body...))
		x.ws.closeSent = true
	}
	c.linger = true
	c.gone(x)
}

// errFrame is a client frame that breaks RFC 6455: the code to close with.
type errFrame struct {
	code int
	msg  string
}

func (e *errFrame) Error() string { return e.msg }

// frameHead is a client frame head: n is its length in bytes (0: not
// all of it is buffered yet).
type frameHead struct {
	n      int
	op     ws.OpCode
	fin    bool
	rsv1   bool // a compressed message (permessage-deflate)
	length int64
	mask   [4]byte
}

// parseFrameHead decodes a client frame head from b; deflate allows RSV1
// on the first frame of a data message.
func parseFrameHead(b []byte, deflate bool) (frameHead, error) {
	var h frameHead
	if len(b) < 2 {
		return h, nil
	}
	h.fin, h.rsv1, h.op = b[0]&0x80 != 0, b[0]&0x40 != 0, ws.OpCode(b[0]&0x0f)
	n := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4
	}
	if len(b) < n {
		return h, nil
	}
	switch l := b[1] & 0x7f; l {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u>>63 != 0 {
			return h, &errFrame{closeProtocol, "frame length out of range"}
		}
		h.length = int64(u)
	default:
		h.length = int64(l)
	}
	op := h.op
	switch {
	case b[0]&0x30 != 0 || (h.rsv1 && (!deflate || op.IsControl() || op == ws.OpContinuation)):
		return h, &errFrame{closeProtocol, "reserved bits set"}
	case b[1]&0x80 == 0:
		return h, &errFrame{closeProtocol, "unmasked client frame"}
	case op > ws.OpBinary && op < ws.OpClose, op > ws.OpPong:
		return h, &errFrame{closeProtocol, fmt.Sprintf("unknown opcode %d", op)}
	case op.IsControl() && h.length > maxControl:
		return h, &errFrame{closeProtocol, "control frame too large"}
	case op.IsControl() && !h.fin:
		return h, &errFrame{closeProtocol, "fragmented control frame"}
	}
	copy(h.mask[:], b[n-4:n])
	h.n = n
	return h, nil
}

// wsRead forwards what the client sent: whole control frames, and message
// payload as it arrives, as far as credits allow and at most one read
// from the socket (taken only when it was seen readable, so it does not
// block). It reports false when the connection is over.
func (c *conn) wsRead(x *exchange) bool {
	w := x.ws
	canFill := w.readable && c.tc == nil
	w.readable, w.partial = false, false
	if c.br == nil {
		c.br = c.s.getReader(c.nc)
	}
	// fill reads once more from the socket, if allowed.
	fill := func() (bool, error) {
		if !canFill {
			w.partial = true
			return false, nil
		}
		canFill = false
		_, err := c.br.Peek(c.br.Buffered() + 1)
		if err != nil {
			return false, err
		}
		return true, nil
	}
	var err error
	for err == nil && !w.closeRecv {
		if w.infl != nil {
			// A compressed message: its frames are read as the
			// decompressor needs them.
			if x.budget <= 0 {
				w.needBudget = true
				break
			}
			err = c.wsInflate(x)
			continue
		}
		if !w.inFrame {
			b, _ := c.br.Peek(c.br.Buffered())
			fh, perr := parseFrameHead(b, w.deflate)
			if perr != nil {
				err = perr
				break
			}
			if fh.n == 0 {
				var more bool
				if more, err = fill(); !more {
					break
				}
				continue
			}
			if err = w.checkOrder(fh.op, fh.fin); err != nil {
				break
			}
			c.br.Discard(fh.n)
			if fh.rsv1 {
				w.infl = c.s.getInflater(c, x, fh.length, fh.mask, fh.fin)
				continue
			}
			w.inFrame, w.op, w.fin, w.left, w.mask, w.pos = true, fh.op, fh.fin, fh.length, fh.mask, 0
			w.ctrl = fh
		}
		if w.op.IsControl() {
			if int64(c.br.Buffered()) < w.left {
				var more bool
				if more, err = fill(); !more {
					break
				}
				continue
			}
			w.inFrame, w.left = false, 0
			err = c.wsControl(x, w.ctrl)
			continue
		}
		n := min(int64(c.br.Buffered()), w.left, int64(x.budget), int64(c.s.cfg.BufferSize))
		if n == 0 && w.left > 0 {
			if x.budget <= 0 {
				w.needBudget = true
				break
			}
			var more bool
			if more, err = fill(); !more {
				break
			}
			continue
		}
		err = c.wsData(x, int(n))
	}
	if c.br != nil && c.br.Buffered() == 0 {
		c.releaseReader()
	}
	if err == nil {
		return true
	}
	var ef *errFrame
	if errors.As(err, &ef) {
		c.s.log.Warn().Str(logging.FieldConn, x.id).Str(logging.FieldPeer, c.peerIP).Int("code", ef.code).
			Msg("bad WebSocket frame from client: " + ef.msg)
		c.wsFail(x, ef.code, ef.msg)
		return false
	}
	c.gone(x) // the client went away or the connection failed
	return false
}

// checkOrder checks a data frame against the message in progress.
func (w *wsState) checkOrder(op ws.OpCode, fin bool) error {
	switch {
	case op.IsControl():
	case op == ws.OpContinuation && w.msgOp == 0:
		return &errFrame{closeProtocol, "continuation frame without a message"}
	case op != ws.OpContinuation && w.msgOp != 0:
		return &errFrame{closeProtocol, "new message before the previous one ended"}
	case op != ws.OpContinuation:
		w.msgOp = op
	}
	return nil
}

// wsData forwards n payload bytes of the current data frame.
func (c *conn) wsData(x *exchange, n int) error {
	w := x.ws
	buf := c.s.getChunk()
	b := (*buf)[:n]
	c.br.Read(b) // n ≤ Buffered: no read from the socket
	ws.Cipher(b, w.mask, w.pos)
	w.pos += n
	w.left -= int64(n)
	end := w.left == 0 && w.fin
	if w.msgOp == ws.OpText && !w.validText(b, end) {
		c.s.putChunk(buf)
		return &errFrame{closeInvalidData, "invalid UTF-8 in text message"}
	}
	ctype := "text"
	if w.msgOp == ws.OpBinary {
		ctype = "binary"
	}
	if w.left == 0 {
		w.inFrame = false
		if end {
			w.msgOp = 0
		}
	}
	if n == 0 && !end {
		c.s.putChunk(buf) // an empty frame in the middle of a message
		return nil
	}
	x.budget -= n
	if !c.send(connMsg{kind: msgBody, c: c, req: c.nreq, id: x.id, chunk: buf, n: n, more: !end, ctype: ctype}) {
		c.s.putChunk(buf)
		return net.ErrClosed
	}
	return nil
}

// wsInflate forwards the next piece of a compressed client message, at
// most what the credits allow, decompressed.
func (c *conn) wsInflate(x *exchange) error {
	w := x.ws
	buf := c.s.getChunk()
	lim := min(x.budget, c.s.cfg.BufferSize)
	n, err := w.infl.r.Read((*buf)[:lim])
	for err == nil && n < lim && w.infl.src.fin && w.infl.src.left == 0 {
		// All input is in: reading on cannot block, and finds the end
		// of the message, so its last piece carries it.
		var k int
		k, err = w.infl.r.Read((*buf)[n:lim])
		n += k
	}
	end := err == io.EOF
	switch {
	case end:
	case errors.Is(err, errClientClosed):
		// A close in the middle of the message: it is abandoned.
		c.s.putChunk(buf)
		c.s.putInflater(w.infl)
		w.infl = nil
		return nil
	case err != nil:
		c.s.putChunk(buf)
		var ce flate.CorruptInputError
		if errors.As(err, &ce) {
			return &errFrame{closeInvalidData, "bad compressed message"}
		}
		return err // a bad frame (errFrame) or the connection failed
	}
	b := (*buf)[:n]
	if w.msgOp == ws.OpText && !w.validText(b, end) {
		c.s.putChunk(buf)
		return &errFrame{closeInvalidData, "invalid UTF-8 in text message"}
	}
	ctype := "text"
	if w.msgOp == ws.OpBinary {
		ctype = "binary"
	}
	if end {
		c.s.putInflater(w.infl)
		w.infl, w.msgOp = nil, 0
	}
	if n == 0 && !end {
		c.s.putChunk(buf)
		return nil
	}
	x.budget -= n
	if !c.send(connMsg{kind: msgBody, c: c, req: c.nreq, id: x.id, chunk: buf, n: n, more: !end, ctype: ctype}) {
		c.s.putChunk(buf)
		return net.ErrClosed
	}
	return nil
}

// validText checks the next piece of a text message, carrying an
// incomplete rune at its end to the next piece.
func (w *wsState) validText(b []byte, end bool) bool {
	if len(w.utf8Tail) > 0 {
		// Complete the carried rune with the first bytes of b.
		k := min(utf8.UTFMax-len(w.utf8Tail), len(b))
		joined := append(append(make([]byte, 0, utf8.UTFMax), w.utf8Tail...), b[:k]...)
		if !utf8.FullRune(joined) {
			w.utf8Tail = joined
			return !end && validPrefix(joined)
		}
		r, size := utf8.DecodeRune(joined)
		if r == utf8.RuneError && size <= 1 {
			return false
		}
		b = b[size-len(w.utf8Tail):]
		w.utf8Tail = nil
	}
	// An incomplete rune may end b: find the start of the last rune.
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if !utf8.RuneStart(b[i]) {
			continue
		}
		if !utf8.FullRune(b[i:]) {
			cut = i
		}
		break
	}
	if !utf8.Valid(b[:cut]) {
		return false
	}
	if cut < len(b) {
		if end || !validPrefix(b[cut:]) {
			return false
		}
		w.utf8Tail = append(w.utf8Tail[:0], b[cut:]...)
	}
	return true
}

// validPrefix reports whether b could begin a valid UTF-8 sequence.
func validPrefix(b []byte) bool {
	var full [utf8.UTFMax]byte
	n := copy(full[:], b)
	// Pad with the smallest continuation byte the lead allows.
	for i := n; i < utf8.UTFMax; i++ {
		full[i] = 0x80
	}
	switch {
	case b[0] == 0xe0 && n == 1:
		full[1] = 0xa0
	case b[0] == 0xf0 && n == 1:
		full[1] = 0x90
	}
	r, size := utf8.DecodeRune(full[:])
	return !(r == utf8.RuneError && size <= 1) && size > n
}

// wsControl forwards the whole control frame fh (its payload is
// buffered).
func (c *conn) wsControl(x *exchange, fh frameHead) error {
	w := x.ws
	var payload [maxControl]byte
	b := payload[:fh.length]
	c.br.Read(b)
	ws.Cipher(b, fh.mask, 0)
	p := zhttp.New()
	switch fh.op {
	case ws.OpPing:
		p.Type = zhttp.TypePing
	case ws.OpPong:
		p.Type = zhttp.TypePong
	case ws.OpClose:
		p.Type = zhttp.TypeClose
		if len(b) == 1 {
			return &errFrame{closeProtocol, "close frame with a 1-byte payload"}
		}
		if len(b) >= 2 {
			code, reason := ws.ParseCloseFrameData(b)
			if !utf8.ValidString(reason) {
				return &errFrame{closeInvalidData, "invalid UTF-8 in close reason"}
			}
			if err := ws.CheckCloseFrameData(code, reason); err != nil {
				return &errFrame{closeProtocol, "bad close code"}
			}
			p.Code = int64(code)
			b = b[2:]
		}
		w.closeRecv = true
	}
	if len(b) > 0 {
		p.Body = append([]byte(nil), b...)
	}
	if !c.send(connMsg{kind: msgCtrl, c: c, req: c.nreq, id: x.id, pkt: p}) {
		return net.ErrClosed
	}
	if w.closeRecv && w.closeSent {
		x.live = false // the close handshake is complete
	}
	return nil
}
