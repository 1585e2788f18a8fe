// Command tack-proxy routes client requests to backends; see package internal/proxy.
package main

import (
	"os"

	"tack/internal/cli"
	"tack/internal/proxy"
)

func main() { os.Exit(cli.Main(proxy.Command())) }
