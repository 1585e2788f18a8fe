// Package zsock owns tack's ZeroMQ sockets: one goroutine per socket creates
// nothing else, touches nothing else, and is the only code that calls into
// libzmq for that socket (pebbe/zmq4 sockets are not goroutine-safe; sharing
// one crashes inside C with nothing from -race).
//
// A Socket is opened (created, configured, bound or connected) synchronously
// by Open so that start-up errors are returned to the caller, then handed to
// its owner goroutine with Run. Everyone else talks to it through two bounded
// channels:
//
//	Send()  messages to write; full channel = caller's policy (refuse, 503, drop)
//	Recv()  messages read; a slow consumer applies back-pressure to libzmq,
//	        whose RCVHWM then holds or drops (per socket type) further input
//
// Owner loops, by direction:
//
//	send-only  blocks on the send channel and ctx; writes with DONTWAIT and,
//	           on EAGAIN (or EHOSTUNREACH from ROUTER_MANDATORY), retries for
//	           up to SendTimeout (POLLOUT; a ROUTER on a 10 ms timer, as its
//	           POLLOUT is not per peer) before dropping the message and
//	           reporting it to OnDrop with an error wrapping ErrDropped; a
//	           ROUTER_MANDATORY peer that is connected but full (EAGAIN)
//	           may get longer (FullTimeout)
//	recv-only  zmq_poll with PollInterval, then reads until EAGAIN
//	two-way    alternates: flush the send channel, poll for input for at most
//	           TwoWayPoll (short, so a reply waits at most that long); each
//	           turn handles at most a batch per direction, and while the
//	           receive channel is full the owner keeps writing, so a handler
//	           blocked on Send() cannot deadlock with it
//	await      (send-only XPUB, AwaitSubscriber) the send-only loop plus the
//	           subscriptions: a message no subscriber wants yet waits (in
//	           order per topic, ≤ HoldTimeout, ≤ QueueLen) instead of being
//	           dropped as a PUB drops what precedes a peer's subscription
//
// Monitored sockets (TrackPeers, OnDisconnect) attach the monitor before
// binding or connecting, so that no handshake goes uncounted.
//
// Every socket gets LINGER (default 0; zhttp ROUTER/PUB use 500 ms as Pushpin)
// and explicit HWMs. Run closes the socket before it returns; Context.Close
// terminates the libzmq context and must be called after every Run returned.
package zsock
