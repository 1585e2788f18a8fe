package proxy

import (
	"fmt"
	"testing"
	"time"

	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

// TestWSSendBatched: one ws-control packet sending the same message to
// three GRIP WebSockets on one connmgr (which announced ext.multi) reaches
// connmgr as one packet with a list-form id, each entry at its session's
// next seq; a different message, and the next one to the same connection,
// start packets of their own, and every connection's packets keep their
// order.
func TestWSSendBatched(t *testing.T) {
	h := startProxy(t, harnessOpts{routes: []string{"* 127.0.0.1:9999"}, mod: withWSControl})
	wh := connectWSHandler(h)
	var conns []*wsConn
	var cids [][]byte
	for range 3 {
		c, here := openGripWS(h, wh, "ws://example.com/room", "grip")
		conns = append(conns, c)
		cids = append(cids, here.CID)
	}
	send := func(i int, msg string) wscontrol.Item {
		it := wscontrol.NewItem(cids[i], wscontrol.TypeSend)
		it.ContentType, it.Message = "text", []byte(msg)
		return it
	}
	wh.send(send(0, "hello"), send(1, "hello"), send(2, "hello"), send(1, "other"), send(1, "hello"), send(2, "hello"))

	// What connmgr receives, as (packet, ids) in order.
	type got struct {
		body string
		ids  []zhttp.IDSeq
	}
	var pkts []got
	deliveries := 0
	deadline := time.After(waitFor)
	for deliveries < 6 {
		select {
		case m := <-h.cm.sub.Recv():
			p := h.cm.parse(m)
			if p.Type != zhttp.TypeData {
				continue
			}
			ids := p.IDs
			if ids == nil {
				ids = []zhttp.IDSeq{{ID: p.ID, Seq: p.Seq}}
			} else if !p.Multi || string(p.From) != h.id {
				t.Fatalf("list-form packet without ext.multi or from: %s", describe(p))
			}
			pkts = append(pkts, got{string(p.Body), ids})
			deliveries += len(ids)
		case <-deadline:
			t.Fatalf("%d of 6 deliveries reached connmgr: %+v", deliveries, pkts)
		}
	}
	name := map[string]int{}
	for i, c := range conns {
		name[string(c.id)] = i
	}
	var shape []string
	for _, p := range pkts {
		s := p.body + ":"
		for _, e := range p.ids {
			s += fmt.Sprint(name[string(e.ID)])
		}
		shape = append(shape, s)
	}
	// Connection 1 got "other" between two hellos; 2's second hello
	// joins the packet of 1's second one.
	want := []string{"hello:012", "other:1", "hello:12"}
	if fmt.Sprint(shape) != fmt.Sprint(want) {
		t.Fatalf("packets %v, want %v", shape, want)
	}
	// Each connection's seqs run on without a gap.
	last := map[int]int64{}
	for _, p := range pkts {
		for _, e := range p.ids {
			i := name[string(e.ID)]
			if prev, ok := last[i]; ok && e.Seq != prev+1 {
				t.Fatalf("connection %d: seq %d after %d", i, e.Seq, prev)
			}
			last[i] = e.Seq
		}
	}
}
