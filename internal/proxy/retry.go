package proxy

import (
	"time"

	"tack/internal/logging"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// handleRetry takes sessions back from the handler (zmq-wire.md §4.4): the
// proxy becomes the owner again at the given sequence numbers, re-requests
// the backend with Grip-Last headers, and hands the sessions over again if
// the answer is GRIP (with is-retry set).
func (e *engine) handleRetry(frame []byte, now time.Time) {
	d, err := tnetstring.DecodeDict(frame)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "retry").Msg("dropping undecodable retry packet")
		return
	}
	reqs, _ := d.List("requests")
	rd, ok := d.Dict("request-data")
	if !ok || len(reqs) == 0 {
		e.log.Warn().Str(logging.FieldSocket, "retry").Msg("dropping retry packet without requests or request-data")
		return
	}
	method, _ := rd.Bytes("method")
	uri, _ := rd.Bytes("uri")
	body, _ := rd.Bytes("body")
	var headers []zhttp.Header
	if hl, ok := rd.List("headers"); ok {
		for _, h := range hl {
			if pair, ok := h.([]any); ok && len(pair) == 2 {
				n, _ := pair[0].([]byte)
				v, _ := pair[1].([]byte)
				headers = append(headers, zhttp.Header{Name: string(n), Value: string(v)})
			}
		}
	}
	var lastIDs tnetstring.Dict
	insp, _ := d.Dict("inspect")
	if insp != nil {
		lastIDs, _ = insp.Dict("last-ids")
	}
	// The sessions of a retry (several when they shared one request) share
	// again when the inspect data names a sharing key (Pushpin 1.36:
	// Engine::retryPacket → doProxy).
	shareKey, _ := insp.Bytes("sharing-key")
	routeID, _ := d.Bytes("route")
	for _, rv := range reqs {
		rq, ok := rv.(tnetstring.Dict)
		if !ok {
			continue
		}
		rid, _ := rq.Dict("rid")
		sender, _ := rid.Bytes("sender")
		id, _ := rid.Bytes("id")
		inSeq, ok1 := rq.Int("in-seq")
		outSeq, ok2 := rq.Int("out-seq")
		credits, ok3 := rq.Int("out-credits")
		if len(sender) == 0 || len(id) == 0 || !ok1 || !ok2 || !ok3 {
			e.log.Warn().Str(logging.FieldSocket, "retry").Msg("dropping retry request with missing fields")
			continue
		}
		key := inKey(sideConnmgr, sender, id)
		if old := e.byIn[key]; old != nil {
			e.finish(old, "replaced")
		}
		first := zhttp.New()
		first.From, first.ID = sender, id
		first.Method, first.URI = string(method), string(uri)
		first.Headers = headers
		if pa, ok := rq.Bytes("peer-address"); ok {
			first.PeerAddress = string(pa)
		}
		s := &session{key: key, first: first, method: first.Method, started: now, isRetry: true, lastIDs: lastIDs, inspect: insp}
		s.in.ID, s.in.Peer = id, sender
		s.in.InSeq, s.in.OutSeq, s.in.Credits = inSeq, outSeq, credits
		s.in.PeerMulti = true
		s.in.LastIn = now
		if ud, ok := rq.Get("user-data"); ok {
			s.in.UserData = ud
		}
		s.crossOriginFromRetry(rq)
		e.byIn[key] = s
		e.resume(s, now)
		ci, err := parseClient(first, e.cfg.AcceptXForwardedProtocol)
		if err != nil {
			e.respondError(s, 502, "Bad Gateway", textProxyError, "", now)
			continue
		}
		if rq.Bool("https") {
			ci.tls = true
		}
		s.ci = ci
		t := e.routes()
		r := t.ByID(string(routeID))
		if r == nil {
			r = t.Lookup(ci.host, "http", ci.tls, ci.path)
		}
		if r == nil || len(r.Targets) == 0 {
			e.respondError(s, 502, "Bad Gateway", textProxyError, "No route for retry.", now)
			continue
		}
		s.route, s.targets = r, r.Targets
		e.statsStart(s, now)
		if len(body) > 0 {
			e.keepBody(s, body)
			s.pendingOut = append([]byte(nil), body...)
		}
		e.shareOrStart(s, string(shareKey), now)
	}
}
