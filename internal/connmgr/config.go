package connmgr

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults, each the condure 1.9.1 default it mirrors (`condure --help`).
const (
	// DefaultID is condure's --id default; Pushpin 1.36's runner does not
	// pass --id, so the proxy and handler address us by this name.
	DefaultID = "condure"
	// DefaultListen is condure's --listen default.
	DefaultListen = "0.0.0.0:8000,stream"
	// DefaultZClientSpec is condure's --zclient-stream and --zclient-req default.
	DefaultZClientSpec = "ipc://client"
	// DefaultBufferSize is condure's --buffer-size: the request head limit,
	// the largest body packet we send and the credits we grant (§2.7).
	DefaultBufferSize = 8192
	// DefaultStreamMaxConn is condure's --stream-maxconn.
	DefaultStreamMaxConn = 10000
	// DefaultReqMaxConn is condure's --req-maxconn (req mode; not supported yet).
	DefaultReqMaxConn = 100
	// DefaultBodyBufferSize is condure's --body-buffer-size (req mode).
	DefaultBodyBufferSize = 100000
	// DefaultMessagesMax is condure's --messages-max (WebSocket).
	DefaultMessagesMax = 100
	// DefaultReqTimeout is condure's --req-timeout in seconds (req mode).
	DefaultReqTimeout = 30
	// DefaultStreamTimeout is condure's --stream-timeout in seconds: a client
	// connection on which no byte moved for this long is closed.
	DefaultStreamTimeout = 1800
	// DefaultWorkers is condure's --workers (accepted; tack uses one engine).
	DefaultWorkers = 2
	// DefaultLogLevel is condure's --log-level.
	DefaultLogLevel = 2
)

// Bounds and timers that condure has no flag for.
const (
	// InitHWM is the first-packet PUSH socket's SNDHWM. connmgr uses 128;
	// tack takes a burst of 1024 new requests (about 300 KB) before
	// answering 503, since 500 clients connecting at once got 503s at 128.
	InitHWM = 1024
	// MinOtherHWM is the lower bound of the ROUTER/SUB HWM, otherwise 5 % of
	// the connection limit as in connmgr.
	MinOtherHWM = 100
	// RouterRetry is how long a ROUTER send to a not-yet-routable peer is
	// retried (connmgr STREAM_OUT_STREAM_DELAY, 50 ms).
	RouterRetry = 50 * time.Millisecond
	// RouterFullWait is how long a ROUTER send to a server that is
	// connected but not keeping up (its queue at the HWM) waits for room
	// before the message is dropped and its session closed. A handler
	// busy with a publish to 100,000 streams on a loaded machine left the
	// credits of that publish waiting over 50 ms, and sessions were
	// closed (their seq would have a gap) although the handler was fine.
	RouterFullWait = 5 * time.Second
	// RouterLinger lets the shutdown cancels leave (Pushpin's zhttp ROUTER
	// linger, 500 ms).
	RouterLinger = 500 * time.Millisecond
	// DefaultAckTimeout bounds the wait for the first packet from a zhttp
	// server after our request went out; then the client gets a 503. Pushpin
	// servers acknowledge at once (§2.7), so this only fires when the peer
	// that pulled the request died or lost it. condure has no such bound (it
	// waits for the 60 s session expiry and closes the connection).
	DefaultAckTimeout = 10 * time.Second
	// DefaultTick is the engine's timer resolution for keep-alives, expiry
	// and the ack timeout (connmgr walks its table every 100 ms).
	DefaultTick = 500 * time.Millisecond
	// DefaultShutdownGrace is how long connections get to flush after the
	// shutdown cancels went out.
	DefaultShutdownGrace = 2 * time.Second
	// MaxURI is the longest uri we build for a first packet (connmgr
	// URI_SIZE_MAX).
	MaxURI = 4096
	// MaxRequestHeaders is the most request headers we forward (connmgr
	// HEADERS_MAX; condure and connmgr drop packets with more, §1.1).
	MaxRequestHeaders = 64
	// MinBufferSize keeps --buffer-size large enough for a request line.
	MinBufferSize = 256
)

// Listener is one --listen value.
type Listener struct {
	Addr        string // host:port for TCP, a path for local
	Stream      bool   // stream mode (default); false = req mode
	TLS         bool
	DefaultCert string
	Local       bool
	// Mode, User and Group set a local listener's socket file (listen
	// params mode=<octal>, user=, group=; connmgr 1.37+, not condure 1.9.1).
	Mode  os.FileMode
	User  string
	Group string
}

// Config is everything a Service needs; it is read-only once New has it.
type Config struct {
	ID             string
	Listen         []Listener
	ZClientStream  []string // spec bases (§3.4)
	ZClientReq     []string
	ZClientConnect bool
	IPCFileMode    os.FileMode
	BufferSize     int
	StreamMaxConn  int
	ReqMaxConn     int
	BodyBufferSize int
	MessagesMax    int
	ReqTimeout     time.Duration
	StreamTimeout  time.Duration
	TLSIdentities  string
	Workers        int
	Compression    bool
	// ReusePort sets SO_REUSEPORT on TCP listeners (tack's --reuse-port,
	// no condure flag): several connmgr processes share the client ports.
	ReusePort bool

	// Test hooks and budgets with no condure flag; zero means the default.
	// HandshakeTimeout bounds a TLS handshake (DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	AckTimeout       time.Duration
	Tick             time.Duration
	ShutdownGrace    time.Duration
	// Now is the engine's clock (time.Now when nil); tests advance it to
	// reach the 45 s keep-alive and 60 s expiry without waiting.
	Now func() time.Time
}

// network is "tcp4" for an IPv4 address (0.0.0.0 listens on IPv4 only, as
// condure), "tcp6" for an IPv6 one.
func (l Listener) network() string {
	host, _, err := net.SplitHostPort(l.Addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.To4() == nil {
		return "tcp6"
	}
	return "tcp4"
}

// DefaultConfig returns condure's defaults.
func DefaultConfig() Config {
	l, _ := ParseListen(DefaultListen)
	return Config{
		ID:             DefaultID,
		Listen:         []Listener{l},
		ZClientStream:  []string{DefaultZClientSpec},
		ZClientReq:     []string{DefaultZClientSpec},
		BufferSize:     DefaultBufferSize,
		StreamMaxConn:  DefaultStreamMaxConn,
		ReqMaxConn:     DefaultReqMaxConn,
		BodyBufferSize: DefaultBodyBufferSize,
		MessagesMax:    DefaultMessagesMax,
		ReqTimeout:     DefaultReqTimeout * time.Second,
		StreamTimeout:  DefaultStreamTimeout * time.Second,
		TLSIdentities:  ".",
		Workers:        DefaultWorkers,
	}
}

// ParseListen parses condure's `[addr:]port[,params...]` (params: stream,
// req, tls, default-cert=NAME, local; with local also mode=OCTAL, user=NAME,
// group=NAME). A bare port listens on 0.0.0.0.
func ParseListen(v string) (Listener, error) {
	parts := strings.Split(v, ",")
	l := Listener{}
	var req, stream bool
	for _, p := range parts[1:] {
		k, val, hasVal := strings.Cut(p, "=")
		switch {
		case k == "stream" && !hasVal:
			stream = true
		case k == "req" && !hasVal:
			req = true
		case k == "tls" && !hasVal:
			l.TLS = true
		case k == "default-cert" && hasVal:
			l.DefaultCert = val
		case k == "local" && !hasVal:
			l.Local = true
		case k == "mode" && hasVal:
			m, err := strconv.ParseUint(val, 8, 32)
			if err != nil || m > 0o777 {
				return Listener{}, fmt.Errorf("listen %q: mode %q: not an octal mode", v, val)
			}
			l.Mode = os.FileMode(m)
		case k == "user" && hasVal && val != "":
			l.User = val
		case k == "group" && hasVal && val != "":
			l.Group = val
		default:
			return Listener{}, fmt.Errorf("listen %q: invalid param: %s", v, p)
		}
	}
	// Stream mode is selected by "stream" or by the absence of "req" (condure).
	l.Stream = stream || !req
	addr := parts[0]
	if !l.Local && (l.Mode != 0 || l.User != "" || l.Group != "") {
		return Listener{}, fmt.Errorf("listen %q: mode, user and group apply to local listeners only", v)
	}
	if l.Local {
		if addr == "" {
			return Listener{}, fmt.Errorf("listen %q: empty path", v)
		}
		l.Addr = addr
		return l, nil
	}
	if !strings.Contains(addr, ":") {
		addr = "0.0.0.0:" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Listener{}, fmt.Errorf("listen %q: %w", v, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return Listener{}, fmt.Errorf("listen %q: bad port %q", v, port)
	}
	if ip := net.ParseIP(host); ip == nil {
		return Listener{}, fmt.Errorf("listen %q: bad address %q", v, host)
	}
	l.Addr = net.JoinHostPort(host, port)
	return l, nil
}

// StreamSpecs expands a --zclient-stream base into the PUSH, ROUTER and SUB
// endpoints (§3.4): ipc appends -out, -out-stream, -in; tcp uses P, P+1, P+2.
func StreamSpecs(base string) (out, outStream, in string, err error) {
	switch {
	case strings.HasPrefix(base, "ipc:"):
		return base + "-out", base + "-out-stream", base + "-in", nil
	case strings.HasPrefix(base, "tcp:"):
		i := strings.LastIndexByte(base, ':')
		if i <= len("tcp:") {
			return "", "", "", fmt.Errorf("zclient-stream %q: tcp base spec must specify port", base)
		}
		p, perr := strconv.ParseUint(base[i+1:], 10, 16)
		if perr != nil || p > 65535-2 {
			return "", "", "", fmt.Errorf("zclient-stream %q: error parsing tcp port in base spec", base)
		}
		h := base[:i]
		return fmt.Sprintf("%s:%d", h, p), fmt.Sprintf("%s:%d", h, p+1), fmt.Sprintf("%s:%d", h, p+2), nil
	default:
		return "", "", "", fmt.Errorf("zclient-stream %q: base spec must be ipc or tcp", base)
	}
}

// Validate checks cross-field rules and refuses what tack does not
// implement yet, so that nothing is silently ignored.
func (c *Config) Validate() error {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if c.ID == "" || strings.ContainsAny(c.ID, " ") {
		add("id: value cannot be empty or contain a space")
	}
	if len(c.ID) > 64 {
		add("id: longer than 64 bytes")
	}
	if len(c.Listen) == 0 {
		add("listen: at least one listener is required")
	}
	for _, l := range c.Listen {
		switch {
		case l.TLS && l.Local:
			add("listen %s: tls on a local listener is %s", l.Addr, ErrNotSupported)
		case l.DefaultCert != "" && !l.TLS:
			add("listen %s: default-cert needs tls", l.Addr)
		case !l.Stream:
			add("listen %s: req mode is %s", l.Addr, ErrNotSupported)
		}
	}
	if len(c.ZClientStream) == 0 {
		add("zclient-stream: at least one spec base is required")
	}
	if !c.ZClientConnect && len(c.ZClientStream) > 1 {
		add("zclient-stream: binding more than one spec base is %s (use --zclient-connect)", ErrNotSupported)
	}
	for _, b := range c.ZClientStream {
		if _, _, _, err := StreamSpecs(b); err != nil {
			add("%v", err)
		}
	}
	if c.BufferSize < MinBufferSize {
		add("buffer-size: must be at least %d", MinBufferSize)
	}
	if c.StreamMaxConn < 1 {
		add("stream-maxconn: must be at least 1")
	}
	if c.StreamTimeout <= 0 {
		add("stream-timeout: must be positive")
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (c *Config) ackTimeout() time.Duration {
	if c.AckTimeout > 0 {
		return c.AckTimeout
	}
	return DefaultAckTimeout
}

func (c *Config) handshakeTimeout() time.Duration {
	if c.HandshakeTimeout > 0 {
		return c.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (c *Config) tick() time.Duration {
	if c.Tick > 0 {
		return c.Tick
	}
	return DefaultTick
}

func (c *Config) shutdownGrace() time.Duration {
	if c.ShutdownGrace > 0 {
		return c.ShutdownGrace
	}
	return DefaultShutdownGrace
}

func (c *Config) otherHWM() int {
	n := (c.StreamMaxConn + c.ReqMaxConn) / 20
	if n < MinOtherHWM {
		n = MinOtherHWM
	}
	return n
}
