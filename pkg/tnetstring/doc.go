// Package tnetstring encodes and decodes TNetStrings, the framing Pushpin uses
// on every internal ZeroMQ socket (zmq-wire.md §1.1).
//
// Values map to Go types as follows:
//
//	,  byte string  []byte
//	#  integer      int64
//	^  float        float64
//	!  boolean      bool
//	~  null         nil
//	]  list         []any
//	}  dictionary   Dict (ordered key/value pairs; keys are byte strings)
//
// The decoder is strict and bounded: sizes must fit in the input, nesting is
// limited to MaxDepth, and any malformed input returns an error, never a
// panic. Decoded byte strings alias the input buffer; copy them if the buffer
// is reused. The package does no I/O and uses only the standard library.
package tnetstring
