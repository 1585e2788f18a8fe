package zhttpclient

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// Defaults of zurl.conf keys (zmq-wire.md §5.1; zurl src/app.cpp).
const (
	// DefaultConfigFile is read when --config is not given, as zurl does.
	DefaultConfigFile = "/etc/zurl.conf"
	// DefaultBufferSize is zurl's buffer_size: the credits granted for a
	// streamed request body and the largest body read per packet.
	DefaultBufferSize = 200000
	// DefaultTimeout is zurl's timeout: inactivity before session-timeout.
	DefaultTimeout = 600 * time.Second
	// DefaultConnectionMaxTime is zurl's connection_max_time: the age after
	// which pooled persistent connections are retired.
	DefaultConnectionMaxTime = 7200 * time.Second
	// DefaultHWM is zurl's in_hwm and out_hwm.
	DefaultHWM = 1000
	// Unlimited is the max_open_requests value meaning "no limit" (zurl's
	// default when the key is absent; the runner template sets 2000).
	Unlimited = -1
	// PolicyAllow and PolicyDeny are the two defpolicy values.
	PolicyAllow = "allow"
	PolicyDeny  = "deny"
)

// Config is the service configuration, the [General] section of zurl.conf.
// It is read-only once New has accepted it.
type Config struct {
	InstanceID   string // `from` of every reply and the DEALER identity
	InSpec       string // PULL, bound: first packets
	InStreamSpec string // DEALER, bound: follow-up packets
	OutSpec      string // PUB, bound: replies
	InReqSpec    string // ROUTER, bound: req mode
	IPCFileMode  os.FileMode

	DefPolicy string // PolicyAllow or PolicyDeny
	Allow     []string
	Deny      []string

	MaxOpenRequests   int // Unlimited or > 0
	BufferSize        int
	Timeout           time.Duration
	ConnectionMaxTime time.Duration
	AllowIPv6         bool
	InHWM             int
	OutHWM            int
}

// DefaultConfig returns a Config with zurl's defaults and no sockets.
func DefaultConfig() Config {
	return Config{
		InstanceID:        fmt.Sprintf("zhttpclient_%d", os.Getpid()),
		DefPolicy:         PolicyAllow,
		MaxOpenRequests:   Unlimited,
		BufferSize:        DefaultBufferSize,
		Timeout:           DefaultTimeout,
		ConnectionMaxTime: DefaultConnectionMaxTime,
		InHWM:             DefaultHWM,
		OutHWM:            DefaultHWM,
	}
}

// Validate checks the cross-field rules zurl enforces at start-up.
func (c *Config) Validate() error {
	var errs []error
	stream := c.InSpec != "" || c.InStreamSpec != "" || c.OutSpec != ""
	if stream && (c.InSpec == "" || c.InStreamSpec == "" || c.OutSpec == "") {
		errs = append(errs, fmt.Errorf("%w: if any of in_spec, in_stream_spec, or out_spec are set then all of them must be set", ErrConfig))
	}
	if c.InSpec == "" && c.InReqSpec == "" {
		errs = append(errs, fmt.Errorf("%w: must set at least in_spec+in_stream_spec+out_spec or in_req_spec", ErrConfig))
	}
	if c.DefPolicy != PolicyAllow && c.DefPolicy != PolicyDeny {
		errs = append(errs, fmt.Errorf("%w: defpolicy must be set to \"allow\" or \"deny\"", ErrConfig))
	}
	if c.InstanceID == "" || strings.ContainsAny(c.InstanceID, " ") {
		errs = append(errs, fmt.Errorf("%w: instance_id %q must be non-empty and contain no space", ErrConfig, c.InstanceID))
	}
	if c.BufferSize <= 0 {
		errs = append(errs, fmt.Errorf("%w: buffer_size must be positive", ErrConfig))
	}
	if c.MaxOpenRequests == 0 || c.MaxOpenRequests < Unlimited {
		errs = append(errs, fmt.Errorf("%w: max_open_requests must be positive or %d", ErrConfig, Unlimited))
	}
	return errors.Join(errs...)
}

// LoadConfig reads a zurl.conf (QSettings INI, keys in [General]). Values
// zurl would silently turn into 0 are reported as warnings and replaced by
// the default; errors name the file, line and key, all of them in one pass.
func LoadConfig(path string) (Config, []string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%w: failed to open %s: %w", ErrConfig, path, err)
	}
	return parseConfig(path, raw)
}

func parseConfig(path string, raw []byte) (Config, []string, error) {
	f, err := ini.LoadSources(ini.LoadOptions{
		KeyValueDelimiters:      "=",
		SkipUnrecognizableLines: true,
	}, raw)
	if err != nil {
		return Config{}, nil, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	l := &loader{path: path, raw: raw, f: f}
	cfg := DefaultConfig()
	if v, ok := l.str("instance_id"); ok && v != "" {
		cfg.InstanceID = v
	}
	cfg.InSpec, _ = l.str("in_spec")
	cfg.InStreamSpec, _ = l.str("in_stream_spec")
	cfg.OutSpec, _ = l.str("out_spec")
	cfg.InReqSpec, _ = l.str("in_req_spec")
	if v, ok := l.str("ipc_file_mode"); ok && v != "" {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil {
			l.fail("ipc_file_mode", fmt.Errorf("invalid ipc_file_mode: %s", v))
		} else {
			cfg.IPCFileMode = os.FileMode(m)
		}
	}
	if v, ok := l.str("defpolicy"); ok {
		cfg.DefPolicy = v
		if v != PolicyAllow && v != PolicyDeny {
			l.fail("defpolicy", errors.New(`defpolicy must be set to "allow" or "deny"`))
		}
	}
	cfg.Allow = l.list("allow")
	cfg.Deny = l.list("deny")
	cfg.MaxOpenRequests = l.integer("max_open_requests", Unlimited)
	if cfg.MaxOpenRequests < Unlimited {
		cfg.MaxOpenRequests = Unlimited
	} else if cfg.MaxOpenRequests == 0 {
		// zurl closes its input valve as soon as one request runs when the
		// limit is 0, so 0 behaves as 1.
		cfg.MaxOpenRequests = 1
	}
	cfg.BufferSize = l.positive("buffer_size", DefaultBufferSize)
	cfg.Timeout = time.Duration(l.positive("timeout", int(DefaultTimeout/time.Second))) * time.Second
	cfg.ConnectionMaxTime = time.Duration(l.integer("connection_max_time", int(DefaultConnectionMaxTime/time.Second))) * time.Second
	cfg.AllowIPv6 = l.boolean("allow_ipv6")
	cfg.InHWM = l.integer("in_hwm", DefaultHWM)
	cfg.OutHWM = l.integer("out_hwm", DefaultHWM)
	if len(l.errs) == 0 {
		if err := cfg.Validate(); err != nil {
			l.errs = append(l.errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	return cfg, l.warns, errors.Join(l.errs...)
}

// loader reads typed values from the [General] section (or, like
// QSettings, from keys before any section header) and gathers problems.
type loader struct {
	path  string
	raw   []byte
	f     *ini.File
	errs  []error
	warns []string
}

func (l *loader) key(name string) *ini.Key {
	for _, sec := range []string{"General", ini.DefaultSection} {
		s, err := l.f.GetSection(sec)
		if err != nil {
			continue
		}
		if s.HasKey(name) {
			k, _ := s.GetKey(name)
			return k
		}
	}
	return nil
}

func (l *loader) str(name string) (string, bool) {
	k := l.key(name)
	if k == nil {
		return "", false
	}
	return strings.TrimSpace(k.String()), true
}

// list splits a comma list as QSettings::toStringList does for unquoted
// values, dropping empty entries as zurl's cleanStringList does.
func (l *loader) list(name string) []string {
	v, ok := l.str(name)
	if !ok {
		return nil
	}
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.Trim(strings.TrimSpace(e), `"`)
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

func (l *loader) integer(name string, def int) int {
	v, ok := l.str(name)
	if !ok || v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		l.warn(name, fmt.Sprintf("%q is not an integer, using %d", v, def))
		return def
	}
	return n
}

func (l *loader) positive(name string, def int) int {
	n := l.integer(name, def)
	if n <= 0 {
		l.warn(name, fmt.Sprintf("%d is not positive, using %d", n, def))
		return def
	}
	return n
}

// boolean follows QVariant(QString).toBool(): anything but "", "0" and
// "false" is true.
func (l *loader) boolean(name string) bool {
	v, _ := l.str(name)
	switch strings.ToLower(v) {
	case "", "0", "false":
		return false
	}
	return true
}

func (l *loader) fail(name string, err error) {
	l.errs = append(l.errs, fmt.Errorf("%w: %s:%d: %s: %w", ErrConfig, l.path, l.line(name), name, err))
}

func (l *loader) warn(name, msg string) {
	l.warns = append(l.warns, fmt.Sprintf("%s:%d: %s: %s", l.path, l.line(name), name, msg))
}

// line finds the line that sets name; the INI library keeps no positions.
func (l *loader) line(name string) int {
	sc := bufio.NewScanner(bytes.NewReader(l.raw))
	n := 0
	last := 0
	for sc.Scan() {
		n++
		k, _, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == name {
			last = n
		}
	}
	return last
}
