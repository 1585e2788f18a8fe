#!/bin/sh
# Installs what building tack needs when it is missing: a C compiler,
# pkg-config and libzmq's development files (for github.com/pebbe/zmq4),
# then the Go modules. Safe to rerun.
set -eu

need=""
command -v gcc >/dev/null 2>&1 || need="$need gcc"
command -v pkg-config >/dev/null 2>&1 || need="$need pkg-config"
if ! pkg-config --exists libzmq 2>/dev/null; then
	need="$need libzmq3-dev"
fi

if [ -n "$need" ]; then
	echo "deps: installing$need"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y $need || { $sudo apt-get update && $sudo apt-get install -y $need; }
fi

command -v go >/dev/null 2>&1 || { echo "deps: Go is not installed (https://go.dev/dl/)" >&2; exit 1; }
go mod download
