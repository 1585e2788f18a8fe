package handler

import (
	"slices"
	"strings"
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
)

// publishItem runs one item through the id cache and the sequencer
// (grip-reference §5) and delivers it when it is in order.
func (e *engine) publishItem(it *grip.Item, now time.Time) {
	if e.seq.seen(it, now) {
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Str("channel", it.Channel).Str("id", it.ID).Msg("duplicate id, dropping item")
		}
		return
	}
	c := e.channels[it.Channel]
	if it.NoSeq || c == nil || !c.subscribed {
		e.deliver(it, now)
		return
	}
	if c.hasLastID && it.PrevID != "" && it.PrevID != c.lastID {
		if !e.seq.park(it, now) {
			if ev := e.log.Debug(); ev.Enabled() {
				ev.Str("channel", it.Channel).Str("prev-id", it.PrevID).Msg("cannot park item, dropping")
			}
		}
		return
	}
	e.deliverSequenced(it, now)
}

// deliverSequenced delivers an in-order item, records its id as the
// channel's last id and releases the parked items that follow it.
func (e *engine) deliverSequenced(it *grip.Item, now time.Time) {
	for it != nil {
		if c := e.channels[it.Channel]; c != nil {
			c.lastID, c.hasLastID = it.ID, it.ID != ""
		}
		e.deliver(it, now)
		if it.ID == "" {
			return
		}
		it = e.seq.release(it.Channel, it.ID)
	}
}

// deliver hands an item to the sessions of its channel, each transport
// to its own kind of session (grip-reference §4.1 "Which sessions get
// what"). The payload is encoded once per channel and item.
func (e *engine) deliver(it *grip.Item, now time.Time) {
	receivers := 0
	if c := e.channels[it.Channel]; c != nil {
		if f := it.HTTPResponse; f != nil && len(c.response) > 0 {
			n := len(c.response)
			receivers += n
			if e.limit != nil {
				e.limitDeliveries(c.response, it, newResponseDelivery(f), nil, len(f.Body), now)
			} else {
				e.deliverResponse(c, it, f, now)
			}
			e.stats.message(it.Channel, it.ID, "http-response", n)
		}
		if f := it.HTTPStream; f != nil && len(c.stream) > 0 {
			n := len(c.stream)
			receivers += n
			if e.limit != nil {
				e.limitDeliveries(c.stream, it, nil, &streamDelivery{f: f}, len(f.Content), now)
			} else {
				e.deliverStream(c, it, f, now)
			}
			e.stats.message(it.Channel, it.ID, "http-stream", n)
		}
		if it.WSMessage != nil && len(c.ws) > 0 {
			n := len(c.ws)
			receivers += n
			e.deliverWS(c, it, now)
			e.stats.message(it.Channel, it.ID, "ws-message", n)
		}
	}
	e.log.Info().Str("channel", it.Channel).Int("receivers", receivers).Msg("publish")
}

// limitDeliveries queues the item's deliveries to set in the rate
// limiter (ratelimit.go); those beyond a route's hwm are dropped.
func (e *engine) limitDeliveries(set map[*hsession]struct{}, it *grip.Item, rd *responseDelivery, sd *streamDelivery, size int, now time.Time) {
	if it.Size >= 0 {
		size = it.Size
	}
	w := blocks(size, e.cfg.MessageBlockSize)
	dropped := map[string]int{}
	for s := range set {
		if !e.limit.add(s.acc.StatsRoute, delivery{s: s, it: it, rd: rd, sd: sd, weight: w}, now) {
			dropped[s.acc.StatsRoute]++
			e.stats.deliveryDropped()
		}
	}
	e.logHWMDrops(dropped, it.Channel)
}

// logHWMDrops warns about the deliveries dropped at message_hwm, per
// route.
func (e *engine) logHWMDrops(dropped map[string]int, channel string) {
	for route, n := range dropped {
		ev := e.log.Warn().Int("hwm", e.cfg.MessageHWM).Int("deliveries", n).Str("channel", channel)
		if route != "" {
			ev.Str(logging.FieldRoute, route).Msgf("exceeded publish hwm (%d) for route %s, dropping message", e.cfg.MessageHWM, route)
		} else {
			ev.Msgf("exceeded publish hwm (%d), dropping message", e.cfg.MessageHWM)
		}
	}
}

func sessionsOf(set map[*hsession]struct{}) []*hsession {
	out := make([]*hsession, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	return out
}

// responseBuild is an http-response delivery prepared for the sessions
// of one accept (they share the timeout response the item inherits from).
type responseBuild struct {
	headers []grip.Header
	body    []byte
	frag    []byte // complete one-packet response, built on first use
}

// responseDelivery is one http-response item prepared for delivery: its
// headers without Grip-*, and the builds per accept.
type responseDelivery struct {
	f       *grip.HTTPResponseFormat
	headers []grip.Header
	expose  []string
	builds  map[*grip.Instruct]*responseBuild
}

func newResponseDelivery(f *grip.HTTPResponseFormat) *responseDelivery {
	d := &responseDelivery{f: f, builds: map[*grip.Instruct]*responseBuild{}}
	for _, h := range f.Headers {
		if strings.EqualFold(h.Name, "Grip-Expose-Headers") {
			for _, v := range strings.Split(h.Value, ",") {
				if v = strings.TrimSpace(v); v != "" {
					d.expose = append(d.expose, v)
				}
			}
		}
		if len(h.Name) >= 5 && strings.EqualFold(h.Name[:5], "Grip-") {
			continue
		}
		d.headers = append(d.headers, h)
	}
	return d
}

func (e *engine) deliverResponse(c *channel, it *grip.Item, f *grip.HTTPResponseFormat, now time.Time) {
	d := newResponseDelivery(f)
	for _, s := range sessionsOf(c.response) {
		e.deliverResponseTo(s, it, d, now)
	}
}

// heldOn returns s's subscription to channel when s is holding in mode,
// else nil.
func heldOn(s *hsession, mode grip.HoldMode, channel string) *sessChannel {
	if s.state != stateHolding || s.mode != mode {
		return nil
	}
	return s.chans.get(channel)
}

// deliverResponseTo delivers an http-response item to one session.
func (e *engine) deliverResponseTo(s *hsession, it *grip.Item, d *responseDelivery, now time.Time) {
	f := d.f
	sc := heldOn(s, grip.HoldResponse, it.Channel)
	if sc == nil {
		return
	}
	if sc.hasPrev && it.PrevID != sc.prevID {
		e.forgetLastID(it.Channel)
		e.update(s, now)
		return
	}
	if f.HaveContentFilters && !slices.Equal(contentFilters(sc.filters), f.ContentFilters) {
		e.fail(s, contentFilterMismatch(sc.filters, f.ContentFilters), now)
		return
	}
	if dropByFilters(sc.filters, s, it) {
		advancePrev(sc, it)
		return
	}
	switch f.Action {
	case grip.ActionHint:
		advancePrev(sc, it)
		e.update(s, now)
		return
	case grip.ActionSend:
	default:
		advancePrev(sc, it)
		return // close and refresh do not apply to response holds
	}
	b := d.builds[s.in]
	if b == nil {
		b = &responseBuild{headers: mergeHeaders(s.in.Response.Headers, d.headers, d.expose)}
		if f.HaveBodyPatch {
			b.body = applyBodyPatch(s.in.Response.Body, f.BodyPatch)
		} else {
			b.body = f.Body
		}
		d.builds[s.in] = b
	}
	// Filters see the prev-ids from before this item, as in Pushpin.
	var body []byte
	var err error
	if cf := contentFilters(sc.filters); len(cf) > 0 {
		body, err = applyContentFilters(cf, b.body, s)
	}
	advancePrev(sc, it)
	if body != nil || err != nil {
		if err != nil {
			if s.rs.Debug {
				e.fail(s, "filter error: "+err.Error(), now)
			}
			return
		}
		e.stats.messageSent(s.acc.StatsRoute, "http-response")
		e.respond(s, f.Code, f.Reason, b.headers, body, now)
		return
	}
	e.stats.messageSent(s.acc.StatsRoute, "http-response")
	if !s.headSent && !s.rs.AutoCrossOrigin && s.z.Credits >= int64(len(b.body)) {
		if b.frag == nil {
			b.frag = headFragment(f.Code, f.Reason, b.headers, b.body, false)
		}
		e.prepareToClose(s)
		s.z.Credits -= int64(len(b.body))
		s.headSent = true
		if e.sendFrag(s, b.frag, now) {
			e.finish(s, now, false)
		}
		return
	}
	e.respond(s, f.Code, f.Reason, b.headers, b.body, now)
}

// advancePrev makes a delivered item's id the channel's prev-id for the
// session (grip-reference §3.10 rule 3); an item without id ends the
// tracking, as in Pushpin.
func advancePrev(sc *sessChannel, it *grip.Item) {
	if sc.hasPrev {
		sc.prevID, sc.hasPrev = it.ID, it.ID != ""
	}
}

// mergeHeaders builds a published response's headers: the timeout
// response's, each replaced by the item's headers of the same name, then
// without the names listed in the item's Grip-Expose-Headers (quirk 4).
func mergeHeaders(base, item []grip.Header, expose []string) []grip.Header {
	out := make([]grip.Header, 0, len(base)+len(item))
	for _, h := range base {
		if !slices.ContainsFunc(item, func(x grip.Header) bool { return strings.EqualFold(x.Name, h.Name) }) {
			out = append(out, h)
		}
	}
	out = append(out, item...)
	if len(expose) > 0 {
		out = slices.DeleteFunc(out, func(h grip.Header) bool {
			return slices.ContainsFunc(expose, func(x string) bool { return strings.EqualFold(x, h.Name) })
		})
	}
	return out
}

// streamDelivery is one http-stream item prepared for delivery: its body
// packet fragment, encoded on first use and shared by every session whose
// filters leave the content alone.
type streamDelivery struct {
	f    *grip.HTTPStreamFormat
	frag []byte
}

func (e *engine) deliverStream(c *channel, it *grip.Item, f *grip.HTTPStreamFormat, now time.Time) {
	d := &streamDelivery{f: f}
	for _, s := range sessionsOf(c.stream) {
		e.deliverStreamTo(s, it, d, now)
	}
}

// deliverStreamTo delivers an http-stream item to one session.
func (e *engine) deliverStreamTo(s *hsession, it *grip.Item, d *streamDelivery, now time.Time) {
	f := d.f
	sc := heldOn(s, grip.HoldStream, it.Channel)
	if sc == nil {
		return
	}
	if f.HaveContentFilters && !slices.Equal(contentFilters(sc.filters), f.ContentFilters) {
		e.fail(s, contentFilterMismatch(sc.filters, f.ContentFilters), now)
		return
	}
	si := streamItem{channel: it.Channel, prevID: it.PrevID, hasPrev: it.PrevID != "", id: it.ID, action: f.Action}
	if dropByFilters(sc.filters, s, it) {
		// Still moves the channel's prev-id on, in order.
		si.skip = true
		e.queueOrApply(s, &si, now)
		return
	}
	if f.Action == grip.ActionSend {
		sc.delivered = true
	}
	content := f.Content
	perSession := false
	if cf := contentFilters(sc.filters); len(cf) > 0 && f.Action == grip.ActionSend {
		out, err := applyContentFilters(cf, content, s)
		if err != nil {
			// 1.41: a filter error drops the item unless debug.
			if s.rs.Debug {
				e.fail(s, "filter error: "+err.Error(), now)
				return
			}
			si.skip = true
			e.queueOrApply(s, &si, now)
			return
		}
		perSession = len(out) != len(content) || (len(out) > 0 && &out[0] != &content[0])
		content = out
	}
	si.content = content
	if len(s.pending) > 0 || len(s.queue) > 0 {
		e.queueOrApply(s, &si, now)
		return
	}
	if f.Action == grip.ActionSend {
		e.stats.messageSent(s.acc.StatsRoute, "http-stream")
	}
	if f.Action == grip.ActionSend && len(content) > 0 && s.z.Credits >= int64(len(content)) {
		if !e.trackPrevID(s, it.Channel, si.hasPrev, it.PrevID, it.ID, now) {
			return
		}
		if e.batching {
			// Several items in this publish batch: the session's share
			// leaves as one packet when the batch is done.
			if len(s.coalesced) == 0 {
				e.coalesced = append(e.coalesced, s)
			}
			s.coalesced = append(s.coalesced, content...)
			s.z.Credits -= int64(len(content))
			return
		}
		var sf []byte
		if perSession {
			sf = bodyFragment(content, true)
		} else {
			if d.frag == nil {
				d.frag = bodyFragment(f.Content, true)
			}
			sf = d.frag
		}
		s.z.Credits -= int64(len(content))
		if e.sendFrag(s, sf, now) {
			e.contentWritten(s, now)
		}
		return
	}
	e.streamItemNow(s, &si, now)
}

// queueOrApply applies si now when s's output is idle, else queues it
// behind the backlog. The queue is bounded by bytes: beyond the soft mark
// the session holds back the publish inputs (backpressure), beyond
// SessionQueueMaxBytes (a client that stopped reading) the item is
// dropped for this session only, logged and counted.
func (e *engine) queueOrApply(s *hsession, si *streamItem, now time.Time) {
	if len(s.pending) == 0 && len(s.queue) == 0 {
		e.streamItemNow(s, si, now)
		return
	}
	if len(s.queue) == 0 || s.queueBytes+si.size() <= SessionQueueMaxBytes {
		if !si.skip && si.action == grip.ActionSend {
			e.stats.messageSent(s.acc.StatsRoute, "http-stream")
		}
		s.queue = append(s.queue, *si)
		s.queueBytes += si.size()
		if s.queueBytes > sessionQueueSoftBytes && !s.stalled {
			e.block(s, now)
		}
		return
	}
	s.dropped++
	e.stats.deliveryDropped()
	e.logDrops(s, now, false)
}

// logDrops warns about the items dropped for s since the last warning, at
// most once per dropLogInterval; final reports what is left unreported
// when the session ends.
func (e *engine) logDrops(s *hsession, now time.Time, final bool) {
	n := s.dropped - s.dropLogged
	if n == 0 || (!final && now.Sub(s.dropLogAt) < dropLogInterval) {
		return
	}
	s.dropLogged, s.dropLogAt = s.dropped, now
	e.log.Warn().Str(logging.FieldConn, s.conn).Int("dropped", n).Int("dropped_total", s.dropped).Int("queued_bytes", s.queueBytes).
		Msg("client not reading, session queue full, dropping published items")
}
