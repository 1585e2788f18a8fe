// Command tack starts and supervises the tack services; see package
// internal/runner.
package main

import (
	"os"

	"tack/internal/cli"
	"tack/internal/runner"
)

func main() { os.Exit(cli.Main(runner.Command())) }
