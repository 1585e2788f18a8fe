package handler

import (
	"slices"
	"time"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/pkg/wscontrol"
)

// Delivery of `ws-message` items to WebSocket sessions (Pushpin 1.36
// engine.cpp PublishAction for WebSocketMessage): one `send` item per
// session without req-id (published messages are droppable; the proxy
// drops them when the client is busy), `close` for action close and, as
// 1.38+ do, `refresh` for action refresh.

// deliverWS hands a ws-message item to the channel's WebSocket sessions.
func (e *engine) deliverWS(c *channel, it *grip.Item, now time.Time) {
	f := it.WSMessage
	if e.limit != nil {
		size := len(f.Content)
		if it.Size >= 0 {
			size = it.Size
		}
		w := blocks(size, e.cfg.MessageBlockSize)
		dropped := map[string]int{}
		for s := range c.ws {
			if !e.limit.add(s.statsRoute, delivery{ws: s, it: it, weight: w}, now) {
				dropped[s.statsRoute]++
				e.stats.deliveryDropped()
			}
		}
		e.logHWMDrops(dropped, it.Channel)
		return
	}
	for s := range c.ws {
		e.deliverWSTo(s, it, now)
	}
}

// deliverWSTo delivers a ws-message item to one session.
func (e *engine) deliverWSTo(s *wsSession, it *grip.Item, now time.Time) {
	f := it.WSMessage
	if s.removed || s.closed {
		return
	}
	sc := s.chans.get(it.Channel)
	if sc == nil {
		return
	}
	filters := sc.filters
	if f.HaveContentFilters && !slices.Equal(contentFilters(filters), f.ContentFilters) {
		if ev := e.log.Debug(); ev.Enabled() {
			ev.Str(logging.FieldConn, s.cid).Msg(contentFilterMismatch(filters, f.ContentFilters))
		}
		return
	}
	if wsDropByFilters(filters, s, it) {
		return
	}
	switch f.Action {
	case grip.ActionSend:
		content := f.Content
		if cf := contentFilters(filters); len(cf) > 0 {
			var err error
			if content, err = wsContentFilters(cf, content, s); err != nil {
				if ev := e.log.Debug(); ev.Enabled() {
					ev.Str(logging.FieldConn, s.cid).Err(err).Msg("filter error")
				}
				return
			}
		}
		e.stats.messageSent(s.statsRoute, "ws-message")
		e.wsSend(s, f.Type.String(), content, nil, false)
	case grip.ActionClose:
		e.wsClose(s, f.CloseCode, f.CloseReason)
	case grip.ActionRefresh:
		e.wsQueue(wscontrol.NewItem(s.cidB, wscontrol.TypeRefresh))
	}
}

// wsDropByFilters runs the delivery filters with the connection's
// set-meta values as subscription meta. require-sub looks at the
// connection's channels (1.36 looks at prev-ids, which WebSocket sessions
// never have, so there it drops every item that names a channel).
func wsDropByFilters(filters []string, s *wsSession, it *grip.Item) bool {
	if len(filters) == 0 {
		return false
	}
	return dropByFiltersWith(filters, s.meta, it, func(req string) bool {
		return s.chans.get(s.prefix+req) != nil || s.chans.get(req) != nil
	})
}

// wsContentFilters runs var-subst (set-meta values) and build-id on a
// message. WebSocket sessions have no prev-ids, so build-id renders
// only %(literal)I.
func wsContentFilters(filters []string, content []byte, s *wsSession) ([]byte, error) {
	for _, f := range filters {
		var err error
		switch f {
		case "var-subst":
			content, err = substVars(content, s.meta)
		case "build-id":
			content, err = buildIDWith(content, s.meta, nil)
		}
		if err != nil {
			return nil, err
		}
	}
	return content, nil
}
