package main

// The pubload part (issue 7's reproduction): -pl-streams held streams read
// as fast as they can while -pl-pubs concurrent senders POST -pl-items items
// of -pl-size bytes, one item per request, to the HTTP publish API. Every
// stream should receive every item, each sender's items in order. It runs
// -pl-runs times per suite and prints the items received per stream, once
// with message_rate/message_hwm unset and once with Pushpin's shipped
// 2500/25000 (-pl-configs).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var plOpts struct {
	streams, pubs, items, size, runs int
	configs                          string
}

// plConfigs are the [handler] additions of the -pl-configs choices.
var plConfigs = map[string]string{
	"unset":   "",
	"shipped": "message_rate=2500\nmessage_hwm=25000\n",
}

func runPubload(bin string, withPushpin bool) error {
	absBin, _ := filepath.Abs(bin)
	type target struct{ name, runner, kind string }
	targets := []target{{"tack", filepath.Join(absBin, "tack"), ""}}
	if _, err := exec.LookPath("pushpin"); err == nil && withPushpin {
		targets = append(targets, target{"pushpin 1.36", "pushpin", "pushpin"})
	}
	o := plOpts
	fmt.Printf("publish load: %d streams, %d senders, %d items of %d bytes, one item per POST, %d runs\n",
		o.streams, o.pubs, o.items, o.size, o.runs)
	for _, cfgName := range strings.Split(o.configs, ",") {
		extra, ok := plConfigs[cfgName]
		if !ok {
			return fmt.Errorf("-pl-configs: unknown %q (unset, shipped)", cfgName)
		}
		for _, t := range targets {
			handlerExtra = extra
			s, err := startSuite(t.name, t.runner, t.kind, "* test")
			handlerExtra = ""
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			for run := 1; run <= o.runs; run++ {
				r := publoadRun(s, fmt.Sprintf("pl%d", run))
				fmt.Printf("  %-12s message_rate %-7s run %d: %s\n", t.name, cfgName, run, r)
			}
			s.stop()
		}
	}
	return nil
}

// publoadRun runs the load once on channel and describes the result.
func publoadRun(s *suite, channel string) string {
	o := plOpts
	addr := fmt.Sprintf("127.0.0.1:%d", s.port)
	g, _, err := openGroup(addr, channel, o.streams, o.streams)
	if err != nil {
		g.close()
		return "opening streams: " + err.Error()
	}
	defer g.close()
	c := &plCollector{got: make([]atomic.Int64, o.streams), last: make([][]int, o.streams), order: make([]atomic.Int64, o.streams)}
	for i := range c.last {
		c.last[i] = make([]int, o.pubs)
		for p := range c.last[i] {
			c.last[i][p] = -1
		}
	}
	g.cur.Store(&collector{pl: c})
	per := o.items / o.pubs
	pad := max(o.size-len(fmt.Sprintf("PL %d %d \n", o.pubs, o.items)), 0)
	var wg sync.WaitGroup
	var pubErrs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for p := 0; p < o.pubs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 60 * time.Second}
			for k := 0; k < per; k++ {
				line := fmt.Sprintf("PL %d %d ", p, k)
				line += strings.Repeat("x", max(pad+len(fmt.Sprintf("PL %d %d ", o.pubs, o.items))-len(line), 0)) + "\n"
				if err := publishOne(cl, s.pubPort, channel, line); err != nil {
					pubErrs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	pubTime := time.Since(start)
	want := int64(per * o.pubs)
	// Wait until every stream has everything or nothing arrives for 5 s.
	prev, since := int64(-1), time.Now()
	for {
		var sum int64
		for i := range c.got {
			sum += c.got[i].Load()
		}
		if sum >= want*int64(o.streams) {
			break
		}
		if sum != prev {
			prev, since = sum, time.Now()
		} else if time.Since(since) > 5*time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	counts := make([]int, o.streams)
	var disorder int64
	for i := range counts {
		counts[i] = int(c.got[i].Load())
		disorder += c.order[i].Load()
	}
	sort.Ints(counts)
	full := 0
	for _, n := range counts {
		if int64(n) == want {
			full++
		}
	}
	out := fmt.Sprintf("per stream min %d median %d max %d of %d; %d/%d streams complete; out of order %d; publish %.1fs (%.0f items/s)",
		counts[0], counts[len(counts)/2], counts[len(counts)-1], want, full, o.streams, disorder,
		pubTime.Seconds(), float64(want)/pubTime.Seconds())
	if n := pubErrs.Load(); n > 0 {
		out += fmt.Sprintf("; %d publish errors (first: %v)", n, firstErr.Load())
	}
	if n := g.lost.Load(); n > 0 {
		out += fmt.Sprintf("; %d streams ended by the server", n)
	}
	return out
}

// plCollector counts the pubload lines of each stream and checks each
// sender's order.
type plCollector struct {
	mu    sync.Mutex
	got   []atomic.Int64
	order []atomic.Int64
	last  [][]int // per stream, per sender: last sequence seen
}

func (c *plCollector) handle(conn int, line []byte) {
	if !bytes.HasPrefix(line, []byte("PL ")) || conn >= len(c.got) {
		return
	}
	f := bytes.Fields(line)
	if len(f) < 3 {
		return
	}
	p, err1 := strconv.Atoi(string(f[1]))
	k, err2 := strconv.Atoi(string(f[2]))
	if err1 != nil || err2 != nil {
		return
	}
	c.got[conn].Add(1)
	c.mu.Lock()
	if p < len(c.last[conn]) {
		if k <= c.last[conn][p] {
			c.order[conn].Add(1)
		}
		c.last[conn][p] = k
	}
	c.mu.Unlock()
}

// publishOne POSTs one http-stream item; a non-200 answer is an error.
func publishOne(cl *http.Client, port int, channel, content string) error {
	b, _ := json.Marshal(map[string]any{"items": []any{map[string]any{
		"channel": channel, "formats": map[string]any{"http-stream": map[string]string{"content": content}},
	}}})
	resp, err := cl.Post(fmt.Sprintf("http://127.0.0.1:%d/publish/", port), "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(out))
	}
	return nil
}
