package handler

import (
	"testing"

	"tack/pkg/zhttp"
)

// TestEngineStopEndsHeldSessions: a graceful stop answers a long-poll with
// its timeout response and ends a stream with its final packet, so that
// connmgr ends both clients well-formed (README "Restarts and signals").
func TestEngineStopEndsHeldSessions(t *testing.T) {
	h := startHarness(t, func(c *Config) { c.UpdateOnFirstSubscription = false })
	h.sendAccept(acceptArgs("s-1", 2, 200000, streamResponse()))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "s-1", 2)
	if p := h.expectPacket(); p.Code != 200 || !p.More {
		t.Fatalf("stream head %+v", p)
	}
	resp := response(200, "OK", []string{"Content-Type", "text/plain", "Grip-Hold", "response", "Grip-Channel", "lp",
		"Grip-Timeout", "50"}, "timed out\n")
	h.sendAccept(acceptArgs("l-1", 2, 8192, resp))
	h.expectAccepted()
	expectKeepAliveTakeover(t, h, "l-1", 2)
	h.waitHeld("condure:s-1")
	h.waitHeld("condure:l-1")

	h.stopRun()
	got := map[string]*zhttp.Packet{}
	for range 2 {
		p := h.expectPacket()
		got[string(p.ID)] = p
	}
	if p := got["s-1"]; p == nil || p.Type != "" || p.More || len(p.Body) != 0 || p.Seq != 4 {
		t.Errorf("stream end %+v, want an empty data packet without more at seq 4", p)
	}
	if p := got["l-1"]; p == nil || p.Code != 200 || string(p.Body) != "timed out\n" || p.More || p.Seq != 3 {
		t.Errorf("long-poll answer %+v, want the timeout response at seq 3", p)
	}
	h.expectNoPacket()
}

// TestEngineCancelsUnknownSessions: a packet for a session the handler
// does not hold is answered with a cancel (as Pushpin's C++ zhttp server
// does), except a cancel or an error; ids of a list-form packet are
// answered one by one.
func TestEngineCancelsUnknownSessions(t *testing.T) {
	h := startHarness(t, nil)
	h.sendStream(zhttpIn("ghost-1", 5, zhttp.TypeCredit))
	p := h.expectPacket()
	if p.Type != zhttp.TypeCancel || string(p.ID) != "ghost-1" {
		t.Fatalf("answer %+v, want a cancel for ghost-1", p)
	}
	h.sendStream(zhttpIn("ghost-2", 5, zhttp.TypeCancel))
	h.sendStream(zhttpIn("ghost-3", 5, zhttp.TypeError))
	h.expectNoPacket()

	ka := zhttpIn("", 0, zhttp.TypeKeepAlive)
	ka.ID, ka.Seq = nil, -1
	ka.IDs = []zhttp.IDSeq{{ID: []byte("ghost-4"), Seq: 1}, {ID: []byte("ghost-5"), Seq: 1}}
	h.sendStream(ka)
	for _, want := range []string{"ghost-4", "ghost-5"} {
		if p := h.expectPacket(); p.Type != zhttp.TypeCancel || string(p.ID) != want {
			t.Fatalf("answer %+v, want a cancel for %s", p, want)
		}
	}
}
