package zhttpclient

import (
	"context"
	"sync"

	"github.com/gobwas/ws"
)

// wsItem is one frame to write to the backend.
type wsItem struct {
	op      ws.OpCode
	fin     bool
	payload []byte
	credit  int64 // bytes to credit back to the client once written
}

// wsQueue carries the client's frames from the engine to the worker's
// writer goroutine. The engine pushes without ever blocking; the writer
// takes. Bytes written are counted so that the engine can grant the client
// the same number of credits back (zmq-wire.md §2.7, as for HTTP bodies).
// mu guards every field below it.
type wsQueue struct {
	onConsumed func() // called without mu held when consumed becomes non-zero

	mu       sync.Mutex
	items    []wsItem
	queued   int   // payload bytes queued
	closed   bool  // a close frame was queued: nothing is queued after it
	consumed int64 // credit earned since takeConsumed
	pending  bool  // onConsumed was called and takeConsumed not yet
	wake     chan struct{}
	proxyEnd chan struct{} // closed when the client's close was queued
}

func newWSQueue(onConsumed func()) *wsQueue {
	return &wsQueue{onConsumed: onConsumed, wake: make(chan struct{}, 1), proxyEnd: make(chan struct{})}
}

// push queues it and returns the payload bytes now queued. Items after a
// close frame are dropped (RFC 6455 §5.5.1: nothing follows a close).
func (q *wsQueue) push(it wsItem) int {
	q.mu.Lock()
	if q.closed {
		n := q.queued
		q.mu.Unlock()
		return n
	}
	q.items = append(q.items, it)
	q.queued += len(it.payload)
	if it.op == ws.OpClose {
		q.closed = true
	}
	n := q.queued
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return n
}

// clientClosed records that the client sent its close; idempotent.
func (q *wsQueue) clientClosed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-q.proxyEnd:
	default:
		close(q.proxyEnd)
	}
}

// take waits for queued items and returns them all.
func (q *wsQueue) take(ctx context.Context) ([]wsItem, error) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			items := q.items
			q.items = nil
			q.queued = 0
			q.mu.Unlock()
			return items, nil
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// written credits n bytes back to the client.
func (q *wsQueue) written(n int64) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	q.consumed += n
	notify := !q.pending
	q.pending = true
	q.mu.Unlock()
	if notify && q.onConsumed != nil {
		q.onConsumed()
	}
}

// takeConsumed returns and resets the credit earned since the last call.
func (q *wsQueue) takeConsumed() int64 {
	q.mu.Lock()
	n := q.consumed
	q.consumed = 0
	q.pending = false
	q.mu.Unlock()
	return n
}
