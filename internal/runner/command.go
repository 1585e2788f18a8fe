package runner

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"tack/internal/broker"
	"tack/internal/logging"
	"tack/internal/publish"
)

// Command returns the `tack` root command: Pushpin's runner flags.
func Command() *cobra.Command {
	fl := Flags{ID: -1}
	cmd := &cobra.Command{
		Use:   "tack",
		Short: "Reverse proxy for realtime web services (Pushpin-compatible runner)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("id") && fl.ID < 0 {
				return errors.New("id must be greater than or equal to 0")
			}
			exeDir := ""
			if exe, err := os.Executable(); err == nil {
				if p, err := filepath.EvalSymlinks(exe); err == nil {
					exe = p
				}
				exeDir = filepath.Dir(exe)
			}
			cfg, err := BuildConfig(fl, exeDir)
			if err != nil {
				return err
			}
			// The runner's log output, shared by its own logger and
			// the merged child lines so that lines never interleave;
			// SIGHUP reopens it.
			sink, err := logging.OpenOutput(fl.LogFile)
			if err != nil {
				return err
			}
			defer sink.Close()
			log := logging.NewWriter(sink, cfg.Levels.of("runner"))
			if cfg.LogFormat == logging.FormatJSON {
				log = logging.NewJSON(sink, cfg.Levels.of("runner"), "runner")
			}
			if fl.Config == "" {
				log.Info().Msg("using config: " + cfg.ConfigPath)
			}
			return New(cfg, log, sink, sink.Reopen).Run(cmd.Context())
		},
	}
	cmd.SetVersionTemplate("tack {{.Version}}\n")
	f := cmd.Flags()
	f.StringVar(&fl.Config, "config", "", "config file")
	f.StringVar(&fl.LogFile, "logfile", "", "file to log to")
	f.StringVar(&fl.LogLevel, "loglevel", "", "log level N or N,service:N,... (default: 2)")
	f.BoolVar(&fl.Verbose, "verbose", false, "verbose output, same as --loglevel=3")
	f.BoolVarP(&fl.MergeOutput, "merge-output", "m", false, "combine output of subprocesses")
	f.StringVar(&fl.LogFormat, "log-format", "", "log output: text (Pushpin's lines) or json (default: [runner] log_format)")
	f.StringVar(&fl.Port, "port", "", "run a single HTTP server instance on [addr:]port")
	f.IntVar(&fl.ID, "id", -1, "set instance ID (needed to run multiple instances)")
	f.StringArrayVar(&fl.Routes, "route", nil, "add route (overrides routes file); repeatable")
	cmd.AddCommand(publish.Command())
	cmd.AddCommand(broker.Command())
	return cmd
}
