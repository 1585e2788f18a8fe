package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"tack/internal/config"
)

// Several connection managers (tack's [runner] connmgr_count; Pushpin 1.36
// runs one condure). One process holds at most its file-descriptor limit
// of client connections, so the runner can start N of them: they share
// the TCP client ports (http_port and https_ports, SO_REUSEPORT: the
// kernel spreads new connections over them) and each has its own zhttp
// sockets and instance id, which proxy and handler connect to as lists.
// Replies find their connection manager by the packet's `from` (PUB
// topic) as with one. A unix socket (local_ports) cannot be shared: only
// instance 0 listens on it.
const (
	// ConnmgrFDReserve is what a connection manager keeps of its fd limit
	// for itself (ZeroMQ sockets and their ipc peers, listeners, log
	// file, Go runtime) when the limit sets its connection share.
	ConnmgrFDReserve = 200
	// MaxConnmgrCount bounds connmgr_count.
	MaxConnmgrCount = 64
)

// connmgrPlan is the connmgr_count decision: how many processes, how
// many connections each takes (--stream-maxconn) and how many threads
// each runs Go code on (GOMAXPROCS; 0 = Go's default, all cores).
type connmgrPlan struct {
	count   int
	maxConn int // per process
	procs   int
}

// planConnmgrs decides the number of connection managers. configured is
// [runner] connmgr_count (0 = auto), maxConn is client_maxconn, cpus the
// core count and fdLimit the hard RLIMIT_NOFILE children inherit.
//
// Auto: one per core, raised until client_maxconn/N fits in one
// process's fd limit minus ConnmgrFDReserve, at most MaxConnmgrCount.
// Each process gets ceil(client_maxconn/N) connections, capped at that
// fd budget. With one process the value passes unchanged (as Pushpin).
//
// Several processes share the cores: each gets GOMAXPROCS cores/N (at
// least 1), as a condure worker runs on its own thread. With Go's default
// of every core per process, the processes' threads take turns on the same
// cores, and a WebSocket burst (a write per connection, each waking a
// goroutine) spent much of connmgr's CPU on thread hand-offs and context
// switches (perf: finish_task_switch, sysmon). Measured with test/bench
// (10000 WebSockets × 10 ws-message items, 2 cores, 3 processes): 14-21 µs
// of connmgr CPU per delivery and 63000-83000 deliveries/s with 2 threads
// each, 11-12 µs and 92000-98000/s with 1.
func planConnmgrs(configured, maxConn, cpus int, fdLimit uint64) connmgrPlan {
	perProc := maxConn
	if fdLimit > ConnmgrFDReserve && fdLimit-ConnmgrFDReserve < uint64(maxConn) {
		perProc = int(fdLimit - ConnmgrFDReserve)
	}
	if perProc < 1 {
		perProc = 1
	}
	n := configured
	if n == 0 {
		n = max(cpus, (maxConn+perProc-1)/perProc, 1)
		n = min(n, MaxConnmgrCount)
	}
	if n == 1 {
		return connmgrPlan{count: 1, maxConn: maxConn}
	}
	return connmgrPlan{count: n, maxConn: min((maxConn+n-1)/n, perProc), procs: max(cpus/n, 1)}
}

// nofileLimit is the hard RLIMIT_NOFILE (Go raises the soft limit of each
// child to it at start).
func nofileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Max
}

// buildConnmgrs reads [runner] connmgr_count (after the binaries are
// chosen). Several connection managers need tack's connmgr (--reuse-port)
// and tack's proxy and handler (--connmgr-*-specs): auto is 1 when the
// runner does not start all three from tack binaries (Pushpin's condure,
// pushpin-proxy or pushpin-handler configured, or a service not listed),
// and an explicit value above 1 is an error then.
func (c *Config) buildConnmgrs(f *config.File) error {
	n, err := f.Int("runner", "connmgr_count", 0)
	if err != nil {
		return err
	}
	if n < 0 || n > MaxConnmgrCount {
		return fmt.Errorf("%s: [runner] connmgr_count must be 0 (auto) to %d, not %d", f.Pos("runner", "connmgr_count"), MaxConnmgrCount, n)
	}
	if why := c.notAllTack(); why != "" {
		if n > 1 {
			return fmt.Errorf("%s: [runner] connmgr_count=%d needs tack's connmgr, proxy and handler started by the runner: %s", f.Pos("runner", "connmgr_count"), n, why)
		}
		n = 1
	}
	p := planConnmgrs(n, c.MaxConn, runtime.NumCPU(), nofileLimit())
	c.ConnmgrCount, c.ConnmgrMaxConn = p.count, p.maxConn
	if os.Getenv("GOMAXPROCS") == "" {
		c.ConnmgrProcs = p.procs // the environment's value wins
	}
	if p.count > 1 && p.count*p.maxConn < c.MaxConn {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: %d connection managers hold at most %d clients each (fd limit), %d in all, fewer than client_maxconn=%d",
			f.Pos("runner", "connmgr_count"), p.count, p.maxConn, p.count*p.maxConn, c.MaxConn))
	}
	return nil
}

// notAllTack says why connmgr, proxy and handler are not all tack
// binaries the runner starts ("" when they are).
func (c *Config) notAllTack() string {
	for _, k := range []string{ServiceConnmgr, ServiceProxy, ServiceHandler} {
		si := services[k]
		if !c.has(k) {
			return si.display + " is not in services"
		}
		if filepath.Base(c.Bins[k]) != si.tack {
			return si.binKey + " is " + c.Bins[k]
		}
	}
	return ""
}

// connmgrName is instance i's name: its display name, the base of its pid
// and log files, its --id and zhttp socket base. Instance 0 keeps
// Pushpin's "condure"; the others are "condure-<i>".
func (c *Config) connmgrName(i int) string {
	if i == 0 {
		return services[ServiceConnmgr].file
	}
	return services[ServiceConnmgr].file + "-" + strconv.Itoa(i)
}

// connmgrBase is instance i's --zclient-stream spec base.
func (c *Config) connmgrBase(i int) string {
	return "ipc://" + filepath.Join(c.RunDir, c.IPCPrefix+c.connmgrName(i))
}

// connmgrSpecFlags are the flags that tell proxy or handler every
// connection manager's sockets when there are several (§3.4 expansion of
// each base: -out PUSH, -out-stream ROUTER, -in SUB).
func (c *Config) connmgrSpecFlags(kind string) []string {
	if c.ConnmgrCount <= 1 {
		return nil
	}
	var in, inStream, out []string
	for i := range c.ConnmgrCount {
		b := c.connmgrBase(i)
		in = append(in, "--connmgr-in-specs="+b+"-out")
		inStream = append(inStream, "--connmgr-in-stream-specs="+b+"-out-stream")
		out = append(out, "--connmgr-out-specs="+b+"-in")
	}
	a := inStream
	if kind == ServiceProxy {
		a = append(in, inStream...)
	}
	return append(a, out...)
}

// unit is one process the runner supervises.
type unit struct {
	kind string
	name string // display name (log lines, output prefix)
	file string // base of its pid and log file names
	args []string
	env  []string // added to the children's environment (Config.ChildEnv)
}

// units lists the processes in start order: the connection managers
// first, then one of each other service.
func (c *Config) units() []unit {
	var us []unit
	for _, k := range c.Services {
		si := services[k]
		if k != ServiceConnmgr {
			us = append(us, unit{kind: k, name: si.display, file: si.file, args: c.Args(k)})
			continue
		}
		for i := range max(c.ConnmgrCount, 1) {
			n := c.connmgrName(i)
			u := unit{kind: k, name: n, file: n, args: c.ConnmgrArgs(i)}
			if c.ConnmgrProcs > 0 {
				u.env = []string{"GOMAXPROCS=" + strconv.Itoa(c.ConnmgrProcs)}
			}
			us = append(us, u)
		}
	}
	return us
}
