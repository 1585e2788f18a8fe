// Package config loads pushpin.conf-format files, the one config format
// every tack process reads.
//
// It owns: parsing with Qt QSettings INI rules, the [global] include,
// the {libdir}/{rundir}/{ipc_prefix} substitutions, the port_offset shift
// of tcp:// ports, the global settings (rundir, ipc_prefix, port_offset,
// libdir), the lookup of a default config file, and typed access with
// file:line errors. It does not own any service's settings or defaults:
// each service's command.go turns the sections it needs into its own
// Config, and validates them.
//
// # Behaviour, checked against Pushpin 1.36
//
// Each rule below was checked by running the real Pushpin 1.36 runner or
// handler (Debian package) on a private config and reading back the value
// it used (the runner echoes local_ports and http_port in the condure
// command line it logs with --verbose; the handler logs its bound specs):
//
//   - Comments: lines starting with ';' or '#'; an unquoted ';' anywhere
//     ends the value, '#' inside a value is kept (7000#x is not 7000).
//   - Blanks around unquoted values and list items are dropped; quotes
//     keep ',', ';', '#' and blanks; "a" "b" reads as ab.
//   - An unquoted comma makes a list; empty items are dropped by List.
//     String on a list gives "" (Pushpin: push_in_spec=a,b disables the
//     PULL input), so scalar values holding commas must be quoted.
//   - Escapes \t \n \" \\ \xHH.. \OOO.. work, an unknown escape drops the
//     character, backslash-newline continues the line.
//   - Keys and sections are case-sensitive; "[ runner ]" is [runner]; a
//     repeated key keeps the last value (we warn); an unterminated
//     "[runner" still opens [runner] (we warn); lines without '=' are
//     ignored (we warn).
//   - Booleans follow QVariant::toBool: "", "0", "false" (any case) are
//     false, all else true, so "off" is true; Bool returns ErrNotBool with
//     Pushpin's reading for anything but true/false/1/0/"".
//   - Integers that do not parse are 0 in Pushpin; Int returns
//     ErrNotInteger instead (a deliberate deviation: a typo in a port
//     should stop the process, not bind port 0). Empty counts as unset.
//   - include: substituted, relative to the main file's dir, the bare
//     value internal.conf means {libdir}/internal.conf, the main file's
//     keys win, a missing include is ignored (we warn), an include inside
//     the included file is not followed, a list value is ignored.
//   - {rundir} becomes [global] rundir as written (rundir=run gives
//     ipc://run/pushpin-stats in the handler); RunDir() is that path made
//     absolute against the working directory (not the config dir: the
//     runner started in /a with --config /b/pushpin.conf uses /a/run). An
//     absent rundir is the working directory. [runner] rundir is the
//     deprecated fallback.
//   - [global] libdir overrides the compiled-in lib dir, which for tack
//     is Options.LibDir or DefaultLibDir(): <exedir>/../configs, the
//     source tree's configs/, then /usr/lib/pushpin.
//   - Every tcp://host:port in any value gets port_offset added, including
//     values the runner reads (local_ports=tcp://127.0.0.1:5000/x with
//     port_offset=5 gives 5005). Pushpin's handler --port-offset replaces
//     [global] port_offset (Options.ReplacePortOffset); with --id=3 the
//     handler gets --port-offset=30 and binds 5563+30 whatever the file
//     says.
//   - Unknown keys are accepted silently.
//
// Defaults passed to String, Int and Bool are substituted like values.
package config
