// Command tack-connmgr accepts HTTP client connections and hands each request
// to a zhttp server over ZeroMQ, as condure does; see package internal/connmgr.
package main

import (
	"os"

	"tack/internal/cli"
	"tack/internal/connmgr"
)

func main() { os.Exit(cli.Main(connmgr.Command())) }
