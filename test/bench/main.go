// Command bench measures plain proxy throughput: a backend alone, the same
// backend through tack, and (when installed) through the real Pushpin 1.36,
// printed side by side with ratios. `make bench` runs it after `make build`.
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
	"syscall"
	"time"
)

func main() {
	var (
		duration = flag.Duration("d", 5*time.Second, "load duration per target")
		conns    = flag.Int("c", 32, "concurrent keep-alive client connections")
		size     = flag.Int("size", 1024, "response body bytes")
		bin      = flag.String("bin", "bin", "directory holding the tack binaries")
		pushpin  = flag.Bool("pushpin", true, "also measure the real Pushpin when installed")
	)
	flag.Parse()
	if err := run(*duration, *conns, *size, *bin, *pushpin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
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
	dir, err := os.MkdirTemp("", "tkb")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	offset := 20000 + os.Getpid()%5000
	include := "{libdir}/internal.conf"
	zurl := ""
	if kind == "pushpin" {
		zurl = "zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out\n"
		include = "/usr/lib/pushpin/internal.conf"
	}
	conf := fmt.Sprintf(`[global]
include=%s
rundir=%s/run
ipc_prefix=pushpin-
port_offset=%d
[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:%d
logdir=%s/log
log_level=1
client_buffer_size=8192
client_maxconn=50000
[proxy]
routesfile=routes
%s[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_http_addr=127.0.0.1
push_in_http_port=5561
command_spec=tcp://127.0.0.1:5563
stats_spec=ipc://{rundir}/{ipc_prefix}stats
`, include, dir, offset, port, dir, zurl)
	confPath := filepath.Join(dir, "pushpin.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "routes"), []byte("* "+backend+"\n"), 0o644); err != nil {
		return 0, err
	}
	cmd := exec.Command(runner, "--config", confPath)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, _ := os.Create(filepath.Join(dir, "runner.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(6 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(dir, "runner.log"))
			return 0, fmt.Errorf("suite not ready: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
