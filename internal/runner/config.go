package runner

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tack/internal/config"
	"tack/internal/logging"
)

// Defaults mirrored from Pushpin 1.36's runner, and our supervision budgets.
const (
	// DefaultClientBufferSize is Pushpin's [runner] client_buffer_size.
	DefaultClientBufferSize = 8192
	// DefaultClientMaxConn is Pushpin's [runner] client_maxconn.
	DefaultClientMaxConn = 50000
	// StopGrace is how long children get after SIGTERM before SIGKILL
	// (Pushpin: 4 s).
	StopGrace = 4 * time.Second
	// RestartMin is the first restart delay after a crash (ours; Pushpin
	// stops everything instead).
	RestartMin = 100 * time.Millisecond
	// RestartMax caps the doubling restart delay.
	RestartMax = 10 * time.Second
	// RestartReset is how long a child must run for its delay to reset.
	RestartReset = 30 * time.Second
	// ReaderDrain bounds how long output is read after a child exits (a
	// grandchild may keep the pipe open).
	ReaderDrain = time.Second
	// IDPortStep is the handler port offset per --id (Pushpin: 10·N).
	IDPortStep = 10
	// ZurlVerboseLevel is the level from which zurl gets --verbose rather
	// than --loglevel=N (Pushpin: 3).
	ZurlVerboseLevel = logging.LevelDebug
)

// Service kinds, in start order (Pushpin: connmgr, zurl, proxy, handler).
const (
	ServiceConnmgr = "connmgr"
	ServiceZurl    = "zurl"
	ServiceProxy   = "proxy"
	ServiceHandler = "handler"
)

var startOrder = []string{ServiceConnmgr, ServiceZurl, ServiceProxy, ServiceHandler}

// serviceAlias maps a [runner] services entry to a service kind. Pushpin
// 1.36 knows the first name of each pair, 1.41 the second.
func serviceAlias(name string) (string, bool) {
	switch name {
	case "condure", "connmgr":
		return ServiceConnmgr, true
	case "zurl":
		return ServiceZurl, true
	case "pushpin-proxy", "proxy":
		return ServiceProxy, true
	case "pushpin-handler", "handler":
		return ServiceHandler, true
	}
	return "", false
}

// serviceInfo is what Pushpin 1.36 calls each service: the name in log
// lines and the output prefix, the base of its pid/log file names, the
// names accepted in a log level list, the default binary it runs, the
// tack binary we run instead, and the [runner] key naming the binary.
type serviceInfo struct {
	display   string
	file      string
	levelKeys []string
	pushpin   string
	tack      string
	binKey    string
}

var services = map[string]serviceInfo{
	ServiceConnmgr: {"condure", "condure", []string{"condure", "connmgr"}, "condure", "tack-connmgr", "condure_bin"},
	ServiceZurl:    {"zurl", "zurl", []string{"zurl"}, "zurl", "tack-zhttp-client", "zurl_bin"},
	ServiceProxy:   {"proxy", "pushpin-proxy", []string{"pushpin-proxy", "proxy"}, "pushpin-proxy", "tack-proxy", "proxy_bin"},
	ServiceHandler: {"handler", "pushpin-handler", []string{"pushpin-handler", "handler"}, "pushpin-handler", "tack-handler", "handler_bin"},
}

// Flags are the runner's command-line options (Pushpin's, §10).
type Flags struct {
	Config      string
	LogFile     string
	LogLevel    string
	Verbose     bool
	MergeOutput bool
	Port        string
	ID          int // -1 = not set
	Routes      []string
	LogFormat   string // tack's --log-format; "" = [runner] log_format
}

// Config is everything the supervisor needs, resolved from pushpin.conf
// and the flags. It is read-only once built.
type Config struct {
	ConfigPath  string   // as given to --config (or found), passed to proxy/handler
	ConfigDir   string   // for runner/certs
	RunDir      string   // absolute
	LogDir      string   // absolute
	LibDir      string   // for runner/zurl.conf.template
	IPCPrefix   string   // after --id
	FilePrefix  string   // "" or "p<N>-"
	PortOffset  int      // passed to the handler (--id), 0 = omitted
	Services    []string // kinds, in start order
	Listen      []string // condure --listen values
	listens     []listenCheck
	TLS         bool
	BufferSize  int
	MaxConn     int
	Compression bool // [runner] allow_compression (Pushpin 1.37+): connmgr --compression
	Routes      []string
	MergeOutput bool
	LogFormat   string // logging.FormatText or FormatJSON
	Levels      levels
	Bins        map[string]string // kind → executable
	Warnings    []string

	// ConnmgrCount is how many connection managers run ([runner]
	// connmgr_count, see connmgrs.go); ConnmgrMaxConn is each one's
	// --stream-maxconn, ConnmgrProcs the GOMAXPROCS each runs with (0:
	// not set).
	ConnmgrCount   int
	ConnmgrMaxConn int
	ConnmgrProcs   int
}

// levels is a parsed "N,service:N" list.
type levels struct {
	def     int
	service map[string]int
}

func (l levels) of(names ...string) int {
	for _, n := range names {
		if v, ok := l.service[n]; ok {
			return v
		}
	}
	return l.def
}

func parseLevels(s string) (levels, error) {
	l := levels{def: logging.DefaultLevel, service: map[string]int{}}
	if strings.TrimSpace(s) == "" {
		return l, nil
	}
	// logging.ParseLevel validates and gives Pushpin's error texts.
	if _, err := logging.ParseLevel(s, ""); err != nil {
		return l, err
	}
	for i, part := range strings.Split(s, ",") {
		name, val, named := strings.Cut(strings.TrimSpace(part), ":")
		if !named {
			if i == 0 {
				l.def, _ = strconv.Atoi(name)
			}
			continue
		}
		v, _ := strconv.Atoi(val)
		if _, dup := l.service[name]; !dup {
			l.service[name] = v
		}
	}
	return l, nil
}

// zurlInRunDir reports whether every proxy zurl spec is an ipc path inside
// the runner's rundir.
func zurlInRunDir(f *config.File) bool {
	specs := f.List("proxy", "zurl_out_specs")
	if len(specs) == 0 {
		return false
	}
	for _, s := range specs {
		path, ok := strings.CutPrefix(s, "ipc://")
		if !ok {
			return false
		}
		abs, err := filepath.Abs(path)
		if err != nil || !strings.HasPrefix(abs, f.RunDir()+string(filepath.Separator)) {
			return false
		}
	}
	return true
}

// BuildConfig resolves the runner Config. exeDir is where tack-* binaries
// are looked for first ("" = only PATH).
func BuildConfig(fl Flags, exeDir string) (*Config, error) {
	if fl.ID < -1 {
		return nil, errors.New("id must be greater than or equal to 0")
	}
	path := fl.Config
	if path == "" {
		p, err := config.FindDefault()
		if err != nil {
			return nil, err
		}
		path = p
	}
	opts := config.Options{}
	c := &Config{ConfigPath: path, ConfigDir: filepath.Dir(path), Routes: fl.Routes, MergeOutput: fl.MergeOutput}
	// The runner's own values keep the file's ipc_prefix for {ipc_prefix}
	// even with --id (checked on 1.36: --id=0 still gives
	// local_ports=run/pushpin-server); only what it passes on uses p<N>-.
	f, err := config.Load(path, opts)
	if err != nil {
		return nil, err
	}
	c.Warnings = f.Warnings()
	lf := fl.LogFormat
	if lf == "" {
		lf = f.String("runner", "log_format", "")
	}
	if c.LogFormat, err = logging.ParseFormat(lf); err != nil {
		return nil, fmt.Errorf("%s: [runner] log_format: %w", f.Path(), err)
	}
	c.RunDir, c.LibDir, c.IPCPrefix = f.RunDir(), f.LibDir(), f.IPCPrefix()
	if fl.ID >= 0 {
		c.IPCPrefix = fmt.Sprintf("p%d-", fl.ID)
		c.FilePrefix = c.IPCPrefix
		c.PortOffset = fl.ID * IDPortStep
	}
	if c.LogDir, err = filepath.Abs(orDot(f.String("runner", "logdir", ""))); err != nil {
		return nil, fmt.Errorf("resolve logdir: %w", err)
	}

	seen := map[string]bool{}
	for _, s := range f.List("runner", "services") {
		kind, ok := serviceAlias(s)
		if !ok {
			// Pushpin 1.36 ignores unknown names silently.
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: unknown service %q ignored", f.Pos("runner", "services"), s))
			continue
		}
		seen[kind] = true
	}
	// Pushpin 1.36 leaves outbound requests to a zurl it may not manage
	// (Debian runs a system zurl); 1.41 serves them from connmgr itself.
	// tack has no outbound mode in connmgr, so when the proxy runs, zurl is
	// not listed, and the proxy's zurl specs live in our rundir (as our
	// internal.conf puts them), the runner starts tack-zhttp-client too.
	if seen[ServiceProxy] && !seen[ServiceZurl] && zurlInRunDir(f) {
		seen[ServiceZurl] = true
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s: zurl not listed; starting the zhttp client for the proxy's outbound requests", f.Pos("runner", "services")))
	}
	for _, k := range startOrder {
		if seen[k] {
			c.Services = append(c.Services, k)
		}
	}
	if len(c.Services) == 0 {
		return nil, fmt.Errorf("%s: [runner] services names no service to start", path)
	}

	var errs []error
	if c.BufferSize, err = f.Int("runner", "client_buffer_size", DefaultClientBufferSize); err != nil {
		errs = append(errs, err)
	}
	if c.MaxConn, err = f.Int("runner", "client_maxconn", DefaultClientMaxConn); err != nil {
		errs = append(errs, err)
	}
	if c.Compression, err = f.Bool("runner", "allow_compression", false); err != nil {
		errs = append(errs, err)
	}
	if err := c.buildListen(f, fl.Port); err != nil {
		errs = append(errs, err)
	}

	lv := fl.LogLevel
	if fl.Verbose {
		lv = strconv.Itoa(logging.LevelDebug)
	} else if lv == "" {
		lv = strings.Join(f.List("runner", "log_level"), ",")
	}
	if c.Levels, err = parseLevels(lv); err != nil {
		errs = append(errs, err)
	}

	c.Bins = map[string]string{}
	for _, k := range c.Services {
		bin, err := chooseBin(f, services[k], exeDir)
		if err != nil {
			errs = append(errs, err)
		}
		c.Bins[k] = bin
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := c.buildConnmgrs(f); err != nil {
		return nil, err
	}
	return c, nil
}

func orDot(s string) string {
	if s == "" {
		return "."
	}
	return s
}

// buildListen turns http_port, https_ports and local_ports (or --port)
// into condure --listen values, as Pushpin 1.36 writes them.
func (c *Config) buildListen(f *config.File, port string) error {
	if port != "" {
		addr, err := listenAddr(port)
		if err != nil {
			return err
		}
		c.Listen = []string{addr + ",stream"}
		c.listens = []listenCheck{{addr: addr}}
		return nil
	}
	for _, p := range f.List("runner", "http_port") {
		addr, err := listenAddr(p)
		if err != nil {
			return fmt.Errorf("%s: invalid http port: %s", f.Pos("runner", "http_port"), p)
		}
		c.Listen = append(c.Listen, addr+",stream")
		c.listens = append(c.listens, listenCheck{addr: addr})
	}
	for _, p := range f.List("runner", "https_ports") {
		addr, err := listenAddr(p)
		if err != nil {
			return fmt.Errorf("%s: invalid https port: %s", f.Pos("runner", "https_ports"), p)
		}
		portNum := addr[strings.LastIndexByte(addr, ':')+1:]
		c.Listen = append(c.Listen, addr+",stream,tls,default-cert=default_"+portNum)
		c.listens = append(c.listens, listenCheck{addr: addr, cert: "default_" + portNum})
		c.TLS = true
	}
	for _, p := range f.List("runner", "local_ports") {
		v, err := localListen(p)
		if err != nil {
			return fmt.Errorf("%s: invalid local port %q: %w", f.Pos("runner", "local_ports"), p, err)
		}
		c.Listen = append(c.Listen, v)
		path, _, _ := strings.Cut(p, "?")
		c.listens = append(c.listens, listenCheck{addr: path, local: true})
	}
	return nil
}

// localListen turns a local_ports entry, `path[?mode=<octal>&user=<name>&group=<name>]`
// (the options are Pushpin 1.37's), into a condure --listen value.
func localListen(p string) (string, error) {
	path, query, _ := strings.Cut(p, "?")
	if path == "" {
		return "", errors.New("empty path")
	}
	v := path + ",local,stream"
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", err
	}
	for _, k := range []string{"mode", "user", "group"} {
		if val := q.Get(k); val != "" {
			if strings.ContainsAny(val, ",=") {
				return "", fmt.Errorf("bad %s %q", k, val)
			}
			v += "," + k + "=" + val
		}
		delete(q, k)
	}
	for k := range q {
		return "", fmt.Errorf("unknown option %q", k)
	}
	return v, nil
}

// listenAddr turns "[addr:]port" into "addr:port" (addr 0.0.0.0).
func listenAddr(s string) (string, error) {
	addr, port := "0.0.0.0", s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		addr, port = s[:i], s[i+1:]
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("invalid port %q", s)
	}
	if n < 1 {
		return "", errors.New("port must be greater than or equal to 1")
	}
	return addr + ":" + strconv.Itoa(n), nil
}

// chooseBin picks the executable for a service; see doc.go.
func chooseBin(f *config.File, si serviceInfo, exeDir string) (string, error) {
	// condure_bin and zurl_bin are Pushpin keys whose shipped value is the
	// Pushpin binary's bare name; that value means "the default", which
	// for tack is the tack binary. proxy_bin and handler_bin are ours.
	v := f.String("runner", si.binKey, "")
	if si.binKey == "condure_bin" || si.binKey == "zurl_bin" {
		if v == si.pushpin {
			v = ""
		}
	}
	if v != "" {
		if strings.ContainsRune(v, '/') {
			return v, nil
		}
		p, err := exec.LookPath(v)
		if err != nil {
			return "", fmt.Errorf("%s: [runner] %s: %w", f.Pos("runner", si.binKey), si.binKey, err)
		}
		return p, nil
	}
	if exeDir != "" {
		p := filepath.Join(exeDir, si.tack)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(si.tack)
	if err != nil {
		return "", fmt.Errorf("%s for %s: not next to the runner (%s) nor in PATH", si.tack, si.display, exeDir)
	}
	return p, nil
}

// Args returns the command line (without the binary) for a service kind,
// exactly as Pushpin 1.36's runner builds it (with one connection
// manager; for several, see ConnmgrArgs and connmgrSpecFlags).
func (c *Config) Args(kind string) []string {
	si := services[kind]
	level := c.Levels.of(si.levelKeys...)
	logFile := func() []string {
		if c.MergeOutput {
			return nil
		}
		return []string{"--logfile=" + filepath.Join(c.LogDir, c.FilePrefix+si.file+".log")}
	}
	var a []string
	switch kind {
	case ServiceConnmgr:
		return c.ConnmgrArgs(0)
	case ServiceZurl:
		a = append(a, "--config="+c.zurlConfPath())
		a = append(a, logFile()...)
		if level >= ZurlVerboseLevel {
			a = append(a, "--verbose")
		} else {
			a = append(a, "--loglevel="+strconv.Itoa(level))
		}
	case ServiceProxy:
		a = append(a, "--config="+c.ConfigPath, "--ipc-prefix="+c.IPCPrefix)
		a = append(a, logFile()...)
		a = append(a, "--loglevel="+strconv.Itoa(level))
		for _, r := range c.Routes {
			a = append(a, "--route="+r)
		}
		if c.has(ServiceZurl) {
			a = append(a, "--quiet-check")
		}
		a = append(a, c.connmgrSpecFlags(kind)...)
	case ServiceHandler:
		a = append(a, "--config="+c.ConfigPath, "--ipc-prefix="+c.IPCPrefix)
		if c.PortOffset != 0 {
			a = append(a, "--port-offset="+strconv.Itoa(c.PortOffset))
		}
		a = append(a, logFile()...)
		a = append(a, "--loglevel="+strconv.Itoa(level))
		a = append(a, c.connmgrSpecFlags(kind)...)
	}
	return a
}

// ConnmgrArgs is the command line of connection manager i. With one, it is
// Pushpin 1.36's condure line; with several, each instance also gets its
// --id and socket base, --reuse-port, its share of the connections, and
// only instance 0 the unix socket listeners.
func (c *Config) ConnmgrArgs(i int) []string {
	level := c.Levels.of(services[ServiceConnmgr].levelKeys...)
	a := []string{"--log-level=" + strconv.Itoa(level)}
	if i > 0 {
		a = append(a, "--id="+c.connmgrName(i))
	}
	for j, l := range c.Listen {
		if i > 0 && c.listens[j].local {
			continue
		}
		a = append(a, "--listen="+l)
	}
	maxConn := c.MaxConn
	if c.ConnmgrCount > 1 {
		maxConn = c.ConnmgrMaxConn
	}
	a = append(a,
		"--zclient-stream="+c.connmgrBase(i),
		"--buffer-size="+strconv.Itoa(c.BufferSize),
		"--stream-maxconn="+strconv.Itoa(maxConn))
	if c.Compression {
		a = append(a, "--compression")
	}
	if c.TLS {
		a = append(a, "--tls-identities-dir="+c.certsDir())
	}
	if c.ConnmgrCount > 1 {
		a = append(a, "--reuse-port")
	}
	return a
}

// ChildEnv is what the runner adds to each child's environment: the log
// format for tack's children (Pushpin's binaries ignore it).
func (c *Config) ChildEnv() []string {
	if c.LogFormat == logging.FormatJSON {
		return []string{logging.FormatEnv + "=" + logging.FormatJSON}
	}
	return nil
}

func (c *Config) has(kind string) bool {
	for _, k := range c.Services {
		if k == kind {
			return true
		}
	}
	return false
}

func (c *Config) zurlConfPath() string {
	return filepath.Join(c.RunDir, c.FilePrefix+"zurl.conf")
}

// PIDFile is where a service's pid is written (Pushpin: <rundir>/<fp><name>.pid).
func (c *Config) PIDFile(kind string) string {
	return c.pidFileOf(services[kind].file)
}

// OutputFile is the file a service's output goes to without --merge-output.
func (c *Config) OutputFile(kind string) string {
	return c.outputFileOf(services[kind].file)
}

func (c *Config) pidFileOf(name string) string {
	return filepath.Join(c.RunDir, c.FilePrefix+name+".pid")
}

func (c *Config) outputFileOf(name string) string {
	return filepath.Join(c.LogDir, c.FilePrefix+name+".log")
}
