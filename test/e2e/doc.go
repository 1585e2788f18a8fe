// Package e2e runs the real tack binaries, started by the tack runner from
// pushpin.conf files, on free 127.0.0.1 ports, and drives them with real
// HTTP clients and backends.
package e2e
