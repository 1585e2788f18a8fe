package zhttpsession

import (
	"testing"
	"time"
)

// TestProbesSeries: a disconnect schedules one probe per ProbeAfter
// delay, each reported once, and a new disconnect restarts the series.
func TestProbesSeries(t *testing.T) {
	var p Probes
	t0 := time.Unix(1000, 0)
	if p.Due(t0) {
		t.Fatal("due before any disconnect")
	}
	p.Disconnected(t0)
	if p.Due(t0) {
		t.Fatal("due at once after the disconnect")
	}
	for i, d := range ProbeAfter {
		if !p.Due(t0.Add(d)) {
			t.Fatalf("probe %d not due", i)
		}
		if p.Due(t0.Add(d)) {
			t.Fatalf("probe %d reported twice", i)
		}
	}
	if p.Due(t0.Add(time.Hour)) {
		t.Fatal("a probe after the series")
	}
	t1 := t0.Add(2 * time.Hour)
	p.Disconnected(t1)
	if !p.Due(t1.Add(ProbeAfter[0])) || p.Due(t1.Add(ProbeAfter[0])) {
		t.Fatal("a new disconnect did not restart the series")
	}
}
