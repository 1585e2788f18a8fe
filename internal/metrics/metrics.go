package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
)

// shutdownGrace bounds how long the endpoint waits for scrapes in flight
// when stopping.
const shutdownGrace = time.Second

// Values are the numbers the endpoint shows (Pushpin's combined report).
type Values struct {
	RequestsReceived     int64
	ConnectionsConnected int64
	ConnectionMinutes    int64
	MessagesReceived     int64
	MessagesSent         int64
	MessagesDropped      int64 // ours: Pushpin drops without counting
	// WSMessagesDropped counts messages to WebSocket clients dropped
	// because the connection's outbound queue was full (ours; part of
	// MessagesDropped too).
	WSMessagesDropped int64
}

// Source returns the current values; it is called from the HTTP server's
// goroutines, so it must be safe for concurrent use.
type Source func() Values

type metric struct {
	name, typ, help string
	value           func(v *Values) int64
}

// metricList is Pushpin's list, in its order.
var metricList = []metric{
	{"request_received", "counter", "Number of requests received", func(v *Values) int64 { return v.RequestsReceived }},
	{"connection_connected", "gauge", "Number of concurrent connections", func(v *Values) int64 { return v.ConnectionsConnected }},
	{"connection_minute", "counter", "Number of minutes clients have been connected", func(v *Values) int64 { return v.ConnectionMinutes }},
	{"message_received", "counter", "Number of messages received by the publish API", func(v *Values) int64 { return v.MessagesReceived }},
	{"message_sent", "counter", "Number of messages sent to clients", func(v *Values) int64 { return v.MessagesSent }},
	// Ours: Pushpin drops without counting.
	{"message_dropped", "counter", "Number of deliveries dropped (message_hwm exceeded or client not reading)", func(v *Values) int64 { return v.MessagesDropped }},
	{"ws_message_dropped", "counter", "Number of messages to WebSocket clients dropped (connection outbound queue full)", func(v *Values) int64 { return v.WSMessagesDropped }},
}

// Format renders v as the endpoint's body, each name preceded by prefix.
func Format(prefix string, v Values) string {
	var b strings.Builder
	for _, m := range metricList {
		fmt.Fprintf(&b, "# HELP %s%s %s\n# TYPE %s%s %s\n%s%s %d\n",
			prefix, m.name, m.help, prefix, m.name, m.typ, prefix, m.name, m.value(&v))
	}
	return b.String()
}

// Server is one Prometheus endpoint.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log zerolog.Logger
}

// Listen opens the endpoint on spec, Pushpin's prometheus_port forms:
// "port" (all interfaces), "addr:port" or "ipc://path" (a unix socket).
// key names the setting in errors ("[proxy] prometheus_port").
func Listen(spec, key, prefix string, src Source, log zerolog.Logger) (*Server, error) {
	var ln net.Listener
	var err error
	if path, ok := strings.CutPrefix(spec, "ipc://"); ok {
		_ = os.Remove(path)
		ln, err = net.Listen("unix", path)
	} else {
		addr := spec
		if !strings.Contains(spec, ":") {
			if _, err := strconv.Atoi(spec); err != nil {
				return nil, fmt.Errorf("%s: bad value %q", key, spec)
			}
			addr = ":" + spec
		}
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("prometheus listen %s: %w", spec, err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body := Format(prefix, src())
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write([]byte(body))
	})
	l := log.With().Str(logging.FieldComponent, "prometheus").Logger()
	l.Info().Str("addr", ln.Addr().String()).Msg("prometheus listening")
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, log: l}, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := s.srv.Shutdown(sctx); err != nil {
			s.srv.Close()
		}
		<-errc
		return nil
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("prometheus: %w", err)
	}
}

// Close closes the listener of a server that was never run.
func (s *Server) Close() { _ = s.ln.Close() }
