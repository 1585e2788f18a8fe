package zhttpclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"tack/internal/logging"
	"tack/pkg/zhttp"
)

// WebSocket session limits.
const (
	// CloseWait bounds each wait of the closing handshake: for the other
	// side's close frame or packet, and for the writer to flush ours.
	CloseWait = 10 * time.Second
	// WSWriteBuffer is the backend connection's write buffer.
	WSWriteBuffer = 8 << 10
)

// wsMsg is a WebSocket message part or control frame for the client.
type wsMsg struct {
	typ    string // zhttp.TypeData, TypePing, TypePong or TypeClose
	binary bool
	code   int64 // close code, -1 none
}

// wsProtoError is a backend protocol violation: the session ends with code
// towards the client and the backend.
type wsProtoError struct {
	code int
	msg  string
}

func (e *wsProtoError) Error() string {
	return fmt.Sprintf("websocket protocol error %d: %s", e.code, e.msg)
}

// errBackendClosed: the backend sent its close frame.
var errBackendClosed = errors.New("backend sent close")

// wsOpen opens a WebSocket session (zmq-wire.md §2.12): it dials the
// backend and performs the opening handshake, and on a 101 attaches the
// writer and sends the accept to the client. It returns the connection,
// or nil and the final event.
func (w *worker) wsOpen() (*wsConn, event) {
	ctx := w.ctx
	c, rej, err := w.wsDial()
	if err != nil {
		if errors.Is(err, ErrRejectionTooLarge) {
			return nil, event{kind: evError, cond: "rejection-too-large"}
		}
		return nil, w.fail(err)
	}
	if rej != nil {
		if le := w.log.Debug(); le.Enabled() {
			le.Str(logging.FieldRID, string(w.rid)).Int64("code", rej.head.code).Msg("websocket rejected by backend")
		}
		return nil, event{kind: evError, cond: zhttp.CondRejected, head: rej.head, body: rej.body}
	}
	// The request and its URL are not needed any more (the request's
	// frame would stay in memory for the session's life); its id is kept
	// for the logs.
	w.req, w.u, w.rid = nil, nil, bytes.Clone(w.rid)
	head := c.head
	c.head = nil
	if w.svc.parker != nil && c.in.raw != nil {
		k := &wsPark{p: w.svc.parker, fd: -1}
		if err := c.in.raw.Control(func(fd uintptr) { k.fd = int(fd) }); err == nil && k.fd >= 0 {
			c.in.park = k
		}
	}
	// stop closes the connection from now on; a cancel that came first is
	// seen here (a context.AfterFunc would cost a few hundred bytes per
	// session).
	w.wsc.Store(c)
	if ctx.Err() != nil {
		c.close()
	}
	w.wsq.attach(func(items []wsItem) (int64, bool, error) { return w.wsWrite(c, items) })
	if !w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypeData, code: -1}, head: head, credits: int64(w.svc.cfg.BufferSize)}) {
		w.wsEnd(c)
		return nil, w.fail(context.Cause(ctx))
	}
	return c, event{}
}

// close closes the backend connection (any goroutine, idempotent).
func (c *wsConn) close() {
	if c.in.park != nil {
		c.in.park.close(func() { c.conn.Close() })
		return
	}
	c.conn.Close()
}

// wsEnd closes the backend connection and releases what the session holds.
func (w *worker) wsEnd(c *wsConn) {
	w.wsc.Store(nil)
	c.close()
	w.wsq.detach()
	c.in.release()
}

// wsServe relays an open WebSocket session: it reads backend frames (a
// writer goroutine started by the queue writes the client's) until it
// parks the idle connection and returns, to be started again by the
// parker, or the session ends and it sends the final event.
func (w *worker) wsServe(runCtx context.Context, c *wsConn, stopTimers func()) {
	rerr := w.wsReadLoop(c.in)
	if errors.Is(rerr, errParked) {
		return
	}
	w.end(runCtx, w.wsFinish(c, rerr), stopTimers)
}

// wsFinish ends a session whose reading ended with rerr and returns the
// final event.
func (w *worker) wsFinish(c *wsConn, rerr error) event {
	ctx := w.ctx
	defer w.wsEnd(c)
	waitWriter := func() {
		select {
		case <-w.wsq.writerDone():
		case <-time.After(CloseWait):
		case <-ctx.Done():
		}
	}
	waitClient := func() {
		select {
		case <-w.wsq.clientGone():
		case <-time.After(CloseWait):
		case <-ctx.Done():
		}
	}

	var pe *wsProtoError
	switch {
	case errors.Is(rerr, errBackendClosed):
		// The backend's close went to the client; its close (queued for
		// the writer) completes the handshake.
		waitClient()
		waitWriter()
		return event{kind: evError}
	case errors.As(rerr, &pe):
		w.log.Warn().Str(logging.FieldRID, string(w.rid)).Int("close_code", pe.code).Str("reason", pe.msg).
			Msg("backend broke the websocket protocol, closing")
		if !w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypeClose, code: int64(pe.code)}, body: []byte(pe.msg)}) {
			return w.fail(context.Cause(ctx))
		}
		body := ws.NewCloseFrameBody(ws.StatusCode(pe.code), "")
		w.wsq.push(wsItem{op: ws.OpClose, fin: true, payload: body})
		waitWriter()
		c.close()
		waitClient()
		return event{kind: evError}
	case ctx.Err() != nil:
		return w.fail(context.Cause(ctx))
	}
	// The backend connection ended without a close frame.
	select {
	case <-w.wsq.clientGone():
		// The client had closed: finish its handshake without a code.
		if le := w.log.Debug(); le.Enabled() {
			le.Err(rerr).Str(logging.FieldRID, string(w.rid)).Msg("backend left after our close")
		}
		w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypeClose, code: -1}})
		return event{kind: evError}
	default:
	}
	if le := w.log.Debug(); le.Enabled() {
		le.Err(rerr).Str(logging.FieldRID, string(w.rid)).Msg("backend websocket connection lost")
	}
	return event{kind: evError, cond: zhttp.CondUndefined} // as zurl
}

// wsReadLoop reads backend frames and emits them to the client until the
// backend's close frame (errBackendClosed), a protocol error
// (*wsProtoError), a read error or cancellation.
func (w *worker) wsReadLoop(in *wsIn) error {
	ctx := w.ctx
	bufSize := int64(w.svc.cfg.BufferSize)
	rs := &w.wsRead
	var ctl [ws.MaxControlFramePayloadSize]byte
	for {
		br, err := in.reader()
		if err != nil {
			return err // errParked: the state is in rs for the next reader
		}
		h, err := ws.ReadHeader(br)
		if err != nil {
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return &wsProtoError{code: int(ws.StatusProtocolError), msg: err.Error()}
			}
			return err
		}
		w.touch()
		state := ws.StateClientSide
		if rs.fragmented {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return &wsProtoError{code: int(ws.StatusProtocolError), msg: err.Error()}
		}
		if h.OpCode.IsControl() {
			p := ctl[:h.Length]
			if _, err := io.ReadFull(br, p); err != nil {
				return err
			}
			if err := w.wsControl(h.OpCode, p); err != nil {
				return err
			}
			continue
		}
		if h.OpCode != ws.OpContinuation {
			rs.binary = h.OpCode == ws.OpBinary
			rs.u8 = utf8Check{}
		}
		rs.fragmented = !h.Fin
		remaining := h.Length
		if remaining == 0 && h.Fin {
			if !rs.binary && rs.u8.n > 0 {
				return &wsProtoError{code: int(ws.StatusInvalidFramePayloadData), msg: "invalid utf-8 in text message"}
			}
			if !w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypeData, binary: rs.binary, code: -1}, body: []byte{}}) {
				return context.Cause(ctx)
			}
		}
		for remaining > 0 {
			n, err := w.win.take(ctx, min(remaining, bufSize))
			if err != nil {
				return err
			}
			buf := w.svc.pool.get(int(n))
			if _, err := io.ReadFull(br, *buf); err != nil {
				w.svc.pool.put(buf)
				return err
			}
			w.touch()
			remaining -= n
			more := remaining > 0 || !h.Fin
			if !rs.binary && (!rs.u8.feed(*buf) || (!more && rs.u8.n > 0)) {
				w.svc.pool.put(buf)
				return &wsProtoError{code: int(ws.StatusInvalidFramePayloadData), msg: "invalid utf-8 in text message"}
			}
			if !w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypeData, binary: rs.binary, code: -1}, body: *buf, buf: buf, more: more}) {
				return context.Cause(ctx)
			}
		}
	}
}

// wsReadState is the reading state between frames, kept across the
// reader goroutines of a parked session.
type wsReadState struct {
	fragmented bool // inside a fragmented message
	binary     bool // the current message is binary
	u8         utf8Check
}

// wsControl relays a backend control frame to the client.
func (w *worker) wsControl(op ws.OpCode, p []byte) error {
	body := append([]byte{}, p...)
	switch op {
	case ws.OpPing:
		w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypePing, code: -1}, body: body})
	case ws.OpPong:
		w.emit(event{kind: evWS, ws: wsMsg{typ: zhttp.TypePong, code: -1}, body: body})
	case ws.OpClose:
		m := wsMsg{typ: zhttp.TypeClose, code: -1}
		var reason []byte
		switch {
		case len(p) == 1:
			return &wsProtoError{code: int(ws.StatusProtocolError), msg: "close frame with a 1-byte payload"}
		case len(p) >= 2:
			code := ws.StatusCode(binary.BigEndian.Uint16(p))
			reason = body[2:]
			if err := ws.CheckCloseFrameData(code, string(reason)); err != nil {
				status := ws.StatusProtocolError
				if errors.Is(err, ws.ErrProtocolInvalidUTF8) {
					status = ws.StatusInvalidFramePayloadData
				}
				return &wsProtoError{code: int(status), msg: err.Error()}
			}
			m.code = int64(code)
		}
		w.emit(event{kind: evWS, ws: m, body: reason})
		return errBackendClosed
	}
	return nil
}

// wsWrite writes a batch of the client's frames, masked (the queue's
// writer goroutine). The write buffer is borrowed from the service's pool
// for the batch only. A failed write closes the connection: the reader
// sees the failure.
func (w *worker) wsWrite(c *wsConn, items []wsItem) (int64, bool, error) {
	bw := w.svc.getWSWriter(c.conn)
	credit, closed, err := writeWSFrames(bw, items)
	if err == nil {
		err = bw.Flush()
	}
	w.svc.putWSWriter(bw)
	if err != nil {
		if le := w.log.Debug(); le.Enabled() && w.ctx.Err() == nil {
			le.Err(err).Str(logging.FieldRID, string(w.rid)).Msg("websocket write to backend failed")
		}
		c.close()
		return 0, false, err
	}
	w.touch()
	return credit, closed, nil
}

// writeWSFrames writes items as masked frames up to and including a close
// frame, returning the credit they earn and whether a close was written.
func writeWSFrames(bw *bufio.Writer, items []wsItem) (int64, bool, error) {
	var credit int64
	for _, it := range items {
		mask := ws.NewMask()
		hdr := ws.Header{Fin: it.fin, OpCode: it.op, Masked: true, Mask: mask, Length: int64(len(it.payload))}
		if err := ws.WriteHeader(bw, hdr); err != nil {
			return credit, false, err
		}
		ws.Cipher(it.payload, mask, 0) // the decoded packet's buffer is ours
		if _, err := bw.Write(it.payload); err != nil {
			return credit, false, err
		}
		credit += it.credit
		if it.op == ws.OpClose {
			return credit, true, nil
		}
	}
	return credit, false, nil
}

// getWSWriter returns a pooled WSWriteBuffer-sized writer onto conn.
func (s *Service) getWSWriter(conn io.Writer) *bufio.Writer {
	if bw, ok := s.wsWriters.Get().(*bufio.Writer); ok {
		bw.Reset(conn)
		return bw
	}
	return bufio.NewWriterSize(conn, WSWriteBuffer)
}

// putWSWriter returns bw to the pool, dropping any unflushed bytes.
func (s *Service) putWSWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	s.wsWriters.Put(bw)
}

// utf8Check validates UTF-8 across frame and read boundaries: n bytes of
// an incomplete sequence carry over to the next feed.
type utf8Check struct {
	buf [utf8.UTFMax]byte
	n   int
}

// feed reports false as soon as b makes the text invalid.
func (v *utf8Check) feed(b []byte) bool {
	for v.n > 0 && len(b) > 0 {
		v.buf[v.n] = b[0]
		v.n++
		b = b[1:]
		if utf8.FullRune(v.buf[:v.n]) {
			if r, size := utf8.DecodeRune(v.buf[:v.n]); r == utf8.RuneError && size == 1 {
				return false
			}
			v.n = 0
		}
	}
	if v.n > 0 {
		return true // b ran out inside the pending sequence
	}
	i := 0
	for i < len(b) {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		if !utf8.FullRune(b[i:]) {
			v.n = copy(v.buf[:], b[i:])
			return true
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		i += size
	}
	return true
}
