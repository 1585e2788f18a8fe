package zsock

import (
	"bytes"
	"context"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// AwaitSubscriber sockets (Options.AwaitSubscriber): an XPUB that holds a
// message until a subscriber wants it. The owner goroutine reads the
// XPUB's subscription messages (one frame: 1 or 0, then the topic; libzmq
// passes the first subscription of a topic and, when the last subscriber
// of it disconnects, its unsubscription), and a message whose first frame
// no subscribed topic prefixes waits in s.waiting. Subscriptions are read
// when a message finds no subscriber, and on a timer: every awaitTick
// while messages wait, every PollInterval otherwise; a message to a
// subscribed topic costs nothing more than on a PUB.

// awaitTick is how often subscriptions are read while messages wait.
const awaitTick = 5 * time.Millisecond

// awaitTicker is the timer of an AwaitSubscriber owner (runSend).
type awaitTicker struct {
	t      *time.Ticker
	period time.Duration
}

func newAwaitTicker() *awaitTicker {
	return &awaitTicker{t: time.NewTicker(PollInterval), period: PollInterval}
}

// adjust sets the period for the current number of waiting messages.
func (a *awaitTicker) adjust(waiting int) {
	want := PollInterval
	if waiting > 0 {
		want = awaitTick
	}
	if want != a.period {
		a.period = want
		a.t.Reset(want)
	}
}

// onTick reads subscriptions and expires what waited too long.
func (s *Socket) onTick(ctx context.Context, now time.Time) {
	s.readSubscriptions(ctx)
	s.expireWaiting(now)
}

// topicKey is what orders held messages: the first frame up to and
// including its first space (a zhttp PUB frame's "<address> " topic), or
// the whole frame.
func topicKey(m Message) string {
	if len(m) == 0 {
		return ""
	}
	if i := bytes.IndexByte(m[0], ' '); i >= 0 {
		return string(m[0][:i+1])
	}
	return string(m[0])
}

// subscribed says whether some subscriber's topic prefixes m's first frame.
func (s *Socket) subscribed(m Message) bool {
	var first []byte
	if len(m) > 0 {
		first = m[0]
	}
	for t := range s.topics {
		// The conversion in a comparison does not allocate.
		if len(first) >= len(t) && string(first[:len(t)]) == t {
			return true
		}
	}
	return false
}

// hold keeps m for later when no subscriber wants it yet, or when older
// messages of its topic still wait (order); it reports whether it did.
func (s *Socket) hold(ctx context.Context, m Message) bool {
	if len(s.waiting) == 0 && s.subscribed(m) {
		return false // the common case, without building the key
	}
	key := topicKey(m)
	if s.waitingKeys[key] == 0 {
		if s.subscribed(m) {
			return false
		}
		// A subscription may have arrived since the last read.
		s.readSubscriptions(ctx)
		if s.waitingKeys[key] == 0 && s.subscribed(m) {
			return false
		}
	}
	if len(s.waiting) >= s.opts.QueueLen {
		s.dropWaiting(1)
		s.fullDrops++
	}
	if len(s.waiting) == 0 && len(s.topics) > 0 {
		if ev := s.log.Debug(); ev.Enabled() {
			ev.Str("topic", key).Msg("holding messages until their subscriber is connected")
		}
	}
	s.waiting = append(s.waiting, waitingMsg{m: m, key: key, at: time.Now()})
	s.waitingKeys[key]++
	return true
}

// readSubscriptions applies the subscription messages the XPUB has, then
// sends what they release.
func (s *Socket) readSubscriptions(ctx context.Context) {
	changed := false
	for range batch {
		parts, err := s.sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if !isAgain(err) && !isInterrupted(err) {
				s.log.Warn().Err(err).Msg("receive subscription")
			}
			break
		}
		if len(parts) == 0 || len(parts[0]) == 0 {
			continue
		}
		topic := string(parts[0][1:])
		switch parts[0][0] {
		case 1:
			s.topics[topic] = struct{}{}
		case 0:
			delete(s.topics, topic)
		default:
			continue
		}
		changed = true
		if ev := s.log.Debug(); ev.Enabled() {
			ev.Str("topic", topic).Bool("subscribe", parts[0][0] == 1).Msg("subscription")
		}
	}
	if changed {
		s.releaseWaiting(ctx)
	}
}

// releaseWaiting sends, oldest first, the held messages a subscriber now
// wants; a topic whose oldest message must still wait keeps the rest.
func (s *Socket) releaseWaiting(ctx context.Context) {
	if len(s.waiting) == 0 {
		return
	}
	var blocked map[string]bool
	kept := s.waiting[:0]
	for _, w := range s.waiting {
		if !blocked[w.key] && s.subscribed(w.m) {
			s.forget(w.key)
			s.writeNow(ctx, w.m)
			continue
		}
		if blocked == nil {
			blocked = map[string]bool{}
		}
		blocked[w.key] = true
		kept = append(kept, w)
	}
	clear(s.waiting[len(kept):])
	s.waiting = kept
}

// dropWarnEvery bounds how often an AwaitSubscriber socket warns of drops.
const dropWarnEvery = time.Second

// expireWaiting drops the messages held longer than HoldTimeout; one
// warning a second at most reports them and those dropped for room.
func (s *Socket) expireWaiting(now time.Time) {
	n := 0
	for n < len(s.waiting) && now.Sub(s.waiting[n].at) >= s.opts.HoldTimeout {
		n++
	}
	s.dropWaiting(n)
	s.expired += n
	if (s.expired == 0 && s.fullDrops == 0) || now.Sub(s.dropWarnAt) < dropWarnEvery {
		return
	}
	s.log.Warn().Int("expired", s.expired).Int("overflowed", s.fullDrops).Dur("hold_timeout", s.opts.HoldTimeout).
		Int("waiting", len(s.waiting)).Msg("no subscriber took held messages, dropped")
	s.expired, s.fullDrops, s.dropWarnAt = 0, 0, now
}

// dropWaiting drops the n oldest held messages.
func (s *Socket) dropWaiting(n int) {
	for _, w := range s.waiting[:n] {
		s.forget(w.key)
		s.drop(w.m, fmt.Errorf("%w: %w", ErrDropped, ErrNoSubscriber))
	}
	clear(s.waiting[:n])
	s.waiting = s.waiting[n:]
}

func (s *Socket) forget(key string) {
	if s.waitingKeys[key]--; s.waitingKeys[key] <= 0 {
		delete(s.waitingKeys, key)
	}
}
