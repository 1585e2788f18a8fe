package proxy

import (
	"strconv"
	"testing"
)

// BenchmarkProxyStatsRequest is the stats work of one plain request: its
// conn packet, activity, request count and conn unavailable.
func BenchmarkProxyStatsRequest(b *testing.B) {
	st, out, now := newTestStats(&testing.T{}, DefaultStatsReportInterval)
	done := make(chan struct{})
	go func() {
		for range out {
		}
		close(done)
	}()
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "condure:0-0-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%len(ids)]
		st.addConn(id, "", "127.0.0.1", false, *now)
		st.activity("")
		st.requestReceived()
		st.count("", ctrClientHeaderRecv, 59)
		st.removeConn(id, false, *now)
	}
	b.StopTimer()
	close(out)
	<-done
}
