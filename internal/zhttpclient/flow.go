package zhttpclient

import (
	"context"
	"io"
	"sync"
)

// window holds the response-body credits the client has granted and the
// worker has not used yet (zmq-wire.md §2.7). The engine adds, the worker
// takes; mu guards n and wake.
type window struct {
	mu sync.Mutex
	n  int64
	// wake (capacity 1: "n may have grown") is made by the first take that
	// has to wait: most sessions never wait, and an idle one holds none.
	wake chan struct{}
}

func newWindow(n int64) *window {
	return &window{n: n}
}

// add grants n more bytes; it never blocks (called by the engine).
func (w *window) add(n int64) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.n += n
	wake := w.wake
	w.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// available returns the current credit without taking it.
func (w *window) available() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// take waits until some credit is available and takes up to max bytes.
func (w *window) take(ctx context.Context, max int64) (int64, error) {
	for {
		w.mu.Lock()
		if w.n > 0 {
			n := min(w.n, max)
			w.n -= n
			w.mu.Unlock()
			return n, nil
		}
		if w.wake == nil {
			w.wake = make(chan struct{}, 1)
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// giveBack returns credit taken but not used.
func (w *window) giveBack(n int64) {
	if n > 0 {
		w.mu.Lock()
		w.n += n
		w.mu.Unlock()
	}
}

// bodyPipe is a streamed request body: the engine writes the client's body
// packets without ever blocking, net/http's write loop reads them. Each read
// is counted so that the engine can grant the client the same number of
// credits back (zurl grants what it has handed to the backend). mu guards
// every field below it.
type bodyPipe struct {
	onConsumed func() // called without mu held when consumed becomes non-zero
	onActivity func()

	mu       sync.Mutex
	bufs     [][]byte
	queued   int
	eof      bool  // the client sent its last body packet
	err      error // set by abort or Close; returned to readers
	consumed int64 // bytes read since takeConsumed
	pending  bool  // onConsumed was called and takeConsumed not yet
	total    int64 // bytes ever written
	wake     chan struct{}
}

func newBodyPipe(onConsumed, onActivity func()) *bodyPipe {
	return &bodyPipe{onConsumed: onConsumed, onActivity: onActivity, wake: make(chan struct{}, 1)}
}

func (p *bodyPipe) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// write queues b (kept, not copied: decoded packets own their buffers) and
// returns the bytes now queued. It never blocks.
func (p *bodyPipe) write(b []byte, last bool) int {
	p.mu.Lock()
	if len(b) > 0 && p.err == nil {
		p.bufs = append(p.bufs, b)
		p.queued += len(b)
		p.total += int64(len(b))
	}
	if last {
		p.eof = true
	}
	q := p.queued
	p.mu.Unlock()
	p.signal()
	return q
}

// abort makes pending and later reads fail with err.
func (p *bodyPipe) abort(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.bufs, p.queued = nil, 0
	p.mu.Unlock()
	p.signal()
}

// waitFirst blocks until the pipe holds data or the client ended the body,
// and reports whether any body exists.
func (p *bodyPipe) waitFirst(ctx context.Context) (bool, error) {
	for {
		p.mu.Lock()
		has, eof, err := p.queued > 0, p.eof, p.err
		p.mu.Unlock()
		if err != nil {
			return false, err
		}
		if has || eof {
			return has, nil
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

// Read implements io.Reader for net/http.
func (p *bodyPipe) Read(b []byte) (int, error) {
	for {
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return 0, err
		}
		if p.queued > 0 {
			n := 0
			for n < len(b) && len(p.bufs) > 0 {
				c := copy(b[n:], p.bufs[0])
				n += c
				if c == len(p.bufs[0]) {
					p.bufs[0] = nil
					p.bufs = p.bufs[1:]
				} else {
					p.bufs[0] = p.bufs[0][c:]
				}
			}
			p.queued -= n
			p.consumed += int64(n)
			notify := !p.pending
			p.pending = true
			p.mu.Unlock()
			if notify && p.onConsumed != nil {
				p.onConsumed()
			}
			if p.onActivity != nil {
				p.onActivity()
			}
			return n, nil
		}
		if p.eof {
			p.mu.Unlock()
			return 0, io.EOF
		}
		p.mu.Unlock()
		<-p.wake
	}
}

// Close implements io.Closer; net/http closes the body when it is done
// with it or gives up.
func (p *bodyPipe) Close() error {
	p.abort(errPipeClosed)
	return nil
}

// takeConsumed returns and resets the bytes read since the last call.
func (p *bodyPipe) takeConsumed() int64 {
	p.mu.Lock()
	n := p.consumed
	p.consumed = 0
	p.pending = false
	p.mu.Unlock()
	return n
}

var errPipeClosed = io.ErrClosedPipe
