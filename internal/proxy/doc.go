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
//
// Not yet: GRIP hand-off to the handler (inspect/accept/retry and the other
// handler-facing sockets), WebSocket proxying, zhttp/zhttpreq route targets,
// Grip-Sig, CORS/JSON-P, orig_headers marking, request sharing.
package proxy
