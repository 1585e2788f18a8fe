// Package handler is tack-handler (Pushpin's pushpin-handler): it takes
// held GRIP requests over from the proxy, keeps the channel subscriptions
// and delivers published items to the held clients through the
// connection manager. The publish inputs (HTTP :5561, PULL, SUB, command
// socket, and the NATS bus of [handler] push_in_nats_url) live here too,
// in publishhttp.go, publishzmq.go, publishnats.go, commandsock.go and
// inputs_config.go; they reach the engine only through engineAPI. The SUB
// and NATS inputs follow the engine's channelSet: they subscribe to
// exactly the channels that have listeners, so a bus shared by many
// instances (README "Scaling") sends an item only where it is wanted. The
// NATS input's queue holds natsQueueLen (1024) messages; beyond it nats.go
// drops, and the input logs and counts the drops (message_dropped).
//
// It does not proxy (internal/proxy does), parse GRIP (internal/grip does),
// or speak HTTP to clients (internal/connmgr does).
//
// # Sockets
//
//	name                type    bind/connect  key ([section])                               HWM     when full
//	inspect             ROUTER  connect       [handler] proxy_inspect_spec(s)               1000    reply dropped; the proxy times out and proxies
//	accept              ROUTER  connect       [handler] proxy_accept_spec(s)                1000    reply dropped; engine queue full → reply {} (proxy: 500)
//	condure-in          XPUB    connect       [proxy] condure_out_specs / connmgr_out_specs unlim.  Go queue 65536; full → the session is dropped (its seq would break)
//	                                          (a SUB peer sees a PUB; packets wait up to 10 s for connmgr's subscription, zsock AwaitSubscriber)
//	condure-out-stream  ROUTER  connect       [proxy] condure_in_stream_specs, identity=id  101000  read side; libzmq holds/drops at RCVHWM
//	retry               PUSH    connect       [handler] proxy_retry_out_spec(s)             1000    dropped after 100 ms, logged (the client then expires)
//	stats               PUB     bind          [handler] stats_spec                          200000  dropped and counted (stats are best effort)
//	proxy-stats         SUB ""  connect       [handler] proxy_stats_spec(s)                 200000  read side
//	intreq-in           PUSH    connect       [handler] proxy_intreq_out_specs              1000    request not sent: the fetch fails and is retried
//	intreq-in-stream    ROUTER  connect       [handler] proxy_intreq_out_stream_specs, id   1000    follow-up dropped, logged
//	intreq-out          SUB id  connect       [handler] proxy_intreq_in_specs               1000    read side
//	proxy-command       DEALER  connect       [handler] proxy_command_spec                  1000    ≤256 calls in flight; more → proxy-request-failed
//	ws-control-out      PULL    connect       [handler] proxy_ws_control_in_spec(s)         101000  read side
//	ws-control-in       PUSH    connect       [handler] proxy_ws_control_out_spec(s)        101000  Go queue 4096 packets; over half full holds publishing back; full → dropped, logged, counted
//
// The connmgr keys are read from [proxy] as Pushpin 1.36/1.41 do, falling
// back to [handler] (tack's internal.conf repeats them there). The
// command socket's conncheck asks the proxy (proxy-command, 10 s timeout,
// only when a proxy is connected) about the ids the handler does not
// hold, as Pushpin's ConnCheckWorker does; proxy-command is opened only
// with a command socket. Not opened yet: state (and the periodic report
// call to the proxy, which only feeds update checks).
//
// # Links and outbound requests
//
// Grip-Link rel=next and rel=gone (links.go) use the intreq sockets: the
// handler is a zhttp client of the proxy (intreq.go), which routes the
// requests like client requests but leaves their GRIP headers to us. At
// most OutReqMax requests are in flight and a next-link body is buffered
// up to OutReqBodyMax before it is appended.
//
// # Goroutines and queues
//
// One goroutine per socket (internal/zsock), plus:
//
//	accept   parses accept calls (grip.Parse), answers them, and hands holds
//	         to the engine through a queue of AcceptQueueLen
//	inspect  answers inspect calls with no-proxy: false and, with share_all
//	         or auto-share, a sharing key (inspect.go)
//	engine   owns sessions, channels, the sequencer and every timer; fed by
//	         the accept queue, the connmgr ROUTER, the publish queue
//	         (PublishQueueLen batches; Publish returns ErrQueueFull beyond,
//	         PublishWait waits) while no session holds it back
//	         and a command queue; sleeps on one timer set to its earliest
//	         deadline (a heap, one current entry per session and kind)
//	stats    flushes activity every 100 ms, refreshes conn/sub packets,
//	         sends reports; proxy-stats merges into it
//
// No goroutine per subscriber: a publish is encoded once per channel and
// item (frames.go), and each session's packet is its small envelope
// (from/id/seq/user-data) in front of that shared payload.
// When the engine finds several published items waiting (up to
// maxBatchItems), it publishes them as one batch and each stream
// session's share of it leaves as one packet (publishBatch): a burst then
// costs connmgr one client write per subscriber, not one per item.
//
// # WebSockets
//
// The proxy keeps GRIP WebSocket connections itself and tells the handler
// about them over ws-control (wssession.go, zmq-wire.md §4.5): `here`
// creates a session (expiring ttl after the last here/keep-alive), `grip`
// carries the backend's `c:` control messages (wscontrol.go), `subscribe`
// the `sub=` channels. Published `ws-message` items leave as `send` items
// without req-id (wsdeliver.go); the items of one engine step leave
// batched, up to 128 per packet. Keep-alive timers run in the proxy,
// which asks for the content with need-keep-alive. A stop closes every
// WebSocket with 1012 so that clients reconnect at once.
//
// The handler keeps no per-connection outbound queue for WebSockets: the
// items of an engine step (including those a timer or a rate-limiter
// batch queued) go straight to the ws-control-in queue, which holds
// publishing back when over half full; items it or the socket drop are
// logged (warning with the first item's connection id, at most once a
// second) and counted in message_dropped. The per-connection queues are
// the proxy's: the messages it drops for a client that cannot take them
// come in its reports' client-messages-dropped, added into our report and
// into Prometheus ws_message_dropped (and message_dropped;
// internal/metrics).
//
// # Rate limiting
//
// With [handler] message_rate set, deliveries queue per stats route and
// leave in batches (ratelimit.go), bounded by message_hwm (else
// DefaultMessageHWM). Updates that are not urgent (recover, first
// subscription, next-link windows) leave at most 100 per 100 ms.
//
// # Flow control and drop policy
//
// A session never sends more body bytes than connmgr granted. While a
// stream client has no credits, at most one item's bytes wait in its
// output buffer and the rest in its queue, bounded by bytes. A queue over
// sessionQueueSoftBytes (256 KiB) holds back the publish inputs: the
// engine stops taking published items, so HTTP publishes wait (up to
// 20 s, then 503) and the PULL input stops reading (libzmq's HWM then
// holds PUSH publishers back). A PUB publisher cannot be held back: the
// SUB input keeps reading into a queue of subQueueLen items and drops
// beyond it, warned and counted in message_dropped, rather than leave
// libzmq to drop unseen at its HWM. A
// reading client thus paces the publishers instead of losing items
// (Pushpin drops beyond 100 queued items, silently). A session over the
// mark whose client takes nothing (no credits) for sessionStallTimeout
// (3 s) is stalled:
// it no longer holds anything back, its queue fills to
// SessionQueueMaxBytes (4 MiB), and further items are dropped for that
// session only, logged (warning, with the connection id) and counted
// (Prometheus message_dropped). Grip-Keep-Alive data is skipped while a
// session is backlogged.
//
// # Timers
//
// zhttp keep-alives go to connmgr after 45 s of silence, batched per
// connmgr in list form for peers that sent ext.multi; a session that hears
// nothing from connmgr for 60 s is dropped. Response holds time out after
// Grip-Timeout (default 55 s, min 5 s); stream keep-alives follow
// Grip-Keep-Alive (idle or interval, with Pushpin's 0–999 ms jitter).
// Channels of response holds stay subscribed subscription_linger after the
// last poller. A channel's first subscriber triggers, 1 s later, an update
// of its sessions (response holds are handed back with a retry), as 1.36
// always does and 1.41 does with update_on_first_subscription.
//
// # Signals and stopping
//
// SIGHUP reopens --logfile (as pushpin-handler 1.36) and touches nothing
// else. A stop (SIGINT/SIGTERM) ends every held session before the
// sockets close: response holds get their timeout response, streams their
// final packet (within credits; the rest are cancelled), so clients get a
// well-formed end and reconnect to the next handler (1.36 cancels them,
// and connmgr closes them without a response). A packet from connmgr for
// a session the handler does not hold is answered with a cancel, as 1.36
// does.
package handler
