package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/metrics"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// Stats timing (Pushpin src/corelib/statsmanager.cpp [1.36]).
const (
	// statsActivityFlush aggregates activity and counts for this long
	// (ACTIVITY_TIMEOUT, 100 ms).
	statsActivityFlush = 100 * time.Millisecond
	// statsRefreshTick paces refreshes and delayed subscription updates
	// (REFRESH_INTERVAL, 1 s).
	statsRefreshTick = time.Second
)

// statsShouldProcess is when a refresh is due: 3/4 of the TTL
// (SHOULD_PROCESS_TIME).
func statsShouldProcess(ttl time.Duration) time.Duration { return ttl * 3 / 4 }

type statConn struct {
	route       string
	peer        string
	ssl         bool
	lastRefresh time.Time
	lastReport  time.Time // minutes counted up to here
}

type statExtConn struct {
	route      string
	lastActive time.Time
	lastReport time.Time
}

type statSub struct {
	mode, channel string
	count         int
	lastRefresh   time.Time
	dirty         bool // count changed: send at the next tick
}

// statsReport accumulates one route's report between two report packets.
type statsReport struct {
	start        time.Time
	connsMax     int
	connsStale   bool
	minutes      int
	received     int
	sent         int
	httpRespSent int
	counters     map[string]int64
}

// statsTotals are the cumulative values Prometheus shows (Pushpin's
// combinedReport).
type statsTotals struct {
	requests, minutes, received, sent int64
	// deliveryDropped counts deliveries dropped: beyond message_hwm, or
	// for a client that stopped reading (ours; Pushpin does not count).
	deliveryDropped int64
	// wsDropped counts the messages to WebSocket clients the proxies
	// dropped (their reports' metrics.ReportDroppedKey).
	wsDropped int64
}

// statsCollector produces the handler's stats socket output (zmq-wire.md
// §4.6, grip-reference §9): its own conn, sub, message, activity, counts
// and report packets, merged with what the proxy publishes on proxy-stats.
// All methods are safe on a nil receiver (no stats_spec) and from any
// goroutine; mu guards every field below it.
type statsCollector struct {
	cfg *Config
	log zerolog.Logger
	id  []byte
	out chan<- zsock.Message // set before Run starts

	mu    sync.Mutex
	conns map[string]*statConn
	ext   map[string]map[string]*statExtConn // proxy from → conn id
	// routeConns counts conns plus ext by route (connCount).
	routeConns map[string]int
	subs       map[string]*statSub
	acts       map[string]int
	requests   int
	reports    map[string]*statsReport
	totals     statsTotals
	drops      int64
}

func newStatsCollector(cfg *Config, log zerolog.Logger) *statsCollector {
	return &statsCollector{
		cfg:        cfg,
		log:        log.With().Str(logging.FieldComponent, "stats").Logger(),
		id:         []byte(cfg.InstanceID),
		conns:      map[string]*statConn{},
		routeConns: map[string]int{},
		ext:        map[string]map[string]*statExtConn{},
		subs:       map[string]*statSub{},
		acts:       map[string]int{},
		reports:    map[string]*statsReport{},
	}
}

// write sends one packet "<type> T<tnetstring>" (or J+JSON); a full queue
// drops it (stats are best effort, like the PUB socket itself).
func (st *statsCollector) write(typ string, d tnetstring.Dict) {
	if st.out == nil {
		return
	}
	d = append(tnetstring.Dict{{Key: "from", Value: st.id}}, d...)
	buf := make([]byte, 0, 128)
	buf = append(buf, typ...)
	if st.cfg.StatsJSON {
		buf = append(buf, " J"...)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(jsonValue(d)); err != nil {
			return
		}
		buf = append(buf, bytes.TrimRight(b.Bytes(), "\n")...)
	} else {
		buf = append(buf, " T"...)
		var err error
		if buf, err = tnetstring.Encode(buf, d); err != nil {
			return
		}
	}
	select {
	case st.out <- zsock.Message{buf}:
	default:
		st.drops++
	}
}

func withRoute(d tnetstring.Dict, route string) tnetstring.Dict { return metrics.WithRoute(d, route) }

func (st *statsCollector) report(route string, now time.Time) *statsReport {
	r := st.reports[route]
	if r == nil {
		r = &statsReport{start: now, counters: map[string]int64{}}
		st.reports[route] = r
	}
	return r
}

// connCount is the number of connections (ours and the proxy's) of route.
func (st *statsCollector) connCount(route string) int { return st.routeConns[route] }

// countConn keeps routeConns in step with conns and ext: every insertion
// adds 1, every deletion -1.
func (st *statsCollector) countConn(route string, delta int) {
	n := st.routeConns[route] + delta
	if n <= 0 {
		delete(st.routeConns, route)
		return
	}
	st.routeConns[route] = n
}

func (st *statsCollector) updateConnsMax(route string, now time.Time) {
	r := st.report(route, now)
	n := st.connCount(route)
	if r.connsStale || n > r.connsMax {
		r.connsMax, r.connsStale = n, false
	}
}

func (st *statsCollector) addMinutes(route string, mins int, now time.Time) {
	st.report(route, now).minutes += mins
	st.totals.minutes += int64(mins)
}

// advanceMinutes counts the whole minutes of a connection since its last
// report.
func advanceMinutes(last *time.Time, now time.Time) int {
	mins := int(now.Sub(*last) / time.Minute)
	if mins > 0 {
		*last = last.Add(time.Duration(mins) * time.Minute)
	}
	return mins
}

func (st *statsCollector) sendConn(id string, c *statConn) {
	st.write("conn", metrics.ConnPacket(id, c.route, c.peer, c.ssl, st.cfg.StatsConnectionTTL))
}

// --- engine hooks ---

func (st *statsCollector) connAdd(s *hsession, now time.Time) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	peer := s.rs.LogicalPeerAddress
	if peer == "" {
		peer = s.rs.PeerAddress
	}
	wall := time.Now()
	c := &statConn{route: s.acc.StatsRoute, peer: peer, ssl: s.rs.HTTPS, lastRefresh: wall, lastReport: wall}
	replacing := false
	for _, m := range st.ext {
		if e := m[s.conn]; e != nil {
			replacing = true
			c.lastReport = e.lastReport
			delete(m, s.conn)
			st.countConn(e.route, -1)
		}
	}
	if old := st.conns[s.conn]; old != nil {
		replacing = true
		c.lastReport = old.lastReport
		st.countConn(old.route, -1)
	}
	st.conns[s.conn] = c
	st.countConn(c.route, 1)
	st.updateConnsMax(c.route, wall)
	if !replacing {
		st.addMinutes(c.route, 1, wall) // minutes round up: count one at once
	}
	// Quiet, as Pushpin's HttpSession adds it: the proxy announced the
	// connection already (we forward that packet); refreshes and the
	// removal are ours.
}

func (st *statsCollector) connRemove(s *hsession, now time.Time, retry bool) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.conns[s.conn]
	if c == nil {
		return
	}
	wall := time.Now()
	st.addMinutes(c.route, advanceMinutes(&c.lastReport, wall), wall)
	delete(st.conns, s.conn)
	st.countConn(c.route, -1)
	if !retry {
		// A retried connection goes back to the proxy, which reports it.
		st.write("conn", metrics.ConnGonePacket(s.conn, c.route))
	}
	st.updateConnsMax(c.route, wall)
}

func (st *statsCollector) sendSub(s *statSub) {
	st.write("sub", tnetstring.Dict{
		{Key: "mode", Value: s.mode},
		{Key: "channel", Value: s.channel},
		{Key: "ttl", Value: int64(st.cfg.StatsSubscriptionTTL / time.Second)},
		{Key: "subscribers", Value: int64(s.count)},
	})
}

// subscription records the subscriber count of (mode, channel): a new
// subscription is announced at once, a changed count at the next tick.
func (st *statsCollector) subscription(mode, channel string, n int, now time.Time) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	key := mode + "\x00" + channel
	s := st.subs[key]
	if s == nil {
		s = &statSub{mode: mode, channel: channel, count: n, lastRefresh: time.Now()}
		st.subs[key] = s
		st.sendSub(s)
		return
	}
	if s.count != n {
		s.count = n
		s.dirty = true
	}
}

func (st *statsCollector) unsubscription(mode, channel string) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	key := mode + "\x00" + channel
	if st.subs[key] == nil {
		return
	}
	delete(st.subs, key)
	st.write("sub", tnetstring.Dict{
		{Key: "mode", Value: mode},
		{Key: "channel", Value: channel},
		{Key: "unavailable", Value: true},
	})
}

// message reports one delivered item on one transport.
func (st *statsCollector) message(channel, id, transport string, n int) {
	if st == nil {
		return
	}
	d := tnetstring.Dict{{Key: "channel", Value: channel}}
	if id != "" {
		d = append(d, tnetstring.Field{Key: "item-id", Value: id})
	}
	d = append(d, tnetstring.Field{Key: "count", Value: int64(n)}, tnetstring.Field{Key: "transport", Value: transport})
	st.mu.Lock()
	st.write("message", d)
	st.mu.Unlock()
}

// messagesReceived counts items taken from the publish inputs.
func (st *statsCollector) messagesReceived(n int) {
	if st == nil {
		return
	}
	st.mu.Lock()
	st.report("", time.Now()).received += n
	st.totals.received += int64(n)
	st.mu.Unlock()
}

// messageSent counts one delivery to one session.
func (st *statsCollector) messageSent(route, transport string) {
	if st == nil {
		return
	}
	st.mu.Lock()
	r := st.report(route, time.Now())
	r.sent++
	if transport == "http-response" {
		r.httpRespSent++
	}
	st.totals.sent++
	st.mu.Unlock()
}

func (st *statsCollector) activity(route string, n int) {
	if st == nil {
		return
	}
	st.mu.Lock()
	st.activityLocked(route, n)
	st.mu.Unlock()
}

func (st *statsCollector) activityLocked(route string, n int) { st.acts[route] += n }

// dropped counts an engine-side drop (full queue).
func (st *statsCollector) dropped() {
	if st == nil {
		return
	}
	st.mu.Lock()
	st.drops++
	st.mu.Unlock()
}

// deliveryDropped counts one delivery dropped (message_hwm, or a session
// queue full).
func (st *statsCollector) deliveryDropped() {
	if st == nil {
		return
	}
	st.mu.Lock()
	st.totals.deliveryDropped++
	st.mu.Unlock()
}

// inputDropped counts n publish messages a bus input dropped (queue full,
// invalid) in Prometheus message_dropped.
func (st *statsCollector) inputDropped(n uint64) {
	if st == nil || n == 0 {
		return
	}
	st.mu.Lock()
	st.totals.deliveryDropped += int64(n)
	st.mu.Unlock()
}

// --- proxy stats ---

// external merges one packet from the proxy's stats socket (Pushpin
// proxyStats_readyRead): activity and counts join ours, conn packets are
// tracked and forwarded under our from, reports are merged.
func (st *statsCollector) external(typ string, d tnetstring.Dict) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	route, _ := d.Bytes("route")
	now := time.Now()
	switch typ {
	case "activity":
		if n, ok := d.Int("count"); ok && n > 0 {
			st.activityLocked(string(route), int(n))
		}
	case "counts":
		if n, ok := d.Int("requests-received"); ok && n > 0 {
			st.requests += int(n)
			st.totals.requests += n
		}
	case "conn":
		id, ok := d.Bytes("id")
		if !ok {
			return
		}
		from, _ := d.Bytes("from")
		m := st.ext[string(from)]
		if m == nil {
			m = map[string]*statExtConn{}
			st.ext[string(from)] = m
		}
		if d.Bool("unavailable") {
			if c := m[string(id)]; c != nil {
				st.addMinutes(c.route, advanceMinutes(&c.lastReport, now), now)
				delete(m, string(id))
				st.countConn(c.route, -1)
				st.updateConnsMax(c.route, now)
			}
		} else if _, local := st.conns[string(id)]; !local {
			if c := m[string(id)]; c != nil {
				c.lastActive = now
				st.addMinutes(c.route, advanceMinutes(&c.lastReport, now), now)
			} else {
				m[string(id)] = &statExtConn{route: string(route), lastActive: now, lastReport: now}
				st.countConn(string(route), 1)
				st.updateConnsMax(string(route), now)
				st.addMinutes(string(route), 1, now)
			}
		}
		fwd := make(tnetstring.Dict, 0, len(d))
		for _, f := range d {
			if f.Key != "from" {
				fwd = append(fwd, f)
			}
		}
		st.write("conn", fwd)
	case "report":
		r := st.report(string(route), now)
		for _, f := range d {
			if n, ok := f.Value.(int64); ok && n > 0 && counterKeys[f.Key] {
				r.counters[f.Key] += n
				if f.Key == metrics.ReportDroppedKey {
					st.totals.wsDropped += n
				}
			}
		}
	}
}

// counterKeys are the report fields merged from the proxy's reports.
var counterKeys = map[string]bool{
	"client-header-bytes-received": true, "client-header-bytes-sent": true,
	"client-content-bytes-received": true, "client-content-bytes-sent": true,
	"client-messages-received": true, "client-messages-sent": true,
	"server-header-bytes-received": true, "server-header-bytes-sent": true,
	"server-content-bytes-received": true, "server-content-bytes-sent": true,
	"server-messages-received": true, "server-messages-sent": true,
	metrics.ReportDroppedKey: true, // tack-proxy's; a 1.36 proxy never sends it
}

// serveProxyStats reads the proxy's stats SUB ("<type> T<tnetstring>").
func serveProxyStats(ctx context.Context, so *zsock.Socket, st *statsCollector, log zerolog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-so.Recv():
			if !ok {
				return errSocketClosed("proxy-stats")
			}
			if len(m) != 1 {
				log.Warn().Int("parts", len(m)).Str(logging.FieldSocket, "proxy-stats").Msg("dropping message with parts != 1")
				continue
			}
			at := bytes.IndexByte(m[0], ' ')
			if at <= 0 || at+1 >= len(m[0]) || m[0][at+1] != 'T' {
				log.Warn().Str(logging.FieldSocket, "proxy-stats").Msg("dropping message with unsupported format")
				continue
			}
			d, err := tnetstring.DecodeDict(m[0][at+2:])
			if err != nil {
				log.Warn().Err(err).Str(logging.FieldSocket, "proxy-stats").Msg("dropping bad packet")
				continue
			}
			st.external(string(m[0][:at]), d)
		}
	}
}

// --- timed output ---

// run flushes activity every 100 ms and does refreshes and reports.
func (st *statsCollector) run(ctx context.Context) error {
	flush := time.NewTicker(statsActivityFlush)
	defer flush.Stop()
	lastTick := time.Now()
	nextReport := lastTick.Add(st.cfg.StatsReportInterval)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-flush.C:
			st.mu.Lock()
			st.flushActivity()
			if now.Sub(lastTick) >= statsRefreshTick {
				lastTick = now
				st.refreshLocked(now)
			}
			if !now.Before(nextReport) {
				nextReport = now.Add(st.cfg.StatsReportInterval)
				st.reportLocked(now)
			}
			st.mu.Unlock()
		}
	}
}

func (st *statsCollector) flushActivity() {
	metrics.FlushActivity(st.acts, st.requests, st.write)
	st.requests = 0
}

// refreshLocked re-announces live connections and subscriptions before
// their TTL runs out, sends delayed subscriber-count changes and expires
// proxy connections that were not refreshed.
func (st *statsCollector) refreshLocked(now time.Time) {
	for id, c := range st.conns {
		if now.Sub(c.lastRefresh) >= statsShouldProcess(st.cfg.StatsConnectionTTL) {
			c.lastRefresh = now
			st.addMinutes(c.route, advanceMinutes(&c.lastReport, now), now)
			st.sendConn(id, c)
		}
	}
	for _, s := range st.subs {
		if s.dirty || now.Sub(s.lastRefresh) >= statsShouldProcess(st.cfg.StatsSubscriptionTTL) {
			s.dirty = false
			s.lastRefresh = now
			st.sendSub(s)
		}
	}
	for _, m := range st.ext {
		for id, c := range m {
			if now.Sub(c.lastActive) >= st.cfg.StatsConnectionTTL {
				st.addMinutes(c.route, advanceMinutes(&c.lastReport, now), now)
				delete(m, id)
				st.countConn(c.route, -1)
				st.updateConnsMax(c.route, now)
			}
		}
	}
}

// reportLocked sends one report per route and starts new periods.
func (st *statsCollector) reportLocked(now time.Time) {
	if len(st.reports) == 0 {
		st.report("", now)
	}
	for route, r := range st.reports {
		if r.connsStale {
			st.updateConnsMax(route, now)
		}
		d := tnetstring.Dict{
			{Key: "connections", Value: int64(r.connsMax)},
			{Key: "minutes", Value: int64(r.minutes)},
			{Key: "received", Value: int64(r.received)},
			{Key: "sent", Value: int64(r.sent)},
			{Key: "http-response-sent", Value: int64(r.httpRespSent)},
			{Key: "duration", Value: now.Sub(r.start).Milliseconds()},
		}
		for _, k := range metrics.ReportCounterKeys {
			d = append(d, tnetstring.Field{Key: k, Value: r.counters[k]})
		}
		d = metrics.WithDropped(d, r.counters[metrics.ReportDroppedKey])
		st.write("report", withRoute(d, route))
		empty := r.minutes == 0 && r.received == 0 && r.sent == 0 && st.connCount(route) == 0
		// The maximum stays (stale) until the next update, as it is also
		// the Prometheus gauge.
		*r = statsReport{start: now, connsMax: r.connsMax, connsStale: true, counters: map[string]int64{}}
		if empty && route != "" {
			delete(st.reports, route)
		}
	}
}

// snapshot returns the Prometheus values: the totals, and as the
// connection gauge the sum of the routes' connection maxima of the current
// report period (Pushpin's combinedReport.connectionsMax, which is what
// pushpin-handler 1.36 shows).
func (st *statsCollector) snapshot() (totals statsTotals, conns int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range st.reports {
		conns += r.connsMax
	}
	return st.totals, conns
}
