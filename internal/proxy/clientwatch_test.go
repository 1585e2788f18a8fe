package proxy

import (
	"testing"
	"time"
)

// TestClientWatchProbeSeries: a disconnect schedules one probe per
// probeAfter delay, each reported once, and a new disconnect restarts
// the series.
func TestClientWatchProbeSeries(t *testing.T) {
	w := newClientWatch()
	if w.due() {
		t.Fatal("due before any disconnect")
	}
	w.disconnected()
	if w.due() {
		t.Fatal("due at once after the disconnect")
	}
	// Move the disconnect into the past instead of sleeping.
	back := func(d time.Duration) {
		w.since = w.since.Add(-d)
		if !w.probeAt.IsZero() {
			w.probeAt = w.probeAt.Add(-d)
		}
	}
	for i := range probeAfter {
		if i > 0 {
			back(probeAfter[i] - probeAfter[i-1])
		} else {
			back(probeAfter[0])
		}
		if !w.due() {
			t.Fatalf("probe %d not due", i)
		}
		if w.due() {
			t.Fatalf("probe %d reported twice", i)
		}
	}
	back(time.Hour)
	if w.due() {
		t.Fatal("a probe after the series")
	}
	w.disconnected()
	back(probeAfter[0])
	if !w.due() || w.probes != 1 {
		t.Fatal("a new disconnect did not restart the series")
	}
}
