package connmgr

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"

	"github.com/gobwas/ws"

	"tack/pkg/zhttp"
)

// permessage-deflate (RFC 7692) with clients, when --compression is set
// (condure's flag; Pushpin 1.37+'s allow_compression). We accept an offer
// only without context takeover in either direction, which we state in
// our answer (§7.1.1.1, §7.1.1.2 let the server do so): every message is
// compressed on its own, so an idle connection keeps no compressor state
// and a compressor or decompressor is borrowed only while a message is
// in progress. The zhttp server never sees the extension: messages travel
// over zhttp uncompressed, and credits count uncompressed bytes.

// deflateAnswer is our Sec-WebSocket-Extensions answer.
const deflateAnswer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateTail ends every compressed message (RFC 7692 §7.2.1).
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// inflateEnd is what the decompressor reads after a message's bytes: the
// tail the sender removed, then an empty final block, so that it ends
// with io.EOF.
var inflateEnd = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// takeDeflateOffer reports whether hs offer permessage-deflate with
// parameters we can honour, and returns hs without any permessage-deflate
// offer (the rest of Sec-WebSocket-Extensions, such as grip, stays).
func takeDeflateOffer(hs []zhttp.Header) ([]zhttp.Header, bool) {
	ok := false
	out := hs[:0:0]
	for _, h := range hs {
		if !strings.EqualFold(h.Name, "Sec-WebSocket-Extensions") {
			out = append(out, h)
			continue
		}
		var keep []string
		for _, ext := range strings.Split(h.Value, ",") {
			params := strings.Split(ext, ";")
			if !strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") {
				keep = append(keep, strings.TrimSpace(ext))
				continue
			}
			ok = ok || acceptableDeflate(params[1:])
		}
		if len(keep) > 0 {
			out = append(out, zhttp.Header{Name: h.Name, Value: strings.Join(keep, ", ")})
		}
	}
	if !ok {
		return hs, false
	}
	return out, true
}

// acceptableDeflate reports whether an offer's parameters allow our
// answer: Go's compressor always uses a 32 KiB window, so a smaller
// server_max_window_bits cannot be honoured.
func acceptableDeflate(params []string) bool {
	for _, p := range params {
		name, value, _ := strings.Cut(strings.TrimSpace(p), "=")
		value = strings.Trim(strings.TrimSpace(value), `"`)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "server_no_context_takeover", "client_no_context_takeover", "client_max_window_bits":
		case "server_max_window_bits":
			if value != "15" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// deflater compresses one server message in pieces.
type deflater struct {
	w   *flate.Writer
	out bytes.Buffer
}

func (s *Service) getDeflater() *deflater {
	if d, ok := s.deflaters.Get().(*deflater); ok {
		return d
	}
	d := &deflater{}
	d.w, _ = flate.NewWriter(&d.out, flate.BestSpeed)
	return d
}

func (s *Service) putDeflater(d *deflater) {
	d.out.Reset()
	d.w.Reset(&d.out)
	s.deflaters.Put(d)
}

// compress returns the compressed form of the next piece of a message
// (a new slice); last ends the message without its deflateTail.
func (d *deflater) compress(p []byte, last bool) []byte {
	d.out.Reset()
	d.w.Write(p)
	d.w.Flush()
	b := d.out.Bytes()
	if last {
		b = bytes.TrimSuffix(b, deflateTail)
	}
	return append([]byte(nil), b...)
}

// inflater decompresses one client message, pulling its frames from the
// connection (blocking while the client is in the middle of sending it).
type inflater struct {
	r   io.ReadCloser
	src msgSource
}

// msgSource yields the compressed payload of one message: the rest of
// the current frame, then its continuation frames (control frames in
// between are handled as they come), then deflateTail.
type msgSource struct {
	c    *conn
	x    *exchange
	left int64
	mask [4]byte
	pos  int
	fin  bool
	tail int // bytes of deflateTail given out
}

func (m *msgSource) Read(p []byte) (int, error) {
	c, w := m.c, m.x.ws
	for {
		if m.left > 0 {
			if c.br.Buffered() == 0 {
				if _, err := c.br.Peek(1); err != nil {
					return 0, err
				}
			}
			n := int(min(int64(len(p)), int64(c.br.Buffered()), m.left))
			c.br.Read(p[:n])
			ws.Cipher(p[:n], m.mask, m.pos)
			m.pos += n
			m.left -= int64(n)
			return n, nil
		}
		if m.fin {
			if m.tail == len(inflateEnd) {
				return 0, io.EOF
			}
			n := copy(p, inflateEnd[m.tail:])
			m.tail += n
			return n, nil
		}
		if w.closeRecv {
			return 0, errClientClosed
		}
		// The next frame: a control frame or the message's continuation.
		var fh frameHead
		for {
			b, _ := c.br.Peek(c.br.Buffered())
			var err error
			if fh, err = parseFrameHead(b, w.deflate); err != nil {
				return 0, err
			}
			if fh.n > 0 {
				break
			}
			if _, err := c.br.Peek(len(b) + 1); err != nil {
				return 0, err
			}
		}
		if err := w.checkOrder(fh.op, fh.fin); err != nil {
			return 0, err
		}
		c.br.Discard(fh.n)
		if fh.op.IsControl() {
			if _, err := c.br.Peek(int(fh.length)); err != nil {
				return 0, err
			}
			if err := c.wsControl(m.x, fh); err != nil {
				return 0, err
			}
			continue
		}
		m.left, m.mask, m.pos, m.fin = fh.length, fh.mask, 0, fh.fin
	}
}

// errClientClosed stops a message the client abandoned with a close.
var errClientClosed = io.ErrUnexpectedEOF

func (s *Service) getInflater(c *conn, x *exchange, left int64, mask [4]byte, fin bool) *inflater {
	in, _ := s.inflaters.Get().(*inflater)
	if in == nil {
		in = &inflater{}
	}
	in.src = msgSource{c: c, x: x, left: left, mask: mask, fin: fin}
	if in.r == nil {
		in.r = flate.NewReader(&in.src)
	} else {
		in.r.(flate.Resetter).Reset(&in.src, nil)
	}
	return in
}

func (s *Service) putInflater(in *inflater) {
	in.src = msgSource{}
	s.inflaters.Put(in)
}
