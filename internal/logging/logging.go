package logging

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Field names spelled the same in every process.
const (
	FieldComponent = "component"
	FieldRID       = "rid"  // zhttp request id
	FieldFrom      = "from" // zhttp peer instance id
	FieldConn      = "conn" // client connection id
	FieldPeer      = "peer" // remote address
	FieldRoute     = "route"
	FieldSocket    = "socket"
	FieldService   = "service" // process name, in JSON output
	// FieldKind marks events with a fixed text form: with KindRequest the
	// message is Pushpin's request log line, printed alone in text output
	// (so that parsers of Pushpin's logs keep working) while JSON output
	// keeps the structured fields beside it.
	FieldKind   = "kind"
	KindRequest = "request"
)

// Log output formats (--log-format, [runner] log_format).
const (
	FormatText = "text" // Pushpin's "[LEVEL] date time message" lines
	FormatJSON = "json" // one zerolog JSON object per line
	// FormatEnv passes the format from the runner to its children
	// (Pushpin's binaries ignore it).
	FormatEnv = "TACK_LOG_FORMAT"
)

// ParseFormat checks a log format name ("" means text).
func ParseFormat(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", FormatText:
		return FormatText, nil
	case FormatJSON:
		return FormatJSON, nil
	}
	return "", fmt.Errorf("log format %q: must be text or json", s)
}

// Pushpin log levels: 0 error, 1 warn, 2 info, 3 debug, 4+ trace.
const (
	LevelError = 0
	LevelWarn  = 1
	LevelInfo  = 2
	LevelDebug = 3
	LevelTrace = 4

	// DefaultLevel mirrors Pushpin's default --loglevel (2 = info).
	DefaultLevel = LevelInfo
)

// ZerologLevel maps a Pushpin numeric level to a zerolog level.
func ZerologLevel(n int) zerolog.Level {
	switch {
	case n <= LevelError:
		return zerolog.ErrorLevel
	case n == LevelWarn:
		return zerolog.WarnLevel
	case n == LevelInfo:
		return zerolog.InfoLevel
	case n == LevelDebug:
		return zerolog.DebugLevel
	default:
		return zerolog.TraceLevel
	}
}

// ParseLevel parses a Pushpin log level value. It accepts a bare number or the
// runner form "N,service:N,..." and returns the level for service (or the
// default N when service has no entry).
func ParseLevel(s, service string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultLevel, nil
	}
	level := DefaultLevel
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		name, val, hasName := strings.Cut(part, ":")
		if !hasName {
			val = name
			name = ""
		}
		if hasName && name == "" {
			return 0, fmt.Errorf("log level component name cannot be empty")
		}
		if val == "" {
			return 0, fmt.Errorf("log level component cannot be empty")
		}
		n, err := strconv.Atoi(val)
		if err != nil {
			return 0, fmt.Errorf("log level %q: not a number", val)
		}
		if n < 0 {
			if hasName {
				return 0, fmt.Errorf("log level for service %s must be greater than or equal to 0", name)
			}
			return 0, fmt.Errorf("log level must be greater than or equal to 0")
		}
		if !hasName && i == 0 {
			level = n
		} else if hasName && name == service {
			return n, nil
		}
	}
	return level, nil
}

// Options selects where and how much a process logs.
type Options struct {
	Level   int    // Pushpin numeric level
	File    string // append to this file instead of stderr
	Service string // process name, added as a field to JSON output when non-empty
	Format  string // FormatText ("" too) or FormatJSON
}

// New builds a logger writing Pushpin-style console lines
// ("[INFO] 2026-11-22 10:27:10.532 message key=value"). The returned
// Output is where the lines go: close it when done, reopen it on SIGHUP.
func New(opts Options) (zerolog.Logger, *Output, error) {
	out, err := OpenOutput(opts.File)
	if err != nil {
		return zerolog.Nop(), nil, err
	}
	if opts.Format == FormatJSON {
		return NewJSON(out, opts.Level, opts.Service), out, nil
	}
	return NewWriter(out, opts.Level), out, nil
}

// NewJSON builds a logger writing one JSON object per line on w at Pushpin
// level n, with the service name as a field when non-empty.
func NewJSON(w io.Writer, n int, service string) zerolog.Logger {
	l := zerolog.New(w).Level(ZerologLevel(n)).Hook(timeHook{})
	if service != "" {
		l = l.With().Str(FieldService, service).Logger()
	}
	return l
}

// NewWriter builds a logger on w at Pushpin level n.
func NewWriter(w io.Writer, n int) zerolog.Logger {
	cw := zerolog.ConsoleWriter{
		Out:        w,
		NoColor:    true,
		TimeFormat: "2006-01-02 15:04:05.000",
		PartsOrder: []string{zerolog.LevelFieldName, zerolog.TimestampFieldName, zerolog.MessageFieldName},
		FormatLevel: func(i any) string {
			s, _ := i.(string)
			switch s {
			case "error", "fatal", "panic":
				return "[ERR]"
			case "warn":
				return "[WARN]"
			case "info":
				return "[INFO]"
			case "debug":
				return "[DEBUG]"
			case "trace":
				return "[TRACE]"
			}
			return "[" + strings.ToUpper(s) + "]"
		},
		FormatTimestamp: func(i any) string {
			if s, ok := i.(string); ok {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					return t.Local().Format("2006-01-02 15:04:05.000")
				}
				return s
			}
			return fmt.Sprint(i)
		},
		FormatPrepare: func(evt map[string]any) error {
			if evt[FieldKind] == KindRequest {
				for k := range evt {
					if k != zerolog.LevelFieldName && k != zerolog.TimestampFieldName && k != zerolog.MessageFieldName {
						delete(evt, k)
					}
				}
			}
			return nil
		},
	}
	return zerolog.New(cw).Level(ZerologLevel(n)).Hook(timeHook{})
}

// timeHook stamps each event with millisecond precision without touching
// zerolog's global TimeFieldFormat.
type timeHook struct{}

func (timeHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	e.Str(zerolog.TimestampFieldName, time.Now().Format(time.RFC3339Nano))
}
