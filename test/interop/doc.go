// Package interop mixes tack processes and the real Pushpin 1.36 processes
// (Debian's pushpin package, installed by the tests when missing) in one
// deployment and checks that clients cannot tell the difference.
package interop
