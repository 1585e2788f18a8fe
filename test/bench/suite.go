package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// suite is one running runner (tack or pushpin) with a private config,
// run dir and port block.
type suite struct {
	name    string
	dir     string
	port    int // client HTTP port
	pubPort int // HTTP publish API (5561+port_offset)
	cmd     *exec.Cmd
	done    chan struct{}
	format  string // publish format of s.publish; "" = http-stream
}

// publish publishes one item of s.format to channel through the HTTP
// publish API.
func (s *suite) publish(channel, content string) error {
	f := s.format
	if f == "" {
		f = "http-stream"
	}
	return publishFormat(s.pubPort, f, channel, content)
}

var (
	suiteSeq int
	logLevel = flag.Int("log-level", 1, "runner log_level of the measured suites (2 = info, for diagnosis)")
	keepDirs = flag.Bool("keep", false, "keep the suites' run dirs (config, logs) and print where")
	// handlerExtra is appended to the [handler] section of the next suite.
	handlerExtra string
	// clientMaxConn is the next suite's [runner] client_maxconn (tack:
	// also what connmgr_count's auto value follows).
	clientMaxConn = 50000
	// globalExtra is appended to the [global] section of the next suite.
	globalExtra string
)

// startSuite starts runner (the tack binary, or "pushpin" when kind ==
// "pushpin") with routes as the routes file and waits until GET / answers
// 200 and, when the route is the test handler, the publish API answers.
func startSuite(name, runner, kind, routes string) (*suite, error) {
	dir, err := os.MkdirTemp("", "tkb")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	// 5560..5563+offset must be free and < 32768 (below the ephemeral range).
	suiteSeq++
	offset := 20000 + (os.Getpid()%500)*10 + suiteSeq%10
	include := "{libdir}/internal.conf"
	zurl := ""
	if kind == "pushpin" {
		zurl = "zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in\nzurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream\nzurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out\n"
		include = "/usr/lib/pushpin/internal.conf"
	}
	// message_rate/message_hwm are left unset: unlimited in both.
	conf := fmt.Sprintf(`[global]
include=%s
rundir=%s/run
ipc_prefix=pushpin-
port_offset=%d
%s[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:%d
logdir=%s/log
log_level=%d
client_buffer_size=8192
client_maxconn=%d
[proxy]
routesfile=routes
%s[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_http_addr=127.0.0.1
push_in_http_port=5561
command_spec=tcp://127.0.0.1:5563
stats_spec=ipc://{rundir}/{ipc_prefix}stats
%s`, include, dir, offset, globalExtra, port, dir, *logLevel, clientMaxConn, zurl, handlerExtra)
	confPath := filepath.Join(dir, "pushpin.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "routes"), []byte(routes+"\n"), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(runner, "--config", confPath)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, _ := os.Create(filepath.Join(dir, "runner.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &suite{name: name, dir: dir, port: port, pubPort: 5561 + offset, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(s.done) }()

	deadline := time.Now().Add(30 * time.Second)
	c := &http.Client{Timeout: 2 * time.Second}
	ready := func(url string) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
	urls := []string{s.url("/")}
	if routes == "* test" {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d/", s.pubPort))
	}
	for _, u := range urls {
		for {
			err := ready(u)
			if err == nil {
				break
			}
			select {
			case <-s.done:
				err = fmt.Errorf("runner exited: %v", cmd.ProcessState)
			default:
			}
			if time.Now().After(deadline) || s.exited() {
				s.stop()
				return nil, fmt.Errorf("%s not ready: %v\n%s", name, err, s.log())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return s, nil
}

func (s *suite) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", s.port, path) }

func (s *suite) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// log returns the runner log plus any per-service log files.
func (s *suite) log() string {
	var b strings.Builder
	out, _ := os.ReadFile(filepath.Join(s.dir, "runner.log"))
	fmt.Fprintf(&b, "---- %s runner output ----\n%s", s.name, tail(out, 60))
	files, _ := filepath.Glob(filepath.Join(s.dir, "log", "*"))
	for _, f := range files {
		out, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "---- %s ----\n%s", f, tail(out, 20))
	}
	return b.String()
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = append([]string{fmt.Sprintf("[... %d lines omitted]", len(s)-lines)}, s[len(s)-lines:]...)
	}
	return strings.Join(s, "\n") + "\n"
}

// stop kills the runner's process group (SIGTERM, then SIGKILL) and removes
// the run dir.
func (s *suite) stop() {
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(6 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	// Children that did not exit with the runner.
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	if *keepDirs {
		fmt.Printf("  (%s run dir kept: %s)\n", s.name, s.dir)
		return
	}
	os.RemoveAll(s.dir)
}

// procKiB is one process's memory in KiB.
type procKiB struct {
	name string
	kib  int64
}

// memory returns the summed memory (KiB) of every descendant process of the
// runner, using smaps_rollup Pss when readable, else VmRSS, and the process
// names with their figures.
func (s *suite) memory() (int64, string) {
	var total int64
	var parts []string
	for _, p := range s.procMemory() {
		total += p.kib
		parts = append(parts, fmt.Sprintf("%s=%dMiB", p.name, p.kib/1024))
	}
	return total, strings.Join(parts, " ")
}

// procMemory returns the memory of every descendant process of the runner
// (as memory), in tree order.
func (s *suite) procMemory() []procKiB {
	children := map[int][]int{}
	names := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := strings.LastIndexByte(string(st), ')')
		j := strings.IndexByte(string(st), '(')
		if i < 0 || j < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
		names[pid] = string(st[j+1 : i])
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && len(cl) > 0 {
			arg0, _, _ := strings.Cut(string(cl), "\x00")
			names[pid] = filepath.Base(arg0)
		}
	}
	var out []procKiB
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, procKiB{name: names[c], kib: procMem(c)})
			walk(c)
		}
	}
	walk(s.cmd.Process.Pid)
	return out
}

func procMem(pid int) int64 {
	read := func(file, key string) (int64, bool) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			return 0, false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), key) {
				fl := strings.Fields(sc.Text()[len(key):])
				if len(fl) > 0 {
					n, err := strconv.ParseInt(fl[0], 10, 64)
					return n, err == nil
				}
			}
		}
		return 0, false
	}
	if n, ok := read("smaps_rollup", "Pss:"); ok {
		return n
	}
	n, _ := read("status", "VmRSS:")
	return n
}
