package main

// The scale part (issue 9 §2): as many held streams as this machine
// allows, up to -scale-n (100,000), through one tack whose runner starts
// several connection managers (connmgr_count auto: client_maxconn is set
// to -scale-n plus 10 %, so each instance stays under its fd limit).
// The streams come from worker processes (this binary re-executed with
// -scale-worker), each holding at most -scale-per-worker connections so
// it stays under the 20,000-file hard limit per process, from source
// addresses 127.0.0.2…9 (openStream). At each step of -scale-steps the
// part prints the memory of every tack process (Pss/RSS, as the streams
// part) per held stream, and the time from one publish to its last
// delivery on every live stream.
//
// Worker protocol (stdin commands, one stdout line each):
//
//	open <k>   open k more streams     -> "opened <total> <live> <errors or ->"
//	arm <tag>  count lines tagged tag  -> "armed <live>"
//	wait       wait for them (10 s stall bound) -> "got <n> <last delivery unix ns>"
//	lost       streams the server ended -> "lost <n> <when, local address, how; ...>"

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

var scaleOpts struct {
	n         int
	steps     string
	perWorker int
	inflight  int
	worker    string // worker mode: the server address
	pushpin   bool
	perf      string
}

func init() {
	flag.IntVar(&scaleOpts.n, "scale-n", 100000, "scale: most held streams")
	flag.StringVar(&scaleOpts.steps, "scale-steps", "20000,50000,100000", "scale: stream counts at which memory and publish are measured")
	flag.IntVar(&scaleOpts.perWorker, "scale-per-worker", 16000, "scale: streams per client process (under its fd limit)")
	flag.IntVar(&scaleOpts.inflight, "scale-inflight", 200, "scale: stream opens in flight per client process")
	flag.BoolVar(&scaleOpts.pushpin, "scale-pushpin", false, "scale: also run it against the real Pushpin (one condure; it stops near its fd limit)")
	flag.StringVar(&scaleOpts.worker, "scale-worker", "", "internal: run as a scale client process against this address")
	flag.StringVar(&scaleOpts.perf, "scale-perf", "", "scale: record `perf record -a -g` of the whole machine into this file during the publishes of the last step (needs perf)")
}

// scaleWorker is one client process seen from the parent.
type scaleWorker struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (w *scaleWorker) ask(cmd string) ([]string, error) {
	if _, err := fmt.Fprintln(w.in, cmd); err != nil {
		return nil, err
	}
	line, err := w.out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("worker: %q: %w", cmd, err)
	}
	return strings.Fields(line), nil
}

func runScale(bin string) error {
	absBin, _ := filepath.Abs(bin)
	if err := scaleSuite("tack", filepath.Join(absBin, "tack"), ""); err != nil {
		return err
	}
	if scaleOpts.pushpin {
		if _, err := exec.LookPath("pushpin"); err == nil {
			return scaleSuite("pushpin", "pushpin", "pushpin")
		}
	}
	return nil
}

// scaleSuite runs the scale part against one runner.
func scaleSuite(name, runner, kind string) error {
	var steps []int
	for _, f := range strings.Split(scaleOpts.steps, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return fmt.Errorf("-scale-steps: bad value %q", f)
		}
		steps = append(steps, min(v, scaleOpts.n))
	}
	clientMaxConn = scaleOpts.n + scaleOpts.n/10
	defer func() { clientMaxConn = 50000 }()
	s, err := startSuite(name, runner, kind, "* test")
	if err != nil {
		return err
	}
	defer s.stop()
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	cms, _ := filepath.Glob(filepath.Join(s.dir, "run", "condure*.pid"))
	fmt.Printf("scale: up to %d held streams, one %s (%d connection managers, client_maxconn=%d), clients in processes of <= %d\n",
		scaleOpts.n, name, len(cms), clientMaxConn, scaleOpts.perWorker)
	time.Sleep(time.Second)
	base, baseDetail := s.memory()
	fmt.Printf("  idle: %d MiB (%s)\n", base/1024, baseDetail)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	nw := (scaleOpts.n + scaleOpts.perWorker - 1) / scaleOpts.perWorker
	ws := make([]*scaleWorker, nw)
	for i := range ws {
		cmd := exec.Command(self, "-scale-worker", addr, "-scale-inflight", strconv.Itoa(scaleOpts.inflight))
		cmd.Stderr = os.Stderr
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		ws[i] = &scaleWorker{cmd: cmd, in: in, out: bufio.NewReader(out)}
	}
	defer func() {
		for _, w := range ws {
			w.in.Close()
			w.cmd.Wait()
		}
	}()

	held := make([]int, nw)
	stopPerf := func() {}
	defer func() { stopPerf() }()
	for _, target := range steps {
		t0 := time.Now()
		type answer struct {
			i   int
			f   []string
			err error
		}
		answers := make(chan answer, nw)
		for i, w := range ws {
			share := target/nw + b2i(i < target%nw)
			go func() {
				f, err := w.ask(fmt.Sprintf("open %d", max(share-held[i], 0)))
				answers <- answer{i, f, err}
			}()
		}
		total, live := 0, 0
		var errs []string
		for range ws {
			a := <-answers
			if a.err != nil {
				return a.err
			}
			if len(a.f) < 4 {
				return fmt.Errorf("worker answer %q", a.f)
			}
			tot, _ := strconv.Atoi(a.f[1])
			lv, _ := strconv.Atoi(a.f[2])
			held[a.i] = tot
			total += tot
			live += lv
			if e := strings.Join(a.f[3:], " "); e != "-" {
				errs = append(errs, e)
			}
		}
		el := time.Since(t0)
		time.Sleep(2 * time.Second)
		mem, detail := s.memory()
		per := float64(mem-base) * 1024 / float64(max(live, 1))
		fmt.Printf("  %d streams held (%d live) in %v; server memory %d MiB, %.1f KiB per stream above idle; all-in %.1f KiB\n      %s\n",
			total, live, el.Round(time.Millisecond), mem/1024, per/1024, float64(mem)/float64(max(live, 1)), detail)
		if len(errs) > 0 {
			fmt.Printf("      open errors: %s\n", strings.Join(errs, "; "))
		}
		if s.exited() {
			return fmt.Errorf("runner exited\n%s", s.log())
		}

		// One publish to every live stream, 3 times.
		var ms []float64
		if scaleOpts.perf != "" && target == steps[len(steps)-1] {
			if stopPerf, err = startPerf(scaleOpts.perf); err != nil {
				return err
			}
		}
		for k := 1; k <= 3; k++ {
			tag := fmt.Sprintf("s%dp%d", target, k)
			want := 0
			for _, w := range ws {
				f, err := w.ask("arm " + tag)
				if err != nil {
					return err
				}
				n, _ := strconv.Atoi(f[1])
				want += n
			}
			col := newCollector(tag, 0)
			t0 := time.Now()
			if err := publish(s.pubPort, "scale", col.line(0)); err != nil {
				return err
			}
			got, last := 0, int64(0)
			for _, w := range ws {
				f, err := w.ask("wait")
				if err != nil {
					return err
				}
				n, _ := strconv.Atoi(f[1])
				l, _ := strconv.ParseInt(f[2], 10, 64)
				got += n
				last = max(last, l)
			}
			if got < want {
				fmt.Printf("      publish %d: %d of %d streams received it\n", k, got, want)
			}
			ms = append(ms, float64(last-t0.UnixNano())/1e6)
			time.Sleep(500 * time.Millisecond)
		}
		stopPerf()
		fmt.Printf("      one publish -> %d streams, last delivery: %s ms\n", live, fmtList(ms))
		for i, w := range ws {
			f, err := w.ask("lost")
			if err != nil {
				return err
			}
			if len(f) > 2 {
				fmt.Printf("      client %d: %s streams ended by the server: %s\n", i, f[1], strings.Join(f[2:], " "))
			}
		}
		if total < target {
			fmt.Printf("  stopped: %d of %d streams opened\n", total, target)
			break
		}
	}
	return nil
}

// startPerf starts a system-wide perf recording (call graphs, 999 Hz)
// into file; the returned function ends it and waits for perf to write.
func startPerf(file string) (func(), error) {
	cmd := exec.Command("perf", "record", "-a", "-g", "-F", "999", "-o", file)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("-scale-perf: %w", err)
	}
	time.Sleep(time.Second) // perf attaches to every CPU
	done := false
	return func() {
		if done {
			return
		}
		done = true
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		fmt.Printf("      perf recording of the publishes: %s\n", file)
	}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// scaleWorkerMain is a client process: it holds streams on channel
// "scale" and answers the parent's commands (see the file comment).
func scaleWorkerMain(addr string) int {
	var groups []*group
	var col *collector
	live := func() int {
		n := 0
		for _, g := range groups {
			n += g.live()
		}
		return n
	}
	total := func() int {
		n := 0
		for _, g := range groups {
			n += g.size()
		}
		return n
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "open":
			k, _ := strconv.Atoi(f[1])
			errs := "-"
			if k > 0 {
				g, _, err := openGroup(addr, "scale", k, scaleOpts.inflight)
				groups = append(groups, g)
				if err != nil {
					errs = summarizeErrors(err.Error())
				}
			}
			fmt.Printf("opened %d %d %s\n", total(), live(), errs)
		case "arm":
			col = newCollector(f[1], 0)
			for _, g := range groups {
				g.cur.Store(col)
			}
			fmt.Printf("armed %d\n", live())
		case "wait":
			if col == nil {
				fmt.Println("got 0 0")
				continue
			}
			got, _ := col.wait(int64(live()), 10*time.Second)
			fmt.Printf("got %d %d\n", got, col.last.Load())
		case "lost":
			n, ends := 0, []string{}
			for _, g := range groups {
				n += int(g.lost.Load())
				if e := g.lostSummary(); e != "" {
					ends = append(ends, e)
				}
			}
			fmt.Printf("lost %d %s\n", n, strings.Join(ends, "; "))
		}
	}
	for _, g := range groups {
		g.close()
	}
	return 0
}

var addrRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)

// summarizeErrors folds openGroup's "Nx message; ..." list into one count
// per message with the addresses left out (each names its source port).
func summarizeErrors(list string) string {
	counts := map[string]int{}
	for _, part := range strings.Split(strings.ReplaceAll(list, "\n", " "), "; ") {
		n, msg, ok := strings.Cut(part, "x ")
		k, err := strconv.Atoi(n)
		if !ok || err != nil {
			k, msg = 1, part
		}
		counts[addrRE.ReplaceAllString(msg, "ADDR")] += k
	}
	var out []string
	for msg, k := range counts {
		out = append(out, fmt.Sprintf("%dx %s", k, msg))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
