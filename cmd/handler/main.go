// Command tack-handler holds GRIP sessions; see package internal/handler.
package main

import (
	"os"

	"tack/internal/cli"
	"tack/internal/handler"
)

func main() { os.Exit(cli.Main(handler.Command())) }
