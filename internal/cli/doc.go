// Package cli holds what every tack binary shares on its command line: the
// cobra root settings, Pushpin's logging flags, a context cancelled by
// SIGINT/SIGTERM, and the mapping of a returned error to an exit code.
package cli
