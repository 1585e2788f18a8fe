package handler

import (
	"tack/internal/grip"
	"tack/pkg/tnetstring"
)

// Retry packets give held sessions back to the proxy so it asks the
// backend again (zmq-wire.md §4.4, Pushpin RetryRequestPacket::toVariant).

// retryRequest encodes one `requests` entry with the given sequence state.
func retryRequest(rs *requestState, inSeq, outSeq, credits int64, userData any) tnetstring.Dict {
	d := tnetstring.Dict{{Key: "rid", Value: tnetstring.Dict{
		{Key: "sender", Value: rs.Sender},
		{Key: "id", Value: rs.ID},
	}}}
	add := func(k string, v any) { d = append(d, tnetstring.Field{Key: k, Value: v}) }
	if rs.HTTPS {
		add("https", true)
	}
	if rs.PeerAddress != "" {
		add("peer-address", rs.PeerAddress)
	}
	if rs.Debug {
		add("debug", true)
	}
	if rs.AutoCrossOrigin {
		add("auto-cross-origin", true)
	}
	if rs.JSONPCallback != "" {
		add("jsonp-callback", rs.JSONPCallback)
	}
	if rs.JSONPExtended {
		add("jsonp-extended-response", true)
	}
	if rs.RouterResp {
		add("router-resp", true)
	}
	add("in-seq", inSeq)
	add("out-seq", outSeq)
	add("out-credits", credits)
	if userData != nil {
		add("user-data", userData)
	}
	return d
}

// retryPacket assembles the packet around the request entries; channels
// with a prev-id become inspect last-ids, so that the proxy sends
// Grip-Last on the retried request.
func retryPacket(a *acceptData, requests []any, channels []grip.Channel, prevIDs map[string]string) tnetstring.Dict {
	d := tnetstring.Dict{
		{Key: "requests", Value: requests},
		{Key: "request-data", Value: a.OrigRequest.dict()},
	}
	in := a.Inspect
	if in == nil {
		in = &inspectInfo{}
	}
	lastIDs := append(tnetstring.Dict(nil), in.LastIDs...)
	present := in.Present
	noProxy := in.NoProxy
	for _, c := range channels {
		prev, ok := prevIDs[c.Name]
		if !ok || prev == "" {
			continue
		}
		if !present {
			present, noProxy = true, false
		}
		lastIDs = setField(lastIDs, c.BackendName, []byte(prev))
	}
	if present {
		id := tnetstring.Dict{{Key: "no-proxy", Value: noProxy}}
		if len(in.SharingKey) > 0 {
			id = append(id, tnetstring.Field{Key: "sharing-key", Value: in.SharingKey})
		}
		if len(in.SID) > 0 {
			id = append(id, tnetstring.Field{Key: "sid", Value: in.SID})
		}
		if len(lastIDs) > 0 {
			id = append(id, tnetstring.Field{Key: "last-ids", Value: lastIDs})
		}
		if in.UserData != nil {
			id = append(id, tnetstring.Field{Key: "user-data", Value: in.UserData})
		}
		d = append(d, tnetstring.Field{Key: "inspect", Value: id})
	}
	if a.Route != "" {
		d = append(d, tnetstring.Field{Key: "route", Value: a.Route})
	}
	return d
}

func setField(d tnetstring.Dict, k string, v any) tnetstring.Dict {
	for i := range d {
		if d[i].Key == k {
			d[i].Value = v
			return d
		}
	}
	return append(d, tnetstring.Field{Key: k, Value: v})
}

// retryFromAccept is the retry for an accept whose prev-id conflicts with
// the channel's last id: the sessions were never taken over, so the seqs
// are the accept's own (Captured §A.6).
func retryFromAccept(a *acceptData) tnetstring.Dict {
	reqs := make([]any, 0, len(a.Requests))
	for i := range a.Requests {
		rs := &a.Requests[i]
		reqs = append(reqs, retryRequest(rs, rs.InSeq, rs.OutSeq, rs.OutCredits, rs.UserData))
	}
	prev := map[string]string{}
	for _, c := range a.Instruct.Channels {
		prev[c.Name] = c.PrevID
	}
	return retryPacket(a, reqs, a.Instruct.Channels, prev)
}

// retryFromSession is the retry for a paused session, with its current
// sequence state and the prev-ids it tracked.
func retryFromSession(s *hsession) tnetstring.Dict {
	req := retryRequest(&s.rs, s.z.InSeq, s.z.OutSeq, s.z.Credits, s.z.UserData)
	prev := map[string]string{}
	for _, c := range s.chans {
		if c.hasPrev {
			prev[c.name] = c.prevID
		}
	}
	return retryPacket(s.acc, []any{req}, s.in.Channels, prev)
}
