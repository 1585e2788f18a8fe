package grip

import "errors"

// FormatError reports malformed GRIP instructions or publish items. Its
// message is exactly the text Pushpin 1.36 produces for the same input, so
// callers can put it in a 502 debug body, a ZRPC bad-format value or an
// `Invalid format: <msg>` publish reply unchanged. The message may be empty:
// Pushpin gives no text for an unknown publish `action` (quirk 2) or a JSON
// instruct whose `response` is not an object.
type FormatError struct {
	Msg string
}

func (e *FormatError) Error() string { return e.Msg }

// formatErr builds a *FormatError.
func formatErr(msg string) error { return &FormatError{Msg: msg} }

// Errors returned by the signing helpers; match them with errors.Is.
var (
	// ErrNoKey means no key is configured (an empty key string). Pushpin
	// 1.36 would sign with an empty HMAC secret instead (quirk 13.1).
	ErrNoKey = errors.New("grip: no key configured")
	// ErrKey means a key string or key file could not be used.
	ErrKey = errors.New("grip: invalid key")
)
