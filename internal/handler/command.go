package handler

import (
	"github.com/spf13/cobra"

	"tack/internal/cli"
	"tack/internal/config"
)

// Command returns the tack-handler command; its flags are pushpin-handler's.
func Command() *cobra.Command {
	var (
		lf         cli.LogFlags
		configPath string
		ipcPrefix  string
		portOffset int
	)
	// connmgr specs the runner passes for connmgr_count > 1
	var cmInStream, cmOut []string
	cmd := &cobra.Command{
		Use:   "tack-handler",
		Short: "Hold GRIP sessions and take publishes (pushpin-handler)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, out, err := lf.Logger("handler")
			if err != nil {
				return cli.Startup(err)
			}
			defer out.Close()
			if configPath == "" {
				if configPath, err = config.FindDefault(); err != nil {
					return cli.Startup(err)
				}
			}
			f, err := config.Load(configPath, config.Options{IPCPrefix: ipcPrefix, PortOffset: portOffset})
			if err != nil {
				return cli.Startup(err)
			}
			for _, w := range f.Warnings() {
				log.Warn().Msg(w)
			}
			cfg, err := ConfigFromFile(f)
			if err != nil {
				return cli.Startup(err)
			}
			// The runner names each of its connmgr processes' sockets
			// when it starts several (connmgr_count).
			if len(cmInStream) > 0 {
				cfg.ConnmgrStreamSpecs = cmInStream
			}
			if len(cmOut) > 0 {
				cfg.ConnmgrOutSpecs = cmOut
			}
			for _, w := range cfg.Inputs.Warnings {
				log.Warn().Msg(w)
			}
			svc, err := New(cfg, log.With().Str("component", "handler").Logger())
			if err != nil {
				return cli.Startup(err)
			}
			log.Info().Str("config", f.Path()).Msg("starting...")
			// SIGHUP reopens the log file and nothing else, as in
			// pushpin-handler 1.36; held sessions are untouched.
			return cli.RunWithHangup(cmd.Context(), log, out, nil, svc.Run)
		},
	}
	fs := cmd.Flags()
	lf.Register(fs)
	fs.StringVarP(&configPath, "config", "c", "", "config file (pushpin.conf format)")
	fs.StringVar(&ipcPrefix, "ipc-prefix", "", "override ipc_prefix config option")
	fs.StringArrayVar(&cmInStream, "connmgr-in-stream-specs", nil, "connect ROUTER here instead of [proxy] condure_in_stream_specs (repeatable)")
	fs.StringArrayVar(&cmOut, "connmgr-out-specs", nil, "connect PUB here instead of [proxy] condure_out_specs (repeatable)")
	fs.IntVar(&portOffset, "port-offset", 0, "add this to every tcp port of the handler")
	return cmd
}
