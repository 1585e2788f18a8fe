package handler

import (
	"fmt"
	"os"
	"strings"
	"time"

	"tack/internal/config"
	"tack/internal/grip"
)

// Defaults mirroring Pushpin 1.36 (src/handler/app.cpp, engine.cpp).
const (
	// DefaultMessageWait is [handler] message_wait: how long an out-of-order
	// item is parked before it is delivered anyway (5000 ms).
	DefaultMessageWait = 5000 * time.Millisecond
	// DefaultIDCacheTTL is [handler] id_cache_ttl when the key is absent:
	// duplicate-id suppression off (the shipped config sets 60).
	DefaultIDCacheTTL = 0
	// DefaultSubscriptionLinger is [handler] subscription_linger: how long a
	// response-mode channel stays subscribed after its last poller (60 s).
	DefaultSubscriptionLinger = 60 * time.Second
	// DefaultStatsSubscriptionTTL is [handler] stats_subscription_ttl (60 s).
	DefaultStatsSubscriptionTTL = 60 * time.Second
	// DefaultStatsConnectionTTL is [global] stats_connection_ttl (120 s).
	DefaultStatsConnectionTTL = 120 * time.Second
	// DefaultStatsReportInterval is [handler] stats_report_interval (10 s).
	DefaultStatsReportInterval = 10 * time.Second
	// FirstSubscriptionDelay is how long after a channel's first local
	// subscriber its sessions are updated (Pushpin SUBSCRIBED_DELAY, 1 s).
	FirstSubscriptionDelay = time.Second
)

// Config is what the handler reads from pushpin.conf and its flags.
type Config struct {
	InstanceID string

	InspectSpecs       []string // ROUTER, connect: proxy inspect (ZRPC server)
	AcceptSpecs        []string // ROUTER, connect: proxy accept (ZRPC server)
	RetryOutSpecs      []string // PUSH, connect: retry packets to the proxy
	ConnmgrStreamSpecs []string // ROUTER, connect: follow-up packets from connmgr
	ConnmgrOutSpecs    []string // PUB, connect: packets to connmgr
	StatsSpec          string   // PUB, bind: merged stats
	ProxyStatsSpecs    []string // SUB, connect: the proxy's stats
	ProxyCommandSpec   string   // DEALER, connect: proxy command (ZRPC client)
	ShareAll           bool     // [handler] share_all: inspect names a sharing key for every request
	IntreqOutSpecs     []string // PUSH, connect: outbound requests (next and gone links)
	IntreqOutStream    []string // ROUTER, connect
	IntreqInSpecs      []string // SUB, connect
	WSControlInSpecs   []string // PULL, connect: ws-control from the proxy (its ws-control-out)
	WSControlOutSpecs  []string // PUSH, connect: ws-control to the proxy (its ws-control-in)
	IPCFileMode        os.FileMode

	MessageWait               time.Duration
	IDCacheTTL                time.Duration
	ConnectionSubscriptionMax int
	SubscriptionLinger        time.Duration
	UpdateOnFirstSubscription bool
	// MessageRate limits deliveries per second (≤ 0: unlimited);
	// MessageHWM bounds the deliveries queued per route (≤ 0: unbounded);
	// MessageBlockSize makes a delivery weigh its size in blocks.
	MessageRate          int
	MessageHWM           int
	MessageBlockSize     int
	StatsConnectionTTL   time.Duration
	StatsSubscriptionTTL time.Duration
	StatsReportInterval  time.Duration
	StatsJSON            bool
	PrometheusPort       string // "", "port", "addr:port" or "ipc://path"
	PrometheusPrefix     string

	// Inputs configures the publish inputs (inputs_config.go).
	Inputs InputsConfig

	// Timers that tests shorten; zero means the Pushpin value.
	Timers Timers

	// clock is the time source; nil means the wall clock (tests inject a
	// fake one through newService).
	clock clock
}

// Timers are the protocol timers; zero fields take Pushpin's values.
type Timers struct {
	ZhttpKeepAlive time.Duration // 45 s: idle time before a zhttp keep-alive
	ZhttpExpire    time.Duration // 60 s: silence from connmgr before a session is dropped
}

// ConfigFromFile builds a Config from a loaded pushpin.conf.
// unsupportedHandlerKeys are [handler] settings tack reads but does not act
// on yet; a set value is reported at start-up rather than ignored.
var unsupportedHandlerKeys = []string{"state_spec"}

// unsupportedWarnings names each unsupported key that has a value.
func unsupportedWarnings(f *config.File, section string, keys []string) []string {
	var out []string
	for _, k := range keys {
		if v := strings.TrimSpace(f.String(section, k, "")); v != "" && v != "false" && v != "0" {
			out = append(out, fmt.Sprintf("%s: [%s] %s=%s is not supported yet and has no effect", f.Pos(section, k), section, k, v))
		}
	}
	return out
}

func ConfigFromFile(f *config.File) (Config, error) {
	c := Config{InstanceID: fmt.Sprintf("handler_%d", os.Getpid())}
	list := func(section string, keys ...string) []string {
		var out []string
		for _, k := range keys {
			out = append(out, f.List(section, k)...)
		}
		return out
	}
	// 1.41 reads the list keys and appends the singular ones.
	c.InspectSpecs = list("handler", "proxy_inspect_specs", "proxy_inspect_spec")
	c.AcceptSpecs = list("handler", "proxy_accept_specs", "proxy_accept_spec")
	c.RetryOutSpecs = list("handler", "proxy_retry_out_specs", "proxy_retry_out_spec")
	c.ProxyStatsSpecs = list("handler", "proxy_stats_specs", "proxy_stats_spec")
	c.ProxyCommandSpec = f.String("handler", "proxy_command_spec", "")
	c.StatsSpec = f.String("handler", "stats_spec", "")
	// Pushpin 1.36 and 1.41 read the connmgr specs from [proxy]; tack's own
	// internal.conf also repeats them under [handler], used when [proxy]
	// has none.
	c.ConnmgrStreamSpecs = list("proxy", "connmgr_in_stream_specs", "condure_in_stream_specs")
	c.ConnmgrOutSpecs = list("proxy", "connmgr_out_specs", "condure_out_specs")
	if len(c.ConnmgrStreamSpecs) == 0 {
		c.ConnmgrStreamSpecs = list("handler", "connmgr_in_stream_specs", "condure_in_stream_specs")
	}
	if len(c.ConnmgrOutSpecs) == 0 {
		c.ConnmgrOutSpecs = list("handler", "connmgr_out_specs", "condure_out_specs")
	}
	c.IntreqOutSpecs = list("handler", "proxy_intreq_out_specs")
	c.IntreqOutStream = list("handler", "proxy_intreq_out_stream_specs")
	c.IntreqInSpecs = list("handler", "proxy_intreq_in_specs")
	c.WSControlInSpecs = list("handler", "proxy_ws_control_in_specs", "proxy_ws_control_in_spec")
	c.WSControlOutSpecs = list("handler", "proxy_ws_control_out_specs", "proxy_ws_control_out_spec")

	var errs []string
	intKey := func(section, key string, def int) int {
		n, err := f.Int(section, key, def)
		if err != nil {
			errs = append(errs, err.Error())
		}
		return n
	}
	c.MessageWait = time.Duration(intKey("handler", "message_wait", int(DefaultMessageWait/time.Millisecond))) * time.Millisecond
	c.IDCacheTTL = time.Duration(intKey("handler", "id_cache_ttl", DefaultIDCacheTTL)) * time.Second
	c.ConnectionSubscriptionMax = intKey("handler", "connection_subscription_max", grip.DefaultConnectionSubscriptionMax)
	c.SubscriptionLinger = time.Duration(intKey("handler", "subscription_linger", int(DefaultSubscriptionLinger/time.Second))) * time.Second
	c.StatsConnectionTTL = time.Duration(intKey("global", "stats_connection_ttl", int(DefaultStatsConnectionTTL/time.Second))) * time.Second
	c.StatsSubscriptionTTL = time.Duration(intKey("handler", "stats_subscription_ttl", int(DefaultStatsSubscriptionTTL/time.Second))) * time.Second
	c.StatsReportInterval = time.Duration(intKey("handler", "stats_report_interval", int(DefaultStatsReportInterval/time.Second))) * time.Second
	c.MessageRate = intKey("handler", "message_rate", 0)
	c.MessageHWM = intKey("handler", "message_hwm", 0)
	c.MessageBlockSize = intKey("handler", "message_block_size", 0)
	c.StatsJSON = strings.EqualFold(f.String("handler", "stats_format", ""), "json")
	var err error
	if c.ShareAll, err = f.Bool("handler", "share_all", false); err != nil {
		errs = append(errs, err.Error())
	}
	// 1.41 key; 1.36 always updates on the first subscription.
	if c.UpdateOnFirstSubscription, err = f.Bool("handler", "update_on_first_subscription", true); err != nil {
		errs = append(errs, err.Error())
	}
	c.PrometheusPort = f.String("handler", "prometheus_port", "")
	c.PrometheusPrefix = f.String("handler", "prometheus_prefix", "")

	inputs, ierr := inputsConfigFromFile(f)
	if ierr != nil {
		errs = append(errs, ierr.Error())
	}
	inputs.Warnings = append(inputs.Warnings, unsupportedWarnings(f, "handler", unsupportedHandlerKeys)...)
	c.Inputs = inputs
	c.IPCFileMode = inputs.IPCFileMode

	if len(c.InspectSpecs) == 0 {
		errs = append(errs, fmt.Sprintf("%s: [handler] proxy_inspect_spec must be set", f.Path()))
	}
	if len(c.AcceptSpecs) > 0 && (len(c.ConnmgrStreamSpecs) == 0 || len(c.ConnmgrOutSpecs) == 0) {
		errs = append(errs, fmt.Sprintf("%s: [proxy] condure_in_stream_specs and condure_out_specs must be set", f.Path()))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return c, nil
}

// withDefaults fills zero fields with Pushpin's values.
func (c Config) withDefaults() Config {
	if c.MessageWait <= 0 {
		c.MessageWait = DefaultMessageWait
	}
	if c.ConnectionSubscriptionMax == 0 {
		c.ConnectionSubscriptionMax = grip.DefaultConnectionSubscriptionMax
	}
	if c.SubscriptionLinger < 0 {
		c.SubscriptionLinger = 0
	}
	if c.StatsConnectionTTL <= 0 {
		c.StatsConnectionTTL = DefaultStatsConnectionTTL
	}
	if c.StatsSubscriptionTTL <= 0 {
		c.StatsSubscriptionTTL = DefaultStatsSubscriptionTTL
	}
	if c.StatsReportInterval <= 0 {
		c.StatsReportInterval = DefaultStatsReportInterval
	}
	if c.Timers.ZhttpKeepAlive <= 0 {
		c.Timers.ZhttpKeepAlive = 45 * time.Second
	}
	if c.Timers.ZhttpExpire <= 0 {
		c.Timers.ZhttpExpire = 60 * time.Second
	}
	if c.clock == nil {
		c.clock = wallClock{}
	}
	return c
}

// hasIntreq reports whether outbound requests (next and gone links) can
// be made: all three intreq specs are set.
func (c *Config) hasIntreq() bool {
	return len(c.IntreqOutSpecs) > 0 && len(c.IntreqOutStream) > 0 && len(c.IntreqInSpecs) > 0
}
