package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// statsOut collects what proxyStats writes.
type statsOut chan zsock.Message

func (o statsOut) next(t *testing.T) (string, tnetstring.Dict) {
	t.Helper()
	select {
	case m := <-o:
		typ, rest, ok := strings.Cut(string(m[0]), " T")
		if !ok {
			t.Fatalf("packet %q is not \"<type> T<tnetstring>\"", m[0])
		}
		d, err := tnetstring.DecodeDict([]byte(rest))
		if err != nil {
			t.Fatalf("packet %q: %v", m[0], err)
		}
		return typ, d
	default:
		t.Fatal("no stats packet")
	}
	return "", nil
}

func (o statsOut) none(t *testing.T) {
	t.Helper()
	select {
	case m := <-o:
		t.Fatalf("unexpected stats packet %q", m[0])
	default:
	}
}

// expect checks the next packet's type and exact fields (order as encoded).
func (o statsOut) expect(t *testing.T, typ, want string) tnetstring.Dict {
	t.Helper()
	gotTyp, d := o.next(t)
	if gotTyp != typ || fields(d) != want {
		t.Fatalf("got %s %s\nwant %s %s", gotTyp, fields(d), typ, want)
	}
	return d
}

// reports reads n report packets (routes come in map order) by route.
func (o statsOut) reports(t *testing.T, n int) map[string]tnetstring.Dict {
	t.Helper()
	out := map[string]tnetstring.Dict{}
	for range n {
		typ, d := o.next(t)
		if typ != "report" {
			t.Fatalf("got %s, want report", typ)
		}
		r, _ := d.Bytes("route")
		out[string(r)] = d
	}
	return out
}

// fields is d's tnetstring without the length prefix and closing '}'.
func fields(d tnetstring.Dict) string {
	b := string(tnetstring.MustEncode(d))
	return b[strings.IndexByte(b, ':')+1 : len(b)-1]
}

func newTestStats(_ testing.TB, interval time.Duration) (*proxyStats, statsOut, *time.Time) {
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	cfg := Config{InstanceID: "proxy_1", StatsReportInterval: interval, StatsConnectionTTL: 120 * time.Second,
		Now: func() time.Time { return now }}
	st := newProxyStats(&cfg, zerolog.Nop(), now)
	out := make(statsOut, 100)
	st.out = out
	return st, out, &now
}

// TestProxyStatsPackets checks each packet field by field against what
// pushpin-proxy 1.36 publishes (captured: conn, conn unavailable, activity,
// counts, report; zmq-wire.md §4.6).
func TestProxyStatsPackets(t *testing.T) {
	st, out, now := newTestStats(t, 10*time.Second)
	st.addConn("condure:0-0-0", "", "127.0.0.1", false, *now)
	st.activity("")
	st.requestReceived()
	out.expect(t, "conn", "4:from,7:proxy_1,2:id,13:condure:0-0-0,4:type,4:http,12:peer-address,9:127.0.0.1,3:ttl,3:120#")
	st.count("", ctrClientHeaderRecv, 59)
	st.removeConn("condure:0-0-0", false, *now)
	out.expect(t, "conn", "4:from,7:proxy_1,2:id,13:condure:0-0-0,11:unavailable,4:true!")

	st.addConn("condure:0-0-1", "myroute", "10.0.0.1", true, *now)
	out.expect(t, "conn", "4:from,7:proxy_1,2:id,13:condure:0-0-1,4:type,4:http,12:peer-address,8:10.0.0.1,3:ssl,4:true!3:ttl,3:120#5:route,7:myroute,")
	st.activity("myroute")
	st.requestReceived()
	if !st.activityPending() {
		t.Fatal("activity not pending")
	}
	st.flushActivity()
	// Routes are flushed in map order: collect both activity packets.
	acts := map[string]bool{}
	for range 2 {
		typ, d := out.next(t)
		if typ != "activity" {
			t.Fatalf("got %s, want activity", typ)
		}
		acts[fields(d)] = true
	}
	if !acts["4:from,7:proxy_1,5:count,1:1#"] || !acts["4:from,7:proxy_1,5:count,1:1#5:route,7:myroute,"] {
		t.Fatalf("activity packets %v", acts)
	}
	out.expect(t, "counts", "4:from,7:proxy_1,17:requests-received,1:2#")
	if st.activityPending() {
		t.Fatal("activity still pending after flush")
	}

	// Handed to the handler: announced again, no unavailable, still counted.
	st.removeConn("condure:0-0-1", true, *now)
	out.expect(t, "conn", "4:from,7:proxy_1,2:id,13:condure:0-0-1,4:type,4:http,12:peer-address,8:10.0.0.1,3:ssl,4:true!3:ttl,3:120#5:route,7:myroute,")
	if !st.has("condure:0-0-1") || st.has("condure:0-0-0") {
		t.Fatal("conncheck table wrong after linger")
	}

	*now = now.Add(10 * time.Second)
	st.tick(*now)
	reports := map[string]string{}
	for r, d := range out.reports(t, 2) {
		reports[r] = fields(d)
	}
	counters := func(chr int) string {
		return "28:client-header-bytes-received," + map[int]string{0: "1:0#", 59: "2:59#"}[chr] +
			"24:client-header-bytes-sent,1:0#29:client-content-bytes-received,1:0#25:client-content-bytes-sent,1:0#" +
			"24:client-messages-received,1:0#20:client-messages-sent,1:0#28:server-header-bytes-received,1:0#" +
			"24:server-header-bytes-sent,1:0#29:server-content-bytes-received,1:0#25:server-content-bytes-sent,1:0#" +
			"24:server-messages-received,1:0#20:server-messages-sent,1:0#"
	}
	wantGlobal := "4:from,7:proxy_1,11:connections,1:1#7:minutes,1:1#8:received,1:0#4:sent,1:0#18:http-response-sent,1:0#8:duration,5:10000#" + counters(59)
	wantRoute := "4:from,7:proxy_1,11:connections,1:1#7:minutes,1:1#8:received,1:0#4:sent,1:0#18:http-response-sent,1:0#8:duration,5:10000#" + counters(0) + "5:route,7:myroute,"
	if reports[""] != wantGlobal || reports["myroute"] != wantRoute {
		t.Fatalf("reports:\n%s\n%s\nwant\n%s\n%s", reports[""], reports["myroute"], wantGlobal, wantRoute)
	}
	if v := st.metricValues(); v.RequestsReceived != 2 || v.ConnectionMinutes != 2 || v.ConnectionsConnected != 2 {
		t.Fatalf("prometheus values %+v", v)
	}

	// The linger ends after 60 s without a packet; the next report then
	// shows no connection for the route and the route's report goes.
	*now = now.Add(statsConnectionLinger)
	st.tick(*now)
	for range 2 {
		if typ, _ := out.next(t); typ != "report" {
			t.Fatalf("got %s, want report", typ)
		}
	}
	out.none(t)
	if st.has("condure:0-0-1") {
		t.Fatal("lingering connection still known after the linger")
	}
	if v := st.metricValues(); v.ConnectionsConnected != 0 {
		t.Fatalf("connections %d after linger", v.ConnectionsConnected)
	}
}

// TestProxyStatsWSDrops: WebSocket messages dropped are counted in
// Prometheus and in the route's next report (client-messages-dropped,
// after 1.36's fields); a report without drops has no such field.
func TestProxyStatsWSDrops(t *testing.T) {
	st, out, now := newTestStats(t, 10*time.Second)
	st.wsDropped("myroute")
	st.wsDropped("myroute")
	st.wsDropped("")
	if v := st.metricValues(); v.WSMessagesDropped != 3 || v.MessagesDropped != 3 {
		t.Fatalf("prometheus values %+v", v)
	}
	*now = now.Add(10 * time.Second)
	st.tick(*now)
	dropped := map[string]int64{}
	for r, d := range out.reports(t, 2) {
		n, ok := d.Int("client-messages-dropped")
		if !ok {
			t.Fatalf("report without client-messages-dropped: %s", fields(d))
		}
		if last := d[len(d)-1].Key; r == "" && last != "client-messages-dropped" || r != "" && d[len(d)-2].Key != "client-messages-dropped" {
			t.Fatalf("client-messages-dropped not after 1.36's fields: %s", fields(d))
		}
		dropped[r] = n
	}
	if dropped[""] != 1 || dropped["myroute"] != 2 {
		t.Fatalf("dropped per route %v", dropped)
	}
	// A period without drops has 1.36's report; the Prometheus counter
	// keeps its total.
	st.wsDropped("")
	*now = now.Add(10 * time.Second)
	st.tick(*now)
	_, d := out.next(t)
	if n, _ := d.Int("client-messages-dropped"); n != 1 {
		t.Fatalf("report %s", fields(d))
	}
	st.count("", ctrClientHeaderRecv, 5)
	*now = now.Add(10 * time.Second)
	st.tick(*now)
	if _, d := out.next(t); strings.Contains(fields(d), "dropped") {
		t.Fatalf("report of a period without drops: %s", fields(d))
	}
	if v := st.metricValues(); v.WSMessagesDropped != 4 {
		t.Fatalf("prometheus values %+v", v)
	}
}

// TestProxyStatsRefresh: a live connection is announced again at 3/4 of
// its TTL with its whole minutes counted.
func TestProxyStatsRefresh(t *testing.T) {
	st, out, now := newTestStats(t, 0)
	st.addConn("c:1", "", "", false, *now)
	out.next(t)
	*now = now.Add(89 * time.Second)
	st.tick(*now)
	out.none(t)
	*now = now.Add(time.Second)
	st.tick(*now)
	out.expect(t, "conn", "4:from,7:proxy_1,2:id,3:c:1,4:type,4:http,3:ttl,3:120#")
	out.none(t) // no reports with stats_report_interval=0
}

func TestProxyStatsHeaderEstimates(t *testing.T) {
	// pushpin-proxy 1.36 counted 59 for curl's GET /index.html to
	// foo.example (method + path + each header's name and value).
	hs := []zhttp.Header{{Name: "Host", Value: "foo.example"}, {Name: "User-Agent", Value: "curl/7.88.1"}, {Name: "Accept", Value: "*/*"}}
	if n := requestHeaderBytes("GET", "http://foo.example/index.html", hs); n != 59 {
		t.Errorf("request estimate %d, want 59", n)
	}
	if n := requestHeaderBytes("GET", "http://foo.example/index.html?a=b%20c#frag", hs); n != 59+8 {
		t.Errorf("request estimate with query %d, want 67", n)
	}
	if n := requestHeaderBytes("GET", "http://foo.example", nil); n != 4 {
		t.Errorf("empty path estimate %d, want 4", n)
	}
	if n := responseHeaderBytes(200, "OK", []zhttp.Header{{Name: "A", Value: "bc"}}); n != 8 {
		t.Errorf("response estimate %d, want 8", n)
	}
}
