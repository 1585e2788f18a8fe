package zhttpsession

import "time"

// ProbeAfter are the delays after a peer disconnected at which the
// sessions it may have held are probed with a keep-alive (connmgr for its
// zhttp servers, the proxy for its zhttp clients): a ROUTER_MANDATORY
// socket reports those of a vanished peer as unroutable. libzmq reports
// the disconnect before the ROUTER has dropped the peer's route, so the
// first probe waits 100 ms; the later ones catch a keep-alive a busy
// libzmq still routed into the dying connection, where it vanished unseen
// and left the session to the 60 s expiry. A keep-alive to a live peer
// costs nothing (any packet may be sent at any time, §2.8).
var ProbeAfter = [...]time.Duration{100 * time.Millisecond, time.Second, 3 * time.Second}

// Probes schedules the probes after a disconnect (one goroutine only). The
// zero value has none scheduled.
type Probes struct {
	since, next time.Time
	sent        int
}

// Disconnected schedules the ProbeAfter series from now; a disconnect
// during a series starts it again.
func (p *Probes) Disconnected(now time.Time) {
	p.since, p.sent = now, 0
	p.next = now.Add(ProbeAfter[0])
}

// Due reports whether a scheduled probe is due at now, once per probe.
func (p *Probes) Due(now time.Time) bool {
	if p.next.IsZero() || now.Before(p.next) {
		return false
	}
	p.sent++
	if p.sent < len(ProbeAfter) {
		p.next = p.since.Add(ProbeAfter[p.sent])
	} else {
		p.next = time.Time{}
	}
	return true
}
