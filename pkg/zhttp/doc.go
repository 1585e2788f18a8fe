// Package zhttp holds the ZHTTP packet (zmq-wire.md §2): its fields, its
// tnetstring encoding with the `T` prefix, and the frame layouts used on each
// socket pattern (§1.2, §1.3). It has no sockets, clocks or logs; session
// rules (sequencing, credits, keep-alives) live in internal/zhttpsession.
//
// Decoding is lenient where Pushpin's C++ decoders are (integers sent as digit
// strings, peer-port as a byte string, unknown fields ignored) and strict
// where every implementation is (textual fields must be byte strings, flags
// must be booleans, unknown packet types are rejected).
package zhttp
