package zhttpclient

import "errors"

// Sentinel errors. The worker maps them to zhttp error conditions
// (zmq-wire.md §2.13) in classify.
var (
	// ErrConfig wraps every configuration error.
	ErrConfig = errors.New("config")
	// ErrPolicy reports a destination refused by the allow/deny rules (§5.3).
	ErrPolicy = errors.New("destination denied by policy")
	// ErrTooManyRedirects reports more than MaxRedirects redirects.
	ErrTooManyRedirects = errors.New("too many redirects")
	// ErrBodyNotAllowed reports a body sent with a HEAD request.
	ErrBodyNotAllowed = errors.New("request body not allowed")
	// ErrSessionTimeout is the cancel cause when the request timeout or the
	// activity timeout expires.
	ErrSessionTimeout = errors.New("session timeout")
	// ErrCanceled is the cancel cause when the engine ends a session (client
	// cancel, bad seq, expiry, shutdown).
	ErrCanceled = errors.New("session canceled")
)
