package metrics

import (
	"time"

	"tack/pkg/tnetstring"
)

// Stats packets both proxy and handler publish (zmq-wire.md §4.6; Pushpin
// src/corelib/packet/statspacket.cpp). Each builder returns the packet's
// fields without `from`, which the writer puts first.

// ReportCounterKeys are the byte and message counters of a report packet
// (added in 1.36), in the order tack writes them.
var ReportCounterKeys = []string{
	"client-header-bytes-received", "client-header-bytes-sent",
	"client-content-bytes-received", "client-content-bytes-sent",
	"client-messages-received", "client-messages-sent",
	"server-header-bytes-received", "server-header-bytes-sent",
	"server-content-bytes-received", "server-content-bytes-sent",
	"server-messages-received", "server-messages-sent",
}

// ReportDroppedKey is tack's report counter of messages to WebSocket
// clients dropped because the connection's outbound queue was full
// (Pushpin drops them without counting). It is written only when non-zero,
// so a report without drops is 1.36's; pushpin-handler 1.36 ignores it
// (TestInteropProxyReportDroppedField).
const ReportDroppedKey = "client-messages-dropped"

// WithDropped adds ReportDroppedKey when n is positive.
func WithDropped(d tnetstring.Dict, n int64) tnetstring.Dict {
	if n > 0 {
		d = append(d, tnetstring.Field{Key: ReportDroppedKey, Value: n})
	}
	return d
}

// WithRoute adds `route` for a route with separate stats (non-empty id).
func WithRoute(d tnetstring.Dict, route string) tnetstring.Dict {
	if route != "" {
		d = append(d, tnetstring.Field{Key: "route", Value: route})
	}
	return d
}

// ConnPacket is a `conn` packet announcing (or refreshing) an HTTP
// connection; peer and ssl are left out when empty or false.
func ConnPacket(id, route, peer string, ssl bool, ttl time.Duration) tnetstring.Dict {
	d := make(tnetstring.Dict, 0, 6)
	d = append(d, tnetstring.Field{Key: "id", Value: id}, tnetstring.Field{Key: "type", Value: "http"})
	if peer != "" {
		d = append(d, tnetstring.Field{Key: "peer-address", Value: peer})
	}
	if ssl {
		d = append(d, tnetstring.Field{Key: "ssl", Value: true})
	}
	d = append(d, tnetstring.Field{Key: "ttl", Value: int64(ttl / time.Second)})
	return WithRoute(d, route)
}

// ConnGonePacket is the `conn` packet of a connection that ended.
func ConnGonePacket(id, route string) tnetstring.Dict {
	return WithRoute(tnetstring.Dict{{Key: "id", Value: id}, {Key: "unavailable", Value: true}}, route)
}

// FlushActivity writes one `activity` packet per route and, when requests
// is positive, one `counts` packet, then empties acts.
func FlushActivity(acts map[string]int, requests int, write func(typ string, d tnetstring.Dict)) {
	for route, n := range acts {
		write("activity", WithRoute(tnetstring.Dict{{Key: "count", Value: int64(n)}}, route))
	}
	clear(acts)
	if requests > 0 {
		write("counts", tnetstring.Dict{{Key: "requests-received", Value: int64(requests)}})
	}
}
