package handler

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Outbound requests (zmq-wire.md §4.8): next-link GETs and gone-link POSTs
// go out as zhttp requests of which the proxy is the server, over
// intreq-in (PUSH, first packets), intreq-in-stream (ROUTER, follow-ups)
// and intreq-out (SUB on "<handler-id> ", replies). The proxy routes them
// like client requests but never interprets their GRIP headers: that is
// done here (links.go).

// Outbound request bounds.
const (
	// outReqCredits is the response window offered in the first packet
	// (Pushpin's client window, Captured §A.7).
	outReqCredits = 200000
	// OutReqBodyMax bounds one next-link response body; a larger one
	// fails the fetch like a network error. Pushpin streams next-link
	// bodies without bound; buffering a bounded one lets the new
	// instructions (and their filters) apply before any byte is written.
	OutReqBodyMax = 1 << 20
	// OutReqMax bounds the outbound requests in flight; beyond it a fetch
	// fails at once (and is retried as any failed fetch).
	OutReqMax = 10000
)

type outKind uint8

const (
	outNext outKind = iota // Grip-Link rel=next
	outGone                // Grip-Link rel=gone
)

func (k outKind) String() string {
	if k == outGone {
		return "gone"
	}
	return "next"
}

// outReq is one outbound request in flight. Only the engine touches it.
type outReq struct {
	kind outKind
	s    *hsession // the session a next link feeds; nil for gone links
	z    zhttpsession.Session
	uri  string

	gotHead bool
	code    int
	reason  string
	headers []grip.Header
	body    []byte
}

// errNoIntreq: the handler has no intreq sockets configured.
var errNoIntreq = errors.New("no proxy_intreq_out_specs configured")

// errOutReqFull: OutReqMax requests are in flight.
var errOutReqFull = errors.New("too many outbound requests in flight")

// linkTarget resolves a Grip-Link URI against base (the URI the link came
// from) and says whether it points at the scheme, host and port of the
// client's request orig (then the proxy routes it through the original
// route: prefer-internal), as Pushpin's HttpSession does.
func linkTarget(orig, base, link string) (uri string, internal bool, err error) {
	o, err := url.Parse(orig)
	if err != nil {
		return "", false, err
	}
	b, err := url.Parse(base)
	if err != nil {
		return "", false, err
	}
	l, err := url.Parse(link)
	if err != nil {
		return "", false, err
	}
	u := b.ResolveReference(l)
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", false, errors.New("link is not an http(s) URI")
	}
	return u.String(), strings.EqualFold(u.Scheme, o.Scheme) && hostPort(u) == hostPort(o), nil
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// startOutReq sends the first packet of an outbound request for s (which
// may be nil for a gone link once the session ended).
// link is resolved against base.
func (e *engine) startOutReq(kind outKind, s *hsession, acc *acceptData, method, base, link string,
	headers []grip.Header, now time.Time) (*outReq, error) {
	if e.out.intreq == nil {
		return nil, errNoIntreq
	}
	if len(e.outReqs) >= OutReqMax {
		return nil, errOutReqFull
	}
	uri, internal, err := linkTarget(acc.OrigRequest.URI, base, link)
	if err != nil {
		return nil, err
	}
	e.outCounter++
	r := &outReq{kind: kind, s: s, uri: uri}
	r.z.ID = []byte(e.cfg.InstanceID + "-link-" + strconv.FormatUint(e.outCounter, 16))
	r.z.LastIn = now

	pass := tnetstring.Dict{{Key: "route", Value: acc.Route}}
	if internal {
		pass = append(pass, tnetstring.Field{Key: "prefer-internal", Value: true})
	}
	if acc.Trusted {
		pass = append(pass, tnetstring.Field{Key: "trusted", Value: true})
	}
	// Identical link requests may share one backend request: the proxy
	// passes this to its inspect call (Pushpin's HttpSession, capture
	// zmq-wire.md §4.8).
	pass = append(pass, tnetstring.Field{Key: "auto-share", Value: true})
	p := zhttp.New()
	p.Type = zhttp.TypeData
	p.Method = method
	p.URI = uri
	for _, h := range headers {
		p.Headers = append(p.Headers, zhttp.Header{Name: h.Name, Value: h.Value})
	}
	p.HasHeaders = true
	p.Body = []byte{}
	p.Credits = outReqCredits
	p.Stream = true
	p.Passthrough = pass
	r.z.Stamp(p, e.id, true, now)
	select {
	case e.out.intreq <- zsock.Message{p.Encode()}:
	default:
		return nil, errors.New("intreq queue full")
	}
	e.outReqs[string(r.z.ID)] = r
	if ev := e.log.Debug(); ev.Enabled() {
		ev.Str("kind", kind.String()).Str("method", method).Str("uri", uri).Bool("internal", internal).
			Str(logging.FieldRoute, acc.Route).Bool("trusted", acc.Trusted).Msg("outbound request")
	}
	return r, nil
}

// sendOutReq sends a follow-up packet (credit, keep-alive, cancel) to the
// proxy's intreq ROUTER; before the proxy's first reply its address is
// unknown and nothing can be sent.
func (e *engine) sendOutReq(r *outReq, p *zhttp.Packet, now time.Time) {
	if len(r.z.Peer) == 0 || e.out.intreqStream == nil {
		return
	}
	r.z.Stamp(p, e.id, false, now)
	select {
	case e.out.intreqStream <- zsock.Message{r.z.Peer, nil, p.Encode()}:
	default:
		e.log.Warn().Str(logging.FieldRID, string(r.z.ID)).Msg("intreq stream queue full, packet dropped")
	}
}

// cancelOutReq abandons r (its session ended).
func (e *engine) cancelOutReq(r *outReq, now time.Time) {
	if _, ok := e.outReqs[string(r.z.ID)]; !ok {
		return
	}
	delete(e.outReqs, string(r.z.ID))
	p := zhttp.New()
	p.Type = zhttp.TypeCancel
	e.sendOutReq(r, p, now)
}

// handleIntreq processes one reply frame from intreq-out:
// "<handler-id> T…".
func (e *engine) handleIntreq(m zsock.Message, now time.Time) {
	if len(m) == 0 {
		return
	}
	_, raw, err := zhttp.SplitPubFrame(m[len(m)-1])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "intreq-out").Msg("dropping bad frame")
		return
	}
	p, err := zhttp.Parse(raw)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "intreq-out").Msg("dropping bad packet")
		return
	}
	if p.IDs != nil {
		for _, ids := range p.IDs {
			if r := e.outReqs[string(ids.ID)]; r != nil {
				if err := r.z.ReceiveSeq(ids.Seq, p.From, now); err != nil {
					e.outReqFailed(r, err.Error(), now)
				}
			}
		}
		return
	}
	r := e.outReqs[string(p.ID)]
	if r == nil {
		return
	}
	if err := r.z.Receive(p, now); err != nil {
		e.outReqFailed(r, err.Error(), now)
		return
	}
	switch p.Type {
	case zhttp.TypeCancel:
		e.outReqFailed(r, "cancelled by the proxy", now)
	case zhttp.TypeError:
		e.outReqFailed(r, "error: "+p.Condition, now)
	case zhttp.TypeData:
		e.outReqData(r, p, now)
	}
}

func (e *engine) outReqData(r *outReq, p *zhttp.Packet, now time.Time) {
	if !r.gotHead {
		if p.Code < 0 {
			e.outReqFailed(r, "response without a status code", now)
			return
		}
		r.gotHead = true
		r.code, r.reason = int(p.Code), p.Reason
		r.headers = make([]grip.Header, len(p.Headers))
		for i, h := range p.Headers {
			r.headers[i] = grip.Header{Name: h.Name, Value: h.Value}
		}
	}
	if len(r.body)+len(p.Body) > OutReqBodyMax {
		e.outReqFailed(r, "response body larger than "+strconv.Itoa(OutReqBodyMax)+" bytes", now)
		p := zhttp.New()
		p.Type = zhttp.TypeCancel
		e.sendOutReq(r, p, now)
		return
	}
	r.body = append(r.body, p.Body...)
	if p.More {
		if len(p.Body) > 0 {
			c := zhttp.New()
			c.Type = zhttp.TypeCredit
			c.Credits = int64(len(p.Body))
			e.sendOutReq(r, c, now)
		}
		return
	}
	delete(e.outReqs, string(r.z.ID))
	switch r.kind {
	case outGone:
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Str("uri", r.uri).Int("code", r.code).Msg("gone link sent")
		}
	case outNext:
		if s := r.s; s != nil && s.links != nil && s.links.outReq == r {
			s.links.outReq = nil
			e.nextLinkResponse(s, r, now)
		}
	}
}

// outReqFailed ends r after a transport failure.
func (e *engine) outReqFailed(r *outReq, why string, now time.Time) {
	delete(e.outReqs, string(r.z.ID))
	e.log.Debug().Str(logging.FieldRID, string(r.z.ID)).Str("kind", r.kind.String()).Str("uri", r.uri).
		Str("error", why).Msg("outbound request failed")
	if r.kind == outNext {
		if s := r.s; s != nil && s.links != nil && s.links.outReq == r {
			s.links.outReq = nil
			e.nextLinkFailed(s, now)
		}
	}
}

// outReqHousekeeping sends zhttp keep-alives for long requests and
// expires those the proxy stopped answering (once per second).
func (e *engine) outReqHousekeeping(now time.Time) {
	for _, r := range e.outReqs {
		switch {
		case r.z.Expired(now):
			e.outReqFailed(r, "timed out", now)
		case r.z.KeepAliveDue(now):
			p := zhttp.New()
			p.Type = zhttp.TypeKeepAlive
			e.sendOutReq(r, p, now)
		}
	}
}
