package main

// WebSocket figures (parts ws and wsfloor): GRIP WebSocket connections
// through a suite to the bench's own GRIP WebSocket backend, which accepts
// `Sec-WebSocket-Extensions: grip` and subscribes each connection to the
// channel in its query with a `c:` subscribe message; ws-message publishes
// reach the clients. The backend (and the floor's null WebSocket server)
// run in a child process of the bench (this binary with wsServerEnv set):
// the backend holds one connection per client, and one process may hold
// at most 20,000 files. The figures: connections established per second,
// memory per idle WebSocket across the suite's processes, burst deliveries
// /s and publish→receive p50/p99 to -n and -small connections, and
// latency at a steady -rate publishes/s to -small connections.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// wsServerEnv set to "grip" or "null" makes this binary a WebSocket server
// child (wsServerMain) instead of the bench.
const wsServerEnv = "TACK_BENCH_WS_SERVER"

var wsItems = flag.Int("ws-items", 10, "ws parts: ws-message items per burst")

// wsServer is the child's server: in grip mode a GRIP WebSocket backend,
// in null mode a WebSocket server that writes each POST /publish body as a
// text message to every connection, through the connection's writer
// goroutine, which writes what has queued up in one writev (as
// tack-connmgr does).
type wsServer struct {
	grip  bool
	mu    sync.Mutex
	conns map[net.Conn]chan []byte
}

// nullOutQueue is the frames a null-server connection may have queued; a
// publish waits for room (the floor loses nothing).
const nullOutQueue = 64

// nullWriter writes the frames queued on out to conn until out closes.
func nullWriter(conn net.Conn, out chan []byte) {
	for f := range out {
		bufs := net.Buffers{f}
	more:
		for len(bufs) < nullOutQueue {
			select {
			case g, ok := <-out:
				if !ok {
					break more
				}
				bufs = append(bufs, g)
			default:
				break more
			}
		}
		if _, err := bufs.WriteTo(conn); err != nil {
			for range out {
			}
			return
		}
	}
}

// wsServerMain serves until its stdin closes (the bench ended), printing
// the listen address first.
func wsServerMain(mode string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench ws server:", err)
		os.Exit(1)
	}
	s := &wsServer{grip: mode == "grip", conns: map[net.Conn]chan []byte{}}
	go (&http.Server{Handler: s}).Serve(ln)
	fmt.Println(ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && r.URL.Path == "/publish" {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		frame := ws.MustCompileFrame(ws.NewTextFrame(b))
		s.mu.Lock()
		for _, out := range s.conns {
			out <- frame
		}
		s.mu.Unlock()
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		io.WriteString(w, "bench ws server\n")
		return
	}
	u := ws.HTTPUpgrader{}
	if s.grip {
		if !strings.Contains(r.Header.Get("Sec-WebSocket-Extensions"), "grip") {
			http.Error(w, "GRIP extension not offered", http.StatusBadRequest)
			return
		}
		u.Header = http.Header{"Sec-Websocket-Extensions": {"grip"}}
	}
	conn, _, _, err := u.Upgrade(r, w)
	if err != nil {
		return
	}
	defer conn.Close()
	if s.grip {
		sub, _ := json.Marshal(map[string]string{"type": "subscribe", "channel": r.URL.Query().Get("channel")})
		if err := wsutil.WriteServerText(conn, append([]byte("c:"), sub...)); err != nil {
			return
		}
	} else {
		out := make(chan []byte, nullOutQueue)
		go nullWriter(conn, out)
		s.mu.Lock()
		s.conns[conn] = out
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.conns, conn)
			close(out)
			s.mu.Unlock()
		}()
	}
	br := bufio.NewReaderSize(conn, 512)
	rw := struct {
		io.Reader
		io.Writer
	}{br, conn}
	for {
		if _, _, err := wsutil.ReadClientData(rw); err != nil {
			return
		}
	}
}

// wsChild is a running wsServerMain child.
type wsChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startWSChild(mode string) (*wsChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), wsServerEnv+"="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("ws %s server: %w", mode, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("ws %s server: reading its address: %w", mode, err)
	}
	return &wsChild{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}, nil
}

func (c *wsChild) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// publish has the null server write content to every connection.
func (c *wsChild) publish(_, content string) error {
	resp, err := pubClient.Post("http://"+c.addr+"/publish", "text/plain", strings.NewReader(content))
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("null server publish: %s", resp.Status)
	}
	return nil
}

// wsReader yields the WebSocket's data messages (control frames are
// answered by wsutil).
type wsReader struct{ rw io.ReadWriter }

func (r *wsReader) ReadSlice(byte) ([]byte, error) {
	b, _, err := wsutil.ReadServerData(r.rw)
	return b, err
}

// openWS opens a WebSocket to ws://addr+path from source address
// 127.0.0.(2+i%8); a 5xx answer is a rejected (retried) open.
func openWS(addr, path string, i int) (net.Conn, lineReader, error) {
	d := ws.Dialer{
		Timeout: 30 * time.Second,
		NetDial: func(ctx context.Context, network, a string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}
			return nd.DialContext(ctx, network, a)
		},
	}
	conn, br, _, err := d.Dial(context.Background(), "ws://"+addr+path)
	if err != nil {
		var st ws.StatusError
		if errors.As(err, &st) && st >= 500 {
			return nil, nil, rejected{err.Error()}
		}
		return nil, nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, 1024)
	}
	return conn, &wsReader{rw: struct {
		io.Reader
		io.Writer
	}{br, conn}}, nil
}

// wsWarm publishes probes to channel until every live connection of g got
// one (subscriptions are made after the handshake, so a fresh connection
// may not be subscribed yet), for at most d.
func wsWarm(pub pubFunc, g *group, channel string, d time.Duration) error {
	col := newCollector("w", 0)
	g.cur.Store(col)
	deadline := time.Now().Add(d)
	for k := 0; ; k++ {
		if err := pub(channel, col.line(k)); err != nil {
			return err
		}
		col.wait(int64(g.live()*(k+1)), 300*time.Millisecond)
		missing := 0
		g.mu.Lock()
		for _, i := range g.idx {
			if col.perConn[i].Load() == 0 {
				missing++
			}
		}
		g.mu.Unlock()
		if missing <= int(g.lost.Load()) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d connections got no probe in %v", missing, g.size(), d)
		}
	}
}

// wsMeasure runs the WebSocket measurements with open (a connection to
// channel, index i) and pub; mem (nil for the floor) lists the server's
// processes' memory in KiB.
func wsMeasure(name string, open func(channel string, i int) (net.Conn, lineReader, error), pub pubFunc,
	mem func() []procKiB, res *gripResult, fail func(string, ...any)) {
	o := gripOpts
	opener := func(channel string) func(int) (net.Conn, lineReader, error) {
		return func(i int) (net.Conn, lineReader, error) { return open(channel, i) }
	}
	var before []procKiB
	if mem != nil {
		time.Sleep(time.Second)
		before = mem()
	}
	g, el, err := openGroupWith(o.n, o.inflight, opener("bench"))
	opened := g.size()
	if r := g.rejectSummary(); r != "" {
		res.info = append(res.info, fmt.Sprintf("opening %d websockets: retried rejections: %s", o.n, r))
	}
	if err != nil {
		fail("opened %d/%d websockets in %v; errors: %v", opened, o.n, el.Round(time.Millisecond), err)
	}
	if opened > 0 {
		res.v["open"] = float64(opened) / el.Seconds()
	}
	fmt.Printf("  %s: %d websockets open in %v (%.0f/s)\n", name, opened, el.Round(time.Millisecond), float64(opened)/el.Seconds())
	if mem != nil && opened > 0 {
		time.Sleep(2 * time.Second)
		total, detail := wsMemPerConn(before, mem(), opened)
		res.v["mem"] = total
		fmt.Printf("      memory per idle websocket: %.1f KiB (%s)\n", total, detail)
	}
	if opened > 0 {
		if err := wsWarm(pub, g, "bench", 60*time.Second); err != nil {
			fail("subscribing %d websockets: %v", opened, err)
		} else {
			burst(name, pub, g, "bench", "wN", g.live(), *wsItems, res, "burstN", fail)
		}
	}
	if lost := g.close(); lost > 0 {
		fail("%d of %d websockets were closed by the server before the bench closed them", lost, opened)
	}

	g, _, err = openGroupWith(o.small, o.inflight, opener("small"))
	if err != nil {
		fail("small set: opened %d/%d websockets; errors: %v", g.size(), o.small, err)
	}
	if g.size() > 0 {
		if err := wsWarm(pub, g, "small", 30*time.Second); err != nil {
			fail("subscribing %d websockets: %v", g.size(), err)
		} else {
			burst(name, pub, g, "small", "wS", g.live(), *wsItems, res, "burstS", fail)
			steady(name, pub, g, "small", g.live(), res, fail)
		}
	}
	if lost := g.close(); lost > 0 {
		fail("%d of %d small-set websockets were closed by the server before the bench closed them", lost, g.size())
	}
}

// wsMemPerConn returns the memory growth from before to after per
// connection in KiB, in all and by process name ("name=KiB ...").
func wsMemPerConn(before, after []procKiB, conns int) (float64, string) {
	by := map[string]int64{}
	for _, p := range before {
		by[p.name] -= p.kib
	}
	var names []string
	for _, p := range after {
		if !slices.Contains(names, p.name) {
			names = append(names, p.name)
		}
		by[p.name] += p.kib
	}
	var total int64
	var parts []string
	for _, n := range names {
		total += by[n]
		parts = append(parts, fmt.Sprintf("%s=%.1f", n, float64(by[n])/float64(conns)))
	}
	return float64(total) / float64(conns), strings.Join(parts, " ")
}

// wsSuite measures one suite (tack or pushpin) routing `*` to the bench's
// GRIP WebSocket backend.
func wsSuite(name, runner, kind string) *gripResult {
	res := &gripResult{v: map[string]float64{}}
	be, err := startWSChild("grip")
	if err != nil {
		res.notef("%v", err)
		return res
	}
	defer be.stop()
	lib, err := wsLibDir(runner, kind)
	if err != nil {
		res.notef("lib dir: %v", err)
		return res
	}
	defer os.RemoveAll(lib)
	globalExtra = "libdir=" + lib + "\n"
	s, err := startSuite(name, runner, kind, "* "+be.addr)
	globalExtra = ""
	if err != nil {
		res.notef("start: %v", err)
		return res
	}
	defer s.stop()
	s.format = "ws-message"
	logged := false
	fail := func(format string, a ...any) {
		res.notef(format, a...)
		fmt.Printf("  %s: FAIL: %s\n", name, fmt.Sprintf(format, a...))
		if !logged {
			logged = true
			fmt.Print(s.log())
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := s.publish("none", "x")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			fail("publish API not ready: %v", err)
			return res
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	open := func(channel string, i int) (net.Conn, lineReader, error) {
		return openWS(addr, "/ws?channel="+channel, i)
	}
	wsMeasure(name, open, s.publish, s.procMemory, res, fail)
	if s.exited() {
		fail("runner exited")
	}
	return res
}

// wsLibDir makes a private lib dir for a suite: the suite's own
// internal.conf and runner/zurl.conf.template, the template's
// max_open_requests=2000 (Pushpin 1.36's shipped value, which both zurl and
// tack-zhttp-client honour) raised to 30000, since every GRIP WebSocket
// holds one backend request open for its whole life.
func wsLibDir(runner, kind string) (string, error) {
	src := "/usr/lib/pushpin"
	if kind != "pushpin" {
		src = filepath.Join(filepath.Dir(runner), "..", "configs")
	}
	dir, err := os.MkdirTemp("", "tkblib")
	if err != nil {
		return "", err
	}
	conf, err := os.ReadFile(filepath.Join(src, "internal.conf"))
	if err != nil {
		return dir, err
	}
	tpl, err := os.ReadFile(filepath.Join(src, "runner", "zurl.conf.template"))
	if err != nil {
		return dir, err
	}
	if !bytes.Contains(tpl, []byte("\nmax_open_requests=2000\n")) {
		return dir, fmt.Errorf("%s: no max_open_requests=2000 line to raise", filepath.Join(src, "runner", "zurl.conf.template"))
	}
	tpl = bytes.Replace(tpl, []byte("\nmax_open_requests=2000\n"), []byte("\nmax_open_requests=30000\n"), 1)
	if err := os.WriteFile(filepath.Join(dir, "internal.conf"), conf, 0o644); err != nil {
		return dir, err
	}
	if err := os.Mkdir(filepath.Join(dir, "runner"), 0o755); err != nil {
		return dir, err
	}
	return dir, os.WriteFile(filepath.Join(dir, "runner", "zurl.conf.template"), tpl, 0o644)
}

// wsFloor measures the bench's WebSocket client against the null server.
func wsFloor() *gripResult {
	res := &gripResult{v: map[string]float64{}}
	srv, err := startWSChild("null")
	if err != nil {
		res.notef("%v", err)
		return res
	}
	defer srv.stop()
	fail := func(format string, a ...any) {
		res.notef(format, a...)
		fmt.Printf("  floor: FAIL: %s\n", fmt.Sprintf(format, a...))
	}
	open := func(channel string, i int) (net.Conn, lineReader, error) {
		return openWS(srv.addr, "/ws?channel="+channel, i)
	}
	wsMeasure("floor (null ws server)", open, srv.publish, nil, res, fail)
	return res
}

func runWS(parts map[string]bool, bin string, withPushpin bool) error {
	o := gripOpts
	if o.n > maxClients || o.small > maxClients {
		return fmt.Errorf("-n/-small above %d would exceed the bench's 20,000-file limit", maxClients)
	}
	fmt.Printf("\nGRIP WebSocket (bench's GRIP ws backend in a child process): %d websockets (%d opens in flight), small set %d, burst %d ws-message items, steady %d publishes/s for %v\n",
		o.n, o.inflight, o.small, *wsItems, o.rate, o.steadyD)
	var tack, pp, fl *gripResult
	if parts["ws"] {
		absBin, _ := filepath.Abs(bin)
		tack = wsSuite("tack", filepath.Join(absBin, "tack"), "")
		if withPushpin {
			if _, err := exec.LookPath("pushpin"); err == nil {
				pp = wsSuite("pushpin 1.36", "pushpin", "pushpin")
			}
		}
	}
	if parts["wsfloor"] {
		fl = wsFloor()
	}
	printWS(tack, pp, fl)
	if tack != nil && len(tack.notes) > 0 {
		return fmt.Errorf("tack had problems in the WebSocket part (see notes above)")
	}
	return nil
}

func printWS(tack, pp, fl *gripResult) {
	o := gripOpts
	get := func(r *gripResult, k string) float64 {
		if r == nil {
			return math.NaN()
		}
		return r.get(k)
	}
	ratio := func(a, b float64) string {
		if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}
	rows := []struct{ key, label, target string }{
		{"open", "websockets established /s", ""},
		{"mem", "memory per idle websocket, KiB", "<= 10"},
		{"burstN.rate", fmt.Sprintf("burst %dx%d deliveries /s", o.n, *wsItems), ">=10x pp, >=80% floor"},
		{"burstN.p50", fmt.Sprintf("burst %dx%d latency p50, ms", o.n, *wsItems), ""},
		{"burstN.p99", fmt.Sprintf("burst %dx%d latency p99, ms", o.n, *wsItems), ""},
		{"burstS.rate", fmt.Sprintf("burst %dx%d deliveries /s", o.small, *wsItems), ""},
		{"burstS.p50", fmt.Sprintf("burst %dx%d latency p50, ms", o.small, *wsItems), ""},
		{"burstS.p99", fmt.Sprintf("burst %dx%d latency p99, ms", o.small, *wsItems), ""},
		{"steady.rate", fmt.Sprintf("steady %d subs x %d/s: deliveries /s", o.small, o.rate), ""},
		{"steady.p50", "steady: latency p50, ms", ""},
		{"steady.p99", "steady: latency p99, ms", "<= 50"},
	}
	fmt.Printf("\n  %-38s %10s %10s %8s %10s %9s   %-22s %s\n", "WebSocket figure", "tack", "pushpin", "tack/pp", "floor", "tack/floor", "target", "tack")
	for _, r := range rows {
		t, p, f := get(tack, r.key), get(pp, r.key), get(fl, r.key)
		verdict := ""
		if !math.IsNaN(t) {
			switch r.key {
			case "mem":
				verdict = okMiss(t <= 10)
			case "steady.p99":
				verdict = okMiss(t <= 50)
			case "burstN.rate":
				if !math.IsNaN(p) && !math.IsNaN(f) {
					verdict = okMiss(t >= 10*p && t >= 0.8*f)
				}
			}
		}
		fmt.Printf("  %-38s %10s %10s %8s %10s %9s   %-22s %s\n", r.label, fmtNum(t), fmtNum(p), ratio(t, p), fmtNum(f), ratio(t, f), r.target, verdict)
	}
	printNotes(map[string]*gripResult{"tack": tack, "pushpin": pp, "floor": fl})
}

func okMiss(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}
