// Package metrics is the Prometheus endpoint shared by tack-proxy and
// tack-handler ([proxy] and [handler] prometheus_port): one listener per
// process that answers any request with Pushpin's five metrics, names,
// types and help texts as in Pushpin's src/corelib/statsmanager.cpp.
//
// It owns the listener and the text format; the values come from the
// process's stats (a Source), which it never changes.
package metrics
