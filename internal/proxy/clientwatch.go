package proxy

import (
	"time"

	"tack/internal/logging"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

// clientWatch finds a zhttp client (zurl, tack-zhttp-client) that went
// away with requests in flight, the way connmgr finds a vanished proxy or
// handler (internal/connmgr doc.go, "A zhttp server that goes away"):
// when a peer disconnects from the zurl-in-stream ROUTER, every acked
// outbound session gets keep-alives (zhttpsession.ProbeAfter); those the ROUTER
// (ROUTER_MANDATORY) cannot route come back as drops and their requests
// end as if the zhttp client had reported "disconnected" (a 502 before
// the response head, the client connection closed after it). Without it
// the client waited for the 60 s zhttp expiry.
type clientWatch struct {
	drops chan string   // out ids of follow-ups that could not be routed
	gone  chan struct{} // a peer disconnected (1 slot: one probe covers all)
	// probes schedules the probes after a disconnect; engine goroutine
	// only.
	probes zhttpsession.Probes
}

func newClientWatch() *clientWatch {
	return &clientWatch{drops: make(chan string, dropQueueLength), gone: make(chan struct{}, 1)}
}

// onDrop is the ROUTER's OnDrop hook (socket goroutine; never blocks).
func (w *clientWatch) onDrop(m zsock.Message, _ error) {
	if len(m) != 3 {
		return
	}
	p, err := zhttp.Parse(m[2])
	if err != nil || p.Type == zhttp.TypeCancel {
		return
	}
	select {
	case w.drops <- string(p.ID):
	default: // the 60 s expiry catches it
	}
}

// onDisconnect is the ROUTER's OnDisconnect hook (socket goroutine).
func (w *clientWatch) onDisconnect() {
	select {
	case w.gone <- struct{}{}:
	default:
	}
}

// disconnected schedules the probes (engine goroutine).
func (w *clientWatch) disconnected() { w.probes.Disconnected(time.Now()) }

// due reports that a scheduled probe is due (engine goroutine).
func (w *clientWatch) due() bool { return w.probes.Due(time.Now()) }

// probeClients sends a keep-alive on every acked outbound session.
func (e *engine) probeClients(now time.Time) {
	n := 0
	for _, s := range e.byOut {
		if s.outAcked {
			ka := zhttp.New()
			ka.Type = zhttp.TypeKeepAlive
			e.sendClient(s, ka, now)
			n++
		}
	}
	e.log.Debug().Int("sessions", n).Int("outbound", len(e.byOut)).Msg("a zhttp client disconnected: probing its sessions")
}

// clientGone ends the request whose follow-up to the zhttp client could
// not be routed: the zhttp client is gone.
func (e *engine) clientGone(outID string, now time.Time) {
	s := e.byOut[outID]
	if s == nil || !s.outAcked {
		return
	}
	e.log.Warn().Str(logging.FieldRID, outID).Msg("zhttp client unreachable, ending request")
	e.clientError(s, zhttp.CondDisconnected, now)
}
