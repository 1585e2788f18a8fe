// Command bench compares tack with the real Pushpin 1.36 (when installed) on
// the same machine, printed side by side with ratios. `make bench` runs it
// after `make build`. Parts (-parts, comma separated; default all):
//
//	proxy    plain proxy throughput: a backend alone, through tack, through Pushpin
//	streams  held streams established per second, and server memory per held stream
//	publish  one publish to all -n held streams, median of 3
//	burst    -items publishes back to back to -small and -n subscribers
//	steady   publish->receive latency at a steady -rate publishes/s to -small subscribers
//	grip     = streams,publish,burst,steady (see grip.go)
//	pubload  issue 7's publish load: -pl-pubs senders, one item per POST, to
//	         -pl-streams reading streams; items received per stream (pubload.go)
//	scale    up to -scale-n (100,000) held streams through one tack with
//	         several connection managers: memory per stream and one publish
//	         to all at each of -scale-steps (scale.go; not in "all")
//	ws       GRIP WebSocket: websockets/s, memory per idle websocket, ws-message
//	         bursts to -n and -small websockets, steady latency (ws.go)
//	wsfloor  the bench's WebSocket client against a null WebSocket server (ws.go)
//	floor    the bench's client against a null server in-process: the most
//	         streams/s and the fastest one-line fan-out this machine allows (floor.go)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if mode := os.Getenv(wsServerEnv); mode != "" {
		wsServerMain(mode)
		return
	}
	var (
		duration = flag.Duration("d", 5*time.Second, "load duration per target")
		conns    = flag.Int("c", 32, "concurrent keep-alive client connections")
		size     = flag.Int("size", 1024, "response body bytes")
		bin      = flag.String("bin", "bin", "directory holding the tack binaries")
		pushpin  = flag.Bool("pushpin", true, "also measure the real Pushpin when installed")
		partsF   = flag.String("parts", "all", "comma-separated parts: proxy,streams,publish,burst,steady,floor,ws,wsfloor,pubload, grip (= streams..steady), all")
	)
	flag.IntVar(&gripOpts.n, "n", 10000, "held streams (GRIP parts); one bench process holds at most ~17000")
	flag.IntVar(&gripOpts.inflight, "inflight", 500, "stream opens in flight")
	flag.IntVar(&gripOpts.small, "small", 1000, "subscribers for the small burst and the steady part")
	flag.IntVar(&gripOpts.items, "items", 50, "items per burst")
	flag.IntVar(&gripOpts.rate, "rate", 10, "publishes per second in the steady part")
	flag.DurationVar(&gripOpts.steadyD, "steady-d", 10*time.Second, "steady part duration")
	flag.IntVar(&plOpts.streams, "pl-streams", 50, "pubload: reading streams")
	flag.IntVar(&plOpts.pubs, "pl-pubs", 4, "pubload: concurrent senders")
	flag.IntVar(&plOpts.items, "pl-items", 2000, "pubload: items in all")
	flag.IntVar(&plOpts.size, "pl-size", 1024, "pubload: bytes per item")
	flag.IntVar(&plOpts.runs, "pl-runs", 5, "pubload: runs per suite and config")
	flag.StringVar(&plOpts.configs, "pl-configs", "unset,shipped", "pubload: message_rate configs (unset, shipped)")
	flag.Parse()
	if scaleOpts.worker != "" {
		os.Exit(scaleWorkerMain(scaleOpts.worker))
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(*partsF, ",") {
		switch p = strings.TrimSpace(p); p {
		case "all":
			for _, q := range []string{"proxy", "streams", "publish", "burst", "steady", "floor", "ws", "wsfloor"} {
				parts[q] = true
			}
		case "grip":
			for _, q := range []string{"streams", "publish", "burst", "steady"} {
				parts[q] = true
			}
		case "proxy", "streams", "publish", "burst", "steady", "floor", "pubload", "ws", "wsfloor", "scale":
			parts[p] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "bench: unknown part %q\n", p)
			os.Exit(2)
		}
	}
	failed := false
	if parts["proxy"] {
		if err := run(*duration, *conns, *size, *bin, *pushpin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			failed = true
		}
	}
	if parts["streams"] || parts["publish"] || parts["burst"] || parts["steady"] {
		if err := runGrip(parts, *bin, *pushpin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			failed = true
		}
	}
	if parts["pubload"] {
		if err := runPubload(*bin, *pushpin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			failed = true
		}
	}
	if parts["scale"] {
		if err := runScale(*bin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			failed = true
		}
	}
	if parts["ws"] || parts["wsfloor"] {
		if err := runWS(parts, *bin, *pushpin); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			failed = true
		}
	}
	if parts["floor"] {
		if err := runFloor(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func run(d time.Duration, conns, size int, bin string, withPushpin bool) error {
	body := strings.Repeat("x", size)
	bl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	})}
	go srv.Serve(bl)
	defer srv.Close()
	backend := bl.Addr().String()

	fmt.Printf("plain proxy throughput: %d connections, %d-byte responses, %v per target\n", conns, size, d)
	direct := load("http://"+backend+"/", conns, d)
	fmt.Printf("  %-22s %9.0f req/s\n", "backend alone", direct)

	absBin, _ := filepath.Abs(bin)
	tackRPS, err := throughSuite(filepath.Join(absBin, "tack"), "", backend, conns, d)
	if err != nil {
		return fmt.Errorf("tack: %w", err)
	}
	fmt.Printf("  %-22s %9.0f req/s  %5.1f%% of backend\n", "through tack", tackRPS, 100*tackRPS/direct)

	if withPushpin {
		if _, err := exec.LookPath("pushpin"); err == nil {
			ppRPS, err := throughSuite("pushpin", "pushpin", backend, conns, d)
			if err != nil {
				fmt.Printf("  %-22s error: %v\n", "through pushpin 1.36", err)
			} else {
				fmt.Printf("  %-22s %9.0f req/s  %5.1f%% of backend  (tack/pushpin = %.1fx)\n",
					"through pushpin 1.36", ppRPS, 100*ppRPS/direct, tackRPS/ppRPS)
			}
		}
	}
	return nil
}

// load runs conns keep-alive clients against url for d and returns req/s.
func load(url string, conns int, d time.Duration) float64 {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := c.Get(url)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					n.Add(1)
				} else {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if e := errs.Load(); e > 0 {
		fmt.Printf("  (%d errors)\n", e)
	}
	return float64(n.Load()) / time.Since(start).Seconds()
}

// throughSuite starts a runner (tack or pushpin) with a private config that
// routes to backend, and measures throughput through it.
func throughSuite(runner, kind, backend string, conns int, d time.Duration) (float64, error) {
	name := "tack"
	if kind != "" {
		name = kind
	}
	s, err := startSuite(name, runner, kind, "* "+backend)
	if err != nil {
		return 0, err
	}
	defer s.stop()
	url := s.url("/")
	load(url, conns, time.Second) // warm-up
	return load(url, conns, d), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
