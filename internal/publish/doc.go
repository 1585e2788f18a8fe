// Package publish is `tack publish`, the equivalent of pushpin-publish
// (grip-reference §4.6): it builds one publish item from the command line
// and sends it to a GRIP publish endpoint.
//
// It owns the item it builds and the one request or message that carries
// it; it knows nothing of the handler's internals and talks to it only as
// any publisher would:
//
//   - an http:// or https:// spec (the default, http://localhost:5561, or
//     the GRIP_URL environment variable): POST <path>/publish/ with
//     {"items":[item]} as JSON; byte strings that are not UTF-8 go out as
//     body-bin / content-bin (base64);
//   - any other spec is a ZeroMQ PUSH spec: one bare tnetstring item. The
//     PUSH socket is used by the one goroutine that runs the command, so
//     it does not go through internal/zsock.
//
// Deviations from pushpin-publish 1.36: errors are printed by cli.Main
// ("tack: <message>" instead of "Error: <message>"); an HTTP request is
// HTTP/1.1 with Connection: close (not HTTP/1.0) and gives up after
// HTTPTimeout; a ZeroMQ send gives up after ZMQTimeout without a peer
// (pushpin-publish waits forever).
package publish
