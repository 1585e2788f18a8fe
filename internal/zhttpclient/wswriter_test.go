package zhttpclient

import (
	"bytes"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// writeWSFrames masks each item, stops after a close frame, and returns
// the credit of what it wrote.
func TestWriteWSFrames(t *testing.T) {
	var out bytes.Buffer
	s := &Service{}
	bw := s.getWSWriter(&out)
	items := []wsItem{
		{op: ws.OpText, fin: true, payload: []byte("hello"), credit: 5},
		{op: ws.OpClose, fin: true, payload: ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"), credit: 5},
		{op: ws.OpText, fin: true, payload: []byte("after close"), credit: 11},
	}
	credit, closed, err := writeWSFrames(bw, items)
	if err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	s.putWSWriter(bw)
	if credit != 10 || !closed {
		t.Fatalf("credit %d closed %v, want 10 true", credit, closed)
	}
	want := []struct {
		op      ws.OpCode
		payload string
	}{{ws.OpText, "hello"}, {ws.OpClose, string(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))}}
	for i, w := range want {
		h, err := ws.ReadHeader(&out)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !h.Masked || h.OpCode != w.op || !h.Fin {
			t.Fatalf("frame %d header %+v", i, h)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(&out, p); err != nil {
			t.Fatal(err)
		}
		ws.Cipher(p, h.Mask, 0)
		if string(p) != w.payload {
			t.Fatalf("frame %d payload %q, want %q", i, p, w.payload)
		}
	}
	if out.Len() != 0 {
		t.Fatalf("%d bytes after the close frame", out.Len())
	}
}

// A writer returned to the pool carries nothing to the next websocket.
func TestWSWriterPoolDropsUnflushed(t *testing.T) {
	s := &Service{}
	var a, b bytes.Buffer
	for range 20 {
		bw := s.getWSWriter(&a)
		bw.WriteString("left over")
		s.putWSWriter(bw)
		bw = s.getWSWriter(&b)
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		s.putWSWriter(bw)
	}
	if a.Len() != 0 || b.Len() != 0 {
		t.Fatalf("wrote %q and %q", a.String(), b.String())
	}
}
