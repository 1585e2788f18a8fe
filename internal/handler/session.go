package handler

import (
	"math/rand/v2"
	"time"

	"tack/internal/grip"
	"tack/internal/zhttpsession"
	"tack/pkg/zhttp"
)

// Per-session bounds (Pushpin src/handler/httpsession.cpp).
const (
	// SessionQueueMaxBytes bounds the content a stream session queues
	// while its client has no credits (Pushpin bounds it by count,
	// PUBLISH_QUEUE_MAX 100, and drops silently). Further items are
	// dropped for that session only, newest first, logged and counted;
	// the other sessions on the channel are not delayed. A reading client
	// never gets here: see sessionQueueSoftBytes.
	SessionQueueMaxBytes = 4 << 20
	// sessionQueueSoftBytes is the backlog above which a session holds
	// back the publish inputs (engine.go, backpressure): the engine stops
	// taking published items until the backlog drains below it again or
	// the client has read nothing for sessionStallTimeout. Soft mark plus
	// one publish batch (maxBatchBytes) plus one item stays under
	// SessionQueueMaxBytes.
	sessionQueueSoftBytes = 256 << 10
	// sessionStallTimeout is how long a session over the soft mark may
	// hold back the publish inputs without its client taking anything
	// (no credits from connmgr); after it the session counts as stalled
	// and its queue fills to SessionQueueMaxBytes and drops. Any progress
	// restarts it: a slow client that keeps reading paces the publishers
	// (whose HTTP requests give up with 503 after publishWaitMax) rather
	// than losing items. A rate threshold was tried and misfired: 4,000
	// streams on a loaded 2-core machine each read under 64 KiB in 3 s.
	sessionStallTimeout = 3 * time.Second
	// dropLogInterval spaces a session's drop warnings.
	dropLogInterval = 10 * time.Second
	// keepAliveJitter is subtracted, at random, from each Grip-Keep-Alive
	// period (KEEPALIVE_RAND_MAX, 1000 ms).
	keepAliveJitter = time.Second
)

// sessionState is where a held request is in its life.
type sessionState uint8

const (
	stateHolding sessionState = iota // waiting for publishes / timers
	statePausing                     // handoff-start sent, waiting for handoff-proceed (retry)
	stateClosing                     // final response being written as credits allow
	stateDone                        // removed from every table
)

// chanList is a session's channels: a few at most
// (connection_subscription_max), so a slice beats a map in size and speed.
type chanList []*sessChannel

func (l chanList) get(name string) *sessChannel {
	for _, c := range l {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (l *chanList) del(name string) {
	for i, c := range *l {
		if c.name == name {
			*l = append((*l)[:i], (*l)[i+1:]...)
			return
		}
	}
}

// names copies the channel names (for loops that unsubscribe).
func (l chanList) names() []string {
	out := make([]string, len(l))
	for i, c := range l {
		out[i] = c.name
	}
	return out
}

// sessChannel is one channel a session listens on.
type sessChannel struct {
	name    string
	prevID  string
	hasPrev bool
	filters []string
	// delivered: an item reached the session on this channel since its
	// next-link window started.
	delivered bool
}

// streamItem is a queued http-stream delivery.
type streamItem struct {
	channel string
	prevID  string
	id      string
	hasPrev bool
	action  grip.Action
	content []byte
	// skip: filtered out for this session; it only moves the prev-id on.
	skip bool
}

// queuedItemOverhead is what a queued item counts for besides its
// content and ids, so that items without content (filtered out, hint,
// close) are bounded too.
const queuedItemOverhead = 64

// size is what si counts for in a session's queue bound.
func (si *streamItem) size() int {
	return len(si.content) + len(si.channel) + len(si.id) + len(si.prevID) + queuedItemOverhead
}

// hsession is one held HTTP request: the zhttp server session towards
// connmgr plus the GRIP hold. Only the engine goroutine touches it.
type hsession struct {
	key   string // sender + "\x00" + id
	conn  string // stats connection id: sender + ":" + id
	z     zhttpsession.Session
	rs    requestState
	acc   *acceptData
	in    *grip.Instruct // acc.Instruct
	mode  grip.HoldMode
	chans chanList
	state sessionState

	// extra holds the pre-encoded fields every packet of this session
	// carries besides from/id/seq (user-data).
	extra []byte

	headSent    bool
	pending     []byte // body bytes waiting for credits
	finishAfter bool   // end the response once pending is written
	queue       []streamItem
	queueBytes  int       // size of queue (streamItem.size)
	stalled     bool      // over the soft mark past sessionStallTimeout
	dropped     int       // items dropped because the queue was full
	dropLogged  int       // dropped as of the last drop warning
	dropLogAt   time.Time // time of the last drop warning

	timers sessionTimers

	links     *linkState // Grip-Link state (links.go); nil without links
	updQueued bool       // in the engine's update queue

	// coalesced holds the contents of items of one publish batch, credits
	// already spent, that leave as one packet at the end of the batch
	// (deliver.go); nil outside a batch.
	coalesced []byte
}

// flushCoalesced sends s's coalesced contents, before anything else s
// sends, so that the order of its output is kept.
func (e *engine) flushCoalesced(s *hsession, now time.Time) bool {
	if len(s.coalesced) == 0 {
		return true
	}
	body := s.coalesced
	s.coalesced = nil
	if !e.sendFragNow(s, bodyFragment(body, true), now) {
		return false
	}
	e.contentWritten(s, now)
	return true
}

func newSession(rs requestState, acc *acceptData, now time.Time) *hsession {
	s := &hsession{
		key:  string(rs.Sender) + "\x00" + string(rs.ID),
		conn: string(rs.Sender) + ":" + string(rs.ID),
		rs:   rs,
		acc:  acc,
		in:   acc.Instruct,
		mode: acc.Instruct.Hold,
		z: zhttpsession.Session{
			ID:       rs.ID,
			Peer:     rs.Sender,
			OutSeq:   rs.OutSeq,
			InSeq:    rs.InSeq,
			Credits:  rs.OutCredits,
			UserData: rs.UserData,
			LastIn:   now,
			LastOut:  now,
		},
		headSent: rs.ResponseCode >= 0 || acc.ResponseSent,
	}
	if rs.UserData != nil {
		s.extra = appendField(nil, "user-data", rs.UserData)
	}
	if g := acc.Instruct.GoneLink; g != nil {
		s.link().gone = g
	}
	return s
}

// gripKeepAliveDelay is the next Grip-Keep-Alive period with Pushpin's
// jitter: timeout minus a random 0–999 ms, never negative.
func gripKeepAliveDelay(ka *grip.KeepAlive) time.Duration {
	d := ka.Timeout - time.Duration(rand.Int64N(int64(keepAliveJitter)))
	return max(d, 0)
}

// --- output; every function here runs in the engine goroutine ---

// sendControl stamps and sends a packet without body (keep-alive,
// handoff-start, cancel).
func (e *engine) sendControl(s *hsession, typ string, multi bool, now time.Time) bool {
	if !e.flushCoalesced(s, now) {
		return false
	}
	p := zhttp.New()
	p.Type = typ
	s.z.Stamp(p, e.id, multi, now)
	return e.pub(s, zhttp.PubFrame(s.z.Peer, p))
}

// sendFrag sends one data packet whose payload fields are frag, having
// already spent the credits for its body.
func (e *engine) sendFrag(s *hsession, frag []byte, now time.Time) bool {
	if !e.flushCoalesced(s, now) {
		return false
	}
	return e.sendFragNow(s, frag, now)
}

func (e *engine) sendFragNow(s *hsession, frag []byte, now time.Time) bool {
	frame := sessionFrame(s.z.Peer, e.id, s.z.ID, s.z.OutSeq, s.extra, frag)
	s.z.OutSeq++
	s.z.LastOut = now
	return e.pub(s, frame)
}

// startStream sends the initial response of a stream hold: head and
// initial body within the credits, `more` always set (grip-reference §3.6).
// body is the initial body after the response-content filters.
func (e *engine) startStream(s *hsession, body []byte, now time.Time) bool {
	if s.headSent {
		if len(body) > 0 && !s.acc.ResponseSent {
			return e.writeBody(s, body, now)
		}
		return true
	}
	r := &s.in.Response
	n := s.z.Spend(len(body))
	s.headSent = true
	if n < len(body) {
		s.pending = append(s.pending, body[n:]...)
	}
	headers := r.Headers
	if s.rs.AutoCrossOrigin {
		headers = applyCORS(s.acc.Request.Headers, headers)
	}
	return e.sendFrag(s, headFragment(r.Code, r.Reason, headers, body[:n], true), now)
}

// respond sends a complete response (response hold: publish, timeout or
// error) and ends the session once the body is written.
func (e *engine) respond(s *hsession, code int, reason string, headers []grip.Header, body []byte, now time.Time) {
	e.prepareToClose(s)
	code, reason, headers, body = crossOrigin(s, code, reason, headers, body)
	if s.headSent {
		s.finishAfter = true
		e.writeBody(s, body, now)
		return
	}
	n := s.z.Spend(len(body))
	more := n < len(body)
	s.headSent = true
	if more {
		s.pending = append(s.pending, body[n:]...)
		s.finishAfter = true
	}
	if !e.sendFrag(s, headFragment(code, reason, headers, body[:n], more), now) {
		return
	}
	if !more {
		e.finish(s, now, false)
	}
}

// writeBody appends body to the response and writes what the credits
// allow. It reports false when the session failed.
func (e *engine) writeBody(s *hsession, body []byte, now time.Time) bool {
	if len(body) == 0 && !s.finishAfter {
		return true
	}
	s.pending = append(s.pending, body...)
	return e.flush(s, now)
}

// flush writes pending body bytes within the credits; with finishAfter it
// ends the response when everything is written.
func (e *engine) flush(s *hsession, now time.Time) bool {
	for len(s.pending) > 0 && s.z.Credits > 0 {
		n := s.z.Spend(len(s.pending))
		chunk := s.pending[:n]
		last := n == len(s.pending) && s.finishAfter
		if !e.sendFrag(s, bodyFragment(chunk, !last), now) {
			return false
		}
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil
		}
		if last {
			e.finish(s, now, false)
			return false
		}
	}
	if len(s.pending) == 0 && s.finishAfter && s.state != stateDone {
		// Nothing left but the end of the body: no credits needed.
		if !e.sendFrag(s, nil, now) {
			return false
		}
		e.finish(s, now, false)
		return false
	}
	return true
}

// prepareToClose stops deliveries and timers before the final response.
func (e *engine) prepareToClose(s *hsession) {
	s.state = stateClosing
	e.clearQueue(s)
	e.timers.disarm(s, timerHold)
	e.timers.disarm(s, timerGripKeepAlive)
	e.timers.disarm(s, timerNextLink)
	if s.links != nil {
		s.links.fetchOnFlush = false
	}
}

// creditsArrived resumes output after connmgr granted credits.
func (e *engine) creditsArrived(s *hsession, now time.Time) {
	if !e.flush(s, now) {
		return
	}
	if s.state != stateHolding || !s.streaming() {
		return
	}
	if l := s.links; l != nil && l.fetchOnFlush && len(s.pending) == 0 {
		l.fetchOnFlush = false
		e.fetchNext(s, now)
		return
	}
	e.sendQueue(s, now)
}

// sendQueue writes queued stream items while the client takes data.
func (e *engine) sendQueue(s *hsession, now time.Time) {
	for len(s.queue) > 0 && len(s.pending) == 0 && s.z.Credits > 0 && s.state == stateHolding {
		it := s.queue[0]
		s.queue[0] = streamItem{}
		s.queue = s.queue[1:]
		s.queueBytes -= it.size()
		if s.queueBytes <= sessionQueueSoftBytes {
			e.unblock(s)
		}
		if !e.streamItemNow(s, &it, now) {
			return
		}
	}
	if len(s.queue) == 0 {
		s.queue = nil
	}
}

// clearQueue drops s's queued items (the session closes or re-requests
// its backend, which replaces them).
func (e *engine) clearQueue(s *hsession) {
	s.queue, s.queueBytes = nil, 0
	e.unblock(s)
}

// streamItemNow applies one http-stream item to s, whose output is idle
// or backlogged by less than one item. It reports false when s ended.
func (e *engine) streamItemNow(s *hsession, it *streamItem, now time.Time) bool {
	if !e.trackPrevID(s, it.channel, it.hasPrev, it.prevID, it.id, now) {
		return false
	}
	if it.skip {
		return true
	}
	switch it.action {
	case grip.ActionHint:
		e.update(s, now)
		return false
	case grip.ActionClose:
		e.prepareToClose(s)
		s.finishAfter = true
		e.flush(s, now)
		return false
	case grip.ActionSend:
		if !e.writeBody(s, it.content, now) {
			return false
		}
		e.contentWritten(s, now)
	}
	return true
}

// contentWritten restarts an idle-mode Grip-Keep-Alive timer.
func (e *engine) contentWritten(s *hsession, now time.Time) {
	if ka := s.in.KeepAlive; ka != nil && ka.Mode == grip.KeepAliveIdle {
		e.timers.arm(s, timerGripKeepAlive, now.Add(gripKeepAliveDelay(ka)))
	}
}

// trackPrevID applies a delivered item to the session's prev-id of its
// channel (grip-reference §3.10 rule 3). On a gap it asks for an update
// and reports false.
func (e *engine) trackPrevID(s *hsession, channel string, hasPrev bool, prevID, id string, now time.Time) bool {
	c := s.chans.get(channel)
	if c == nil || !c.hasPrev {
		return true
	}
	if !hasPrev || prevID != c.prevID {
		if e := e.log.Debug(); e.Enabled() {
			e.Str("got", prevID).Str("expected", c.prevID).Msg("last id inconsistency, updating")
		}
		e.forgetLastID(channel)
		e.clearQueue(s)
		e.update(s, now)
		return false
	}
	c.prevID = id
	c.hasPrev = id != "" // an item without id ends the tracking, as in Pushpin
	return true
}
