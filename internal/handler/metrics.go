package handler

import (
	"github.com/rs/zerolog"

	"tack/internal/metrics"
)

// newMetricsServer opens the [handler] prometheus_port endpoint (nil when
// unset). The values come from the stats collector, so it needs one even
// without stats_spec.
func newMetricsServer(cfg *Config, st *statsCollector, log zerolog.Logger) (*metrics.Server, error) {
	if cfg.PrometheusPort == "" || st == nil {
		return nil, nil
	}
	return metrics.Listen(cfg.PrometheusPort, "[handler] prometheus_port", cfg.PrometheusPrefix, st.metricValues, log)
}

// metricValues are the Prometheus values (Pushpin's combined report).
func (st *statsCollector) metricValues() metrics.Values {
	t, conns := st.snapshot()
	return metrics.Values{
		RequestsReceived:     t.requests,
		ConnectionsConnected: int64(conns),
		ConnectionMinutes:    t.minutes,
		MessagesReceived:     t.received,
		MessagesSent:         t.sent,
		MessagesDropped:      t.deliveryDropped + t.wsDropped,
		WSMessagesDropped:    t.wsDropped,
	}
}
