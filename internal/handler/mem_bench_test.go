package handler

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// BenchmarkHandlerHeldStreamMemory reports the heap one held stream costs
// the handler, measured after a GC with 2000 stream holds taken over.
// TACK_HEAPPROFILE=<file> also writes a heap profile. Run with
// -benchtime=1x.
func BenchmarkHandlerHeldStreamMemory(b *testing.B) {
	const n = 2000
	if os.Getenv("TACK_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	h := startHarness(b, func(c *Config) { c.UpdateOnFirstSubscription = false })
	measure := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	for range b.N {
		h0 := measure()
		base := len(h.svc.eng.sessions) // earlier iterations' sessions stay held
		for i := range n {
			rid := fmt.Sprintf("m-%d-%d", base, i)
			h.sendAccept(acceptArgs(rid, 2, 200000, streamResponse()))
			h.acceptReply()
		}
		h.waitEngine("all held", func(e *engine) bool { return len(e.sessions) >= base+n })
		time.Sleep(100 * time.Millisecond)
		h1 := measure()
		b.ReportMetric(float64(h1-h0)/n, "heap-B/stream")
		if path := os.Getenv("TACK_HEAPPROFILE"); path != "" {
			f, _ := os.Create(path)
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
}
