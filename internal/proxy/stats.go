package proxy

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/metrics"
	"tack/internal/routes"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Stats timing and defaults (Pushpin src/corelib/statsmanager.cpp and
// src/proxy/app.cpp [1.36]).
const (
	// DefaultStatsReportInterval is [proxy] stats_report_interval (10 s).
	DefaultStatsReportInterval = 10 * time.Second
	// DefaultStatsConnectionTTL is [global] stats_connection_ttl (120 s).
	DefaultStatsConnectionTTL = 120 * time.Second
	// statsConnectionLinger is how long a connection handed to the handler
	// stays in the table, counted but not refreshed (60 s).
	statsConnectionLinger = 60 * time.Second
	// statsActivityFlush aggregates activity and counts (ACTIVITY_TIMEOUT).
	statsActivityFlush = 100 * time.Millisecond
	// hwmStats is the stats PUB's HWM (OUT_HWM).
	hwmStats = 200000
	// statsQueueLen is the Go queue in front of the stats PUB; a full
	// queue drops the packet and counts it (stats are best effort).
	statsQueueLen = 4096
	// statsPacketCap fits a conn packet in one allocation (reports grow).
	statsPacketCap = 192
)

// outcomeAccept is the finish outcome of a session the handler accepted.
const outcomeAccept = "accept"

// statsRefreshDue is when a live connection is announced again: at 3/4
// of its TTL (SHOULD_PROCESS_TIME).
func statsRefreshDue(ttl time.Duration) time.Duration { return ttl * 3 / 4 }

// Report counters of the proxy (Stats::Counter, 1.36 names).
const (
	ctrClientHeaderRecv  = "client-header-bytes-received"
	ctrClientHeaderSent  = "client-header-bytes-sent"
	ctrClientContentRecv = "client-content-bytes-received"
	ctrClientContentSent = "client-content-bytes-sent"
	ctrServerHeaderRecv  = "server-header-bytes-received"
	ctrServerHeaderSent  = "server-header-bytes-sent"
	ctrServerContentRecv = "server-content-bytes-received"
	ctrServerContentSent = "server-content-bytes-sent"
)

type statsConn struct {
	route       string
	peer        string
	ssl         bool
	lastRefresh time.Time
	lastReport  time.Time // connection minutes counted up to here
	lingerUntil time.Time // non-zero: handed to the handler, dropped silently then
}

type statsReport struct {
	start      time.Time
	connsMax   int
	connsStale bool
	minutes    int
	counters   map[string]int64
}

func (r *statsReport) empty() bool {
	if r.connsMax != 0 || r.minutes != 0 {
		return false
	}
	for _, n := range r.counters {
		if n != 0 {
			return false
		}
	}
	return true
}

// proxyStats is what tack-proxy publishes on its stats socket
// ([proxy] stats_spec, zmq-wire.md §4.6) and shows on [proxy]
// prometheus_port: a conn packet when a request starts (and when it is
// handed to the handler), conn unavailable when it ends, refreshes before
// the TTL, activity and counts flushed after 100 ms, and a report per
// route every stats_report_interval. The engine goroutine owns it; only
// the Prometheus values are read from elsewhere (atomics).
type proxyStats struct {
	id       []byte
	out      chan<- zsock.Message // nil: no stats socket (Prometheus only)
	log      zerolog.Logger
	ttl      time.Duration
	interval time.Duration
	now      func() time.Time

	conns      map[string]*statsConn
	routeConns map[string]int
	acts       map[string]int
	requests   int // requests-received not yet flushed
	reports    map[string]*statsReport
	nextReport time.Time
	drops      int64

	// Prometheus (Pushpin's combined report): cumulative requests and
	// minutes, and the sum of the routes' connection maxima; and ours,
	// the WebSocket messages dropped.
	promRequests, promMinutes, promConns, promWSDrops atomic.Int64
}

func newProxyStats(cfg *Config, log zerolog.Logger, now time.Time) *proxyStats {
	st := &proxyStats{
		id:         []byte(cfg.InstanceID),
		log:        log.With().Str(logging.FieldComponent, "stats").Logger(),
		ttl:        cfg.StatsConnectionTTL,
		interval:   cfg.StatsReportInterval,
		now:        cfg.Now,
		conns:      map[string]*statsConn{},
		routeConns: map[string]int{},
		acts:       map[string]int{},
		reports:    map[string]*statsReport{},
	}
	if st.ttl <= 0 {
		st.ttl = DefaultStatsConnectionTTL
	}
	if st.interval > 0 {
		st.nextReport = now.Add(st.interval)
	}
	return st
}

// metricValues are the Prometheus values; safe from any goroutine.
func (st *proxyStats) metricValues() metrics.Values {
	return metrics.Values{
		RequestsReceived:     st.promRequests.Load(),
		ConnectionsConnected: st.promConns.Load(),
		ConnectionMinutes:    st.promMinutes.Load(),
		MessagesDropped:      st.promWSDrops.Load(),
		WSMessagesDropped:    st.promWSDrops.Load(),
	}
}

// write sends "<type> T<tnetstring>" with our from first.
func (st *proxyStats) write(typ string, d tnetstring.Dict) {
	if st.out == nil {
		return
	}
	full := make(tnetstring.Dict, 0, len(d)+1)
	full = append(append(full, tnetstring.Field{Key: "from", Value: st.id}), d...)
	buf := make([]byte, 0, statsPacketCap)
	buf, err := tnetstring.Encode(append(append(buf, typ...), " T"...), full)
	if err != nil {
		return
	}
	select {
	case st.out <- zsock.Message{buf}:
	default:
		st.drops++
		if st.drops&(st.drops-1) == 0 { // 1, 2, 4, 8, ...: a full queue does not flood the log
			st.log.Warn().Int64("dropped", st.drops).Str(logging.FieldSocket, "proxy-stats").Msg("stats queue full, packet dropped")
		}
	}
}

func (st *proxyStats) report(route string, now time.Time) *statsReport {
	r := st.reports[route]
	if r == nil {
		r = &statsReport{start: now, connsStale: true, counters: map[string]int64{}}
		st.reports[route] = r
	}
	return r
}

// updateConnsMax keeps the route's maximum for this report period, and the
// Prometheus gauge (the sum of the maxima) with it.
func (st *proxyStats) updateConnsMax(route string, now time.Time) {
	r := st.report(route, now)
	n := st.routeConns[route]
	old := r.connsMax
	if r.connsStale || n > r.connsMax {
		r.connsMax, r.connsStale = n, false
	}
	st.promConns.Add(int64(r.connsMax - old))
}

func (st *proxyStats) addMinutes(route string, n int, now time.Time) {
	if n <= 0 || st.interval <= 0 {
		return
	}
	st.report(route, now).minutes += n
	st.promMinutes.Add(int64(n))
}

// advanceMinutes counts the whole minutes of c since its last count.
func (st *proxyStats) advanceMinutes(c *statsConn, now time.Time) {
	if !c.lingerUntil.IsZero() {
		return
	}
	mins := int(now.Sub(c.lastReport) / time.Minute)
	if mins > 0 {
		c.lastReport = c.lastReport.Add(time.Duration(mins) * time.Minute)
		st.addMinutes(c.route, mins, now)
	}
}

func (st *proxyStats) sendConn(id string, c *statsConn) {
	st.write("conn", metrics.ConnPacket(id, c.route, c.peer, c.ssl, st.ttl))
}

func (st *proxyStats) dropConn(id string, c *statsConn) {
	delete(st.conns, id)
	if n := st.routeConns[c.route] - 1; n > 0 {
		st.routeConns[c.route] = n
	} else {
		delete(st.routeConns, c.route)
	}
}

// addConn registers a client connection (a request that found a route) and
// announces it. A connection already known (handed back by the handler in
// a retry) is replaced without counting another minute.
func (st *proxyStats) addConn(id, route, peer string, ssl bool, now time.Time) {
	c := &statsConn{route: route, peer: peer, ssl: ssl, lastRefresh: now, lastReport: now}
	old := st.conns[id]
	if old != nil {
		c.lastReport = old.lastReport
		st.dropConn(id, old)
		if old.route != route {
			st.updateConnsMax(old.route, now)
		}
	}
	st.conns[id] = c
	st.routeConns[route]++
	st.updateConnsMax(route, now)
	if old == nil {
		st.addMinutes(route, 1, now) // minutes round up: the first counts at once
	}
	st.sendConn(id, c)
}

// removeConn ends a connection: with linger (handed to the handler) it is
// announced once more and stays counted for statsConnectionLinger without
// an unavailable packet, as the handler owns it now; otherwise conn
// unavailable goes out at once.
func (st *proxyStats) removeConn(id string, linger bool, now time.Time) {
	c := st.conns[id]
	if c == nil {
		return
	}
	st.advanceMinutes(c, now)
	if linger {
		if c.lingerUntil.IsZero() {
			st.sendConn(id, c)
			c.lingerUntil = now.Add(statsConnectionLinger)
		}
		return
	}
	st.write("conn", metrics.ConnGonePacket(id, c.route))
	st.dropConn(id, c)
	st.updateConnsMax(c.route, now)
}

// has reports whether id is in the connection table (conncheck); a
// lingering connection counts, as in Pushpin.
func (st *proxyStats) has(id string) bool {
	_, ok := st.conns[id]
	return ok
}

func (st *proxyStats) activity(route string) {
	st.acts[route]++
}

func (st *proxyStats) requestReceived() {
	st.requests++
	st.promRequests.Add(1)
}

func (st *proxyStats) count(route, key string, n int) {
	if n <= 0 || st.interval <= 0 {
		return
	}
	st.report(route, st.now()).counters[key] += int64(n)
}

// wsDropped counts a message to a WebSocket client dropped because the
// connection's outbound queue was full: in Prometheus, and in the route's
// next report (metrics.ReportDroppedKey), which tack-handler adds up.
func (st *proxyStats) wsDropped(route string) {
	st.promWSDrops.Add(1)
	st.count(route, metrics.ReportDroppedKey, 1)
}

// activityPending reports activity or counts waiting for a flush.
func (st *proxyStats) activityPending() bool { return len(st.acts) > 0 || st.requests > 0 }

// flushActivity sends the aggregated activity per route and the counts.
func (st *proxyStats) flushActivity() {
	metrics.FlushActivity(st.acts, st.requests, st.write)
	st.requests = 0
}

// tick refreshes connections due, drops lingering ones whose time is up,
// and sends the reports when the interval has passed.
func (st *proxyStats) tick(now time.Time) {
	touched := map[string]bool{}
	for id, c := range st.conns {
		switch {
		case !c.lingerUntil.IsZero():
			if !now.Before(c.lingerUntil) {
				st.dropConn(id, c)
				touched[c.route] = true
			}
		case now.Sub(c.lastRefresh) >= statsRefreshDue(st.ttl):
			c.lastRefresh = now
			st.advanceMinutes(c, now)
			st.sendConn(id, c)
		}
	}
	for route := range touched {
		st.updateConnsMax(route, now)
	}
	if st.interval > 0 && !now.Before(st.nextReport) {
		st.nextReport = now.Add(st.interval)
		st.sendReports(now)
	}
}

// sendReports sends one report per route and starts the next period; a
// route whose report was empty is forgotten after it is sent.
func (st *proxyStats) sendReports(now time.Time) {
	for route, r := range st.reports {
		if r.connsStale {
			st.updateConnsMax(route, now)
		}
		d := tnetstring.Dict{
			{Key: "connections", Value: int64(r.connsMax)},
			{Key: "minutes", Value: int64(r.minutes)},
			{Key: "received", Value: int64(0)},
			{Key: "sent", Value: int64(0)},
			{Key: "http-response-sent", Value: int64(0)},
			{Key: "duration", Value: now.Sub(r.start).Milliseconds()},
		}
		// The message counters count WebSocket messages, which tack-proxy
		// does not proxy yet: they stay 0.
		for _, k := range metrics.ReportCounterKeys {
			d = append(d, tnetstring.Field{Key: k, Value: r.counters[k]})
		}
		d = metrics.WithDropped(d, r.counters[metrics.ReportDroppedKey])
		st.write("report", metrics.WithRoute(d, route))
		r.start, r.connsStale, r.minutes = now, true, 0
		clear(r.counters)
		if r.empty() {
			st.promConns.Add(-int64(r.connsMax))
			delete(st.reports, route)
		}
	}
}

// --- sizes counted in reports (Pushpin's ZhttpManager estimates) ---

// requestHeaderBytes estimates a request head: method, encoded path and
// query, and each header's name and value.
func requestHeaderBytes(method, uri string, hs []zhttp.Header) int {
	n := len(method) + len(pathAndQuery(uri))
	for _, h := range hs {
		n += len(h.Name) + len(h.Value)
	}
	return n
}

// responseHeaderBytes estimates a response head: the code's digits, the
// reason, and each header's name and value.
func responseHeaderBytes(code int64, reason string, hs []zhttp.Header) int {
	n := len(strconv.FormatInt(code, 10)) + len(reason)
	for _, h := range hs {
		n += len(h.Name) + len(h.Value)
	}
	return n
}

// pathAndQuery is the part of an absolute URI from its path on ("/" when
// the path is empty), without a fragment.
func pathAndQuery(uri string) string {
	rest := uri
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
		j := 0
		for j < len(rest) && rest[j] != '/' && rest[j] != '?' && rest[j] != '#' {
			j++
		}
		rest = rest[j:]
	}
	if i := strings.Index(rest, "#"); i >= 0 {
		rest = rest[:i]
	}
	if rest == "" || rest[0] == '?' {
		rest = "/" + rest
	}
	return rest
}

// --- engine hooks ---

// statsRoute is the route id stats use: only an explicit id= (Pushpin's
// separate stats); everything else is the global "".
func statsRoute(r *routes.Route) string {
	if r != nil && r.IDExplicit {
		return r.ID
	}
	return ""
}

// connID is the stats connection id of a client request: "<from>:<id>".
func connID(s *session) string { return string(s.in.Peer) + ":" + string(s.in.ID) }

// statsStart registers a client request that found its route (not the
// handler's own requests); retries are not counted as new requests.
func (e *engine) statsStart(s *session, now time.Time) {
	if e.stats == nil || s.side != sideConnmgr {
		return
	}
	route := statsRoute(s.route)
	s.statsRegistered = true
	e.stats.addConn(connID(s), route, e.logicalPeer(s), s.ci.tls, now)
	e.stats.activity(route)
	if !s.isRetry {
		e.stats.requestReceived()
		e.stats.count(route, ctrClientHeaderRecv, requestHeaderBytes(s.method, s.first.URI, s.first.Headers))
		e.stats.count(route, ctrClientContentRecv, len(s.first.Body))
	}
}

// statsEnd removes the session's connection: lingering when the handler
// accepted it.
func (e *engine) statsEnd(s *session, outcome string) {
	if e.stats == nil || !s.statsRegistered {
		return
	}
	s.statsRegistered = false
	e.stats.removeConn(connID(s), outcome == outcomeAccept, e.cfg.Now())
}

// statsWSDropped counts a message to the session's WebSocket client that
// was dropped (outbound queue full).
func (e *engine) statsWSDropped(s *session) {
	if e.stats != nil {
		e.stats.wsDropped(statsRoute(s.route))
	}
}

// statsCount adds n to a report counter of the session's route.
func (e *engine) statsCount(s *session, key string, n int) {
	if e.stats == nil || !s.statsRegistered {
		return
	}
	e.stats.count(statsRoute(s.route), key, n)
}
