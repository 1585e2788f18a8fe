package handler

import (
	"slices"
	"testing"
	"time"

	"tack/internal/grip"
)

func TestRateLimiterBatches(t *testing.T) {
	for _, tc := range []struct {
		rate     int
		interval time.Duration
		batch    int
	}{
		{2500, 25 * time.Millisecond, 63}, // ceil(2500 × 25 / 1000)
		{40, 25 * time.Millisecond, 1},
		{10, 100 * time.Millisecond, 1},
		{1, time.Second, 1},
	} {
		l := newRateLimiter(tc.rate, 0)
		if l.interval != tc.interval || l.batch != tc.batch {
			t.Errorf("rate %d: interval %v batch %d, want %v %d", tc.rate, l.interval, l.batch, tc.interval, tc.batch)
		}
	}
	if newRateLimiter(0, 10) != nil || newRateLimiter(-1, 0) != nil {
		t.Error("rate ≤ 0 must mean no limiter")
	}
}

func TestRateLimiterRoundRobinAndHWM(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(80, 3) // batches of 2 every 25 ms, 3 queued per route
	live := &hsession{}
	var accepted []bool
	for _, k := range []string{"a", "a", "a", "a", "b"} {
		accepted = append(accepted, l.add(k, delivery{s: live, it: &grip.Item{Channel: k}, weight: 1}, now))
	}
	if want := []bool{true, true, true, false, true}; !slices.Equal(accepted, want) {
		t.Fatalf("accepted %v, want %v (hwm 3 per route)", accepted, want)
	}
	if at, ok := l.pending(); !ok || !at.Equal(now) {
		t.Fatalf("first batch due %v %v, want now", at, ok)
	}
	var order []string
	run := func() { l.runBatch(now, func(d delivery) { order = append(order, d.it.Channel) }) }
	run()
	// Round robin: one from each route, not two from a.
	if !slices.Equal(order, []string{"a", "b"}) {
		t.Fatalf("first batch %v, want [a b]", order)
	}
	if at, _ := l.pending(); !at.Equal(now.Add(25 * time.Millisecond)) {
		t.Fatalf("next batch at %v", at)
	}
	run()
	if _, ok := l.pending(); ok || !slices.Equal(order, []string{"a", "b", "a", "a"}) {
		t.Fatalf("deliveries %v, limiter should be idle", order)
	}
	// A session that ended while queued is skipped.
	gone := &hsession{state: stateDone}
	l.add("a", delivery{s: gone, it: &grip.Item{Channel: "gone"}, weight: 1}, now)
	run()
	if len(order) != 4 {
		t.Fatalf("delivered to an ended session: %v", order)
	}
}

func TestRateLimiterDebt(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(80, 100) // batch 2
	s := &hsession{}
	l.add("a", delivery{s: s, weight: 5}, now)
	l.add("a", delivery{s: s, weight: 1}, now)
	n := 0
	batches := 0
	for {
		if _, ok := l.pending(); !ok {
			break
		}
		l.runBatch(now, func(delivery) { n++ })
		batches++
		if batches > 10 {
			t.Fatal("limiter never drained")
		}
	}
	// 5 blocks in the first batch (3 over) cost the next batches until
	// the debt is paid: batch 1 delivers, batch 2 pays 2, batch 3 pays 1
	// and delivers the second.
	if n != 2 || batches != 3 {
		t.Fatalf("delivered %d in %d batches, want 2 in 3", n, batches)
	}
}

func TestBlocks(t *testing.T) {
	if blocks(100, 0) != 1 || blocks(0, 10) != 1 || blocks(10, 10) != 1 || blocks(11, 10) != 2 {
		t.Fatal("blocks")
	}
}

func TestEngineMessageRateAndHWM(t *testing.T) {
	h := startHarness(t, func(c *Config) {
		c.UpdateOnFirstSubscription = false
		c.MessageRate = 80 // batches of 2 every 25 ms
		c.MessageHWM = 3
	})
	for i := range 5 {
		rid := "m-" + string(rune('a'+i))
		h.sendAccept(acceptArgs(rid, 2, 200000, streamResponse()))
		h.expectAccepted()
		expectKeepAliveTakeover(t, h, rid, 2)
		h.expectPacket()
	}
	h.publish(pubStream("test", "x\n"))
	// First batch at once: 2 of the 3 the hwm let in.
	got := 0
	for h.recvPacket(100*time.Millisecond) != nil {
		got++
	}
	if got != 2 {
		t.Fatalf("first batch delivered %d, want 2", got)
	}
	h.advance(25 * time.Millisecond)
	if p := h.expectPacket(); string(p.Body) != "x\n" {
		t.Fatalf("second batch %+v", p)
	}
	h.expectNoPacket()
	h.advance(25 * time.Millisecond)
	h.expectNoPacket() // the other 2 deliveries were over the hwm
}
