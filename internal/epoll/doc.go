// Package epoll is a minimal epoll instance for parking idle sockets
// without a goroutine each: a single goroutine waits (Wait) for the
// registered descriptors and dispatches their readiness; Stop wakes it
// for good through an eventfd. Linux only, like tack.
//
// It owns the epoll and eventfd descriptors; the callers own the watched
// sockets and what a readiness means (tack-connmgr's detached
// connections, internal/connmgr/parker.go; tack-zhttp-client's idle
// WebSockets, internal/zhttpclient/wsparker.go).
package epoll
