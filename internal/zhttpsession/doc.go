// Package zhttpsession holds the zhttp session rules that every tack process
// shares (zmq-wire.md §2.6–§2.10): per-direction sequence numbers, credits,
// the peer address, keep-alive cadence and expiry, and the batching of
// keep-alives into list-form packets for peers that announced ext.multi.
//
// It does no I/O and reads no clock: methods take the current time and
// return packets for the caller to send, so the rules are tested without
// sockets.
//
// State of one session, as seen by either role:
//
//	field     meaning                                   updated by
//	OutSeq    next seq we write (§2.6)                  Stamp
//	InSeq     next seq we expect (§2.6)                 Receive (bad seq → ErrBadSeq)
//	Credits   body bytes we may still send (§2.7)       Receive adds, Spend takes
//	Peer      the other side's `from` (§2.10 step 4)    Receive (every packet that has one)
//	PeerMulti peer sent ext.multi (§2.8)                Receive
//	LastIn    last packet received                      Receive; Expired after 60 s (§2.8)
//	LastOut   last packet written                       Stamp; KeepAliveDue after 45 s (§2.8)
//
// Transitions of a server-side HTTP session: request received → ack
// (keep-alive, or credit if a body follows) → response head → body packets
// (more) → last packet (no more) = done; cancel or error from either side =
// done; a bad sequence number = send cancel, done (§2.6).
package zhttpsession
