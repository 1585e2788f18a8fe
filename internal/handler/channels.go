package handler

import (
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
)

// channel is the engine's state for one channel name.
//
// A channel is "subscribed" (Pushpin's Subscription object: present in
// channelSet, so the SUB input listens, and sequenced, §5) from its first
// session until it has no session left; response-mode channels stay
// subscribed SubscriptionLinger longer, so that a client polling again
// soon does not trigger another first-subscription update, and keep their
// last id meanwhile.
type channel struct {
	name       string
	response   map[*hsession]struct{}
	stream     map[*hsession]struct{}
	ws         map[*wsSession]struct{} // WebSocket subscribers (wssession.go)
	subscribed bool
	lingerEnd  time.Time // zero = not lingering
	firstSubAt time.Time // zero = no first-subscription update pending
	lastID     string
	hasLastID  bool
}

func (c *channel) empty() bool { return len(c.response) == 0 && len(c.stream) == 0 && len(c.ws) == 0 }

func (e *engine) channel(name string) *channel {
	c := e.channels[name]
	if c == nil {
		c = &channel{name: name, response: map[*hsession]struct{}{}, stream: map[*hsession]struct{}{},
			ws: map[*wsSession]struct{}{}}
		e.channels[name] = c
	}
	return c
}

// subscribe adds s to channel name (Pushpin hs_subscribe + addSub).
func (e *engine) subscribe(s *hsession, name string, sc sessChannel, now time.Time) {
	sc.name = name
	if old := s.chans.get(name); old != nil {
		*old = sc
		return
	}
	sc2 := sc
	s.chans = append(s.chans, &sc2)
	c := e.channel(name)
	set, mode := c.stream, "stream"
	if s.mode == grip.HoldResponse {
		set, mode = c.response, "response"
	}
	set[s] = struct{}{}
	c.lingerEnd = time.Time{}
	e.stats.subscription(mode, name, len(set), now)
	e.channelSubscribed(c, now)
	if ev := e.log.Info(); ev.Enabled() {
		msg := "subscribe"
		if s.rs.IsRetry {
			msg = "subscribe retry"
		}
		ev.Str("uri", s.acc.Request.URI).Str("channel", name).Str(logging.FieldRID, string(s.z.ID)).Msg(msg)
	}
}

// channelSubscribed notes that c has a subscriber: its first one makes it
// subscribed (SUB input topic, sequencing) and schedules the
// first-subscription update.
func (e *engine) channelSubscribed(c *channel, now time.Time) {
	if !c.subscribed {
		c.subscribed = true
		if e.chanSet != nil {
			e.chanSet.Add(c.name)
		}
		if e.cfg.UpdateOnFirstSubscription {
			c.firstSubAt = now.Add(FirstSubscriptionDelay)
			if c.firstSubAt.Before(e.nextHK) {
				e.nextHK = c.firstSubAt // on time, not up to a tick late
			}
		}
	}
}

// unsubscribe removes s from channel name (Pushpin removeSessionChannel).
func (e *engine) unsubscribe(s *hsession, name string, now time.Time) {
	s.chans.del(name)
	c := e.channels[name]
	if c == nil {
		return
	}
	set, mode := c.stream, "stream"
	if s.mode == grip.HoldResponse {
		set, mode = c.response, "response"
	}
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) > 0 {
		e.stats.subscription(mode, name, len(set), now)
		return
	}
	if s.mode == grip.HoldResponse && e.cfg.SubscriptionLinger > 0 {
		// linger the unsubscribe in case the client long-polls again
		c.lingerEnd = now.Add(e.cfg.SubscriptionLinger)
		return
	}
	e.stats.unsubscription(mode, name)
	e.maybeRemoveChannel(c)
}

// maybeRemoveChannel drops an idle channel: its SUB topic, parked items
// and last id go with it (Pushpin removeSub).
func (e *engine) maybeRemoveChannel(c *channel) {
	if !c.empty() || !c.lingerEnd.IsZero() {
		return
	}
	if c.subscribed && e.chanSet != nil {
		e.chanSet.Remove(c.name)
	}
	e.seq.clearChannel(c.name)
	delete(e.channels, c.name)
}

// lastID returns the channel's last delivered sequenced id.
func (e *engine) lastID(name string) (string, bool) {
	if c := e.channels[name]; c != nil && c.hasLastID {
		return c.lastID, true
	}
	return "", false
}

func (e *engine) forgetLastID(name string) {
	if c := e.channels[name]; c != nil {
		c.hasLastID, c.lastID = false, ""
	}
}

// housekeeping runs once per second: lingers, first-subscription
// updates and parked items (the id cache expires as items arrive).
func (e *engine) housekeeping(now time.Time) {
	var update []*channel
	for _, c := range e.channels {
		if !c.lingerEnd.IsZero() && !now.Before(c.lingerEnd) {
			c.lingerEnd = time.Time{}
			if c.empty() {
				e.stats.unsubscription("response", c.name)
				e.maybeRemoveChannel(c)
				continue
			}
		}
		if !c.firstSubAt.IsZero() {
			if !now.Before(c.firstSubAt) {
				c.firstSubAt = time.Time{}
				update = append(update, c)
			} else if c.firstSubAt.Before(e.nextHK) {
				e.nextHK = c.firstSubAt // on time, not up to a tick late
			}
		}
	}
	// grip-reference §3.10 rule 5: re-request the backend once for each
	// new channel, covering items published before the subscription.
	for _, c := range update {
		for s := range c.response {
			e.queueUpdate(s, now)
		}
		for s := range c.stream {
			e.queueUpdate(s, now)
		}
	}
	e.outReqHousekeeping(now)
	for _, it := range e.seq.expire(now) {
		e.deliverSequenced(it, now)
	}
}
