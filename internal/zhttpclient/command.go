package zhttpclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"tack/internal/cli"
	"tack/internal/logging"
)

// LogService is the name under which a runner's "N,service:N" --loglevel
// list addresses this process (it replaces zurl).
const LogService = "zurl"

// Command returns the tack-zhttp-client command. Its flags are those the
// Pushpin 1.36 runner passes to zurl:
//
//	--config=<file> [--logfile=<file>] (--verbose | --loglevel=N)
func Command() *cobra.Command {
	var configFile string
	var lf cli.LogFlags
	cmd := &cobra.Command{
		Use:   "tack-zhttp-client",
		Short: "zhttp server that performs outbound HTTP requests (a drop-in for zurl)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("config") && configFile == "" {
				return errors.New("parameter to --config missing")
			}
			if configFile == "" {
				configFile = DefaultConfigFile
			}
			return run(cmd.Context(), configFile, &lf)
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "config file (default "+DefaultConfigFile+")")
	lf.Register(cmd.Flags())
	return cmd
}

func run(ctx context.Context, configFile string, lf *cli.LogFlags) error {
	level, err := logging.ParseLevel(lf.LogLevel, LogService)
	if err != nil {
		return cli.Startup(fmt.Errorf("parameter to --loglevel invalid: %w", err))
	}
	if lf.Verbose && level < logging.LevelDebug {
		level = logging.LevelDebug
	}
	out, err := logging.OpenOutput(lf.LogFile)
	if err != nil {
		return cli.Startup(fmt.Errorf("failed to %w", err))
	}
	defer out.Close()
	format, err := logging.ParseFormat(lf.LogFormat)
	if err != nil {
		return cli.Startup(err)
	}
	log := logging.NewWriter(out, level)
	if format == logging.FormatJSON {
		log = logging.NewJSON(out, level, LogService)
	}
	cfg, warns, err := LoadConfig(configFile)
	if err != nil {
		return cli.Startup(err)
	}
	for _, w := range warns {
		log.Warn().Str("config", configFile).Msg(w)
	}
	svc, err := New(cfg, log)
	if err != nil {
		return cli.Startup(err)
	}

	// SIGHUP reopens the log file, as zurl's does (the runner forwards it).
	return cli.RunWithHangup(ctx, log, out, nil, svc.Run)
}
