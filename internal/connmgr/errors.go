package connmgr

import "errors"

// Sentinel errors.
var (
	// ErrNotSupported marks a condure option tack does not implement yet; it
	// fails the start instead of being ignored.
	ErrNotSupported = errors.New("not supported yet")
	// errHeadTooLarge: the request head did not fit in --buffer-size bytes.
	errHeadTooLarge = errors.New("request head too large")
	// errTooManyHeaders: more than MaxRequestHeaders request headers.
	errTooManyHeaders = errors.New("too many headers")
)
