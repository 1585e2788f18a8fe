package connmgr

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
)

// Overflow reporting (doc.go, "WebSockets"): a WebSocket whose mailbox
// overflowed is closed with 1011. connmgr has no stats socket or metrics
// endpoint (condure has none, and Pushpin's config gives it none), so the
// closes are counted per process and shown in the log: a warning per
// connection with its id (at most one per wsOverflowWarnEvery, the others
// counted as suppressed) and, every wsOverflowSummaryEvery in which any
// happened, a summary warning with the count and the total since start.
const (
	wsOverflowWarnEvery    = time.Second
	wsOverflowSummaryEvery = time.Minute
)

// wsOverflows counts overflow closes; safe for concurrent use (the
// connections report, the engine's tick summarizes).
type wsOverflows struct {
	log   zerolog.Logger
	total atomic.Int64

	mu          sync.Mutex
	lastWarn    time.Time
	suppressed  int
	lastSummary time.Time
	summarized  int64 // total at the last summary
}

func newWSOverflows(log zerolog.Logger, now time.Time) *wsOverflows {
	return &wsOverflows{log: log, lastSummary: now}
}

// closed counts the overflow close of connection id and warns unless a
// warning went out less than wsOverflowWarnEvery ago.
func (o *wsOverflows) closed(id string, now time.Time) {
	total := o.total.Add(1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.lastWarn.IsZero() && now.Sub(o.lastWarn) < wsOverflowWarnEvery {
		o.suppressed++
		return
	}
	ev := o.log.Warn().Str(logging.FieldConn, id).Int("frames", maxQueuedFrames).Int64("overflows_total", total)
	if o.suppressed > 0 {
		ev = ev.Int("suppressed", o.suppressed)
	}
	ev.Msg("WebSocket outbound queue full, closing with 1011")
	o.lastWarn, o.suppressed = now, 0
}

// summary warns with the overflow closes since the last summary, once
// wsOverflowSummaryEvery has passed and there were any.
func (o *wsOverflows) summary(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now.Sub(o.lastSummary) < wsOverflowSummaryEvery {
		return
	}
	o.lastSummary = now
	total := o.total.Load()
	if total == o.summarized {
		return
	}
	o.log.Warn().Int64("overflows", total-o.summarized).Int64("overflows_total", total).
		Msg("WebSocket connections closed with 1011 for a full outbound queue")
	o.summarized = total
}
