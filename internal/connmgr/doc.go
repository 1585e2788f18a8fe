// Package connmgr is tack-connmgr, a drop-in for Pushpin 1.36's condure
// 1.9.1: it accepts HTTP/1.x client connections and plays the zhttp
// *client* in stream mode, handing each request to whichever zhttp server
// (pushpin-proxy, then maybe pushpin-handler after a handoff) takes it
// (zmq-wire.md §2, §6).
//
// It owns: the listeners, the HTTP/1.x connection loop (request heads are
// parsed by net/http, framing and persistence are ours), the zhttp client
// session of each request (seq, credits, peer address, handoff, keep-alive,
// expiry), client WebSockets carried in zhttp WebSocket mode (ws.go, with
// permessage-deflate under --compression: wsdeflate.go) and the three
// client sockets. It does not own: routing, GRIP or X-Forwarded-* headers
// (the proxy's job), req-mode listeners, metrics (metrics.go is not
// written yet).
//
// # Listeners (listen.go, tlsid.go)
//
// --listen values are TCP (addr:port), TLS (",tls,default-cert=NAME") or
// unix sockets (path,local, with mode=/user=/group= as connmgr 1.37+). They
// are opened before the zhttp sockets, so a port or socket path in use
// fails the start (exit 78, cli.ExitStartup) before any ipc file of ours
// is touched; a unix path another live process accepts on is refused, a
// stale one replaced. TLS identities come from --tls-identities-dir as in
// condure: NAME.crt/NAME.key, chosen by the client's server name
// (lowercased, exact, then "_.<parent>"), else default-cert; a pair is
// read again when its files change; an expired one is served with a
// warning. Unlike condure, a TLS listener whose default-cert does not load
// fails the start. The handshake runs in the connection's goroutine under
// DefaultHandshakeTimeout (logged when it fails or times out); a plain
// HTTP request on a TLS port gets 400 "Client sent an HTTP request to an
// HTTPS server." (condure closes). Requests on TLS connections carry an
// https:// uri (how the proxy knows they are secure). A TLS connection
// cannot peek under the TLS layer, so while idle it keeps a pooled reader
// and its goroutine (no parker); unix-socket connections are handled like
// TCP ones and carry no peer address.
//
// # Sockets
//
// With --zclient-stream=<base> (default ipc://client; tcp://h:P gives ports
// P, P+1, P+2) and bind unless --zclient-connect (§3.4, §6.2):
//
//	name        type    endpoint          HWM                 when full
//	out         PUSH    <base>-out        SNDHWM 128          no wait: the request is answered
//	                                                          503 "Request queue is full…" (Go
//	                                                          queue, 128) or 503 "No zhttp server
//	                                                          is available." (no peer / HWM,
//	                                                          via OnDrop)
//	out-stream  ROUTER  <base>-out-stream SNDHWM 5 % of       identity = --id (as connmgr 1.41),
//	                                      maxconn (≥ 100)     monitored for disconnects (below);
//	                                                          ROUTER_MANDATORY; an unroutable
//	                                                          peer is retried 50 ms, a full
//	                                                          one (a busy server) 5 s, then the
//	                                                          message is dropped and its
//	                                                          session closed (a lost follow-up
//	                                                          is a seq gap); Go queue 4096, a
//	                                                          full one closes the session
//	                                                          (credits and keep-alives are
//	                                                          retried on the next tick instead);
//	                                                          linger 500 ms; input not read
//	in          SUB     <base>-in         RCVHWM 5 % of       subscribed to "<id> "; the engine
//	                                      maxconn (≥ 100)     drains it continuously; libzmq
//	                                                          drops beyond the HWM (as Pushpin)
//
// Replies are read from the SUB only: we never set router-resp (§2.9).
//
// # Goroutines and bounds
//
//	owner           count           holds
//	socket owners   3               one zsock.Socket each (internal/zsock)
//	engine          1               the session table; reads SUB, conn messages, drop notices, ticker
//	accept          1 per listener  a slot of --stream-maxconn before each Accept
//	connection      ≤ 1 per client  runs serve while the connection reads or writes;
//	                                a held response with nothing to write has none
//	parker          1               one epoll instance for the detached held responses
//
// Connections → engine: one channel of EngineQueue messages; a connection
// blocks on it (the engine never blocks on a connection). Engine →
// connection: a mailbox under conn.mu plus a 1-slot wake channel; the
// engine never blocks, and what a mailbox can hold is bounded by the
// credits we granted (--buffer-size of body; a server exceeding them gets
// cancelled, as condure's BufferExceeded).
//
// A held response with nothing to write detaches: its goroutine returns
// and the parker (parker.go) watches the socket on one epoll instance;
// engine mail, client bytes or EOF, the stream timeout or a close start a
// new goroutine that resumes the exchange. That halves what a held stream
// costs (the goroutine stack was the largest part).
//
// An idle connection (between requests, or holding a response that is not
// moving) pins no buffer: it waits for readability through RawConn.Read
// with a 1-byte MSG_PEEK, and borrows a pooled bufio.Reader of
// --buffer-size only while a request head or body is read (kept only while
// it holds pipelined bytes). Response heads are encoded into pooled buffers
// and body packets written with writev straight from the received packets,
// then released; credits are granted as bytes reach the client (§2.7): at
// once when the server is down to half its window, else with the next
// 100 ms tick, so a stream of small items costs one credit packet per
// tick. The engine wakes a connection parked in the readability wait by
// setting a read deadline in the past (documented net.Conn behaviour), and
// wakes the connections it touched only once its SUB queue is empty (or
// after maxDeferredWakes), so items arriving together leave together.
//
// # A zhttp server that goes away
//
// A proxy or handler that stops or crashes leaves its sessions here; the
// client would otherwise wait for the 45 s keep-alive to find the peer
// unroutable, or the 60 s expiry (§2.8). Instead the out-stream ROUTER is
// monitored (zsock OnDisconnect): when a peer disconnects, the next ticks
// after 100 ms, 1 s and 3 s (zhttpsession.ProbeAfter) send every active session a
// keep-alive (any packet is allowed at any time, so live servers just see
// early keep-alives; the later probes catch one that libzmq still routed
// into the dying connection).
// Sessions of the server that is gone come back as drops (ROUTER_MANDATORY,
// retried RouterRetry, then dropped; zsock then drops further messages to
// that peer at once for a second) and serverGone ends their clients:
//
//   - no response head yet (a long-poll held by the handler, a request
//     the proxy was still working on): 502 "The zhttp server handling
//     this request went away.";
//   - a response held by the handler after a handoff: the body ends as
//     the server would end it (a stream gets its final chunk);
//   - a proxied response cut short: the connection closes without the
//     final chunk (or short of its Content-Length), so the client can
//     tell the body is incomplete.
//
// A client so learns within about half a second that it must reconnect.
// The probe is wire-neutral (real Pushpin peers mixed with ours see only
// keep-alives), and a peer's instance id carries its pid, so a restarted
// server never inherits the old one's sessions. An accepted WebSocket
// gets close code 1012 (service restart); one still waiting for its
// accept gets the 502.
//
// # WebSockets (ws.go)
//
// An `Upgrade: websocket` request is checked (GET, HTTP/1.1, version 13, a
// 16-byte key; else 400 with the reason) and sent as condure does
// (zmq-wire.md §2.12, same bytes as condure 1.9.1 in TestWSRelay's
// scenarios): ws:// (wss:// on TLS listeners), method GET, the client's
// headers, credits --buffer-size, peer address, no stream. A 101 data
// packet is the accept: its headers (minus Sec-WebSocket-Accept and
// Content-Length) then Upgrade, Connection and our Sec-WebSocket-Accept,
// in condure's order; its credits are what the client may send. An
// `error` with condition `rejected` is the HTTP response the client gets
// (code, reason, headers, body), then the connection closes.
//
// Client frames are read as they arrive, never reassembled: a data frame's
// payload goes to the server in packets of at most --buffer-size and the
// server's credits (content-type repeated on every piece, `more` until the
// message ends), so a message of any size passes with memory bounded by
// the credits. Ping, pong and close become packets (pings are forwarded,
// not answered, as condure). Server packets become frames the same way;
// their payload counts against the credits we granted (ping and pong
// included, as condure) and is granted back once written. A mailbox holds
// at most maxQueuedFrames frames (their bytes are bounded by credits); more
// closes the client with 1011, counted per process and warned with its
// connection id (at most once a second, the rest counted as suppressed)
// plus a summary warning each minute that had any (overflow.go: connmgr
// has no stats socket, as condure has none). The close handshake: either
// side's close is relayed and the other side's answer ends the
// connection (we wait wsCloseWait for a client's answer); keep-alives,
// expiry, cancel and handoff work as for HTTP sessions.
//
// Bad client frames end that connection only, with a warning carrying its
// id, a close frame and a cancel to the server: unmasked frames, reserved
// bits, unknown opcodes, continuation without a message or a new message
// inside one, control frames over 125 bytes or fragmented, close codes
// that are invalid (1002); invalid UTF-8 in text messages (checked
// across fragments) or close reasons (1007). There is no message size
// limit (no condure flag sets one), so no 1009.
//
// With --compression (condure's flag; Pushpin 1.37+ passes it for
// allow_compression) a client's permessage-deflate offer is answered
// "permessage-deflate; server_no_context_takeover;
// client_no_context_takeover" and removed from the headers the server
// sees (other extensions, such as grip, stay). Each message is thus
// compressed on its own and a compressor or decompressor is borrowed from
// a pool only while a message is in progress. Server message pieces are
// compressed piece by piece (a sync flush each, RSV1 on the first frame);
// a compressed client message is decompressed as it arrives, at most the
// credits at a time, its frames read as the decompressor needs them
// (blocking in the connection's goroutine while the client is in the
// middle of sending it). Corrupt compressed data closes with 1007.
//
// An idle WebSocket detaches like a held response: no goroutine, no
// buffer; the parker watches its socket (BenchmarkConnmgrIdleWebSocketMemory:
// about 1.7 KiB of heap per idle WebSocket). Before detaching it peeks
// the socket, as the parker only reports new bytes.
//
// # Behaviour that differs from condure 1.9.1 (see also the tests)
//
//   - WebSocket: a ping between the fragments of a message and empty
//     continuation frames are relayed (RFC 6455 §5.4, §5.5); condure
//     cancels the session. Protocol errors close with the RFC's code and
//     a warning; --messages-max is accepted but the queue bound is
//     maxQueuedFrames frames within the credits.
//   - Oversized request head: 431 with connmgr 1.40+'s text (1.40+ sends
//     400, condure 1.9.1 resets the connection); malformed request: 400
//     "Failed to parse request: …" (1.40+; condure closes).
//   - A zhttp server that disconnects ends its clients' requests within
//     about half a second (above); condure waits for the keep-alive or
//     the expiry (45–60 s).
//   - No server, full queue, or no answer within 10 s (DefaultAckTimeout):
//     503 and the connection keeps serving. condure queues and waits for
//     the 60 s expiry.
//   - A bad seq or unexpected packet type also sends cancel to the server
//     (as Pushpin's C++ peers do); condure only closes the client.
//   - After a handoff, packets from the previous owner are dropped.
//   - A server packet for a request whose client already left before any
//     server spoke gets a cancel.
//   - Response headers Keep-Alive, TE, Trailer, Upgrade, Proxy-Connection
//     and those named in Connection are dropped (condure drops only
//     Connection, Content-Length and Transfer-Encoding); an empty reason
//     becomes the standard phrase; HEAD responses never carry a body
//     (condure sends "Content-Length: 0", or a chunked terminator); a body
//     longer than its Content-Length is cut and shorter one closes the
//     connection (condure writes it through or hangs).
//   - An absolute-form request target is used as the uri (condure prefixes
//     it with the Host); duplicate Host headers are a 400 (net/http, RFC
//     9112 §3.2); HTTP/2 preface and other versions get 505; a uri over
//     4096 bytes gets 414 (condure: 500).
//   - Request ids are <worker>-<conn>-<req> in hex with the connection
//     counter starting at a random value, so a restarted tack-connmgr does
//     not collide with sessions a server still remembers.
package connmgr
