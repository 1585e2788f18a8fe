package proxy

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"tack/internal/config"
	"tack/internal/grip"
)

// Defaults mirroring Pushpin 1.36.
const (
	// DefaultSigIss is Pushpin's default Grip-Sig issuer.
	DefaultSigIss = "pushpin"
	// DefaultMaxOpenRequests mirrors [runner] client_maxconn (50000).
	DefaultMaxOpenRequests = 50000
	// ServiceTimeout bounds how long we wait for the outbound zhttp service
	// to acknowledge a request before answering 502 (Pushpin fails at once
	// when no zurl is connected; a connected but silent one is bounded here).
	ServiceTimeout = 10 * time.Second
	// RequestBodyKeep is how much request body is kept for retrying another
	// target (and, later, for GRIP hand-off: Pushpin's 100000-byte limit).
	RequestBodyKeep = 100000
	// ResponseBuffer is how much backend response body the proxy may hold
	// per session beyond connmgr's window, so that a download is not
	// limited to one 8 KiB window per round trip through three processes.
	ResponseBuffer = 65536
	// TestBodyMax is the test handler's request body limit.
	TestBodyMax = 100000
)

// XFFRule is one x_forwarded_for rule list.
type XFFRule struct {
	Truncate int // -1 = keep all
	Append   bool
}

// Config is everything the proxy reads from pushpin.conf and flags.
type Config struct {
	InstanceID string

	ConnmgrInSpecs       []string // PULL, connect: first packets from connmgr
	ConnmgrInStreamSpecs []string // ROUTER, connect: follow-ups from connmgr
	ConnmgrOutSpecs      []string // PUB, connect: replies to connmgr

	ClientOutSpecs       []string // PUSH, connect: first packets to zurl/zhttp-client
	ClientOutStreamSpecs []string // ROUTER, connect: follow-ups to zurl
	ClientInSpecs        []string // SUB, connect: replies from zurl

	RoutesFile string   // empty when Routes is set
	Routes     []string // --route lines

	Debug                    bool
	AcceptXForwardedProtocol bool
	SetXForwardedProtocol    string // "", "true", "proto-only"
	XForwardedFor            XFFRule
	// Upstream trust (trust.go): a request whose Grip-Sig verifies with
	// UpstreamKey comes from another GRIP proxy.
	UpstreamKey           *grip.Key // nil: not configured
	XForwardedForTrusted  XFFRule   // x_forwarded_for_trusted, for trusted clients
	OrigHeadersNeedMark   []string  // orig_headers_need_mark
	CDNLoop               string    // cdn_loop (1.37+)
	AutoCrossOrigin       bool      // auto_cross_origin: CORS and JSON-P on every route
	AcceptPushpinRoute    bool
	LogFrom, LogUserAgent bool
	SigIss, SigKey        string
	ConfigDir             string // base for relative file: keys
	MaxOpenRequests       int
	AcceptSpecs           []string // DEALER, bind: accept calls to the handler
	InspectSpecs          []string // DEALER, bind: inspect calls to the handler (inspect.go)
	// InspectTimeout bounds one inspect call (0: Pushpin's 8 s).
	InspectTimeout time.Duration
	RetryInSpecs   []string // PULL, bind: retry packets from the handler (1.36 framing)
	ServiceTimeout time.Duration

	// The handler's own outbound requests (intreq, zmq-wire.md §4.8); on
	// only when all three are set, as in Pushpin.
	IntreqInSpecs       []string // PULL, bind: first packets from the handler
	IntreqInStreamSpecs []string // ROUTER, bind, identity = InstanceID: follow-ups from the handler
	IntreqOutSpecs      []string // PUB, bind: replies to the handler

	// Stats and commands (zmq-wire.md §4.6, §4.7; stats.go, commandsock.go).
	StatsSpec           string        // PUB, bind: proxy-stats (empty: none)
	CommandSpec         string        // ROUTER, bind: proxy-command ZRPC server (empty: none)
	StatsReportInterval time.Duration // [proxy] stats_report_interval; 0 = no reports
	StatsConnectionTTL  time.Duration // [global] stats_connection_ttl
	PrometheusPort      string        // [proxy] prometheus_port: port, addr:port or ipc://path
	PrometheusPrefix    string

	// ws-control (zmq-wire.md §4.5), on only when both are set.
	WSControlInSpecs  []string // PULL, bind: items from the handler (handler_ws_control_in_spec)
	WSControlOutSpecs []string // PUSH, bind: items to the handler (handler_ws_control_out_spec)

	// Now and Tick let tests drive the engine's timers (keep-alives at 45 s,
	// expiry at 60 s); nil/zero mean time.Now and one tick per second.
	Now  func() time.Time
	Tick time.Duration

	// ReopenLog, when set, reopens the log file on SIGHUP (log rotation),
	// before the routes are reloaded, as pushpin-proxy 1.36 does.
	ReopenLog func() error
}

// IntreqEnabled reports whether the intreq sockets are configured.
func (c *Config) IntreqEnabled() bool {
	return len(c.IntreqInSpecs) > 0 && len(c.IntreqInStreamSpecs) > 0 && len(c.IntreqOutSpecs) > 0
}

// WSControlEnabled reports whether the ws-control sockets are configured.
func (c *Config) WSControlEnabled() bool {
	return len(c.WSControlInSpecs) > 0 && len(c.WSControlOutSpecs) > 0
}

// intreqPartial reports some but not all intreq specs set (Pushpin then
// runs without intreq, silently; we warn).
func (c *Config) intreqPartial() bool {
	return !c.IntreqEnabled() && len(c.IntreqInSpecs)+len(c.IntreqInStreamSpecs)+len(c.IntreqOutSpecs) > 0
}

// unsupportedProxyKeys are [proxy] settings tack does not act on yet; a
// set value is reported at start-up rather than ignored.
var unsupportedProxyKeys = []string{"updates_check"}

// UnsupportedWarnings names each unsupported [proxy] key that has a value
// (updates_check=off is the only value that needs nothing).
func UnsupportedWarnings(f *config.File) []string {
	var out []string
	for _, k := range unsupportedProxyKeys {
		v := strings.TrimSpace(f.String("proxy", k, ""))
		if v == "" || v == "false" || v == "0" || (k == "updates_check" && v == "off") {
			continue
		}
		out = append(out, fmt.Sprintf("%s: [proxy] %s=%s is not supported yet and has no effect", f.Pos("proxy", k), k, v))
	}
	if n, err := f.Int("proxy", "workers", 1); err == nil && n > 1 {
		out = append(out, fmt.Sprintf("%s: [proxy] workers=%d is not supported yet: one worker runs", f.Pos("proxy", "workers"), n))
	}
	return out
}

// ConfigFromFile builds a Config from a loaded pushpin.conf.
func ConfigFromFile(f *config.File, routeLines []string) (Config, error) {
	c := Config{
		InstanceID:     fmt.Sprintf("proxy_%d", os.Getpid()),
		Routes:         routeLines,
		ServiceTimeout: ServiceTimeout,
	}
	list := func(keys ...string) []string {
		var out []string
		for _, k := range keys {
			out = append(out, f.List("proxy", k)...)
		}
		return out
	}
	// 1.41 renamed condure_* to connmgr_* and still reads both.
	c.ConnmgrInSpecs = list("connmgr_in_specs", "condure_in_specs")
	c.ConnmgrInStreamSpecs = list("connmgr_in_stream_specs", "condure_in_stream_specs")
	c.ConnmgrOutSpecs = list("connmgr_out_specs", "condure_out_specs")
	c.ClientOutSpecs = list("zurl_out_specs")
	c.ClientOutStreamSpecs = list("zurl_out_stream_specs")
	c.ClientInSpecs = list("zurl_in_specs")
	if len(c.ConnmgrInSpecs) == 0 || len(c.ConnmgrInStreamSpecs) == 0 || len(c.ConnmgrOutSpecs) == 0 {
		return c, fmt.Errorf("%s: [proxy] condure_in_specs, condure_in_stream_specs and condure_out_specs must all be set", f.Path())
	}
	if len(c.ClientOutSpecs) == 0 || len(c.ClientOutStreamSpecs) == 0 || len(c.ClientInSpecs) == 0 {
		return c, fmt.Errorf("%s: [proxy] zurl_out_specs, zurl_out_stream_specs and zurl_in_specs must all be set", f.Path())
	}
	if len(routeLines) == 0 {
		rf := f.String("proxy", "routesfile", "routes")
		if !filepath.IsAbs(rf) {
			rf = filepath.Join(f.Dir(), rf)
		}
		c.RoutesFile = rf
	}
	var err error
	if c.Debug, err = f.Bool("proxy", "debug", false); err != nil {
		return c, err
	}
	if c.AcceptXForwardedProtocol, err = f.Bool("proxy", "accept_x_forwarded_protocol", false); err != nil {
		return c, err
	}
	switch v := f.String("proxy", "set_x_forwarded_protocol", ""); v {
	case "true", "proto-only":
		c.SetXForwardedProtocol = v
	}
	if c.XForwardedFor, err = parseXFF(f.List("proxy", "x_forwarded_for")); err != nil {
		return c, fmt.Errorf("%s: [proxy] x_forwarded_for: %w", f.Path(), err)
	}
	if err := c.trustFromFile(f); err != nil {
		return c, err
	}
	if c.AcceptPushpinRoute, err = f.Bool("proxy", "accept_pushpin_route", false); err != nil {
		return c, err
	}
	if c.LogFrom, err = f.Bool("proxy", "log_from", false); err != nil {
		return c, err
	}
	if c.LogUserAgent, err = f.Bool("proxy", "log_user_agent", false); err != nil {
		return c, err
	}
	c.SigIss = f.String("proxy", "sig_iss", DefaultSigIss)
	c.SigKey = f.String("proxy", "sig_key", "")
	c.ConfigDir = f.Dir()
	c.AcceptSpecs = f.List("proxy", "handler_accept_spec")
	c.InspectSpecs = f.List("proxy", "handler_inspect_spec")
	c.RetryInSpecs = f.List("proxy", "handler_retry_in_spec")
	c.IntreqInSpecs = f.List("proxy", "intreq_in_specs")
	c.IntreqInStreamSpecs = f.List("proxy", "intreq_in_stream_specs")
	c.IntreqOutSpecs = f.List("proxy", "intreq_out_specs")
	c.StatsSpec = f.String("proxy", "stats_spec", "")
	c.CommandSpec = f.String("proxy", "command_spec", "")
	c.PrometheusPort = strings.TrimSpace(f.String("proxy", "prometheus_port", ""))
	c.PrometheusPrefix = f.String("proxy", "prometheus_prefix", "")
	secs, err := f.Int("proxy", "stats_report_interval", int(DefaultStatsReportInterval/time.Second))
	if err != nil {
		return c, err
	}
	c.StatsReportInterval = time.Duration(max(secs, 0)) * time.Second
	if secs, err = f.Int("global", "stats_connection_ttl", int(DefaultStatsConnectionTTL/time.Second)); err != nil {
		return c, err
	}
	c.StatsConnectionTTL = time.Duration(secs) * time.Second
	c.WSControlInSpecs = f.List("proxy", "handler_ws_control_in_spec")
	c.WSControlOutSpecs = f.List("proxy", "handler_ws_control_out_spec")
	maxconn, err := f.Int("runner", "client_maxconn", DefaultMaxOpenRequests)
	if err != nil {
		return c, err
	}
	if c.MaxOpenRequests, err = f.Int("proxy", "max_open_requests", maxconn); err != nil {
		return c, err
	}
	if c.MaxOpenRequests > maxconn {
		c.MaxOpenRequests = maxconn
	}
	return c, nil
}

func parseXFF(items []string) (XFFRule, error) {
	r := XFFRule{Truncate: -1}
	for _, it := range items {
		it = strings.TrimSpace(it)
		switch {
		case it == "":
		case it == "append":
			r.Append = true
		case strings.HasPrefix(it, "truncate:"):
			n, err := strconv.Atoi(strings.TrimPrefix(it, "truncate:"))
			if err != nil || n < 0 {
				return r, fmt.Errorf("bad rule %q", it)
			}
			r.Truncate = n
		default:
			return r, fmt.Errorf("unknown rule %q", it)
		}
	}
	return r, nil
}
