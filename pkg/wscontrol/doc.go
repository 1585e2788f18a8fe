// Package wscontrol encodes and decodes the ws-control packets that the proxy
// and the handler exchange about WebSocket connections the proxy keeps (GRIP
// WebSocket and WebSocket-over-HTTP). A packet is a bare tnetstring dict with
// an optional `from` and a list of `items`, each about one connection id
// (Pushpin: src/core/packet/wscontrolpacket.cpp).
//
// Like pkg/zhttp this package holds only the wire format: no sockets, clocks
// or logs.
package wscontrol
