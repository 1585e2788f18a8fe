// Package handler is tack-handler: the process that will own GRIP
// subscriptions, held sessions and the publish inputs.
//
// Today it serves the proxy's inspect calls (ZRPC, zmq-wire.md §4.1–§4.2),
// answering `no-proxy: false` as Pushpin's handler does, so that a real
// pushpin-proxy paired with tack-handler proxies without waiting for the
// 8 s inspect timeout.
//
// Sockets:
//
//	name     type    bind/connect  key                          HWM   when full
//	inspect  ROUTER  connect       [handler] proxy_inspect_spec  1000  reply dropped (proxy times out and proxies)
//
// Not yet (the GRIP issue): accept, retry, ws-control, stats, the proxy
// command client, intreq, and every publish input (HTTP :5561, PULL :5560,
// SUB :5562, command :5563).
package handler
