package zhttpclient

import (
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

// wsWriteFunc writes items to the backend and returns the credit they earn
// and whether a close frame was written; on an error the connection is
// unusable.
type wsWriteFunc func(items []wsItem) (credit int64, closed bool, err error)

// wsQueue carries the client's frames from the engine to the backend
// connection. The engine pushes without ever blocking; a writer goroutine
// runs only while there is something to write (an idle websocket holds
// none): push starts one once the connection is attached, and it exits
// when it has emptied the queue. Bytes written are counted so that the
// engine can grant the client the same number of credits back
// (zmq-wire.md §2.7, as for HTTP bodies). mu guards every field below it.
type wsQueue struct {
	onConsumed func() // called without mu held when consumed becomes non-zero

	mu       sync.Mutex
	items    []wsItem
	queued   int   // payload bytes queued
	closed   bool  // a close frame was queued: nothing is queued after it
	consumed int64 // credit earned since takeConsumed
	pending  bool  // onConsumed was called and takeConsumed not yet
	write    wsWriteFunc
	writing  bool // a writer goroutine runs
	stopped  bool // detached, or the writer finished for good
	writers  sync.WaitGroup
	// The channels are made only once waited on (most sessions never end
	// in a wait), so that an idle session holds none.
	done      chan struct{} // closed once stopped
	proxyEnd  chan struct{} // closed once clientEnd
	clientEnd bool          // the client's close was queued
}

func newWSQueue(onConsumed func()) *wsQueue {
	return &wsQueue{onConsumed: onConsumed}
}

// push queues it and returns the payload bytes now queued. Items after a
// close frame are dropped (RFC 6455 §5.5.1: nothing follows a close).
func (q *wsQueue) push(it wsItem) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return q.queued
	}
	q.items = append(q.items, it)
	q.queued += len(it.payload)
	if it.op == ws.OpClose {
		q.closed = true
	}
	q.startWriter()
	return q.queued
}

// attach starts writing with write: what was queued before goes first.
func (q *wsQueue) attach(write wsWriteFunc) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.write = write
	q.startWriter()
}

// startWriter starts a writer goroutine when items wait and none runs.
// Called with mu held.
func (q *wsQueue) startWriter() {
	if q.write == nil || q.writing || q.stopped || len(q.items) == 0 {
		return
	}
	q.writing = true
	q.writers.Add(1)
	go q.drain()
}

// drain writes batches until the queue is empty, a close frame is written
// or writing fails.
func (q *wsQueue) drain() {
	defer q.writers.Done()
	for {
		q.mu.Lock()
		if q.stopped || len(q.items) == 0 {
			q.writing = false
			q.mu.Unlock()
			return
		}
		items, write := q.items, q.write
		q.items, q.queued = nil, 0
		q.mu.Unlock()
		credit, closed, err := write(items)
		if err == nil {
			q.written(credit)
		}
		if err != nil || closed {
			q.mu.Lock()
			q.finish()
			q.writing = false
			q.mu.Unlock()
			return
		}
	}
}

// finish stops writing for good and closes done. Called with mu held.
func (q *wsQueue) finish() {
	if !q.stopped {
		q.stopped = true
		if q.done != nil {
			close(q.done)
		}
	}
}

// writerDone is closed once the close frame was written or writing failed
// (or the queue was detached).
func (q *wsQueue) writerDone() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return lazyDone(&q.done, q.stopped)
}

// clientGone is closed once the client sent its close.
func (q *wsQueue) clientGone() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return lazyDone(&q.proxyEnd, q.clientEnd)
}

// lazyDone returns *ch, made on first use, closed if already done.
func lazyDone(ch *chan struct{}, done bool) chan struct{} {
	if *ch == nil {
		*ch = make(chan struct{})
		if done {
			close(*ch)
		}
	}
	return *ch
}

// detach stops writing and waits for a running writer to return; the
// caller closes the connection first so that a blocked write fails.
func (q *wsQueue) detach() {
	q.mu.Lock()
	q.finish()
	q.items, q.queued = nil, 0
	q.mu.Unlock()
	q.writers.Wait()
}

// clientClosed records that the client sent its close; idempotent.
func (q *wsQueue) clientClosed() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.clientEnd {
		q.clientEnd = true
		if q.proxyEnd != nil {
			close(q.proxyEnd)
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
