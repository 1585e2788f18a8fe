package main

// GRIP figures on the built-in test handler route (`* test`): held streams
// established per second, server memory per held stream, one publish to all
// held streams, burst fan-out, and latency at a steady delivery rate. Each
// published item's content is "<tag> <seq> <send-unixnano>\n", so every
// client line yields a publish→receive latency.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var gripOpts struct {
	n, inflight, small, items, rate int
	steadyD                         time.Duration
}

// maxClients keeps the bench process under its 20,000-file limit.
const maxClients = 17000

// gripResult is one suite's figures (NaN = not measured) plus notes on
// anything that went wrong.
type gripResult struct {
	v     map[string]float64
	notes []string // failures: errors, lost messages, stalls
	info  []string // retried rejections while opening streams
}

func (r *gripResult) get(k string) float64 {
	if v, ok := r.v[k]; ok {
		return v
	}
	return math.NaN()
}

func (r *gripResult) notef(format string, a ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
}

func runGrip(parts map[string]bool, bin string, withPushpin bool) error {
	o := gripOpts
	if o.n > maxClients || o.small > maxClients {
		return fmt.Errorf("-n/-small above %d would exceed the bench's 20,000-file limit", maxClients)
	}
	fmt.Printf("\nGRIP on the test handler route (* test): %d held streams (%d opens in flight), small set %d, burst %d items, steady %d publishes/s for %v\n",
		o.n, o.inflight, o.small, o.items, o.rate, o.steadyD)
	absBin, _ := filepath.Abs(bin)
	tack := gripSuite(parts, "tack", filepath.Join(absBin, "tack"), "")
	var pp *gripResult
	if withPushpin {
		if _, err := exec.LookPath("pushpin"); err == nil {
			pp = gripSuite(parts, "pushpin 1.36", "pushpin", "pushpin")
		} else {
			fmt.Println("  (pushpin not installed: apt-get install -y pushpin)")
		}
	}
	printGrip(parts, tack, pp)
	if len(tack.notes) > 0 {
		return fmt.Errorf("tack had problems in the GRIP parts (see notes above)")
	}
	return nil
}

type row struct {
	part, key, label, target, ref string
	higher                        bool // higher is better
	limit                         float64
}

func gripRows() []row {
	o := gripOpts
	return []row{
		{"streams", "open", "held streams established /s", ">= 10000", "754", true, 10000},
		{"streams", "mem", "server memory per held stream, KiB", "<= 8", "44", false, 8},
		{"publish", "pub", fmt.Sprintf("one publish -> all %d, ms (median of 3)", o.n), "<= 60", "662", false, 60},
		{"burst", "burstN.rate", fmt.Sprintf("burst %dx%d deliveries /s", o.n, o.items), ">= 400000", "65000", true, 400000},
		{"burst", "burstN.p50", fmt.Sprintf("burst %dx%d latency p50, ms", o.n, o.items), "", "", false, 0},
		{"burst", "burstN.p99", fmt.Sprintf("burst %dx%d latency p99, ms", o.n, o.items), "", "", false, 0},
		{"burst", "burstS.rate", fmt.Sprintf("burst %dx%d deliveries /s", o.small, o.items), "", "", true, 0},
		{"burst", "burstS.p50", fmt.Sprintf("burst %dx%d latency p50, ms", o.small, o.items), "", "", false, 0},
		{"burst", "burstS.p99", fmt.Sprintf("burst %dx%d latency p99, ms", o.small, o.items), "", "", false, 0},
		{"steady", "steady.rate", "steady: deliveries /s achieved", "", "", true, 0},
		{"steady", "steady.p50", "steady: latency p50, ms", "", "", false, 0},
		{"steady", "steady.p99", "steady: latency p99, ms", "<= 20", "745", false, 20},
	}
}

func printGrip(parts map[string]bool, tack, pp *gripResult) {
	fmt.Printf("\n  %-42s %12s %12s %9s   %-10s %-6s %s\n", "GRIP figure", "tack", "pushpin", "tack/pp", "target", "tack", "issue's pushpin ref")
	for _, r := range gripRows() {
		if !parts[r.part] {
			continue
		}
		t := tack.get(r.key)
		p := math.NaN()
		if pp != nil {
			p = pp.get(r.key)
		}
		ratio := "n/a"
		if !math.IsNaN(t) && !math.IsNaN(p) && p != 0 {
			ratio = fmt.Sprintf("%.2fx", t/p)
		}
		verdict := ""
		if r.target != "" && !math.IsNaN(t) {
			if (r.higher && t >= r.limit) || (!r.higher && t <= r.limit) {
				verdict = "ok"
			} else {
				verdict = "MISS"
			}
		}
		fmt.Printf("  %-42s %12s %12s %9s   %-10s %-6s %s\n", r.label, fmtNum(t), fmtNum(p), ratio, r.target, verdict, r.ref)
	}
	printNotes(map[string]*gripResult{"tack": tack, "pushpin": pp})
}

// printNotes prints each named result's INFO and FAIL notes.
func printNotes(res map[string]*gripResult) {
	for _, name := range []string{"tack", "pushpin", "floor"} {
		r := res[name]
		if r == nil {
			continue
		}
		for _, n := range r.info {
			fmt.Printf("  INFO %s: %s\n", name, n)
		}
		for _, n := range r.notes {
			fmt.Printf("  FAIL %s: %s\n", name, n)
		}
	}
}

// fmtNum formats a figure, n/a for NaN.
func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// gripSuite starts one suite on `* test` and measures the selected parts.
func gripSuite(parts map[string]bool, name, runner, kind string) *gripResult {
	o := gripOpts
	res := &gripResult{v: map[string]float64{}}
	s, err := startSuite(name, runner, kind, "* test")
	if err != nil {
		res.notef("start: %v", err)
		return res
	}
	defer s.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	logged := false
	fail := func(format string, a ...any) {
		res.notef(format, a...)
		fmt.Printf("  %s: FAIL: %s\n", name, fmt.Sprintf(format, a...))
		if !logged {
			logged = true
			fmt.Print(s.log())
		}
	}
	checkAlive := func() bool {
		if s.exited() {
			fail("runner exited")
			return false
		}
		return true
	}

	if parts["streams"] || parts["publish"] || parts["burst"] {
		time.Sleep(time.Second)
		before, beforeDetail := s.memory()
		g, el, err := openGroup(addr, "bench", o.n, o.inflight)
		opened := g.size()
		if r := g.rejectSummary(); r != "" {
			res.info = append(res.info, fmt.Sprintf("opening %d streams: retried rejections: %s", o.n, r))
		}
		if err != nil {
			fail("opened %d/%d streams in %v; errors: %v", opened, o.n, el.Round(time.Millisecond), err)
		}
		if opened > 0 {
			res.v["open"] = float64(opened) / el.Seconds()
		}
		time.Sleep(time.Second)
		after, afterDetail := s.memory()
		if opened > 0 {
			res.v["mem"] = float64(after-before) / float64(opened)
		}
		fmt.Printf("  %s: %d streams held in %v (%.0f/s); memory %d MiB -> %d MiB\n      before: %s\n      after:  %s\n",
			name, opened, el.Round(time.Millisecond), float64(opened)/el.Seconds(), before/1024, after/1024, beforeDetail, afterDetail)
		lostEarly := g.lost.Load()
		if lostEarly > 0 {
			fail("%d of %d streams were ended by the server within 1 s of opening", lostEarly, opened)
		}

		if parts["publish"] && opened > 0 && checkAlive() {
			var ms []float64
			for k := 1; k <= 3; k++ {
				live := g.live()
				col := newCollector(fmt.Sprintf("p%d", k), live)
				g.cur.Store(col)
				t0 := time.Now()
				if err := s.publish("bench", col.line(0)); err != nil {
					fail("publish %d: %v", k, err)
					break
				}
				got, ok := col.wait(int64(live), 10*time.Second)
				if !ok {
					fail("publish %d: only %d of %d live streams received it (stalled 10s); %s", k, got, live, col.spread(g, 1))
					break
				}
				ms = append(ms, float64(col.last.Load()-t0.UnixNano())/1e6)
				time.Sleep(200 * time.Millisecond)
			}
			fmt.Printf("  %s: one publish -> %d streams: %s ms\n", name, opened, fmtList(ms))
			if len(ms) > 0 {
				sort.Float64s(ms)
				res.v["pub"] = ms[len(ms)/2]
			}
		}
		if parts["burst"] && opened > 0 && checkAlive() {
			burst(name, s.publish, g, "bench", "bN", g.live(), o.items, res, "burstN", fail)
		}
		if lost := g.close() - lostEarly; lost > 0 {
			fail("%d more of %d held streams were ended by the server before the bench closed them", lost, opened)
		}
	}

	if (parts["burst"] || parts["steady"]) && checkAlive() {
		g, el, err := openGroup(addr, "small", o.small, o.inflight)
		opened := g.size()
		if r := g.rejectSummary(); r != "" {
			res.info = append(res.info, fmt.Sprintf("opening %d streams: retried rejections: %s", o.small, r))
		}
		if err != nil {
			fail("small set: opened %d/%d streams in %v; errors: %v", opened, o.small, el.Round(time.Millisecond), err)
		}
		time.Sleep(500 * time.Millisecond)
		if parts["burst"] && opened > 0 {
			burst(name, s.publish, g, "small", "bS", g.live(), o.items, res, "burstS", fail)
		}
		if parts["steady"] && opened > 0 && checkAlive() {
			steady(name, s.publish, g, "small", g.live(), res, fail)
		}
		if lost := g.close(); lost > 0 {
			fail("%d of %d small-set streams were closed by the server before the bench closed them", lost, opened)
		}
	}
	checkAlive()
	return res
}

// pubFunc publishes one item with content to channel.
type pubFunc func(channel, content string) error

// burst publishes items back to back (one POST each) and waits for every
// subscriber to get every item.
func burst(name string, pub pubFunc, g *group, channel, tag string, subs, items int, res *gripResult, key string, fail func(string, ...any)) {
	want := int64(subs * items)
	col := newCollector(tag, int(want))
	g.cur.Store(col)
	t0 := time.Now()
	for k := 0; k < items; k++ {
		if err := pub(channel, col.line(k)); err != nil {
			fail("burst %s item %d: %v", key, k, err)
			return
		}
	}
	pubDone := time.Since(t0)
	got, ok := col.wait(want, 10*time.Second)
	el := time.Duration(col.last.Load() - t0.UnixNano())
	if !ok {
		fail("burst %dx%d: %d/%d deliveries (%d lost; stalled 10s); %s", subs, items, got, want, want-got, col.spread(g, items))
	}
	if got == 0 {
		return
	}
	p50, p99 := col.percentiles()
	res.v[key+".rate"] = float64(got) / el.Seconds()
	res.v[key+".p50"], res.v[key+".p99"] = p50, p99
	fmt.Printf("  %s: burst %dx%d: %d deliveries in %v (publishing took %v), %.0f/s, p50 %.1f ms, p99 %.1f ms\n",
		name, subs, items, got, el.Round(time.Millisecond), pubDone.Round(time.Millisecond), float64(got)/el.Seconds(), p50, p99)
}

// steady publishes at gripOpts.rate per second for gripOpts.steadyD.
func steady(name string, pub pubFunc, g *group, channel string, subs int, res *gripResult, fail func(string, ...any)) {
	o := gripOpts
	total := int(o.steadyD.Seconds() * float64(o.rate))
	col := newCollector("st", subs*total)
	g.cur.Store(col)
	tick := time.NewTicker(time.Second / time.Duration(o.rate))
	defer tick.Stop()
	t0 := time.Now()
	sent := 0
	for ; sent < total; sent++ {
		<-tick.C
		if err := pub(channel, col.line(sent)); err != nil {
			fail("steady item %d: %v", sent, err)
			break
		}
	}
	want := int64(subs * sent)
	got, ok := col.wait(want, 10*time.Second)
	el := time.Duration(col.last.Load() - t0.UnixNano())
	if !ok {
		fail("steady: %d/%d deliveries (%d lost; stalled 10s); %s", got, want, want-got, col.spread(g, sent))
	}
	if got == 0 {
		return
	}
	p50, p99 := col.percentiles()
	res.v["steady.rate"] = float64(got) / el.Seconds()
	res.v["steady.p50"], res.v["steady.p99"] = p50, p99
	fmt.Printf("  %s: steady %d subs x %d/s for %v: %d deliveries, %.0f/s, p50 %.1f ms, p99 %.1f ms\n",
		name, subs, o.rate, o.steadyD, got, float64(got)/el.Seconds(), p50, p99)
}

func fmtList(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(s, ", ")
}

var pubClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

// publish POSTs one http-stream item per content to the HTTP publish API.
func publish(port int, channel string, contents ...string) error {
	return publishFormat(port, "http-stream", channel, contents...)
}

// publishFormat POSTs one item of format (http-stream or ws-message) per
// content to the HTTP publish API.
func publishFormat(port int, format, channel string, contents ...string) error {
	type item struct {
		Channel string         `json:"channel"`
		Formats map[string]any `json:"formats"`
	}
	var body struct {
		Items []item `json:"items"`
	}
	for _, c := range contents {
		body.Items = append(body.Items, item{channel, map[string]any{format: map[string]string{"content": c}}})
	}
	b, _ := json.Marshal(body)
	resp, err := pubClient.Post(fmt.Sprintf("http://127.0.0.1:%d/publish/", port), "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: %s: %s", resp.Status, out)
	}
	return nil
}

// collector counts deliveries of one experiment's items (lines starting
// with its tag) and keeps their latencies.
type collector struct {
	tag     []byte
	perConn []atomic.Int32 // deliveries per connection index
	got     atomic.Int64
	lat     []int64 // ns; first len(lat) deliveries
	last    atomic.Int64
	pl      *plCollector // the pubload part's counts instead (pubload.go)
}

func newCollector(tag string, want int) *collector {
	return &collector{tag: []byte(tag + " "), lat: make([]int64, want), perConn: make([]atomic.Int32, maxClients)}
}

// spread describes how many connections got none, some, or all of items.
func (c *collector) spread(g *group, items int) string {
	var none, all, some int
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, i := range g.idx {
		switch k := int(c.perConn[i].Load()); {
		case k == 0:
			none++
		case k >= items:
			all++
		default:
			some++
		}
	}
	return fmt.Sprintf("connections with all %d items: %d, some: %d, none: %d", items, all, some, none)
}

// line is the content of item seq, stamped with the current time.
func (c *collector) line(seq int) string {
	return fmt.Sprintf("%s%d %d\n", c.tag, seq, time.Now().UnixNano())
}

func (c *collector) handle(conn int, line []byte, now int64) {
	if c.pl != nil {
		c.pl.handle(conn, line)
		return
	}
	if !bytes.HasPrefix(line, c.tag) {
		return
	}
	line = bytes.TrimRight(line, "\r\n")
	sp := bytes.LastIndexByte(line, ' ')
	ts, err := strconv.ParseInt(string(line[sp+1:]), 10, 64)
	if err != nil {
		return
	}
	if conn < len(c.perConn) {
		c.perConn[conn].Add(1)
	}
	i := c.got.Add(1) - 1
	if i < int64(len(c.lat)) {
		c.lat[i] = now - ts
	}
	for {
		l := c.last.Load()
		if now <= l || c.last.CompareAndSwap(l, now) {
			break
		}
	}
}

// wait polls until want deliveries arrived or none arrived for stall.
func (c *collector) wait(want int64, stall time.Duration) (int64, bool) {
	prev, since := int64(-1), time.Now()
	for {
		got := c.got.Load()
		if got >= want {
			return got, true
		}
		if got != prev {
			prev, since = got, time.Now()
		} else if time.Since(since) > stall {
			return got, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// percentiles returns p50 and p99 in ms. Call after wait.
func (c *collector) percentiles() (float64, float64) {
	n := min(c.got.Load(), int64(len(c.lat)))
	l := append([]int64(nil), c.lat[:n]...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	p := func(q float64) float64 { return float64(l[int(q*float64(len(l)-1))]) / 1e6 }
	return p(0.50), p(0.99)
}

// group is a set of held streams, one goroutine each.
type group struct {
	mu      sync.Mutex
	conns   []net.Conn
	idx     []int // connection index of each conn (collector.perConn)
	cur     atomic.Pointer[collector]
	readers sync.WaitGroup
	closing atomic.Bool
	lost    atomic.Int64   // streams ended by the server
	rejects map[string]int // retried 5xx answers while opening
	ends    []string       // how the first lost streams ended (noteLost)
}

// noteLost records when and how a stream the bench did not close ended
// (the first 20): io.EOF after a chunked body is the server's final chunk,
// "unexpected EOF" a close mid-body, a reset an abort.
func (g *group) noteLost(conn net.Conn, err error) {
	g.lost.Add(1)
	how := err.Error()
	if err == io.EOF {
		how = "final chunk (clean end)"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ends) < 20 {
		g.ends = append(g.ends, fmt.Sprintf("%s %s: %s", time.Now().UTC().Format("15:04:05.000"), conn.LocalAddr(), how))
	}
}

// lostSummary lists noteLost's records, "" if none.
func (g *group) lostSummary() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.ends, "; ")
}

// rejected is a 5xx answer to a stream open.
type rejected struct{ msg string }

func (r rejected) Error() string { return r.msg }

// rejectSummary describes the retried 5xx answers, "" if none.
func (g *group) rejectSummary() string {
	var s []string
	for e, k := range g.rejects {
		s = append(s, fmt.Sprintf("%dx %s", k, e))
	}
	sort.Strings(s)
	return strings.Join(s, "; ")
}

// live is the number of open streams the server has not ended.
func (g *group) live() int { return g.size() - int(g.lost.Load()) }

func (g *group) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// close closes every stream and returns how many the server had ended first.
func (g *group) close() int64 {
	g.closing.Store(true)
	g.mu.Lock()
	for _, c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.readers.Wait()
	return g.lost.Load()
}

// openGroup opens n streams on channel with at most inflight opens pending;
// it returns once every stream got its first line (or failed), with the
// time that took and the first error.
func openGroup(addr, channel string, n, inflight int) (*group, time.Duration, error) {
	return openGroupWith(n, inflight, func(i int) (net.Conn, lineReader, error) { return openStream(addr, channel, i) })
}

// lineReader yields one delivery at a time: a line of a stream (an
// unfinished long line with bufio.ErrBufferFull), or a WebSocket message.
type lineReader interface {
	ReadSlice(delim byte) ([]byte, error)
}

// openGroupWith opens n connections with open (i = connection index), at
// most inflight pending, as openGroup does.
func openGroupWith(n, inflight int, open func(i int) (net.Conn, lineReader, error)) (*group, time.Duration, error) {
	g := &group{}
	sem := make(chan struct{}, inflight)
	var opened sync.WaitGroup
	var emu sync.Mutex
	errs := map[string]int{}
	g.rejects = map[string]int{}
	rejects := g.rejects
	start := time.Now()
	for i := 0; i < n; i++ {
		opened.Add(1)
		g.readers.Add(1)
		go func() {
			defer g.readers.Done()
			// A 5xx (server overloaded) is retried after a short pause, as a
			// real client would; the rejections are reported.
			var conn net.Conn
			var lr lineReader
			var err error
			for try := 1; ; try++ {
				sem <- struct{}{}
				conn, lr, err = open(i)
				<-sem
				if err == nil {
					break
				}
				var rej rejected
				retry := errors.As(err, &rej) && try < 50
				emu.Lock()
				if retry {
					rejects[err.Error()]++
				} else {
					errs[err.Error()]++
				}
				emu.Unlock()
				if !retry {
					opened.Done()
					return
				}
				time.Sleep(time.Duration(try) * 10 * time.Millisecond)
			}
			g.mu.Lock()
			g.conns = append(g.conns, conn)
			g.idx = append(g.idx, i)
			g.mu.Unlock()
			opened.Done()
			for {
				line, err := lr.ReadSlice('\n')
				if err == bufio.ErrBufferFull {
					// The start of a long line: only pubload's are long.
					if c := g.cur.Load(); c != nil && c.pl != nil {
						c.pl.handle(i, line)
					}
					continue
				}
				if err != nil {
					if !g.closing.Load() {
						g.noteLost(conn, err)
					}
					return
				}
				if c := g.cur.Load(); c != nil {
					c.handle(i, line, time.Now().UnixNano())
				}
			}
		}()
	}
	opened.Wait()
	el := time.Since(start)
	if len(errs) == 0 {
		return g, el, nil
	}
	var s []string
	for e, k := range errs {
		s = append(s, fmt.Sprintf("%dx %s", k, e))
	}
	sort.Strings(s)
	return g, el, fmt.Errorf("%s", strings.Join(s, "; "))
}

// openStream sends GET /stream?channel=... from source address
// 127.0.0.(2+i%8) and reads the response head and the first body line.
func openStream(addr, channel string, i int) (net.Conn, *bufio.Reader, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /stream?channel=%s HTTP/1.1\r\nHost: bench\r\n\r\n", channel); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 1024)
	status, err := br.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("reading status: %w", err)
	}
	chunked, clen := false, 0
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("reading headers: %w", err)
		}
		if h == "\r\n" || h == "\n" {
			break
		}
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.ToLower(strings.TrimSpace(v))
		if k == "transfer-encoding" && strings.Contains(v, "chunked") {
			chunked = true
		}
		if k == "content-length" {
			clen, _ = strconv.Atoi(v)
		}
	}
	if !strings.Contains(status, " 200 ") {
		body := make([]byte, min(clen, 200))
		conn.SetDeadline(time.Now().Add(time.Second))
		n, _ := io.ReadFull(br, body)
		conn.Close()
		err := fmt.Errorf("%s: %q", strings.TrimSpace(status), body[:n])
		if strings.Contains(status, " 5") {
			return nil, nil, rejected{err.Error()}
		}
		return nil, nil, err
	}
	lr := br
	if chunked {
		lr = bufio.NewReaderSize(httputil.NewChunkedReader(br), 512)
	}
	first, err := lr.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("reading first line: %w", err)
	}
	if first != "[stream opened]\n" {
		conn.Close()
		return nil, nil, fmt.Errorf("first line %q", first)
	}
	conn.SetDeadline(time.Time{})
	return conn, lr, nil
}
