// Package proxy is tack-proxy: it takes client requests from the connection
// manager over zhttp, picks a route, rewrites the request as Pushpin does and
// sends it to the backend through the zhttp client (zurl's role), relaying
// the response and both bodies under zhttp credit flow control.
//
// One engine goroutine owns the session table; each ZeroMQ socket has its
// own owner goroutine (internal/zsock). Credits are passed through rather
// than buffered: the backend may send the proxy only what connmgr granted,
// and connmgr may send request body only up to what the zhttp client
// granted, so the proxy holds at most one window per session.
//
// Sockets (1.36 names under {rundir}/{ipc_prefix}; 1.41 connmgr_* keys are read too):
//
//	name                 type    bind/connect  key                       HWM     when full
//	condure-out          PULL    connect       condure_in_specs          100     connmgr holds/refuses (its 503)
//	condure-out-stream   ROUTER  connect       condure_in_stream_specs   101000  libzmq drops
//	condure-in           PUB     connect       condure_out_specs         101000  packet dropped, logged
//	zurl-in              PUSH    connect       zurl_out_specs            100     502 "zhttp service unreachable"
//	zurl-in-stream       ROUTER  connect       zurl_out_stream_specs     101000  packet dropped, logged
//	zurl-out             SUB     connect       zurl_in_specs             101000  libzmq drops
//	accept               DEALER  bind          handler_accept_spec       100     1 s wait, then 500 "Accept service unavailable."
//	retry                PULL    bind          handler_retry_in_spec     101000  libzmq holds
//
// GRIP: a backend response with a Grip-* header or the grip-instruct
// content type (route not no_grip) is collected (≤ 100000 bytes), the
// client session is paused with handoff-start, and an accept call hands it
// to the handler (zmq-wire.md §4.3). Retry packets give sessions back; the
// proxy re-requests the backend with Grip-Last headers.
//
// Not yet: inspect calls (request sharing, sessions), WebSocket proxying,
// zhttp/zhttpreq route targets, CORS/JSON-P, orig_headers marking, the
// proxy-stats and proxy-command sockets, intreq (next links).
package proxy
