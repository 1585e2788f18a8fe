// Package logging builds the zerolog logger every tack process uses, from
// Pushpin's logging flags (--loglevel N, --verbose, --logfile), and holds the
// field names shared by all processes so that one grep follows a request.
//
// It owns no global logger: New returns a value that callers pass down.
package logging
