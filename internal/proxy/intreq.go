package proxy

import (
	"errors"
	"strconv"

	"tack/internal/routes"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// The handler's own outbound requests (next-link fetches, gone POSTs) come
// in over intreq-in / intreq-in-stream and are answered on intreq-out
// (zmq-wire.md §4.8). They run through the same session code as client
// requests; what differs is decided here (routing) and by session.side
// (where replies go, no GRIP, no hand-off, no peer address).

// errBadIntreqURI: a direct intreq request whose URI names no host or a
// bad port.
var errBadIntreqURI = errors.New("bad intreq URI")

// passthrough is the routing hint in the first packet of a handler request.
type passthrough struct {
	route          string // route id of the original client request
	preferInternal bool   // same scheme/host/port: route through the routes table by that id
	trusted        bool   // the original target was trusted: ignore-policies on a direct request
	// autoShare asks that identical concurrent requests share one backend
	// request: it goes to the inspect call, whose sharing key groups them
	// (inspect.go, share.go).
	autoShare bool
}

// parsePassthrough reads the passthrough field. A value that is present but
// not a dict reads as an empty one, as Pushpin's QVariant::toHash does: no
// route id, a direct request, untrusted.
func parsePassthrough(v any) (passthrough, bool) {
	if v == nil {
		return passthrough{}, false
	}
	d, _ := v.(tnetstring.Dict)
	id, _ := d.Bytes("route")
	return passthrough{
		route:          string(id),
		preferInternal: d.Bool("prefer-internal"),
		trusted:        d.Bool("trusted"),
		autoShare:      d.Bool("auto-share"),
	}, true
}

// intreqRoute picks the route for a handler request as Pushpin 1.36's
// Engine::tryTakeRequest does:
//   - prefer-internal: the routes entry with the original route id (so
//     rewriting, targets, failover and signing apply), else a host lookup;
//   - otherwise a direct request to the URI's host and port (https → TLS),
//     signed with the original route's sig_iss/sig_key when that route
//     exists (else the [proxy] defaults), ignore-policies when trusted;
//   - no passthrough at all (not something Pushpin's handler sends): a
//     host lookup; the response is still relayed, never GRIP.
func (e *engine) intreqRoute(p *zhttp.Packet, ci clientInfo) (*routes.Route, error) {
	t := e.routes()
	pt, ok := parsePassthrough(p.Passthrough)
	if ok && !pt.preferInternal {
		return directRoute(pt, ci, t)
	}
	if ok && pt.route != "" {
		if r := t.ByID(pt.route); r != nil {
			return r, nil
		}
	}
	if t == nil {
		return nil, nil
	}
	return t.Lookup(ci.host, "http", ci.tls, ci.path), nil
}

// directRoute builds the one-target route of a direct handler request.
func directRoute(pt passthrough, ci clientInfo, t *routes.Table) (*routes.Route, error) {
	ps := ci.rawURI.Port()
	if ps == "" {
		ps = defaultPort(ci.scheme)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 || ci.host == "" {
		return nil, errBadIntreqURI
	}
	r := &routes.Route{
		Source: "intreq direct",
		Targets: []routes.Target{{
			Kind:      routes.TargetHost,
			Host:      ci.host,
			Port:      port,
			SSL:       ci.tls,
			Untrusted: !pt.trusted,
		}},
	}
	if orig := t.ByID(pt.route); pt.route != "" && orig != nil {
		r.ID, r.Source = orig.ID, orig.Source
		r.SigIss, r.HasSigIss = orig.SigIss, orig.HasSigIss
		r.SigKey, r.HasSigKey = orig.SigKey, orig.HasSigKey
	}
	return r, nil
}
