// Package runner is `tack`, the supervisor: it reads pushpin.conf, starts
// the services with the command lines Pushpin 1.36's runner uses,
// prefixes or files their output, forwards SIGHUP, restarts a crashed
// service, and stops them all on SIGINT/SIGTERM.
//
// It owns: the runner flags (--config --logfile --loglevel --verbose
// -m/--merge-output --port --id --route --version, as `pushpin`), the
// choice of binaries, the child command lines, the rendered zurl.conf,
// pid files, per-service output files and the supervision loop. It does
// not own any service's behaviour, and opens no sockets.
//
// # Services
//
// [runner] services accepts the 1.36 and 1.41 names: condure/connmgr,
// zurl, pushpin-proxy/proxy, pushpin-handler/handler; unknown names are
// ignored with a warning (Pushpin ignores them silently). They always
// start in the order connmgr, zurl, proxy, handler. Log lines, output
// prefixes and file names use the 1.36 names: condure, zurl, proxy,
// handler; <fp>condure.pid/.log, <fp>zurl.conf/.pid/.log,
// <fp>pushpin-proxy.pid/.log, <fp>pushpin-handler.pid/.log (fp = "" or
// p<N>- with --id=N).
//
// # Binaries
//
// tack runs its own processes unless told otherwise:
//
//	service  default (next to `tack`, then PATH)  override key        meaning of the override
//	connmgr  tack-connmgr                         [runner] condure_bin honoured unless it is the bare name "condure"
//	zurl     tack-zhttp-client                    [runner] zurl_bin    honoured unless it is the bare name "zurl"
//	proxy    tack-proxy                           [runner] proxy_bin   always honoured (tack key)
//	handler  tack-handler                         [runner] handler_bin always honoured (tack key)
//
// So Debian's pushpin.conf (condure_bin=condure, zurl_bin=zurl) runs tack
// processes, and condure_bin=/usr/bin/condure or proxy_bin=pushpin-proxy
// runs the real Pushpin ones. A value with a '/' is used as given; a bare
// name is looked up in PATH when the config is built.
//
// # Command lines (Pushpin 1.36, checked with `pushpin --verbose`)
//
//	condure --log-level=N --listen=<addr:port>,stream... [--listen=<addr:port>,stream,tls,default-cert=default_<port>...]
//	        [--listen=<path>,local,stream...] --zclient-stream=ipc://<rundir>/<prefix>condure
//	        --buffer-size=<client_buffer_size> --stream-maxconn=<client_maxconn> [--compression]
//	        [--tls-identities-dir=<configdir>/runner/certs]
//	zurl    --config=<rundir>/<fp>zurl.conf [--logfile=<logdir>/<fp>zurl.log] (--verbose | --loglevel=N)
//	proxy   --config=<file> --ipc-prefix=<prefix> [--logfile=<logdir>/<fp>pushpin-proxy.log] --loglevel=N [--route=<line>...] [--quiet-check]
//	handler --config=<file> --ipc-prefix=<prefix> [--port-offset=<10·id>] [--logfile=<logdir>/<fp>pushpin-handler.log] --loglevel=N
//
// <rundir> and <logdir> are absolute (relative ones are taken from the
// working directory); <file> is the --config value as given, like
// Pushpin; --logfile is left out with --merge-output; --quiet-check is
// added when zurl is a service; zurl gets --verbose from level 3.
// --compression comes from [runner] allow_compression=true (a Pushpin 1.37
// key; condure 1.9.1 has the flag too).
// Per-service levels come from --loglevel or [runner] log_level
// ("N,name:N"), with names runner, condure|connmgr, zurl,
// pushpin-proxy|proxy, pushpin-handler|handler (1.36 knows only the
// first of each pair). With --id=N the prefix passed on is p<N>-, but
// {ipc_prefix} in the runner's own values (local_ports) keeps the file's
// prefix, as in 1.36. --port replaces http_port, https_ports and
// local_ports. A local_ports entry may end in ?mode=<octal>&user=&group=
// (Pushpin 1.37+), passed on as the listen params mode=, user=, group=.
//
// # Output
//
// With -m each child line starting with '[' gets "[<name>] " inserted
// after its third space (after "[LEVEL] date time"), other lines pass
// unchanged, all into the runner's log (stderr or --logfile). Without -m
// each child's stdout and stderr are appended to <logdir>/<fp><file>.log
// (Pushpin does this for condure and discards the others' output; we
// keep it, in the file the child logs to, so a crash trace is not lost).
//
// # Supervision (deliberate improvement over Pushpin)
//
// Children run in their own process group, so a terminal ^C reaches only
// the runner. A child that exits on its own is logged as Pushpin does
// ("<name>: Exited unexpectedly", "Exited uncleanly", "Unexpected return
// code: N") and restarted after RestartMin, doubling to RestartMax, the
// delay resetting once it has run RestartReset; the other children are
// left alone (Pushpin instead stops everything and exits 1). SIGHUP
// reopens --logfile and the child output files (so condure.log follows a
// rotation) and is forwarded to proxy, handler and zurl (not condure,
// which 1.36 spares and condure 1.9.1 dies of). SIGINT/SIGTERM
// send SIGTERM to every child's process group and SIGKILL after
// StopGrace; a second signal kills at once. A start failure at launch
// stops the children already started and returns the error.
//
// # Start-up checks (startup.go)
//
// Before anything in the run directory is touched the runner takes an
// exclusive flock on <rundir>/<fp>tack.lock (its pid inside): a second
// instance on the same directory and --id stops with a message naming
// the holder, leaving the first one's sockets and pid files alone. It
// then checks what connmgr will open: TCP ports free, no live process on
// a local_ports path, each https port's default_<port> certificate
// loadable from <configdir>/runner/certs. A child whose first run exits
// with code 78 (cli.ExitStartup: bad configuration, a port or socket in
// use) failed to start: the runner stops the suite and returns the
// child's last output lines as its error (printed on stderr, exit 1)
// instead of restarting it. Later crashes are restarted as below. Each child
// is owned by one supervise goroutine, which owns the goroutines that
// wait for the process and copy its output; Run returns only after all
// have ended.
//
// Differences from 1.36 worth knowing: tack logs "starting <name>" and
// "stopping <name>" also with -m (1.36 does not), logs the resolved
// binary path in "running: ...", and rejects http_port values that are
// not [addr:]port (1.36 turns some into port 0).
package runner
