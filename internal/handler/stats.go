package handler

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/zsock"
)

// statsCollector emits stats packets and keeps the Prometheus counters.
// All methods are safe on a nil receiver (no stats socket configured).
type statsCollector struct {
	out chan<- zsock.Message
}

func newStatsCollector(cfg *Config, log zerolog.Logger) *statsCollector {
	return &statsCollector{}
}

func (st *statsCollector) run(ctx context.Context) error                           { <-ctx.Done(); return nil }
func (st *statsCollector) messagesReceived(n int)                                  {}
func (st *statsCollector) connAdd(s *hsession, now time.Time)                      {}
func (st *statsCollector) connRemove(s *hsession, now time.Time, retry bool)       {}
func (st *statsCollector) subscription(mode, channel string, n int, now time.Time) {}
func (st *statsCollector) unsubscription(mode, channel string)                     {}
func (st *statsCollector) message(channel, id, transport string, n int)            {}
func (st *statsCollector) messageSent(route, transport string)                     {}
func (st *statsCollector) activity(route string, n int)                            {}
func (st *statsCollector) dropped()                                                {}
func (st *statsCollector) refresh(e *engine, now time.Time)                        {}

func serveProxyStats(ctx context.Context, so *zsock.Socket, st *statsCollector, log zerolog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-so.Recv():
			if !ok {
				return errSocketClosed("proxy-stats")
			}
		}
	}
}

type metricsServer struct{}

func newMetricsServer(cfg *Config, st *statsCollector, log zerolog.Logger) (*metricsServer, error) {
	return nil, nil
}

func (m *metricsServer) run(ctx context.Context) error { <-ctx.Done(); return nil }
