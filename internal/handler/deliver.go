package handler

import (
	"slices"
	"strings"
	"time"

	"tack/internal/grip"
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
			e.deliverResponse(c, it, f, now)
			e.stats.message(it.Channel, it.ID, "http-response", n)
		}
		if f := it.HTTPStream; f != nil && len(c.stream) > 0 {
			n := len(c.stream)
			receivers += n
			e.deliverStream(c, it, f, now)
			e.stats.message(it.Channel, it.ID, "http-stream", n)
		}
	}
	e.log.Info().Str("channel", it.Channel).Int("receivers", receivers).Msg("publish")
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

func (e *engine) deliverResponse(c *channel, it *grip.Item, f *grip.HTTPResponseFormat, now time.Time) {
	var headers []grip.Header
	var expose []string
	for _, h := range f.Headers {
		if strings.EqualFold(h.Name, "Grip-Expose-Headers") {
			for _, v := range strings.Split(h.Value, ",") {
				if v = strings.TrimSpace(v); v != "" {
					expose = append(expose, v)
				}
			}
		}
		if len(h.Name) >= 5 && strings.EqualFold(h.Name[:5], "Grip-") {
			continue
		}
		headers = append(headers, h)
	}
	builds := map[*grip.Instruct]*responseBuild{}
	for _, s := range sessionsOf(c.response) {
		if s.state != stateHolding {
			continue
		}
		sc := s.chans[it.Channel]
		if sc == nil {
			continue
		}
		if sc.hasPrev {
			if it.PrevID != sc.prevID {
				e.forgetLastID(it.Channel)
				e.update(s, now)
				continue
			}
			sc.prevID, sc.hasPrev = it.ID, it.ID != ""
		}
		if f.HaveContentFilters && !slices.Equal(contentFilters(sc.filters), f.ContentFilters) {
			e.fail(s, contentFilterMismatch(sc.filters, f.ContentFilters), now)
			continue
		}
		if dropByFilters(sc.filters, s, it) {
			continue
		}
		switch f.Action {
		case grip.ActionHint:
			e.update(s, now)
			continue
		case grip.ActionSend:
		default:
			continue // close and refresh do not apply to response holds
		}
		b := builds[s.in]
		if b == nil {
			b = &responseBuild{headers: mergeHeaders(s.in.Response.Headers, headers, expose)}
			if f.HaveBodyPatch {
				b.body = applyBodyPatch(s.in.Response.Body, f.BodyPatch)
			} else {
				b.body = f.Body
			}
			builds[s.in] = b
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
			continue
		}
		e.respond(s, f.Code, f.Reason, b.headers, b.body, now)
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

func (e *engine) deliverStream(c *channel, it *grip.Item, f *grip.HTTPStreamFormat, now time.Time) {
	var frag []byte
	for _, s := range sessionsOf(c.stream) {
		if s.state != stateHolding {
			continue
		}
		sc := s.chans[it.Channel]
		if sc == nil {
			continue
		}
		if f.HaveContentFilters && !slices.Equal(contentFilters(sc.filters), f.ContentFilters) {
			e.fail(s, contentFilterMismatch(sc.filters, f.ContentFilters), now)
			continue
		}
		if dropByFilters(sc.filters, s, it) {
			continue
		}
		content := f.Content
		perSession := false
		if cf := contentFilters(sc.filters); len(cf) > 0 && f.Action == grip.ActionSend {
			out, err := applyContentFilters(cf, content, s.in.Meta)
			if err != nil {
				// 1.41: a filter error drops the item unless debug.
				if s.rs.Debug {
					e.fail(s, "filter error: "+err.Error(), now)
				}
				continue
			}
			perSession = len(out) != len(content) || (len(out) > 0 && &out[0] != &content[0])
			content = out
		}
		si := streamItem{channel: it.Channel, prevID: it.PrevID, hasPrev: it.PrevID != "", id: it.ID,
			action: f.Action, content: content}
		if len(s.pending) > 0 || len(s.queue) > 0 {
			// Backlogged: queue, bounded; a full queue drops this item for
			// this session only.
			if len(s.queue) < SessionQueueMax {
				s.queue = append(s.queue, si)
			} else {
				s.dropped++
				e.stats.dropped()
				if ev := e.log.Debug(); ev.Enabled() {
					ev.Str("rid", string(s.z.ID)).Msg("publish queue at max, dropping")
				}
			}
			continue
		}
		if f.Action == grip.ActionSend {
			e.stats.messageSent(s.acc.StatsRoute, "http-stream")
		}
		if f.Action == grip.ActionSend && len(content) > 0 && s.z.Credits >= int64(len(content)) {
			if !e.trackPrevID(s, it.Channel, si.hasPrev, it.PrevID, it.ID, now) {
				continue
			}
			sf := frag
			if perSession {
				sf = bodyFragment(content, true)
			} else if frag == nil {
				frag = bodyFragment(f.Content, true)
				sf = frag
			}
			s.z.Credits -= int64(len(content))
			if e.sendFrag(s, sf, now) {
				e.contentWritten(s, now)
			}
			continue
		}
		e.streamItemNow(s, &si, now)
	}
}
