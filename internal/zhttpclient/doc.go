// Package zhttpclient is tack-zhttp-client, a drop-in for zurl in a
// Pushpin 1.36 deployment: the zhttp *server* that performs the outbound
// HTTP requests the proxy (and the handler, through the proxy) asks for
// (zmq-wire.md §5). It reads zurl.conf ([General] keys, §5.1), takes the
// command line the Pushpin runner gives zurl, answers in the packet format
// of each request (`T` tnetstring or `J` JSON) and honours zurl's allow/deny
// policies (§5.3).
//
// It owns: the zurl.conf loader, the session table, the outbound HTTP/1.1
// connection pools, the policy checks and the zhttp error conditions. It
// does not own: packet (un)marshalling (pkg/zhttp, pkg/tnetstring), socket
// ownership (internal/zsock), or RFC 6455 framing (github.com/gobwas/ws).
//
// # Sockets
//
//	name            type    bind/connect  HWM     policy when full
//	in_spec         PULL    bind          in_hwm  not read while max_open_requests
//	                                              workers run: first packets wait in
//	                                              libzmq (≤ in_hwm) and a Go queue of
//	                                              InputQueue, then the peer's PUSH blocks
//	in_stream_spec  DEALER  bind, identity in_hwm  always read (follow-ups must not
//	                        = instance_id         stall); a session with more than
//	                                              3×buffer_size of request body queued
//	                                              (client ignoring credits) gets
//	                                              bad-request
//	out_spec        XPUB    bind          out_hwm XPUB_NODROP: a reply with no room
//	                                              in its client's pipe waits, retried,
//	                                              ≤ OutSendTimeout (5 s), then is dropped,
//	                                              counted and logged (warn), and that
//	                                              client's next replies are tried once
//	                                              until one goes through (zurl's PUB drops
//	                                              unseen at out_hwm: the client sees a seq
//	                                              gap); the engine waits for room in the
//	                                              OutQueue channel in front of it;
//	                                              replies wait ≤ 10 s for their client's
//	                                              subscription (zsock AwaitSubscriber;
//	                                              zurl's PUB drops them)
//	in_req_spec     ROUTER  bind          in_hwm  like in_spec for input; replies wait
//	                                              for room in the owner's queue, which
//	                                              keeps writing while its input waits
//
// Every socket has LINGER 0 (zurl's PUB shutdown wait is 0). ipc binds get
// ipc_file_mode.
//
// # Goroutines
//
// Each socket has its owner goroutine (zsock). One engine goroutine owns
// the session table: it decodes input, checks and starts requests, sends
// every reply (so sequence numbers and user-data live in one place), and
// on a 1 s tick sends keep-alives (every 30 s of silence, as zurl), expires
// sessions that heard nothing from their client for 60 s (silently), and
// applies the activity timeout. Each request runs in one worker goroutine
// that does the HTTP exchange with net/http and reports head/body/error
// events to the engine over a bounded channel; net/http adds its own
// per-connection goroutines. The engine never blocks on a worker: response
// credits go to the worker through a mutex-guarded window, streamed request
// bodies through a mutex-guarded pipe that net/http reads (and whose reads
// become `credit` packets for the client, as zurl grants what it has handed
// to the backend).
//
// # Request handling (zmq-wire.md §5.2)
//
// A stream request is acked at once: `credit` (buffer_size) when `more`
// is set, otherwise `keep-alive`, with ext.multi when the request had it.
// The response head goes out as soon as the backend sends it; a body of
// known length that fits the granted credits (and buffer_size) travels in
// the same packet, otherwise the body follows in packets that never exceed
// the credits granted. stream=false and req mode collect the whole body into
// one packet. Response headers and bodies are passed through untouched (no
// decompression, Content-Length kept); Go canonicalises header names and
// hides Transfer-Encoding, and the headers are sent sorted by name.
//
// Connections are pooled per "profile" (connect-host:port and the policy
// and TLS flags) in shared http.Transports with up to MaxIdleConnsPerHost
// idle connections per host; a transport older than connection_max_time is
// replaced, as zurl rotates its curl pool.
//
// # WebSocket sessions (zmq-wire.md §2.12)
//
// A stream first packet with a ws:// or wss:// uri (seq 0, no `more`)
// opens a backend WebSocket: dial and TLS as for HTTP (connect-host/port,
// policies, ignore-tls-errors, trust-connect-host), then our own opening
// handshake (fresh Sec-WebSocket-Key, version 13) carrying the client's
// other headers; compression offers are removed from
// Sec-WebSocket-Extensions because compressed frames cannot be relayed as
// zhttp messages. A 101 (with a valid Sec-WebSocket-Accept) becomes the
// data packet {code, reason, headers as received, credits: buffer_size,
// ext.multi when asked}; any other answer becomes `error` `rejected` with
// code, reason, headers and the body (up to buffer_size, else
// rejection-too-large; zurl sends only code and body).
//
// Then a fresh goroutine (the dial's grown stack is released) reads
// backend frames, and a writer goroutine, started only while the client's
// frames are queued, writes them. An idle session holds no goroutine and
// no buffer: between frames, once nothing is buffered or waiting in the
// socket, the reader parks the connection with the service's epoll parker
// (wsparker.go), which starts a new reader when it becomes readable or the
// session is cancelled (TLS connections keep their reader goroutine). Read
// and write buffers are pooled and borrowed per frame run / batch. A
// backend message goes out as data packets of at
// most min(credits, buffer_size) bytes each, `more` on all but the last,
// content-type binary on binary ones (text has none, as from zurl): a
// frame of any size streams through within the credits. Client data
// packets become frames (a `more` packet a non-final fragment); the bytes
// written to the backend are credited back. Ping and pong payloads pass
// both ways (zurl drops them). Close: either side's close is relayed with
// code and reason and the other's answer completes the handshake (each
// wait bounded by CloseWait). A backend protocol violation (masked frame,
// RSV bits, bad opcode or fragmentation, control frame over 125 bytes or
// fragmented, bad close payload) ends the session with close 1002, invalid
// UTF-8 in a text message or close reason with 1007, towards both sides,
// logged at warn with the request id. A backend connection lost without a
// close frame → `error` undefined-condition (as zurl). Keep-alives, expiry,
// the activity timeout and cancel work as for HTTP; any client packet
// refreshes the activity timeout. The client's frames wait in a queue
// bounded like a streamed request body (BodyOverflowFactor × buffer_size,
// then bad-request).
package zhttpclient
