package handler

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// requestData is an HTTP request as carried in accept and retry packets
// (`request-data`, `orig-request-data`).
type requestData struct {
	Method  string
	URI     string
	Headers []grip.Header
	Body    []byte
}

func (r *requestData) dict() tnetstring.Dict {
	hs := make([]any, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = []any{h.Name, h.Value}
	}
	return tnetstring.Dict{
		{Key: "method", Value: r.Method},
		{Key: "uri", Value: r.URI},
		{Key: "headers", Value: hs},
		{Key: "body", Value: r.Body},
	}
}

// requestState is one `requests` entry of an accept (zmq-wire.md §4.3).
type requestState struct {
	Sender, ID         []byte
	InSeq, OutSeq      int64
	OutCredits         int64
	ResponseCode       int64 // -1 when absent
	PeerAddress        string
	LogicalPeerAddress string
	HTTPS              bool
	Debug              bool
	IsRetry            bool
	AutoCrossOrigin    bool
	JSONPCallback      string
	JSONPExtended      bool
	RouterResp         bool
	UserData           any
}

// inspectInfo is the accept's `inspect` dict, echoed in retry packets.
type inspectInfo struct {
	Present    bool
	NoProxy    bool
	SharingKey []byte
	SID        []byte
	LastIDs    tnetstring.Dict
	UserData   any
}

// acceptData is everything one accept call hands over. It is shared,
// read-only, by the sessions it creates.
type acceptData struct {
	Requests         []requestState
	Request          requestData  // as sent to the backend
	OrigRequest      requestData  // as received from the client
	Inspect          *inspectInfo // nil when the accept had none
	Route            string
	StatsRoute       string // Route when separate-stats, else ""
	ChannelPrefix    string
	ImplicitChannels []string
	Trusted          bool
	ResponseSent     bool
	ProxyFrom        []byte // the 1.41 proxy's `from`; nil from 1.36
	Instruct         *grip.Instruct
}

// errBadRequest is a malformed accept; the reply is condition bad-request.
var errBadRequest = errors.New("bad accept request")

// parseAccept validates the args of an accept request the way Pushpin's
// AcceptWorker does (src/handler/engine.cpp [1.36]) and parses the GRIP
// instructions. A *grip.FormatError means bad-format, anything else
// bad-request.
func parseAccept(args tnetstring.Dict, from []byte, cfg *Config) (*acceptData, error) {
	a := &acceptData{ProxyFrom: from}
	if v, ok := args.Get("route"); ok {
		b, ok := v.([]byte)
		if !ok {
			return nil, errBadRequest
		}
		a.Route = string(b)
	}
	if v, ok := args.Get("separate-stats"); ok {
		b, ok := v.(bool)
		if !ok {
			return nil, errBadRequest
		}
		if b && a.Route != "" {
			a.StatsRoute = a.Route
		}
	}
	if v, ok := args.Get("channel-prefix"); ok {
		b, ok := v.([]byte)
		if !ok {
			return nil, errBadRequest
		}
		a.ChannelPrefix = string(b)
	}
	if v, ok := args.Get("channels"); ok {
		l, ok := v.([]any)
		if !ok {
			return nil, errBadRequest
		}
		for _, e := range l {
			b, ok := e.([]byte)
			if !ok {
				return nil, errBadRequest
			}
			a.ImplicitChannels = append(a.ImplicitChannels, string(b))
		}
	}
	var err error
	if a.Trusted, err = optBool(args, "trusted"); err != nil {
		return nil, err
	}
	reqs, ok := args.List("requests")
	if !ok {
		return nil, errBadRequest
	}
	for _, rv := range reqs {
		rs, err := parseRequestState(rv)
		if err != nil {
			return nil, err
		}
		a.Requests = append(a.Requests, rs)
	}
	if a.Request, err = parseRequestData(args, "request-data"); err != nil {
		return nil, err
	}
	if a.OrigRequest, err = parseRequestData(args, "orig-request-data"); err != nil {
		return nil, err
	}
	rd, ok := args.Dict("response")
	if !ok {
		return nil, errBadRequest
	}
	code, ok := toInt(rd, "code")
	if !ok {
		return nil, errBadRequest
	}
	reason, ok := rd.Bytes("reason")
	if !ok {
		return nil, errBadRequest
	}
	hv, ok := rd.List("headers")
	if !ok {
		return nil, errBadRequest
	}
	headers, err := parseHeaderList(hv)
	if err != nil {
		return nil, err
	}
	body, ok := rd.Bytes("body")
	if !ok {
		return nil, errBadRequest
	}
	body = bytes.Clone(body)
	if v, ok := args.Get("inspect"); ok {
		d, ok := v.(tnetstring.Dict)
		if !ok {
			return nil, errBadRequest
		}
		ii, err := parseInspect(d)
		if err != nil {
			return nil, err
		}
		a.Inspect = &ii
	}
	if a.ResponseSent, err = optBool(args, "response-sent"); err != nil {
		return nil, err
	}
	if _, err = optBool(args, "use-session"); err != nil {
		return nil, err
	}
	a.Instruct, err = grip.Parse(int(code), string(reason), headers, body, grip.ParseOptions{
		ChannelPrefix:             a.ChannelPrefix,
		ConnectionSubscriptionMax: cfg.ConnectionSubscriptionMax,
	})
	if err != nil {
		return nil, err
	}
	a.detach()
	return a, nil
}

// detach copies every byte slice that still points into the received
// accept frame, so that a held session does not keep the whole frame
// (a kilobyte or more) alive for its lifetime.
func (a *acceptData) detach() {
	a.ProxyFrom = bytes.Clone(a.ProxyFrom)
	for i := range a.Requests {
		rs := &a.Requests[i]
		rs.Sender, rs.ID = bytes.Clone(rs.Sender), bytes.Clone(rs.ID)
		rs.UserData = cloneTnet(rs.UserData)
	}
	a.Request.Body = bytes.Clone(a.Request.Body)
	a.OrigRequest.Body = bytes.Clone(a.OrigRequest.Body)
	if in := a.Inspect; in != nil {
		in.SharingKey, in.SID = bytes.Clone(in.SharingKey), bytes.Clone(in.SID)
		if in.LastIDs != nil {
			in.LastIDs = cloneTnet(in.LastIDs).(tnetstring.Dict)
		}
		in.UserData = cloneTnet(in.UserData)
	}
}

// cloneTnet deep-copies a decoded tnetstring value.
func cloneTnet(v any) any {
	switch x := v.(type) {
	case []byte:
		return bytes.Clone(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneTnet(e)
		}
		return out
	case tnetstring.Dict:
		out := make(tnetstring.Dict, len(x))
		for i, f := range x {
			out[i] = tnetstring.Field{Key: strings.Clone(f.Key), Value: cloneTnet(f.Value)}
		}
		return out
	}
	return v
}

// trimForStream drops, in place, what stream sessions no longer need once
// their initial response is out: request bodies, inspect data and the
// request list (only retries of response holds use them), and request
// headers unless a session answers with CORS headers. The sessions of
// one accept share it.
func (a *acceptData) trimForStream() {
	cors := false
	for _, rs := range a.Requests {
		cors = cors || rs.AutoCrossOrigin
	}
	if a.Instruct != nil {
		// The sessions keep this instruct (shared): its initial response
		// is out.
		a.Instruct.Response.Headers, a.Instruct.Response.Body = nil, nil
	}
	a.Requests, a.Instruct, a.Inspect = nil, nil, nil
	a.Request.Body, a.OrigRequest.Headers, a.OrigRequest.Body = nil, nil, nil
	if !cors {
		a.Request.Headers = nil
	}
}

func parseRequestState(v any) (requestState, error) {
	rs := requestState{ResponseCode: -1}
	r, ok := v.(tnetstring.Dict)
	if !ok {
		return rs, errBadRequest
	}
	rid, ok := r.Dict("rid")
	if !ok {
		return rs, errBadRequest
	}
	if rs.Sender, ok = rid.Bytes("sender"); !ok || len(rs.Sender) == 0 {
		return rs, errBadRequest
	}
	if rs.ID, ok = rid.Bytes("id"); !ok {
		return rs, errBadRequest
	}
	if rs.InSeq, ok = toInt(r, "in-seq"); !ok {
		return rs, errBadRequest
	}
	if rs.OutSeq, ok = toInt(r, "out-seq"); !ok {
		return rs, errBadRequest
	}
	if rs.OutCredits, ok = toInt(r, "out-credits"); !ok {
		return rs, errBadRequest
	}
	if _, present := r.Get("response-code"); present {
		if rs.ResponseCode, ok = toInt(r, "response-code"); !ok {
			return rs, errBadRequest
		}
	}
	var err error
	if rs.PeerAddress, err = optAddr(r, "peer-address"); err != nil {
		return rs, err
	}
	if rs.LogicalPeerAddress, err = optAddr(r, "logical-peer-address"); err != nil {
		return rs, err
	}
	for _, f := range []struct {
		key string
		dst *bool
	}{
		{"https", &rs.HTTPS}, {"debug", &rs.Debug}, {"is-retry", &rs.IsRetry},
		{"auto-cross-origin", &rs.AutoCrossOrigin}, {"jsonp-extended-response", &rs.JSONPExtended},
		{"router-resp", &rs.RouterResp},
	} {
		if *f.dst, err = optBool(r, f.key); err != nil {
			return rs, err
		}
	}
	if v, ok := r.Get("jsonp-callback"); ok {
		b, ok := v.([]byte)
		if !ok {
			return rs, errBadRequest
		}
		rs.JSONPCallback = string(b)
	}
	if v, ok := r.Get("user-data"); ok {
		rs.UserData = v
	}
	return rs, nil
}

func parseRequestData(args tnetstring.Dict, key string) (requestData, error) {
	var out requestData
	d, ok := args.Dict(key)
	if !ok {
		return out, errBadRequest
	}
	m, ok := d.Bytes("method")
	if !ok || len(m) == 0 {
		return out, errBadRequest
	}
	out.Method = string(m)
	u, ok := d.Bytes("uri")
	if !ok {
		return out, errBadRequest
	}
	if pu, err := url.Parse(string(u)); err != nil || !pu.IsAbs() {
		return out, errBadRequest
	}
	out.URI = string(u)
	hv, ok := d.List("headers")
	if !ok {
		return out, errBadRequest
	}
	var err error
	if out.Headers, err = parseHeaderList(hv); err != nil {
		return out, err
	}
	if out.Body, ok = d.Bytes("body"); !ok {
		return out, errBadRequest
	}
	return out, nil
}

func parseInspect(d tnetstring.Dict) (inspectInfo, error) {
	in := inspectInfo{Present: true}
	v, ok := d.Get("no-proxy")
	if !ok {
		return in, errBadRequest
	}
	if in.NoProxy, ok = v.(bool); !ok {
		return in, errBadRequest
	}
	for _, f := range []struct {
		key string
		dst *[]byte
	}{{"sharing-key", &in.SharingKey}, {"sid", &in.SID}} {
		if v, ok := d.Get(f.key); ok {
			b, ok := v.([]byte)
			if !ok {
				return in, errBadRequest
			}
			*f.dst = b
		}
	}
	if v, ok := d.Get("last-ids"); ok {
		ids, ok := v.(tnetstring.Dict)
		if !ok {
			return in, errBadRequest
		}
		for _, f := range ids {
			if _, ok := f.Value.([]byte); !ok {
				return in, errBadRequest
			}
		}
		in.LastIDs = ids
	}
	in.UserData, _ = d.Get("user-data")
	return in, nil
}

func parseHeaderList(l []any) ([]grip.Header, error) {
	out := make([]grip.Header, 0, len(l))
	for _, e := range l {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil, errBadRequest
		}
		n, ok1 := pair[0].([]byte)
		v, ok2 := pair[1].([]byte)
		if !ok1 || !ok2 {
			return nil, errBadRequest
		}
		out = append(out, grip.Header{Name: string(n), Value: string(v)})
	}
	return out, nil
}

// toInt reads an integer the way QVariant::canConvert(Int) accepts one:
// a tnetstring integer or a byte string of digits.
func toInt(d tnetstring.Dict, key string) (int64, bool) {
	v, ok := d.Get(key)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case int64:
		return x, true
	case []byte:
		n, err := strconv.ParseInt(strings.TrimSpace(string(x)), 10, 64)
		return n, err == nil
	}
	return 0, false
}

func optBool(d tnetstring.Dict, key string) (bool, error) {
	v, ok := d.Get(key)
	if !ok {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, errBadRequest
	}
	return b, nil
}

func optAddr(d tnetstring.Dict, key string) (string, error) {
	v, ok := d.Get(key)
	if !ok {
		return "", nil
	}
	b, ok := v.([]byte)
	if !ok || net.ParseIP(string(b)) == nil {
		return "", errBadRequest
	}
	return string(b), nil
}

// acceptJob is a parsed hold handed to the engine.
type acceptJob struct {
	data *acceptData
}

// AcceptQueueLen bounds the accepted holds waiting for the engine; when
// it is full, accepts are answered `{}` (the proxy then answers the
// clients 500 "Accept service unavailable.").
const AcceptQueueLen = 8192

// serveAccept answers the proxy's accept calls (zmq-wire.md §4.3). Parsing
// and the replies happen here; holds go to the engine through jobs, which
// only this goroutine writes, so a free slot seen here stays free.
func serveAccept(ctx context.Context, so *zsock.Socket, jobs chan<- *acceptJob, cfg *Config, log zerolog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-so.Recv():
			if !ok {
				return errors.New("accept socket closed")
			}
			req, err := parseZRPC(m)
			if err != nil {
				log.Warn().Err(err).Str(logging.FieldSocket, "accept").Msg("dropping bad request")
				continue
			}
			reply, job := handleAccept(req, cfg, len(jobs) < cap(jobs), log)
			if !so.TrySend(reply) {
				log.Warn().Str(logging.FieldSocket, "accept").Msg("accept reply queue full, reply dropped")
				continue
			}
			if job != nil {
				jobs <- job // a slot was free and only we send
			}
		}
	}
}

// handleAccept builds the reply to one accept request and, for a hold,
// the job for the engine. room says whether the engine can take a job.
func handleAccept(req *zrpcRequest, cfg *Config, room bool, log zerolog.Logger) (zsock.Message, *acceptJob) {
	if req.method != "accept" {
		return req.failure(condMethodNotFound, nil), nil
	}
	a, err := parseAccept(req.args, req.from, cfg)
	if err != nil {
		var fe *grip.FormatError
		if errors.As(err, &fe) {
			if e := log.Debug(); e.Enabled() {
				e.Str("error", fe.Msg).Msg("bad grip instructions")
			}
			return req.failure(condBadFormat, []byte(fe.Msg)), nil
		}
		log.Warn().Err(err).Msg("bad accept request")
		return req.failure(condBadRequest, nil), nil
	}
	in := a.Instruct
	if in.Hold == grip.HoldNone && (in.NextLink == nil || !cfg.hasIntreq()) {
		if in.NextLink != nil {
			log.Warn().Str(logging.FieldRoute, a.Route).
				Msg("Grip-Link rel=next without proxy_intreq_out_specs, relaying the response without following it")
		}
		if a.ResponseSent {
			return req.success(tnetstring.Dict{}), nil
		}
		return req.success(tnetstring.Dict{{Key: "response", Value: responseDict(&in.Response)}}), nil
	}
	if !room {
		log.Warn().Msg("engine accept queue full, refusing hold")
		return req.success(tnetstring.Dict{}), nil
	}
	return req.success(tnetstring.Dict{{Key: "accepted", Value: true}}), &acceptJob{data: a}
}

func responseDict(r *grip.Response) tnetstring.Dict {
	hs := make([]any, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = []any{h.Name, h.Value}
	}
	body := r.Body
	if body == nil {
		body = []byte{}
	}
	return tnetstring.Dict{
		{Key: "code", Value: int64(r.Code)},
		{Key: "reason", Value: r.Reason},
		{Key: "headers", Value: hs},
		{Key: "body", Value: body},
	}
}
