// Package grip owns the GRIP protocol logic shared by tack-proxy and
// tack-handler: deciding whether a backend response carries GRIP
// instructions (IsGRIP), parsing those instructions from Grip-* headers and
// application/grip-instruct bodies (Parse), parsing publish items from the
// HTTP publish API, the ZeroMQ PULL/SUB inputs and the command socket
// (ParseItems, ParseItemList, ParseItem, DecodeItemFrame), and minting and
// checking Grip-Sig tokens (ParseKey, SignToken, ValidateToken).
//
// The behaviour follows Pushpin 1.36 as described in
// shared/docs/grip-reference.md §3, §4.1, §4.2 and §13, checked against a
// running 1.36 where the text was unclear. Every malformed input yields a
// *FormatError whose message is Pushpin's exact text, ready for a 502 debug
// body, a ZRPC bad-format value or an "Invalid format: ..." reply.
//
// Deliberate deviations from 1.36, each commented where it is implemented:
//   - publish items: an empty `channel` and invalid base64 in `body-bin` /
//     `content-bin` are errors (1.36 accepts both);
//   - publish `action: refresh` is accepted (1.38+; 1.36 rejects it);
//   - Grip-Link `rel=gone` items are parsed and validated (1.41); other
//     relations are ignored as in 1.36;
//   - an empty sig_key / upstream_key means "not configured" (quirk 13.1);
//   - `file:` keys may hold a hex secret (1.38+) besides a PEM key.
//
// What it does not own: holding requests, timers, delivery, filters,
// sequencing (tack-handler) and routing or signing decisions per route
// (tack-proxy). It performs no network I/O and reads no clock; callers pass
// the current time. The one file access is ParseKey reading a `file:` key,
// through a caller-supplied function when given.
package grip
