package handler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"tack/internal/grip"
	"tack/internal/zsock"
)

// ZeroMQ publish input bounds (grip-reference §4.3–§4.4, zmq-wire §3.6).
const (
	// pullRcvHWM is the PULL input's receive HWM (Pushpin: 101000). When
	// it and the zsock queue are full, libzmq stops reading from the
	// publishers' PUSH sockets, which then block or drop as they choose.
	pullRcvHWM = 101000
	// subRcvHWM is the SUB input's receive HWM (Pushpin: 101000). The
	// input keeps reading (see subQueueLen), so libzmq reaches it only when
	// the input's goroutine itself falls behind.
	subRcvHWM = 101000
	// subQueueLen bounds the SUB items waiting for the engine while it
	// holds the inputs back. A PUB publisher cannot be held back, so past
	// this the input drops items itself, counted in message_dropped and
	// warned about, instead of letting libzmq drop them unseen.
	subQueueLen = 1024
	// subSndHWM stands for Pushpin's unlimited SUB send HWM (zsock maps 0
	// to its default): subscriptions travel upstream on this pipe and none
	// may be lost.
	subSndHWM = 1 << 30
	// subResyncDelay is how soon the SUB input retries topic changes the
	// socket's control queue had no room for.
	subResyncDelay = 10 * time.Millisecond
	// rateLogInterval is the least time between two warnings of one kind;
	// the ones in between are counted in the next warning's "suppressed".
	rateLogInterval = time.Second
	// frameLogPrefix bounds how much of an undecodable frame a warning
	// quotes.
	frameLogPrefix = 32
)

// rateLog lets one warning through per interval and counts the rest.
// mu guards last and suppressed (HTTP handlers share one).
type rateLog struct {
	log        zerolog.Logger
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newRateLog(log zerolog.Logger, every time.Duration) *rateLog {
	return &rateLog{log: log, every: every}
}

// Warn returns a warning event, or nil (on which zerolog calls are no-ops)
// when one was let through less than an interval ago.
func (r *rateLog) Warn(now time.Time) *zerolog.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.suppressed++
		return nil
	}
	e := r.log.Warn()
	if r.suppressed > 0 {
		e = e.Int("suppressed", r.suppressed)
	}
	r.last, r.suppressed = now, 0
	return e
}

// dropper counts and reports the items a publish input could not take.
type dropper struct {
	dropped atomic.Uint64
	st      *statsCollector // also counts drops in message_dropped; may be nil
	invalid *rateLog        // undecodable or malformed messages
	full    *rateLog        // ErrQueueFull
}

func newDropper(log zerolog.Logger, st *statsCollector) *dropper {
	return &dropper{st: st, invalid: newRateLog(log, rateLogInterval), full: newRateLog(log, rateLogInterval)}
}

// add counts n dropped messages, in the input's count and in Prometheus
// message_dropped.
func (d *dropper) add(n uint64) {
	d.dropped.Add(n)
	d.st.inputDropped(n)
}

// bad drops an invalid message with the reason and the start of the frame.
func (d *dropper) bad(frame []byte, err error) {
	d.add(1)
	if len(frame) > frameLogPrefix {
		frame = frame[:frameLogPrefix]
	}
	d.invalid.Warn(time.Now()).Err(err).Int("len", len(frame)).
		Bytes("start", frame).Msg("dropping invalid publish message")
}

// publish hands an item to the engine, waiting while the engine holds
// the inputs back: meanwhile the socket is not read, so libzmq's HWM holds
// the publishers back in turn (PUSH blocks; a PUB publisher drops at its
// HWM, as ZeroMQ pub-sub does). Only shutdown (ctx) drops the item.
func (d *dropper) publish(ctx context.Context, api engineAPI, it grip.Item) {
	err := api.PublishWait(ctx, []grip.Item{it})
	if err == nil {
		return
	}
	d.add(1)
	if errors.Is(err, ErrQueueFull) {
		d.full.Warn(time.Now()).Uint64("dropped", d.dropped.Load()).
			Msg("shutting down, item dropped")
		return
	}
	d.invalid.Warn(time.Now()).Err(err).Msg("engine refused item, dropped")
}

// parseItemFrame decodes a PULL message or a SUB payload frame ('J' + JSON,
// 'T' + tnetstring, or a bare tnetstring) into an item; a non-empty channel
// (the SUB channel frame) replaces the item's own. It never panics on
// arbitrary input (FuzzParseItemFrame).
func parseItemFrame(frame []byte, channel string) (grip.Item, error) {
	v, err := grip.DecodeItemFrame(frame)
	if err != nil {
		return grip.Item{}, err
	}
	it, err := grip.ParseItemForChannel(v, channel)
	if err != nil {
		var fe *grip.FormatError
		if errors.As(err, &fe) {
			return grip.Item{}, fmt.Errorf("invalid format: %s", fe.Msg)
		}
		return grip.Item{}, err
	}
	return it, nil
}

// pullInput is the PULL publish input on push_in_spec: one item per
// single-frame message, no reply (grip-reference §4.3).
type pullInput struct {
	sock *zsock.Socket
	api  engineAPI
	spec string
	drop *dropper
}

// newPullInput binds a PULL socket on cfg.PullSpec (a tcp port of 0 or "*"
// is replaced by a free one; Spec reports it).
func newPullInput(zctx *zsock.Context, cfg InputsConfig, api engineAPI, log zerolog.Logger) (*pullInput, error) {
	spec, err := resolveBindSpec(cfg.PullSpec)
	if err != nil {
		return nil, fmt.Errorf("in pull: %w", err)
	}
	log = log.With().Str("input", "pull").Logger()
	sock, err := zctx.Open(zsock.Options{
		Name: "publish-pull", Type: zmq.PULL, Direction: zsock.RecvOnly,
		Bind: []string{spec}, RcvHWM: pullRcvHWM, IPCFileMode: cfg.IPCFileMode,
	}, log)
	if err != nil {
		return nil, err
	}
	log.Info().Str("spec", spec).Msg("in pull bound")
	return &pullInput{sock: sock, api: api, spec: spec, drop: newDropper(log, nil)}, nil
}

// Spec is the spec the socket is bound to.
func (p *pullInput) Spec() string { return p.spec }

// Dropped counts messages dropped so far (invalid or refused by a full
// queue).
func (p *pullInput) Dropped() uint64 { return p.drop.dropped.Load() }

// Run reads until ctx is done; the socket is closed when it returns.
func (p *pullInput) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.sock.Run(ctx) })
	g.Go(func() error {
		// Recv is closed when the owner loop ends.
		for m := range p.sock.Recv() {
			p.handle(ctx, m)
		}
		return nil
	})
	return g.Wait()
}

func (p *pullInput) handle(ctx context.Context, m zsock.Message) {
	if len(m) != 1 {
		p.drop.bad(nil, fmt.Errorf("message has %d frames, want 1", len(m)))
		return
	}
	it, err := parseItemFrame(m[0], "")
	if err != nil {
		p.drop.bad(m[0], err)
		return
	}
	p.drop.publish(ctx, p.api, it)
}

// subInput is the SUB publish input on push_in_sub_specs: [channel, payload]
// messages, subscribed to exactly the channels that have listeners
// (grip-reference §4.4).
type subInput struct {
	sock    *zsock.Socket
	api     engineAPI
	chans   *channelSet
	spec    string // bound spec; "" when connecting
	log     zerolog.Logger
	drop    *dropper
	pending chan grip.Item // parsed items for the engine, in order (subQueueLen)
}

// newSubInput binds a SUB socket on the first of cfg.SubSpecs or, with
// cfg.SubConnect, connects it to each of them with TCP keep-alive. It
// subscribes to nothing until Run follows chans.
func newSubInput(zctx *zsock.Context, cfg InputsConfig, api engineAPI, chans *channelSet, st *statsCollector, log zerolog.Logger) (*subInput, error) {
	if len(cfg.SubSpecs) == 0 {
		return nil, errors.New("in sub: no spec")
	}
	log = log.With().Str("input", "sub").Logger()
	opts := zsock.Options{
		Name: "publish-sub", Type: zmq.SUB, Direction: zsock.RecvOnly, Control: true,
		SndHWM: subSndHWM, RcvHWM: subRcvHWM, IPCFileMode: cfg.IPCFileMode,
	}
	s := &subInput{api: api, chans: chans, log: log, drop: newDropper(log, st),
		pending: make(chan grip.Item, subQueueLen)}
	if cfg.SubConnect {
		opts.Connect = cfg.SubSpecs
		opts.TCPKeepAlive = true
	} else {
		spec, err := resolveBindSpec(cfg.SubSpecs[0])
		if err != nil {
			return nil, fmt.Errorf("in sub: %w", err)
		}
		opts.Bind = []string{spec}
		s.spec = spec
	}
	sock, err := zctx.Open(opts, log)
	if err != nil {
		return nil, err
	}
	s.sock = sock
	if cfg.SubConnect {
		log.Info().Strs("specs", cfg.SubSpecs).Msg("in sub connected")
	} else {
		log.Info().Str("spec", s.spec).Msg("in sub bound")
	}
	return s, nil
}

// Spec is the bound spec, or "" when the socket connects.
func (s *subInput) Spec() string { return s.spec }

// Dropped counts messages dropped so far (invalid, not subscribed, or
// refused by a full queue).
func (s *subInput) Dropped() uint64 { return s.drop.dropped.Load() }

// Run follows the channel set and reads until ctx is done; the socket is
// closed when it returns. Reading never waits for the engine: items queue
// in pending, which one goroutine hands to the engine in order.
func (s *subInput) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.sock.Run(ctx) })
	g.Go(func() error {
		s.loop(ctx)
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case it := <-s.pending:
				s.drop.publish(ctx, s.api, it)
			}
		}
	})
	return g.Wait()
}

// loop owns topics, the topics asked of the socket.
func (s *subInput) loop(ctx context.Context) {
	topics := map[string]struct{}{}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	resync := func() {
		if !s.sync(topics) {
			retry.Reset(subResyncDelay)
		}
	}
	resync()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.chans.Changed():
			resync()
		case <-retry.C:
			resync()
		case m, ok := <-s.sock.Recv():
			if !ok {
				return
			}
			s.handle(ctx, m, topics)
		}
	}
}

// sync subscribes and unsubscribes so that topics equals the channel set;
// false means the control queue was full and some changes wait for a retry.
// The empty channel is never a topic: it would subscribe to everything.
func (s *subInput) sync(topics map[string]struct{}) bool {
	want := s.chans.Snapshot()
	done := true
	for t := range topics {
		if _, ok := want[t]; !ok {
			if !s.sock.Unsubscribe(t) {
				done = false
				continue
			}
			delete(topics, t)
			if e := s.log.Debug(); e.Enabled() {
				e.Str("channel", t).Msg("unsubscribed")
			}
		}
	}
	for t := range want {
		if _, ok := topics[t]; ok || t == "" {
			continue
		}
		if !s.sock.Subscribe(t) {
			done = false
			continue
		}
		topics[t] = struct{}{}
		if e := s.log.Debug(); e.Enabled() {
			e.Str("channel", t).Msg("subscribed")
		}
	}
	return done
}

func (s *subInput) handle(ctx context.Context, m zsock.Message, topics map[string]struct{}) {
	if len(m) != 2 {
		s.drop.bad(nil, fmt.Errorf("message has %d frames, want 2", len(m)))
		return
	}
	channel := string(m[0])
	// ZeroMQ matches topics by prefix: a "foo" subscription lets "foobar"
	// in. Only exact channels go on (Pushpin passes the others to the
	// engine, which has nobody to deliver them to).
	if _, ok := topics[channel]; !ok {
		s.drop.dropped.Add(1)
		if e := s.log.Debug(); e.Enabled() {
			e.Str("channel", channel).Msg("dropping message for a channel not subscribed")
		}
		return
	}
	it, err := parseItemFrame(m[1], channel)
	if err != nil {
		s.drop.bad(m[1], err)
		return
	}
	select {
	case s.pending <- it:
	default:
		s.drop.add(1)
		s.drop.full.Warn(time.Now()).Str("channel", channel).Uint64("dropped", s.drop.dropped.Load()).
			Int("queued", subQueueLen).Msg("publishers outrun the clients: SUB item dropped")
	}
}
