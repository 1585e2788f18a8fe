// Command tack-zhttp-client performs outbound HTTP requests for the proxy
// over zhttp, standing in for zurl; see package internal/zhttpclient.
package main

import (
	"os"

	"tack/internal/cli"
	"tack/internal/zhttpclient"
)

func main() { os.Exit(cli.Main(zhttpclient.Command())) }
