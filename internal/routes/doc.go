// Package routes owns Pushpin's routes file: it parses the file (or
// --route lines) into an immutable Table, answers route lookups by host,
// protocol, TLS and path or by route id, and, through Watcher, reloads the
// file when it changes and swaps the new Table in atomically.
//
// It implements grip-reference §7: the grammar and its verbatim error
// messages (§7.1), condition props (§7.2), targets (§7.3), Pushpin's
// matching and precedence walk including quirk 7 (§7.4), and reload with a
// 1 s debounce (§7.5). Parse errors are returned as Diag values
// ("<file>:<line>: <message>"); the bad line is skipped and the rest loads.
//
// Choices the caller relies on:
//   - Table.Lookup lowercases the host and strips the port itself; the
//     domains in the file are compared case-sensitively with the result.
//   - Route.SigKey keeps the key string as written, except that a relative
//     "file:" path is made absolute against the routes file's directory
//     (the current directory for --route lines).
//   - Flag props (debug, aco, ssl on a target, ...) are on when present,
//     whatever value they carry.
//   - Route.Props and Target.Props keep every prop as parsed, so the user
//     can warn about props it does not support; unknown props are otherwise
//     ignored, as in Pushpin.
//
// It does not own what the options mean at request time (rewriting,
// signing, CORS, SockJS: internal/proxy), key parsing (internal/grip), or
// where the routes file lives (internal/config resolves [proxy] routesfile).
// Watcher starts no goroutine outside Run, and Run returns only after the
// file watch is closed. For --route lines, ParseLines plus NewStaticWatcher
// give the same Current/Reload/Run surface without a file.
package routes
