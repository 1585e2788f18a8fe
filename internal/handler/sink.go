package handler

import (
	"context"
	"errors"
	"sync"

	"tack/internal/grip"
)

// ErrQueueFull is returned by engineAPI.Publish when the engine's bounded
// input queue is full; inputs answer it as their protocol allows (HTTP 503,
// ZRPC failure, or drop-and-count for PULL/SUB).
var ErrQueueFull = errors.New("publish queue full")

// engineAPI is what the publish inputs (HTTP :5561, PULL, SUB, command
// socket) need from the engine. Implementations never block the caller and
// are safe to call from any goroutine.
type engineAPI interface {
	// Publish queues items for delivery, in order.
	Publish(items []grip.Item) error
	// PublishWait queues items for delivery, in order, waiting while the
	// engine holds the inputs back (backpressure) until ctx ends
	// (ErrQueueFull).
	PublishWait(ctx context.Context, items []grip.Item) error
	// Recover makes held sessions re-request their backends (recover command,
	// POST /recover).
	Recover() error
	// Refresh asks WebSocket connections, by connection id or by channel, to
	// refresh (refresh command).
	Refresh(cid, channel string) error
	// ConnCheck returns which of ids are live connections (conncheck command).
	ConnCheck(ids []string) []string
}

// channelSet is the set of channels that currently have listeners. The
// engine adds and removes channels; the SUB input reads it to subscribe its
// socket to exactly those channels (so that an XPUB publisher sees
// \x01channel / \x00channel), and the NATS input to subscribe to their
// subjects. mu guards set and watchers; changed (the SUB input's) and each
// Watch channel have capacity one and signal that set differs from what
// their reader last saw.
type channelSet struct {
	mu       sync.Mutex
	set      map[string]struct{}
	changed  chan struct{}
	watchers []chan struct{}
}

func newChannelSet() *channelSet {
	return &channelSet{set: map[string]struct{}{}, changed: make(chan struct{}, 1)}
}

// Add records that channel has at least one listener.
func (c *channelSet) Add(channel string) {
	c.mu.Lock()
	_, had := c.set[channel]
	c.set[channel] = struct{}{}
	c.mu.Unlock()
	if !had {
		c.signal()
	}
}

// Remove records that channel has no listener left.
func (c *channelSet) Remove(channel string) {
	c.mu.Lock()
	_, had := c.set[channel]
	delete(c.set, channel)
	c.mu.Unlock()
	if had {
		c.signal()
	}
}

func (c *channelSet) signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range append([]chan struct{}{c.changed}, c.watchers...) {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Watch returns a further channel signalled after the set changed, for a
// second reader beside Changed's (the NATS input).
func (c *channelSet) Watch() <-chan struct{} {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.watchers = append(c.watchers, ch)
	c.mu.Unlock()
	return ch
}

// Snapshot returns a copy of the current set.
func (c *channelSet) Snapshot() map[string]struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]struct{}, len(c.set))
	for k := range c.set {
		out[k] = struct{}{}
	}
	return out
}

// Changed is signalled after the set changed.
func (c *channelSet) Changed() <-chan struct{} { return c.changed }
