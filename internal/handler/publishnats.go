package handler

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// NATS publish input bounds.
const (
	// DefaultNATSSubjectPrefix is push_in_nats_subject_prefix's default:
	// channel "news" is subject "tack.news".
	DefaultNATSSubjectPrefix = "tack."
	// natsQueueLen bounds the messages received and not yet handed to the
	// engine, over all subscriptions. Beyond it nats.go drops (slow
	// consumer); the input counts and logs those drops.
	natsQueueLen = 1024
	// natsReconnectWait is the pause between two reconnection attempts.
	natsReconnectWait = time.Second
	// natsDropPoll is how often the input collects the subscriptions' drop
	// counts.
	natsDropPoll = time.Second
)

// validateNATSURL checks push_in_nats_url: a comma-separated list of
// nats://, tls://, ws:// or wss:// server URLs (nats.Connect's syntax).
func validateNATSURL(s string) error {
	for u := range strings.SplitSeq(s, ",") {
		u = strings.TrimSpace(u)
		p, err := url.Parse(u)
		if err != nil {
			return fmt.Errorf("%q: %w", u, err)
		}
		switch p.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%q: scheme must be nats, tls, ws or wss", p.Redacted())
		}
		if p.Host == "" {
			return fmt.Errorf("%q: no host", p.Redacted())
		}
	}
	return nil
}

// redactNATSURL hides the passwords of a push_in_nats_url list for logs.
func redactNATSURL(s string) string {
	var out []string
	for u := range strings.SplitSeq(s, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil {
			u = p.Redacted()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

// validSubject reports whether s is a literal NATS subject: non-empty
// dot-separated tokens, no wildcard token, no white space.
func validSubject(s string) bool {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// validateNATSPrefix checks push_in_nats_subject_prefix: it must make a
// literal subject with any valid channel name after it.
func validateNATSPrefix(p string) error {
	if p == "" {
		return nil
	}
	if !validSubject(strings.TrimSuffix(p, ".") + ".x") {
		return fmt.Errorf("%q is not a NATS subject prefix (dot-separated tokens, no wildcard, no white space)", p)
	}
	return nil
}

// natsInput is the NATS publish input (push_in_nats_url): it subscribes to
// prefix+channel for exactly the channels that have listeners, as the SUB
// input does with ZeroMQ topics, and reads each message as one item for
// that channel. The payload is a SUB payload frame ('J' + JSON,
// 'T' + tnetstring, a bare tnetstring) or a publish-API JSON item
// ({"formats": ...}); the subject's channel replaces the item's own.
type natsInput struct {
	nc     *nats.Conn
	api    engineAPI
	chans  *channelSet
	watch  <-chan struct{}
	prefix string
	log    zerolog.Logger
	drop   *dropper
	msgs   chan *nats.Msg
	slow   *rateLog // slow-consumer warnings
}

// newNATSInput connects to cfg.NATSURL. A server that is not up yet is
// retried in the background (subscriptions are sent once connected), so a
// handler starts without its bus; disconnections, reconnections (with
// every subscription restored by nats.go) and slow-consumer drops are
// logged.
func newNATSInput(cfg InputsConfig, api engineAPI, chans *channelSet, st *statsCollector, log zerolog.Logger) (*natsInput, error) {
	log = log.With().Str("input", "nats").Logger()
	in := &natsInput{
		api: api, chans: chans, watch: chans.Watch(), prefix: cfg.NATSSubjectPrefix, log: log,
		drop: newDropper(log, st), msgs: make(chan *nats.Msg, natsQueueLen),
		slow: newRateLog(log, rateLogInterval),
	}
	nc, err := nats.Connect(cfg.NATSURL,
		nats.Name("tack-handler"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.NoCallbacksAfterClientClose(),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.Info().Str("server", c.ConnectedUrlRedacted()).Msg("nats connected")
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn().Err(err).Msg("nats disconnected, reconnecting")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("server", c.ConnectedUrlRedacted()).Int("subscriptions", c.NumSubscriptions()).
				Msg("nats reconnected, subscriptions restored")
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Debug().Msg("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) {
				// Counted by the drop poll; a warning per interval here.
				in.slow.Warn(time.Now()).Str("subject", sub.Subject).
					Msg("publisher faster than clients read, nats messages dropped")
				return
			}
			log.Warn().Err(err).Msg("nats error")
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("in nats: connect %s: %w", redactNATSURL(cfg.NATSURL), err)
	}
	in.nc = nc
	log.Info().Str("url", redactNATSURL(cfg.NATSURL)).Str("prefix", in.prefix).Msg("in nats started")
	return in, nil
}

// Dropped counts messages dropped so far (invalid, or not taken by a full
// queue) as far as the drop poll has collected them.
func (in *natsInput) Dropped() uint64 { return in.drop.dropped.Load() }

// Run follows the channel set and hands messages to the engine until ctx
// is done; the connection is closed when it returns.
func (in *natsInput) Run(ctx context.Context) error {
	defer in.nc.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		in.loop(ctx)
		return nil
	})
	g.Go(func() error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case m := <-in.msgs:
				in.handle(ctx, m)
			}
		}
	})
	return g.Wait()
}

// natsSub is one channel's subscription and the drops already counted.
type natsSub struct {
	sub     *nats.Subscription
	counted int
}

// loop owns subs, the subscriptions made for the channel set.
func (in *natsInput) loop(ctx context.Context) {
	subs := map[string]*natsSub{}
	bad := map[string]struct{}{} // channels with no valid subject, warned once
	poll := time.NewTicker(natsDropPoll)
	defer poll.Stop()
	in.sync(subs, bad)
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.watch:
			in.sync(subs, bad)
		case <-poll.C:
			for _, s := range subs {
				in.collectDrops(s)
			}
		}
	}
}

// sync subscribes and unsubscribes so that subs covers the channel set.
func (in *natsInput) sync(subs map[string]*natsSub, bad map[string]struct{}) {
	want := in.chans.Snapshot()
	for ch, s := range subs {
		if _, ok := want[ch]; ok {
			continue
		}
		in.collectDrops(s)
		if err := s.sub.Unsubscribe(); err != nil {
			in.log.Warn().Err(err).Str("channel", ch).Msg("nats unsubscribe failed")
		}
		delete(subs, ch)
		if e := in.log.Debug(); e.Enabled() {
			e.Str("channel", ch).Msg("unsubscribed")
		}
	}
	for ch := range bad {
		if _, ok := want[ch]; !ok {
			delete(bad, ch)
		}
	}
	for ch := range want {
		if _, ok := subs[ch]; ok || ch == "" {
			continue
		}
		if _, ok := bad[ch]; ok {
			continue
		}
		subj := in.prefix + ch
		if !validSubject(subj) {
			bad[ch] = struct{}{}
			in.log.Warn().Str("channel", ch).Str("subject", subj).
				Msg("channel is not a NATS subject, not subscribed on nats")
			continue
		}
		sub, err := in.nc.ChanSubscribe(subj, in.msgs)
		if err != nil {
			// Only a closed connection fails here (shutdown).
			in.log.Warn().Err(err).Str("channel", ch).Msg("nats subscribe failed")
			continue
		}
		subs[ch] = &natsSub{sub: sub}
		if e := in.log.Debug(); e.Enabled() {
			e.Str("channel", ch).Str("subject", subj).Msg("subscribed")
		}
	}
}

// collectDrops adds what nats.go dropped for s since the last call to the
// input's and Prometheus' counts.
func (in *natsInput) collectDrops(s *natsSub) {
	n, err := s.sub.Dropped()
	if err != nil || n <= s.counted {
		return
	}
	d := uint64(n - s.counted)
	s.counted = n
	in.drop.add(d)
	in.drop.full.Warn(time.Now()).Str("subject", s.sub.Subject).Uint64("dropped", d).
		Uint64("dropped_total", in.drop.dropped.Load()).Msg("nats input queue full, messages dropped")
}

func (in *natsInput) handle(ctx context.Context, m *nats.Msg) {
	channel, ok := strings.CutPrefix(m.Subject, in.prefix)
	if !ok || channel == "" {
		in.drop.bad(m.Data, fmt.Errorf("subject %q outside prefix %q", m.Subject, in.prefix))
		return
	}
	frame := m.Data
	if t := strings.TrimLeft(string(frame[:min(len(frame), 64)]), " \t\r\n"); strings.HasPrefix(t, "{") {
		// A publish-API JSON item; a tnetstring never starts with '{'.
		frame = append([]byte{'J'}, frame...)
	}
	it, err := parseItemFrame(frame, channel)
	if err != nil {
		in.drop.bad(m.Data, fmt.Errorf("channel %q: %w", channel, err))
		return
	}
	in.drop.publish(ctx, in.api, it)
}
