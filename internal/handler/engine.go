package handler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/grip"
	"tack/internal/logging"
	"tack/internal/zhttpsession"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Engine bounds.
const (
	// PublishQueueLen bounds the publish batches waiting for the engine;
	// Publish returns ErrQueueFull beyond it.
	PublishQueueLen = 4096
	// commandQueueLen bounds recover/refresh commands waiting for the engine.
	commandQueueLen = 64
	// housekeepingInterval paces channel lingers, first-subscription
	// updates, parked-item release and stats refreshes (Pushpin checks
	// parked items once per second: EXPIRE_INTERVAL).
	housekeepingInterval = time.Second
	// Updates that are not urgent (recover, first subscription, next-link
	// windows) are rate limited as in Pushpin: at most updateBatch
	// sessions every updateInterval.
	updateInterval = 100 * time.Millisecond
	updateBatch    = 100
	// maxBatchItems and maxBatchBytes bound the published items taken in
	// one batch (after the first publish request of the batch).
	maxBatchItems = 1024
	maxBatchBytes = 1 << 20
)

// engineCmd is a request from another goroutine: recover, or (tests) a
// barrier closed once everything queued before it was processed.
type engineCmd struct {
	recover bool
	inspect func(*engine) // tests: look at engine state
	sync    chan<- struct{}
}

// engineOutputs are the send queues the engine writes to.
type engineOutputs struct {
	connmgr chan<- zsock.Message // PUB towards connmgr
	retry   chan<- zsock.Message // PUSH towards the proxy; nil without a retry spec
	// intreq and intreqStream carry outbound requests (next and gone
	// links) to the proxy; nil without intreq specs.
	intreq       chan<- zsock.Message
	intreqStream chan<- zsock.Message
}

// engine owns the held sessions, the channel table and the sequencer.
// Exactly one goroutine runs it (run); Publish, Recover, Refresh and
// ConnCheck are safe from any goroutine.
type engine struct {
	cfg   Config
	log   zerolog.Logger
	id    []byte
	clock clock
	out   engineOutputs
	stats *statsCollector // nil-safe

	accepts chan *acceptJob
	pubq    chan []grip.Item
	cmds    chan engineCmd
	connmgr <-chan zsock.Message
	intreq  <-chan zsock.Message // replies to outbound requests

	chanSet *channelSet
	live    connSet

	sessions map[string]*hsession
	channels map[string]*channel
	timers   timerHeap
	kaDue    []*hsession
	seq      sequencer
	nextHK   time.Time

	outReqs    map[string]*outReq
	outCounter uint64
	updQ       []*hsession // rate-limited updates, oldest first
	nextUpd    time.Time
	limit      *rateLimiter // nil: message_rate unset

	batching  bool        // publishing a batch of several items
	coalesced []*hsession // sessions holding coalesced contents

	// blocking holds the sessions whose queue is over the soft mark,
	// with the time each went over: while any is there the engine takes
	// no published items (backpressure, session.go).
	blocking map[*hsession]time.Time
	stallLog *rateLog // "client not reading" warnings, one per second

	ws *wsState // WebSocket sessions (wssession.go)
}

var _ engineAPI = (*engine)(nil)

func newEngine(cfg Config, log zerolog.Logger, chans *channelSet, st *statsCollector) *engine {
	cfg = cfg.withDefaults()
	e := &engine{
		cfg:      cfg,
		log:      log,
		id:       []byte(cfg.InstanceID),
		clock:    cfg.clock,
		stats:    st,
		accepts:  make(chan *acceptJob, AcceptQueueLen),
		pubq:     make(chan []grip.Item, PublishQueueLen),
		cmds:     make(chan engineCmd, commandQueueLen),
		chanSet:  chans,
		live:     connSet{ids: map[string]struct{}{}},
		sessions: map[string]*hsession{},
		channels: map[string]*channel{},
		outReqs:  map[string]*outReq{},
		blocking: map[*hsession]time.Time{},
	}
	e.seq = newSequencer(cfg.IDCacheTTL, cfg.MessageWait)
	e.limit = newRateLimiter(cfg.MessageRate, cfg.MessageHWM)
	e.stallLog = newRateLog(log, rateLogInterval)
	e.ws = newWSState(e)
	return e
}

// --- engineAPI ---

// Publish queues items for delivery without blocking.
func (e *engine) Publish(items []grip.Item) error {
	if len(items) == 0 {
		return nil
	}
	select {
	case e.pubq <- items:
		return nil
	default:
		return ErrQueueFull
	}
}

// PublishWait queues items for delivery, waiting while the engine holds
// the publish inputs back (a session's queue over its soft mark) or the
// queue is full; ErrQueueFull when ctx ends first.
func (e *engine) PublishWait(ctx context.Context, items []grip.Item) error {
	if len(items) == 0 {
		return nil
	}
	select {
	case e.pubq <- items:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrQueueFull, context.Cause(ctx))
	}
}

// Recover forgets every last id and updates every held session.
func (e *engine) Recover() error {
	select {
	case e.cmds <- engineCmd{recover: true}:
		return nil
	default:
		return ErrQueueFull
	}
}

// Refresh asks WebSocket(-over-HTTP) connections to re-request their
// backend (command refresh, grip-reference §4.5). HTTP sessions do not
// take part, as in Pushpin 1.36. By cid: success for a WebSocket the
// handler knows, item-not-found otherwise (1.36's proxy answers so for
// an HTTP connection's id or an unknown one); by channel: success, for
// any channel. Each connection gets a ws-control `refresh` item (a no-op
// for a GRIP WebSocket, as in 1.36).
func (e *engine) Refresh(cid, channel string) error {
	res := make(chan error, 1)
	select {
	case e.cmds <- engineCmd{inspect: func(e *engine) { res <- e.wsRefresh(cid, channel) }}:
	default:
		return ErrQueueFull
	}
	select {
	case err := <-res:
		return err
	case <-time.After(refreshWait):
		return ErrQueueFull
	}
}

// refreshWait bounds how long Refresh waits for the engine.
const refreshWait = 5 * time.Second

// errNoSuchConnection answers refresh with Pushpin's item-not-found.
var errNoSuchConnection = conditionError{cond: "item-not-found", msg: "no such WebSocket connection"}

type conditionError struct{ cond, msg string }

func (c conditionError) Error() string     { return c.msg }
func (c conditionError) Condition() string { return c.cond }

// ConnCheck returns the ids (`<sender>:<id>`) of held connections.
func (e *engine) ConnCheck(ids []string) []string { return e.live.filter(ids) }

// connSet is the set of live connection ids, readable from any goroutine.
type connSet struct {
	mu  sync.Mutex // guards ids
	ids map[string]struct{}
}

func (c *connSet) add(id string) {
	c.mu.Lock()
	c.ids[id] = struct{}{}
	c.mu.Unlock()
}

func (c *connSet) remove(id string) {
	c.mu.Lock()
	delete(c.ids, id)
	c.mu.Unlock()
}

func (c *connSet) filter(ids []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []string{}
	for _, id := range ids {
		if _, ok := c.ids[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

// --- loop ---

// run is the engine goroutine.
func (e *engine) run(ctx context.Context) error {
	timer := e.clock.NewTimer(time.Hour)
	defer timer.Stop()
	e.nextHK = e.clock.Now().Add(housekeepingInterval)
	for {
		now := e.clock.Now()
		e.runTimers(now)
		// Timers queue ws-control items too (rate-limited deliveries,
		// keep-alives): they leave now, not after the next event.
		e.wsFlush()
		wait := e.nextHK.Sub(now)
		if at, ok := e.timers.next(); ok && at.Sub(now) < wait {
			wait = at.Sub(now)
		}
		if len(e.updQ) > 0 && e.nextUpd.Sub(now) < wait {
			wait = e.nextUpd.Sub(now)
		}
		if at, ok := e.limit.pending(); ok && at.Sub(now) < wait {
			wait = at.Sub(now)
		}
		if at, ok := e.ws.timers.next(); ok && at.Sub(now) < wait {
			wait = at.Sub(now)
		}
		pubq := e.pubq
		if at, ok := e.congested(now); ok {
			pubq = nil // backpressure: leave published items waiting
			if at.Sub(now) < wait {
				wait = at.Sub(now)
			}
		}
		if e.wsCongested() {
			// The proxy reads ws-control slowly: leave published items
			// waiting; recheck soon (the socket drains on its own).
			pubq = nil
			wait = min(wait, wsCongestionPoll)
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			e.shutdown(e.clock.Now())
			return nil
		case job := <-e.accepts:
			e.accept(job.data, e.clock.Now())
		case m, ok := <-e.connmgr:
			if !ok {
				return errSocketClosed("condure-out-stream")
			}
			e.handleConnmgr(m, e.clock.Now())
		case m, ok := <-e.intreq:
			if !ok {
				return errSocketClosed("intreq-out")
			}
			e.handleIntreq(m, e.clock.Now())
		case m, ok := <-e.ws.in:
			if !ok {
				return errSocketClosed("ws-control-out")
			}
			e.handleWSControl(m, e.clock.Now())
		case items := <-pubq:
			e.publishBatch(items, e.clock.Now())
		case c := <-e.cmds:
			if c.recover {
				e.recover(e.clock.Now())
			}
			if c.inspect != nil {
				c.inspect(e)
			}
			if c.sync != nil {
				e.runTimers(e.clock.Now())
				close(c.sync)
			}
		case <-timer.C():
		}
		e.wsFlush()
	}
}

// runTimers fires every deadline due at now.
func (e *engine) runTimers(now time.Time) {
	for {
		s, k, ok := e.timers.popDue(now)
		if !ok {
			break
		}
		e.fire(s, k, now)
	}
	e.wsRunTimers(now)
	e.flushKeepAlives(now)
	if len(e.updQ) > 0 && !now.Before(e.nextUpd) {
		e.drainUpdates(now)
	}
	if at, ok := e.limit.pending(); ok && !now.Before(at) {
		e.limit.runBatch(now, func(d delivery) {
			if d.ws != nil {
				e.deliverWSTo(d.ws, d.it, now)
			} else if d.rd != nil {
				e.deliverResponseTo(d.s, d.it, d.rd, now)
			} else {
				e.deliverStreamTo(d.s, d.it, d.sd, now)
			}
		})
	}
	if !now.Before(e.nextHK) {
		e.nextHK = now.Add(housekeepingInterval) // housekeeping may bring it forward
		e.housekeeping(now)
	}
}

func (e *engine) fire(s *hsession, k timerKind, now time.Time) {
	switch k {
	case timerZhttpKeepAlive:
		if s.state == statePausing {
			e.armZhttpKeepAlive(s)
			return
		}
		if now.Sub(s.z.LastOut) < e.cfg.Timers.ZhttpKeepAlive {
			e.armZhttpKeepAlive(s)
			return
		}
		e.kaDue = append(e.kaDue, s)
	case timerExpire:
		if now.Sub(s.z.LastIn) < e.cfg.Timers.ZhttpExpire {
			e.timers.arm(s, timerExpire, s.z.LastIn.Add(e.cfg.Timers.ZhttpExpire))
			return
		}
		e.log.Debug().Str(logging.FieldRID, string(s.z.ID)).Msg("session expired")
		e.finish(s, now, false)
	case timerHold:
		if s.state == stateHolding {
			r := &s.in.Response
			e.respond(s, r.Code, r.Reason, r.Headers, r.Body, now)
		}
	case timerGripKeepAlive:
		ka := s.in.KeepAlive
		if s.state != stateHolding || ka == nil {
			return
		}
		if len(s.pending) == 0 && len(s.queue) == 0 {
			if !e.writeBody(s, ka.Data, now) {
				return
			}
			e.stats.activity(s.acc.StatsRoute, 1)
		}
		e.timers.arm(s, timerGripKeepAlive, now.Add(gripKeepAliveDelay(ka)))
	case timerNextLink:
		e.nextLinkTimer(s, now)
	}
}

// publishBatch publishes items and whatever else is already queued (up to
// maxBatchItems). With more than one item, each session's stream contents
// are coalesced into one packet per batch: a burst then costs connmgr one
// write per client instead of one per item.
func (e *engine) publishBatch(items []grip.Item, now time.Time) {
	n, size := len(items), itemsBytes(items)
	batches := [][]grip.Item{items}
drain:
	for n < maxBatchItems && size < maxBatchBytes {
		select {
		case more := <-e.pubq:
			batches = append(batches, more)
			n += len(more)
			size += itemsBytes(more)
		default:
			break drain
		}
	}
	e.stats.messagesReceived(n)
	e.batching = n > 1
	for _, b := range batches {
		for i := range b {
			e.publishItem(&b[i], now)
		}
	}
	e.batching = false
	for i, s := range e.coalesced {
		if s.state != stateDone {
			e.flushCoalesced(s, now)
		}
		e.coalesced[i] = nil
	}
	e.coalesced = e.coalesced[:0]
}

// itemsBytes is the content size of items, the measure of a batch.
func itemsBytes(items []grip.Item) int {
	n := 0
	for i := range items {
		if f := items[i].HTTPStream; f != nil {
			n += len(f.Content)
		}
		if f := items[i].HTTPResponse; f != nil {
			n += len(f.Body)
		}
		if f := items[i].WSMessage; f != nil {
			n += len(f.Content)
		}
	}
	return n
}

// block makes s hold back the publish inputs (its queue went over the
// soft mark).
func (e *engine) block(s *hsession, now time.Time) {
	if _, ok := e.blocking[s]; !ok {
		e.blocking[s] = now
	}
}

// progressed notes credits granted to s (its client took bytes): they
// restart its stall timeout, and bring a stalled session that reads again
// back to holding the inputs.
func (e *engine) progressed(s *hsession, now time.Time) {
	if s.queueBytes <= sessionQueueSoftBytes {
		return
	}
	s.stalled = false
	e.blocking[s] = now
}

// unblock ends s's hold on the publish inputs and its stalled state.
func (e *engine) unblock(s *hsession) {
	delete(e.blocking, s)
	s.stalled = false
}

// congested reports whether a session holds back the publish inputs, and
// when the earliest of them times out. A session over the soft mark whose
// client took nothing for sessionStallTimeout is stalled: it no longer
// holds anything back and its queue fills up to SessionQueueMaxBytes,
// then drops.
func (e *engine) congested(now time.Time) (time.Time, bool) {
	var next time.Time
	for s, since := range e.blocking {
		at := since.Add(sessionStallTimeout)
		if !now.Before(at) {
			delete(e.blocking, s)
			s.stalled = true
			e.stallLog.Warn(now).Str(logging.FieldConn, s.conn).Int("queued_bytes", s.queueBytes).
				Dur("stalled", now.Sub(since)).Msg("client not reading, publishing no longer waits for it")
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next, len(e.blocking) > 0
}

// queueUpdate asks for a rate-limited update of s.
func (e *engine) queueUpdate(s *hsession, now time.Time) {
	if s.updQueued || s.state != stateHolding {
		return
	}
	if len(e.updQ) == 0 && e.nextUpd.Before(now) {
		e.nextUpd = now
	}
	s.updQueued = true
	e.updQ = append(e.updQ, s)
}

// drainUpdates runs the next batch of queued updates.
func (e *engine) drainUpdates(now time.Time) {
	n := min(len(e.updQ), updateBatch)
	batch := e.updQ[:n]
	for _, s := range batch {
		s.updQueued = false
		e.update(s, now)
	}
	clear(batch)
	e.updQ = e.updQ[n:]
	if len(e.updQ) == 0 {
		e.updQ = nil
	}
	e.nextUpd = now.Add(updateInterval)
}

// armZhttpKeepAlive schedules the next zhttp keep-alive check, rounded up
// to a whole second so that sessions due together leave in one batch.
func (e *engine) armZhttpKeepAlive(s *hsession) {
	at := s.z.LastOut.Add(e.cfg.Timers.ZhttpKeepAlive)
	if r := at.Truncate(time.Second); r.Before(at) {
		at = r.Add(time.Second)
	}
	e.timers.arm(s, timerZhttpKeepAlive, at)
}

// flushKeepAlives sends the due zhttp keep-alives, list-form per connmgr
// for sessions whose peer announced ext.multi (zmq-wire.md §2.8).
func (e *engine) flushKeepAlives(now time.Time) {
	if len(e.kaDue) == 0 {
		return
	}
	zs := make([]*zhttpsession.Session, 0, len(e.kaDue))
	for _, s := range e.kaDue {
		if s.state != stateDone {
			zs = append(zs, &s.z)
		}
	}
	for _, a := range zhttpsession.KeepAlives(e.id, zs, now) {
		if !e.send(zsock.Message{zhttp.PubFrame(a.Peer, a.Packet)}) {
			e.unstampKeepAlive(a)
		}
	}
	for _, s := range e.kaDue {
		if s.state != stateDone {
			e.armZhttpKeepAlive(s)
		}
	}
	clear(e.kaDue)
	e.kaDue = e.kaDue[:0]
}

// unstampKeepAlive takes back the sequence numbers of a keep-alive the
// connmgr queue had no room for: a lost numbered packet would leave a gap
// that connmgr finds only at the next packet, and closes the client for.
// The sessions' next keep-alive is due at the usual interval.
func (e *engine) unstampKeepAlive(a zhttpsession.Addressed) {
	ids := a.Packet.IDs
	if ids == nil {
		ids = []zhttp.IDSeq{{ID: a.Packet.ID, Seq: a.Packet.Seq}}
	}
	for _, ent := range ids {
		if s := e.sessions[string(a.Peer)+"\x00"+string(ent.ID)]; s != nil && s.z.OutSeq == ent.Seq+1 {
			s.z.OutSeq--
		}
	}
	e.log.Warn().Int("sessions", len(ids)).Msg("connmgr queue full, keep-alive not sent")
}

// send queues a frame for connmgr without blocking; false when full.
func (e *engine) send(m zsock.Message) bool {
	select {
	case e.out.connmgr <- m:
		return true
	default:
		e.stats.dropped()
		return false
	}
}

// pub sends one frame of s. When the PUB queue is full the frame is lost,
// which would break the session's sequence, so the session is dropped
// (connmgr closes the client connection at the next gap or expiry).
func (e *engine) pub(s *hsession, frame []byte) bool {
	if e.send(zsock.Message{frame}) {
		return true
	}
	e.log.Warn().Str(logging.FieldRID, string(s.z.ID)).Msg("connmgr queue full, dropping session")
	e.finish(s, e.clock.Now(), false)
	return false
}

// --- accept ---

// accept takes over the sessions of one accepted hold (zmq-wire.md §4.3).
func (e *engine) accept(a *acceptData, now time.Time) {
	in := a.Instruct
	if in.Hold == grip.HoldResponse {
		// grip-reference §3.10 rule 1: a stale prev-id means retry now.
		conflict := false
		for _, c := range in.Channels {
			if c.PrevID == "" {
				continue
			}
			if last, ok := e.lastID(c.Name); ok && last != c.PrevID {
				e.forgetLastID(c.Name)
				conflict = true
			}
		}
		if conflict {
			e.sendRetry(retryFromAccept(a))
			return
		}
	}
	// Once started, stream sessions keep a trimmed accept (and
	// instructions without the initial response).
	if in.Hold != grip.HoldResponse {
		defer a.trimForStream()
	}
	for _, rs := range a.Requests {
		s := newSession(rs, a, now)
		if _, dup := e.sessions[s.key]; dup {
			e.log.Error().Str(logging.FieldRID, string(rs.ID)).Str(logging.FieldFrom, string(rs.Sender)).
				Msg("accept for a session we already have, skipping")
			continue
		}
		e.sessions[s.key] = s
		e.live.add(s.conn)
		e.stats.connAdd(s, now)
		e.timers.arm(s, timerExpire, now.Add(e.cfg.Timers.ZhttpExpire))
		// The takeover's first packet: a keep-alive at out-seq offering
		// ext.multi (Captured, zmq-wire.md §2.10 step 4).
		if !e.sendControl(s, zhttp.TypeKeepAlive, true, now) {
			continue
		}
		e.armZhttpKeepAlive(s)
		e.start(s, now)
	}
}

// start begins the hold (Pushpin HttpSession::start and
// prepareToSendQueueOrHold).
func (e *engine) start(s *hsession, now time.Time) {
	if s.mode == grip.HoldNone {
		// No hold but a next link: a stream fed by the link chain.
		body, err := e.responseFilters(s, s.in.Response.Body)
		if err != nil {
			e.fail(s, err.Error(), now)
			return
		}
		if !e.startStream(s, body, now) || s.state != stateHolding {
			return
		}
		e.chainNext(s, now)
		return
	}
	for _, name := range s.acc.ImplicitChannels {
		e.subscribe(s, name, sessChannel{}, now)
	}
	if s.mode == grip.HoldStream {
		body, err := e.responseFilters(s, s.in.Response.Body)
		if err != nil {
			e.fail(s, err.Error(), now)
			return
		}
		if !e.startStream(s, body, now) {
			return
		}
	}
	if s.mode == grip.HoldStream && s.in.NextLink == nil {
		for _, c := range s.in.Channels {
			if c.PrevID != "" {
				e.fail(s, "channel '"+c.BackendName+"' specifies prev-id, but no next link found", now)
				return
			}
		}
	}
	for _, c := range s.in.Channels {
		e.subscribe(s, c.Name, sessChannel{prevID: c.PrevID, hasPrev: c.PrevID != "", filters: c.Filters}, now)
	}
	if s.state != stateHolding {
		return
	}
	switch s.mode {
	case grip.HoldResponse:
		e.timers.arm(s, timerHold, now.Add(s.in.Timeout))
	case grip.HoldStream:
		conflict := false
		for _, c := range s.in.Channels {
			if c.PrevID == "" {
				continue
			}
			if last, ok := e.lastID(c.Name); ok && last != c.PrevID {
				e.forgetLastID(c.Name)
				conflict = true
			}
		}
		if conflict {
			e.update(s, now)
			return
		}
		if ka := s.in.KeepAlive; ka != nil {
			e.timers.arm(s, timerGripKeepAlive, now.Add(gripKeepAliveDelay(ka)))
		}
		if s.in.NextLink != nil {
			e.armNextLink(s, now)
		}
	}
}

// fail ends a session after an error (Pushpin HttpSession::doError):
// response holds answer 502, streams end (with the message in debug mode).
func (e *engine) fail(s *hsession, msg string, now time.Time) {
	if s.state == stateDone {
		return
	}
	e.log.Debug().Str(logging.FieldRID, string(s.z.ID)).Str("error", msg).Msg("session error")
	if s.mode == grip.HoldResponse || !s.headSent {
		body := "Error while proxying to origin."
		if s.rs.Debug {
			body = msg
		}
		e.respond(s, 502, "Bad Gateway", []grip.Header{{Name: "Content-Type", Value: "text/plain"}}, []byte(body+"\n"), now)
		return
	}
	e.prepareToClose(s)
	s.finishAfter = true
	if s.rs.Debug {
		e.writeBody(s, []byte("\n\n"+msg+"\n"), now)
		return
	}
	e.flush(s, now)
}

// update re-requests the backend for s (grip-reference §3.10): a response
// hold is handed back to the proxy with a retry; a stream with a next link
// fetches it; a stream without one has nothing to re-request.
func (e *engine) update(s *hsession, now time.Time) {
	if s.state != stateHolding {
		return
	}
	if s.streaming() {
		e.fetchNext(s, now)
		return
	}
	if e.out.retry == nil {
		return
	}
	s.state = statePausing
	e.timers.disarm(s, timerHold)
	e.sendControl(s, zhttp.TypeHandoffStart, false, now)
}

// finish removes s from every table; with retry it hands the session back
// to the proxy (after handoff-proceed).
func (e *engine) finish(s *hsession, now time.Time, retry bool) {
	if s.state == stateDone {
		return
	}
	s.state = stateDone
	var rp tnetstring.Dict
	if retry {
		rp = retryFromSession(s)
	}
	if l := s.links; l != nil && l.outReq != nil {
		e.cancelOutReq(l.outReq, now)
		l.outReq = nil
	}
	e.sendGone(s, now)
	delete(e.sessions, s.key)
	e.live.remove(s.conn)
	for _, name := range s.chans.names() {
		e.unsubscribe(s, name, now)
	}
	e.stats.connRemove(s, now, retry)
	if retry {
		e.sendRetry(rp)
	}
	s.pending = nil
	e.clearQueue(s)
	e.logDrops(s, now, true)
}

// shutdown ends every held session before the handler stops, so that
// connmgr answers the clients at once (not after the 60 s expiry) and they
// come back to the next handler: a response hold gets its timeout
// response (as if Grip-Timeout had elapsed), a stream ends with what is
// pending and then its final chunk, both as far as the credits allow.
// What cannot end that way (a retry under way, a body larger than the
// credits, a stream whose head is not out) is cancelled: connmgr closes
// those clients.
func (e *engine) shutdown(now time.Time) {
	for _, s := range e.sessions {
		if s.state != stateHolding {
			continue
		}
		switch {
		case !s.streaming():
			r := &s.in.Response
			e.respond(s, r.Code, r.Reason, r.Headers, r.Body, now)
		case s.headSent:
			e.prepareToClose(s)
			s.finishAfter = true
			e.flush(s, now)
		}
	}
	for _, s := range e.sessions {
		if s.state != stateDone {
			e.sendControl(s, zhttp.TypeCancel, false, now)
		}
	}
	for _, s := range e.sessions {
		e.finish(s, now, false)
	}
	e.wsShutdown(now)
}

// recover forgets every last id and updates every held session
// (grip-reference §3.10 rule 4).
func (e *engine) recover(now time.Time) {
	for _, c := range e.channels {
		c.hasLastID, c.lastID = false, ""
	}
	for _, s := range e.sessions {
		e.queueUpdate(s, now)
	}
}

// --- packets from connmgr ---

// handleConnmgr processes one message from the connmgr ROUTER:
// [connmgr-identity, "", T…].
func (e *engine) handleConnmgr(m zsock.Message, now time.Time) {
	if len(m) < 2 {
		e.log.Warn().Int("parts", len(m)).Str(logging.FieldSocket, "condure-out-stream").Msg("dropping short message")
		return
	}
	p, err := zhttp.Parse(m[len(m)-1])
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "condure-out-stream").Msg("dropping bad packet")
		return
	}
	if p.IDs != nil {
		for _, ids := range p.IDs {
			if s := e.sessions[string(p.From)+"\x00"+string(ids.ID)]; s != nil {
				e.handleIn(s, p, ids.Seq, now)
			} else {
				e.cancelUnknown(p, ids.ID)
			}
		}
		return
	}
	s := e.sessions[string(p.From)+"\x00"+string(p.ID)]
	if s == nil {
		e.cancelUnknown(p, p.ID)
		return
	}
	e.handleIn(s, p, p.Seq, now)
}

// cancelUnknown answers a packet for a session we do not hold (it ended
// here, or this handler is not the one that took it) with a cancel, so
// that connmgr ends the client now rather than at the 60 s expiry, as
// Pushpin's C++ zhttp server does for unknown ids (tryRespondCancel in
// src/core/zhttpmanager.cpp); error and cancel packets get no answer.
func (e *engine) cancelUnknown(p *zhttp.Packet, id []byte) {
	if ev := e.log.Debug(); ev.Enabled() {
		ev.Str(logging.FieldRID, string(id)).Str("type", p.Type).Msg("packet for unknown session, canceling")
	}
	if p.Type == zhttp.TypeCancel || p.Type == zhttp.TypeError || len(p.From) == 0 {
		return
	}
	c := zhttp.New()
	c.From, c.ID, c.Type = e.id, id, zhttp.TypeCancel
	e.send(zsock.Message{zhttp.PubFrame(p.From, c)})
}

func (e *engine) handleIn(s *hsession, p *zhttp.Packet, seq int64, now time.Time) {
	if p.Type == zhttp.TypeCancel || p.Type == zhttp.TypeError {
		if e := e.log.Debug(); e.Enabled() {
			e.Str(logging.FieldRID, string(s.z.ID)).Str("type", p.Type).Msg("session ended by connmgr")
		}
		e.finish(s, now, false)
		return
	}
	if err := s.z.ReceiveSeq(seq, p.From, now); err != nil {
		e.log.Warn().Err(err).Str(logging.FieldRID, string(s.z.ID)).Msg("canceling session")
		e.sendControl(s, zhttp.TypeCancel, false, now)
		e.finish(s, now, false)
		return
	}
	if p.Multi {
		s.z.PeerMulti = true
	}
	if p.UserData != nil {
		s.z.UserData = p.UserData
		s.extra = appendField(nil, "user-data", p.UserData)
	}
	// A list-form packet's credits go to each listed session, as Pushpin
	// 1.36's zhttp server applies it (tack-connmgr batches the credits of
	// a publish that way).
	if p.Credits > 0 {
		s.z.Credits += p.Credits
		e.progressed(s, now)
		e.creditsArrived(s, now)
		if s.state == stateDone {
			return
		}
	}
	if p.Type == zhttp.TypeHandoffProceed && s.state == statePausing {
		e.finish(s, now, true)
	}
}

// --- retry ---

// sendRetry writes a retry packet to the proxy (zmq-wire.md §4.4, 1.36
// PUSH framing: one bare tnetstring frame).
func (e *engine) sendRetry(d tnetstring.Dict) {
	if e.out.retry == nil {
		e.log.Error().Msg("retry: no socket")
		return
	}
	select {
	case e.out.retry <- zsock.Message{tnetstring.MustEncode(d)}:
	default:
		e.log.Warn().Msg("retry queue full, retry dropped")
	}
}

func errSocketClosed(name string) error { return &socketClosedError{name} }

type socketClosedError struct{ name string }

func (e *socketClosedError) Error() string { return e.name + " socket closed" }
