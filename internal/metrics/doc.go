// Package metrics is the Prometheus endpoint shared by tack-proxy and
// tack-handler ([proxy] and [handler] prometheus_port): one listener per
// process that answers any request with Pushpin's five metrics, names,
// types and help texts as in Pushpin's src/corelib/statsmanager.cpp,
// followed by tack's own drop counters (Pushpin drops without counting):
//
//	message_dropped     counter  deliveries dropped: beyond message_hwm, a
//	                             client not reading, a full queue; includes
//	                             ws_message_dropped
//	ws_message_dropped  counter  messages to WebSocket clients dropped by
//	                             tack-proxy because the connection's
//	                             outbound queue was full (the proxy's own
//	                             endpoint counts its drops; the handler's
//	                             adds up the client-messages-dropped field
//	                             of the proxies' stats reports)
//
// It owns the listener and the text format; the values come from the
// process's stats (a Source), which it never changes.
package metrics
