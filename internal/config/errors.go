package config

import (
	"errors"
	"fmt"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrNotInteger reports a value that is not a decimal integer.
	ErrNotInteger = errors.New("not an integer")
	// ErrNotBool reports a value other than true, false, 1, 0 or empty.
	// Pushpin (QVariant::toBool) reads every such value as true; Bool
	// returns that value together with this error so the caller can
	// decide between warning and refusing.
	ErrNotBool = errors.New("not a boolean")
	// ErrTooLarge reports a config file above MaxFileSize.
	ErrTooLarge = errors.New("file too large")
)

// Error is a problem tied to a place in a config file.
type Error struct {
	File    string // path as given to Load (or the include path)
	Line    int    // 1-based; 0 when unknown
	Section string // may be empty
	Key     string // may be empty
	Err     error
}

func (e *Error) Error() string {
	where := e.File
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	switch {
	case e.Key != "":
		return fmt.Sprintf("%s: [%s] %s: %v", where, e.Section, e.Key, e.Err)
	default:
		return fmt.Sprintf("%s: %v", where, e.Err)
	}
}

func (e *Error) Unwrap() error { return e.Err }
