// Package broker is `tack broker`: a ZeroMQ XSUB/XPUB forwarder between
// publishers and the SUB publish inputs of many tack instances (README,
// "Scaling"). Publishers connect PUB (or XPUB) sockets to its XSUB;
// instances connect their SUB inputs (push_in_sub_connect=true) to its
// XPUB. Subscriptions travel upstream, so a publisher with an XPUB socket
// still sees which channels have listeners somewhere, and an item goes only
// to the instances subscribed to its channel.
//
// # Sockets and goroutines
//
//	name     type  bind  flag    HWM (snd/rcv)  when full
//	xsub     XSUB  bind  --xsub  --hwm 101000   libzmq drops at the publisher's PUB HWM
//	xpub     XPUB  bind  --xpub  --hwm 101000   dropped for the slow instance only (pub-sub)
//	control  PAIR  bind  inproc  --hwm          -
//	steer    PAIR  conn  inproc  --hwm          -
//
// zmq_proxy_steerable runs in one goroutine that owns xsub, xpub and
// control; Run's goroutine owns steer and sends TERMINATE when its context
// ends. Every socket has LINGER 500 ms and is closed before the ZeroMQ
// context is terminated.
package broker
