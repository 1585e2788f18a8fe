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
//	condure-in           XPUB    connect       condure_out_specs         none    Go queue 65536; beyond: packet dropped, logged;
//	                                                                                 waits ≤ 10 s for connmgr's subscription (zsock AwaitSubscriber)
//	zurl-in              PUSH    connect       zurl_out_specs            100     502 "zhttp service unreachable"
//	zurl-in-stream       ROUTER  connect       zurl_out_stream_specs     101000  packet dropped, logged; a follow-up
//	                                                                                 to a zhttp client that went away
//	                                                                                 ends its request (clientwatch.go)
//	zurl-out             SUB     connect       zurl_in_specs             101000  libzmq drops
//	accept               DEALER  bind          handler_accept_spec       100     1 s wait, then 500 "Accept service unavailable."
//	inspect              DEALER  bind          handler_inspect_spec      100     call fails at once: the request is proxied unshared
//	retry                PULL    bind          handler_retry_in_spec     101000  libzmq holds
//	intreq-in            PULL    bind          intreq_in_specs           100     handler holds/fails its request
//	intreq-in-stream     ROUTER  bind          intreq_in_stream_specs    101000  libzmq drops
//	intreq-out           XPUB    bind          intreq_out_specs          none    Go queue 65536; beyond: packet dropped, logged;
//	                                                                                 waits ≤ 10 s for the handler's subscription
//	proxy-stats          PUB     bind          stats_spec                200000  Go queue 4096; beyond: dropped, counted, logged
//	proxy-command        ROUTER  bind          command_spec              1000    reply dropped, logged (the caller times out)
//
// Stats (stats.go, zmq-wire.md §4.6): each client request that finds a
// route is a connection `<from>:<id>` announced in a conn packet, refreshed
// at 3/4 of [global] stats_connection_ttl, and removed with conn
// unavailable when it ends, or, when the handler accepted it, announced
// once more and kept 60 s without a packet (the handler reports it now).
// activity and counts (requests-received) leave 100 ms after the first
// unflushed event; a report per route (explicit id= only; "" otherwise)
// every [proxy] stats_report_interval with the connection maximum,
// minutes and the header/content byte counters, plus, when non-zero, tack's
// client-messages-dropped: messages to WebSocket clients dropped (a
// published message the connection cannot take now, or a queued one
// beyond its bound; each connection's drops are warned at most every
// wsDropLogEvery with its cid), which tack-handler adds up and
// pushpin-handler 1.36 ignores. [proxy] prometheus_port shows the same
// totals, the drops as ws_message_dropped and message_dropped
// (internal/metrics). The proxy-command server
// answers conncheck from that connection table, refresh with
// item-not-found (no WebSocket-over-HTTP yet) and report with
// service-unavailable (no update checks), as Debian's 1.36 does.
//
// Request log (reqlog.go): one Info line per finished client request in
// pushpin-proxy 1.36's format; a route's log_level (1.41) below 2 hides
// its lines, 2 or more shows them whatever the process level.
//
//	ws-control-in        PULL    bind          handler_ws_control_in_spec   101000  libzmq holds
//	ws-control-out       PUSH    bind          handler_ws_control_out_spec  101000  Go queue 65536; beyond: packet dropped, counted, logged
//	                                                                                 (1st, 2nd, 4th, … drop); no handler for 5 s: dropped, logged
//
// GRIP: a backend response with a Grip-* header or the grip-instruct
// content type (route not no_grip) is collected (≤ 100000 bytes), the
// client session is paused with handoff-start, and an accept call hands it
// to the handler (zmq-wire.md §4.3). Retry packets give sessions back; the
// proxy re-requests the backend with Grip-Last headers.
//
// Intreq (zmq-wire.md §4.8): the handler's own requests (Grip-Link
// rel=next fetches, rel=gone POSTs) arrive on intreq-in/intreq-in-stream
// and are served like client requests, except that replies go out on
// intreq-out (topic = the handler's from), the response is always relayed
// as-is (never GRIP: the handler reads its Grip-* headers), the handler's
// Grip-* request headers (Grip-Last) reach the backend, and there is no
// peer address, X-Forwarded-For append, hand-off or request log line at
// Info. The first packet's passthrough dict routes it: prefer-internal →
// the route with that id (else a host lookup); otherwise straight to the
// URI's host:port with the original route's signing settings and
// ignore-policies when trusted. auto-share (coalescing identical requests)
// goes to the inspect call, so identical next-link fetches share one
// backend request (share.go). The sockets are opened only when all three
// intreq_* keys are set.
//
// Inspect and sharing (inspect.go, share.go; zmq-wire.md §4.2): with
// handler_inspect_spec set, each routed request is first shown to the
// handler with up to 10000 bytes of its body (8 s timeout; after a failed
// call, requests go at once until a background call is answered, as 1.36
// does); no-proxy answers hand it to the handler without a backend
// request (noproxy.go). An answer with a sharing key
// ([handler] share_all, auto-share) lets identical requests join one
// backend request: the response goes to every member under each client's
// credits (the slowest paces the backend beyond ResponseBuffer), a GRIP
// answer hands them all to the handler in one accept call.
//
// A GRIP stream hold whose initial body passes 100000 bytes is sent by
// the proxy itself and handed off with response-sent (large.go). Upstream
// trust, orig_headers and cdn_loop are in trust.go; CORS and JSON-P
// (auto_cross_origin, route aco, jsonp_*) in crossorigin.go: the proxy
// applies them to what it relays or answers itself, and tells the handler
// in the accept call to apply them to GRIP responses.
//
// Signals: SIGHUP reopens --logfile and reloads the routes file; a stop
// (SIGINT/SIGTERM) cancels every session on both sides, so connmgr closes
// the clients at once.
//
// WebSockets (wsproxy.go, wscontrol.go): a ws/wss first packet is routed
// with protocol ws and relayed to the zhttp client as a zhttp WebSocket
// session; the backend's 101 or rejection goes back, then frames flow both
// ways within credits (each side granted wsWindow, given back as frames
// leave, so memory per direction is bounded and messages of any size pass).
// A backend that accepts the grip extension (or a target with sub=) gets a
// ws-control session with the handler (ws-control-in PULL and
// ws-control-out PUSH, both bound): `c:` messages become grip items,
// prefixed messages lose their prefix, and the handler's send, close,
// detach and keep-alive-setup items act on the connection; the client
// keep-alive timer runs here and asks the handler for the message
// (need-keep-alive), as in Pushpin 1.36. WebSocket-over-HTTP (over_http
// targets) is in wsoverhttp.go. A WebSocket routed to a zhttp/ target runs
// in zhttp WebSocket mode on that target's sockets, as with pushpin-proxy
// (a zhttpreq/ target refuses it with 502, as 1.36 does).
//
// Route targets zhttp/<base> and zhttpreq/<spec> (zbackend.go, ztarget.go)
// bind the client side of zhttp for a ZeroMQ backend: PUSH/ROUTER/SUB at
// <base>-out/-out-stream/-in (tcp: P, P+1, P+2), or one DEALER for
// request/response backends (REP or ROUTER).
//
// Not yet: sessions (inspect's sid).
package proxy
