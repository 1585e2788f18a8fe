package testutil

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
)

// HeapStack returns the heap and goroutine stack bytes in use after a GC:
// memory benchmarks report the growth between two calls.
func HeapStack() (heap, stack int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.StackInuse)
}

// HeapProfileEnv names the file a memory benchmark writes its heap
// profile to (unset: none).
const HeapProfileEnv = "TACK_HEAPPROFILE"

// SampleAllocations makes the heap profile record every allocation when
// HeapProfileEnv is set; call it before the measured allocations.
func SampleAllocations() {
	if os.Getenv(HeapProfileEnv) != "" {
		runtime.MemProfileRate = 1
	}
}

// WriteHeapProfile writes the heap profile to $TACK_HEAPPROFILE when set.
func WriteHeapProfile(tb testing.TB) {
	path := os.Getenv(HeapProfileEnv)
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}
