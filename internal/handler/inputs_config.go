package handler

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"tack/internal/config"
	"tack/internal/zsock"
)

// Publish input defaults and bounds ([handler] keys, grip-reference §8.5).
const (
	// DefaultMaxHeadersSize is push_in_http_max_headers_size's default: the
	// largest request header block (request line to blank line) the HTTP
	// publish API accepts.
	DefaultMaxHeadersSize = 10000
	// DefaultMaxBodySize is push_in_http_max_body_size's default: the
	// largest Content-Length the HTTP publish API accepts.
	DefaultMaxBodySize = 1000000
)

// InputsConfig configures the four publish inputs (grip-reference §4.2–§4.5).
// An empty spec, or HTTPEnabled false, leaves that input off, as in Pushpin.
// The engine's Config embeds it as Inputs; it is read-only once built.
type InputsConfig struct {
	// PullSpec is push_in_spec, bound by a PULL socket.
	PullSpec string
	// SubSpecs is push_in_sub_specs followed by the legacy push_in_sub_spec.
	// The SUB socket binds the first (as Pushpin) or, with SubConnect,
	// connects to every one.
	SubSpecs   []string
	SubConnect bool // push_in_sub_connect
	// HTTPEnabled is true when push_in_http_port is set; HTTPAddr is
	// push_in_http_addr (empty: all interfaces) and HTTPPort the port with
	// the port offset added (0 picks a free port).
	HTTPEnabled bool
	HTTPAddr    string
	HTTPPort    int
	// MaxHeadersSize and MaxBodySize are push_in_http_max_headers_size and
	// push_in_http_max_body_size (1.36 read push_in_max_headers_size and
	// push_in_max_body_size; both spellings work, the http one wins).
	MaxHeadersSize int
	MaxBodySize    int
	// NATSURL is push_in_nats_url: the NATS server(s) the NATS input
	// subscribes on ("" leaves it off); NATSSubjectPrefix is
	// push_in_nats_subject_prefix, put before a channel name to make its
	// subject.
	NATSURL           string
	NATSSubjectPrefix string
	// CommandSpec is command_spec, bound by the ZRPC command ROUTER.
	CommandSpec string
	// IPCFileMode is ipc_file_mode, applied to bound ipc:// inputs (0: leave
	// the mode alone).
	IPCFileMode os.FileMode
	// Warnings are problems Pushpin tolerates (a non-boolean
	// push_in_sub_connect, a non-octal ipc_file_mode); the caller logs them.
	Warnings []string
}

// HTTPListenAddr is the host:port the HTTP publish API listens on.
func (c InputsConfig) HTTPListenAddr() string {
	return net.JoinHostPort(c.HTTPAddr, strconv.Itoa(c.HTTPPort))
}

// inputsConfigFromFile reads the publish input keys of [handler]. It reports
// every bad value at once, each naming its file and line.
func inputsConfigFromFile(f *config.File) (InputsConfig, error) {
	const sec = "handler"
	var errs []error
	c := InputsConfig{
		PullSpec:    strings.TrimSpace(f.String(sec, "push_in_spec", "")),
		CommandSpec: strings.TrimSpace(f.String(sec, "command_spec", "")),
		HTTPAddr:    strings.TrimSpace(f.String(sec, "push_in_http_addr", "")),
	}
	for _, key := range []string{"push_in_sub_specs", "push_in_sub_spec"} {
		for _, s := range f.List(sec, key) {
			if s = strings.TrimSpace(s); s != "" {
				c.SubSpecs = append(c.SubSpecs, s)
			}
		}
	}
	var err error
	if c.SubConnect, err = f.Bool(sec, "push_in_sub_connect", false); err != nil {
		if !errors.Is(err, config.ErrNotBool) {
			errs = append(errs, err)
		} else {
			c.Warnings = append(c.Warnings, err.Error())
		}
	}

	var natsURLs []string // a list: one URL per server of the cluster
	for _, u := range f.List(sec, "push_in_nats_url") {
		if u = strings.TrimSpace(u); u != "" {
			natsURLs = append(natsURLs, u)
		}
	}
	if c.NATSURL = strings.Join(natsURLs, ","); c.NATSURL != "" {
		if err := validateNATSURL(c.NATSURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: [handler] push_in_nats_url: %w", f.Pos(sec, "push_in_nats_url"), err))
		}
	}
	c.NATSSubjectPrefix = strings.TrimSpace(f.String(sec, "push_in_nats_subject_prefix", DefaultNATSSubjectPrefix))
	if err := validateNATSPrefix(c.NATSSubjectPrefix); err != nil {
		errs = append(errs, fmt.Errorf("%s: [handler] push_in_nats_subject_prefix: %w", f.Pos(sec, "push_in_nats_subject_prefix"), err))
	}

	if f.Has(sec, "push_in_http_port") && strings.TrimSpace(f.String(sec, "push_in_http_port", "")) != "" {
		port, err := f.Int(sec, "push_in_http_port", 0)
		if err != nil {
			errs = append(errs, err)
		} else if port += f.PortOffset(); port < 0 || port > 65535 {
			errs = append(errs, fmt.Errorf("%s: [handler] push_in_http_port: %d (with port offset %d) is not a tcp port",
				f.Pos(sec, "push_in_http_port"), port, f.PortOffset()))
		} else {
			c.HTTPEnabled, c.HTTPPort = true, port
		}
	}

	size := func(key, legacy string, def int) int {
		k := key
		if !f.Has(sec, k) && f.Has(sec, legacy) {
			k = legacy
		}
		n, err := f.Int(sec, k, def)
		if err != nil {
			errs = append(errs, err)
			return def
		}
		if n < 1 {
			errs = append(errs, fmt.Errorf("%s: [handler] %s: %d is not a positive size", f.Pos(sec, k), k, n))
			return def
		}
		return n
	}
	c.MaxHeadersSize = size("push_in_http_max_headers_size", "push_in_max_headers_size", DefaultMaxHeadersSize)
	c.MaxBodySize = size("push_in_http_max_body_size", "push_in_max_body_size", DefaultMaxBodySize)

	if s := strings.TrimSpace(f.String(sec, "ipc_file_mode", "")); s != "" {
		if m, err := strconv.ParseUint(s, 8, 32); err != nil {
			// Pushpin ignores a mode it cannot read.
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: [handler] ipc_file_mode: %q is not an octal mode, ignored",
				f.Pos(sec, "ipc_file_mode"), s))
		} else {
			c.IPCFileMode = os.FileMode(m)
		}
	}
	return c, errors.Join(errs...)
}

// inputs is the set of configured publish inputs, started together.
type inputs struct {
	http *httpInput
	pull *pullInput
	sub  *subInput
	nats *natsInput
	cmd  *commandInput
}

// newInputs opens every input cfg configures: the HTTP listener and the PULL,
// SUB and command sockets are bound before it returns, so start-up errors
// surface here; on error whatever was already open is closed. chans is the
// engine's channel set the SUB and NATS inputs follow; st (nil-safe) counts
// the NATS input's drops.
func newInputs(zctx *zsock.Context, cfg InputsConfig, api engineAPI, chans *channelSet, st *statsCollector, log zerolog.Logger) (*inputs, error) {
	in := &inputs{}
	fail := func(err error) (*inputs, error) {
		in.close()
		return nil, err
	}
	var err error
	var uris zmqURIs
	if cfg.PullSpec != "" {
		if in.pull, err = newPullInput(zctx, cfg, api, log); err != nil {
			return fail(err)
		}
		uris.PublishPull = in.pull.Spec()
	}
	if len(cfg.SubSpecs) > 0 {
		if in.sub, err = newSubInput(zctx, cfg, api, chans, st, log); err != nil {
			return fail(err)
		}
		uris.PublishSub = in.sub.Spec()
	}
	if cfg.NATSURL != "" {
		if in.nats, err = newNATSInput(cfg, api, chans, st, log); err != nil {
			return fail(err)
		}
	}
	if cfg.CommandSpec != "" {
		if in.cmd, err = newCommandInput(zctx, cfg, uris, api, log); err != nil {
			return fail(err)
		}
	}
	if cfg.HTTPEnabled {
		if in.http, err = newHTTPInput(cfg, api, log); err != nil {
			return fail(err)
		}
	}
	return in, nil
}

// Run serves every input until ctx is done or one of them fails; it returns
// after all of them stopped and closed their sockets.
func (in *inputs) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if in.http != nil {
		g.Go(func() error { return in.http.Run(ctx) })
	}
	if in.pull != nil {
		g.Go(func() error { return in.pull.Run(ctx) })
	}
	if in.sub != nil {
		g.Go(func() error { return in.sub.Run(ctx) })
	}
	if in.nats != nil {
		g.Go(func() error { return in.nats.Run(ctx) })
	}
	if in.cmd != nil {
		g.Go(func() error { return in.cmd.Run(ctx) })
	}
	return g.Wait()
}

// close releases inputs that were opened but never run.
func (in *inputs) close() {
	if in.http != nil {
		in.http.close()
	}
	if in.pull != nil {
		closeSocket(in.pull.sock)
	}
	if in.sub != nil {
		closeSocket(in.sub.sock)
	}
	if in.nats != nil {
		in.nats.nc.Close()
	}
	if in.cmd != nil {
		closeSocket(in.cmd.sock)
	}
}

// closeSocket closes a socket that was opened but never run: its owner loop
// sees a done context at once and closes the socket on the way out.
func closeSocket(s *zsock.Socket) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Run(ctx) // nil for a done context
}

// resolveBindSpec turns a tcp bind spec whose port is 0 or "*" into one with
// a concrete free port, so that get-zmq-uris and the logs can report the real
// endpoint (zsock does not expose ZMQ_LAST_ENDPOINT). Other specs are
// returned unchanged.
func resolveBindSpec(spec string) (string, error) {
	rest, ok := strings.CutPrefix(spec, "tcp://")
	if !ok {
		return spec, nil
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return spec, nil
	}
	host, port := rest[:i], rest[i+1:]
	if port != "0" && port != "*" {
		return spec, nil
	}
	lhost := strings.Trim(host, "[]")
	if lhost == "*" {
		lhost = ""
	}
	l, err := net.Listen("tcp", net.JoinHostPort(lhost, "0"))
	if err != nil {
		return "", fmt.Errorf("pick a port for %s: %w", spec, err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("pick a port for %s: %w", spec, err)
	}
	return fmt.Sprintf("tcp://%s:%d", host, p), nil
}
