package handler

import (
	"time"

	"tack/internal/grip"
)

// Publish rate limiting (grip-reference §4.1, [handler] message_rate,
// message_hwm, message_block_size; Pushpin src/handler/ratelimiter.cpp).
//
// With message_rate set, every delivery of an item to one session is an
// action queued in the bucket of the session's stats route. Batches run
// every 25 ms (or every 1000/rate ms below 40/s), each taking about
// rate × interval actions round-robin across the buckets, so one busy route
// cannot starve the others. An action weighs the item's size in
// message_block_size blocks (1 without a block size); a bucket that would
// go over message_hwm drops the delivery, and a heavy action puts its
// bucket in debt for the following batches. Without message_rate nothing
// queues: deliveries happen as items arrive.

const minBatchInterval = 25 * time.Millisecond

// DefaultMessageHWM bounds each route's queue when message_hwm is unset
// (Pushpin leaves it unbounded; a queue here always has a bound).
const DefaultMessageHWM = 200000

// delivery is one queued item for one session; rd or sd is the item's
// prepared format, shared by the sessions it goes to.
type delivery struct {
	s      *hsession
	ws     *wsSession // a ws-message delivery (s, rd and sd nil)
	it     *grip.Item
	rd     *responseDelivery
	sd     *streamDelivery
	weight int
}

// live reports whether the delivery's session can still take it.
func (d *delivery) live() bool {
	if d.ws != nil {
		return !d.ws.removed
	}
	return d.s.state != stateDone
}

type bucket struct {
	key    string
	queue  []delivery
	weight int // sum of the queued weights
	debt   int
}

// rateLimiter queues deliveries per route and releases them at a rate.
// Only the engine goroutine uses it.
type rateLimiter struct {
	interval time.Duration
	batch    int
	hwm      int
	buckets  map[string]*bucket
	order    []*bucket // round-robin order; removed buckets are compacted out
	next     int       // index in order where the next batch starts
	due      time.Time // zero: idle
}

// newRateLimiter returns nil for rate ≤ 0 (unlimited).
func newRateLimiter(rate, hwm int) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	if hwm <= 0 {
		hwm = DefaultMessageHWM
	}
	l := &rateLimiter{hwm: hwm, buckets: map[string]*bucket{}}
	if time.Duration(rate)*minBatchInterval >= time.Second {
		l.interval = minBatchInterval
		l.batch = (rate*int(minBatchInterval/time.Millisecond) + 999) / 1000
	} else {
		l.interval = time.Second / time.Duration(rate)
		l.batch = 1
	}
	return l
}

// add queues d under key; false when the bucket is at its hwm.
func (l *rateLimiter) add(key string, d delivery, now time.Time) bool {
	b := l.buckets[key]
	if b == nil {
		b = &bucket{key: key}
		l.buckets[key] = b
		l.order = append(l.order, b)
	}
	if b.weight+d.weight > l.hwm {
		return false
	}
	b.queue = append(b.queue, d)
	b.weight += d.weight
	if l.due.IsZero() {
		l.due = now // the first batch runs at once
	}
	return true
}

// pending reports when the next batch is due; ok is false when idle or
// when l is nil (no limit).
func (l *rateLimiter) pending() (time.Time, bool) {
	if l == nil {
		return time.Time{}, false
	}
	return l.due, !l.due.IsZero()
}

// runBatch takes the next batch of deliveries, round-robin over the
// buckets, and schedules the one after.
func (l *rateLimiter) runBatch(now time.Time, deliver func(delivery)) {
	processed := 0
	for processed < l.batch && len(l.order) > 0 {
		if l.next >= len(l.order) {
			l.next = 0
		}
		b := l.order[l.next]
		if b.debt > 0 {
			b.debt--
			processed++
		} else {
			d := b.queue[0]
			b.queue[0] = delivery{}
			b.queue = b.queue[1:]
			b.weight -= d.weight
			if d.live() {
				deliver(d)
				processed += d.weight
				if processed > l.batch {
					b.debt += processed - l.batch
				}
			}
		}
		if len(b.queue) == 0 && b.debt <= 0 {
			delete(l.buckets, b.key)
			l.order = append(l.order[:l.next], l.order[l.next+1:]...)
			continue // next now points at the following bucket
		}
		l.next++
	}
	if len(l.order) == 0 {
		l.due = time.Time{}
		l.next = 0
		return
	}
	l.due = now.Add(l.interval)
}

// blocks is an item's weight: its size in message_block_size blocks, or
// 1 without a block size.
func blocks(size, blockSize int) int {
	if blockSize <= 0 {
		return 1
	}
	return max((size+blockSize-1)/blockSize, 1)
}
