package logging

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Output is a process's log destination: stderr, or a file opened for
// appending that Reopen replaces by a fresh open of the same path, so
// that log rotation (rename, then SIGHUP) moves the following lines to
// the new file, as Pushpin's processes do on SIGHUP.
type Output struct {
	path string

	mu sync.Mutex // guards w and f; one Write is one log line
	w  io.Writer
	f  *os.File // nil when writing to stderr
}

// OpenOutput opens path for appending; an empty path means stderr.
func OpenOutput(path string) (*Output, error) {
	o := &Output{path: path, w: os.Stderr}
	if err := o.Reopen(); err != nil {
		return nil, err
	}
	return o, nil
}

// Path is the log file, or "" for stderr.
func (o *Output) Path() string { return o.path }

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(p)
}

// Reopen opens the path again and switches to it (no-op on stderr). On
// error the old file stays in use.
func (o *Output) Reopen() error {
	if o.path == "" {
		return nil
	}
	f, err := os.OpenFile(o.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	o.mu.Lock()
	old := o.f
	o.f, o.w = f, f
	o.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file; later lines are discarded.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f, o.w = nil, io.Discard
	return err
}
