package handler

import (
	"container/heap"
	"time"
)

// timerKind names one of a session's deadlines.
type timerKind uint8

const (
	timerZhttpKeepAlive timerKind = iota // idle towards connmgr: send a zhttp keep-alive
	timerExpire                          // nothing from connmgr for Timers.ZhttpExpire: drop
	timerHold                            // response hold: Grip-Timeout elapsed
	timerGripKeepAlive                   // stream hold: write Grip-Keep-Alive data
	timerNextLink                        // next-link window end or fetch retry
	numTimerKinds
)

// sessionTimers is the per-session part of the deadline heap. A session has
// at most one heap entry per kind that is current (at == armedAt); moving a
// deadline later only changes due, and the entry re-arms itself when it
// pops early, so frequent restarts (idle keep-alives) cost no heap work.
// Deadlines are Unix nanoseconds (0 = disabled): a third of time.Time's
// size, in every held session.
type sessionTimers struct {
	due     [numTimerKinds]int64
	armedAt [numTimerKinds]int64
	armed   [numTimerKinds]bool
}

type timerEntry struct {
	at   int64
	s    *hsession
	kind timerKind
}

// timerHeap is a min-heap of deadlines, earliest first.
type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = timerEntry{}
	*h = old[:len(old)-1]
	return e
}

// arm sets the deadline of kind k of s to at.
func (h *timerHeap) arm(s *hsession, k timerKind, at time.Time) { h.armNS(s, k, at.UnixNano()) }

func (h *timerHeap) armNS(s *hsession, k timerKind, at int64) {
	t := &s.timers
	t.due[k] = at
	if t.armed[k] && t.armedAt[k] <= at {
		return // the pending entry pops no later and re-arms
	}
	t.armed[k] = true
	t.armedAt[k] = at
	heap.Push(h, timerEntry{at: at, s: s, kind: k})
}

// disarm disables kind k of s; its heap entry is discarded when it pops.
func (h *timerHeap) disarm(s *hsession, k timerKind) {
	s.timers.due[k] = 0
}

// next returns the earliest entry's time.
func (h timerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, h[0].at), true
}

// popDue removes and returns the next entry that is current and due at
// now; ok is false when none is left.
func (h *timerHeap) popDue(now time.Time) (s *hsession, k timerKind, ok bool) {
	ns := now.UnixNano()
	for len(*h) > 0 && (*h)[0].at <= ns {
		e := heap.Pop(h).(timerEntry)
		t := &e.s.timers
		if !t.armed[e.kind] || t.armedAt[e.kind] != e.at {
			continue // superseded by an earlier entry
		}
		t.armed[e.kind] = false
		if e.s.state == stateDone {
			continue
		}
		due := t.due[e.kind]
		if due == 0 {
			continue
		}
		if due > ns {
			h.armNS(e.s, e.kind, due)
			continue
		}
		t.due[e.kind] = 0
		return e.s, e.kind, true
	}
	return nil, 0, false
}
