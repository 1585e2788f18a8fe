package handler

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

// metricsShutdownGrace bounds how long the Prometheus endpoint waits for
// scrapes in flight when stopping.
const metricsShutdownGrace = time.Second

// prometheusMetric is one line group of the Prometheus endpoint; names,
// types and help texts are Pushpin's (src/corelib/statsmanager.cpp).
type prometheusMetric struct {
	name, typ, help string
	value           func(t statsTotals, conns int) int64
}

var prometheusMetrics = []prometheusMetric{
	{"request_received", "counter", "Number of requests received", func(t statsTotals, _ int) int64 { return t.requests }},
	{"connection_connected", "gauge", "Number of concurrent connections", func(_ statsTotals, c int) int64 { return int64(c) }},
	{"connection_minute", "counter", "Number of minutes clients have been connected", func(t statsTotals, _ int) int64 { return t.minutes }},
	{"message_received", "counter", "Number of messages received by the publish API", func(t statsTotals, _ int) int64 { return t.received }},
	{"message_sent", "counter", "Number of messages sent to clients", func(t statsTotals, _ int) int64 { return t.sent }},
	// Ours: Pushpin drops without counting.
	{"message_dropped", "counter", "Number of deliveries dropped (message_hwm exceeded or client not reading)", func(t statsTotals, _ int) int64 { return t.deliveryDropped }},
}

// metricsServer is the [handler] prometheus_port endpoint: any request
// gets the metrics as text/plain, as in Pushpin. The values come from the
// stats collector, so it needs one even without stats_spec.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server
	log zerolog.Logger
}

// newMetricsServer listens on cfg.PrometheusPort ("port", "addr:port" or
// "ipc://path"); nil when unset.
func newMetricsServer(cfg *Config, st *statsCollector, log zerolog.Logger) (*metricsServer, error) {
	spec := cfg.PrometheusPort
	if spec == "" || st == nil {
		return nil, nil
	}
	var ln net.Listener
	var err error
	if path, ok := strings.CutPrefix(spec, "ipc://"); ok {
		_ = os.Remove(path)
		ln, err = net.Listen("unix", path)
	} else {
		addr := spec
		if !strings.Contains(spec, ":") {
			if _, err := strconv.Atoi(spec); err != nil {
				return nil, fmt.Errorf("[handler] prometheus_port: bad value %q", spec)
			}
			addr = ":" + spec
		}
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("prometheus listen %s: %w", spec, err)
	}
	prefix := cfg.PrometheusPrefix
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		totals, conns := st.snapshot()
		var b strings.Builder
		for _, m := range prometheusMetrics {
			fmt.Fprintf(&b, "# HELP %s%s %s\n# TYPE %s%s %s\n%s%s %d\n",
				prefix, m.name, m.help, prefix, m.name, m.typ, prefix, m.name, m.value(totals, conns))
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
		_, _ = w.Write([]byte(b.String()))
	})
	l := log.With().Str(logging.FieldComponent, "prometheus").Logger()
	l.Info().Str("addr", ln.Addr().String()).Msg("prometheus listening")
	return &metricsServer{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, log: l}, nil
}

func (m *metricsServer) run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- m.srv.Serve(m.ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), metricsShutdownGrace)
		defer cancel()
		if err := m.srv.Shutdown(sctx); err != nil {
			m.srv.Close()
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

func (m *metricsServer) close() { _ = m.ln.Close() }
