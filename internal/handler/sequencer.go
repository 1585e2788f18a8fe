package handler

import (
	"time"

	"tack/internal/grip"
)

// Sequencer bounds (Pushpin src/handler/sequencer.cpp).
const (
	// ChannelParkedMax is how many out-of-order items a channel parks
	// (CHANNEL_PENDING_MAX, 100); more are dropped.
	ChannelParkedMax = 100
	// IDCacheMax bounds the duplicate-id cache (ours; Pushpin has none).
	// When full, the oldest entries are forgotten early.
	IDCacheMax = 1000000
)

// parkedItem is an item waiting for its predecessor (grip-reference §5).
type parkedItem struct {
	at   time.Time
	item *grip.Item
}

type idCacheEntry struct {
	expire time.Time
	key    string
}

// sequencer holds the id cache and the parked items. Last ids live in
// the channel table. Only the engine goroutine uses it.
type sequencer struct {
	ttl     time.Duration
	wait    time.Duration
	ids     map[string]struct{} // channel + "\x00" + id
	idOrder []idCacheEntry      // insertion order = expiry order (one TTL)
	parked  map[string]map[string]*parkedItem
	nParked int
}

func newSequencer(ttl, wait time.Duration) sequencer {
	return sequencer{ttl: ttl, wait: wait, ids: map[string]struct{}{}, parked: map[string]map[string]*parkedItem{}}
}

// seen applies the id cache: it reports whether (channel, id) was seen
// within the TTL, and remembers it otherwise.
func (q *sequencer) seen(it *grip.Item, now time.Time) bool {
	q.expireIDs(now)
	if it.ID == "" || q.ttl <= 0 {
		return false
	}
	key := it.Channel + "\x00" + it.ID
	if _, ok := q.ids[key]; ok {
		return true
	}
	if len(q.idOrder) >= IDCacheMax {
		delete(q.ids, q.idOrder[0].key)
		q.idOrder = q.idOrder[1:]
	}
	q.ids[key] = struct{}{}
	q.idOrder = append(q.idOrder, idCacheEntry{expire: now.Add(q.ttl), key: key})
	return false
}

func (q *sequencer) expireIDs(now time.Time) {
	n := 0
	for n < len(q.idOrder) && !q.idOrder[n].expire.After(now) {
		delete(q.ids, q.idOrder[n].key)
		n++
	}
	if n > 0 {
		clear(q.idOrder[:n])
		q.idOrder = q.idOrder[n:]
	}
}

// park keeps it until its predecessor arrives; false means it was dropped
// (another item waits on the same prev-id, or the channel is full).
func (q *sequencer) park(it *grip.Item, now time.Time) bool {
	m := q.parked[it.Channel]
	if m == nil {
		m = map[string]*parkedItem{}
		q.parked[it.Channel] = m
	}
	if _, dup := m[it.PrevID]; dup || len(m) >= ChannelParkedMax {
		return false
	}
	m[it.PrevID] = &parkedItem{at: now, item: it}
	q.nParked++
	return true
}

// release returns the item parked on channel waiting for prevID.
func (q *sequencer) release(channel, prevID string) *grip.Item {
	m := q.parked[channel]
	if m == nil {
		return nil
	}
	p := m[prevID]
	if p == nil {
		return nil
	}
	delete(m, prevID)
	q.nParked--
	if len(m) == 0 {
		delete(q.parked, channel)
	}
	return p.item
}

// expire returns the parked items older than the wait, oldest first.
func (q *sequencer) expire(now time.Time) []*grip.Item {
	if q.nParked == 0 {
		return nil
	}
	var out []*parkedItem
	for ch, m := range q.parked {
		for prev, p := range m {
			if now.Sub(p.at) >= q.wait {
				out = append(out, p)
				delete(m, prev)
				q.nParked--
			}
		}
		if len(m) == 0 {
			delete(q.parked, ch)
		}
	}
	// Oldest first, as Pushpin's time-ordered map releases them.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].at.Before(out[j-1].at); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	items := make([]*grip.Item, len(out))
	for i, p := range out {
		items[i] = p.item
	}
	return items
}

// clearChannel drops a channel's parked items (its last subscriber left).
func (q *sequencer) clearChannel(channel string) {
	if m := q.parked[channel]; m != nil {
		q.nParked -= len(m)
		delete(q.parked, channel)
	}
}
