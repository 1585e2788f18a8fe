package proxy

import (
	"github.com/spf13/cobra"

	"tack/internal/cli"
	"tack/internal/config"
)

// Command returns the tack-proxy command; its flags are pushpin-proxy's.
func Command() *cobra.Command {
	var (
		lf         cli.LogFlags
		configPath string
		ipcPrefix  string
		routeLines []string
		quietCheck bool
	)
	// connmgr specs the runner passes for connmgr_count > 1
	var cmIn, cmInStream, cmOut []string
	cmd := &cobra.Command{
		Use:   "tack-proxy",
		Short: "Route client requests to backends over zhttp (pushpin-proxy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, out, err := lf.Logger("proxy")
			if err != nil {
				return cli.Startup(err)
			}
			defer out.Close()
			if configPath == "" {
				if configPath, err = config.FindDefault(); err != nil {
					return cli.Startup(err)
				}
			}
			f, err := config.Load(configPath, config.Options{IPCPrefix: ipcPrefix})
			if err != nil {
				return cli.Startup(err)
			}
			for _, w := range append(f.Warnings(), UnsupportedWarnings(f)...) {
				log.Warn().Msg(w)
			}
			cfg, err := ConfigFromFile(f, routeLines)
			if err != nil {
				return cli.Startup(err)
			}
			// The runner names each of its connmgr processes' sockets
			// when it starts several (connmgr_count); they replace the
			// condure_*_specs lists of the file.
			if len(cmIn) > 0 {
				cfg.ConnmgrInSpecs = cmIn
			}
			if len(cmInStream) > 0 {
				cfg.ConnmgrInStreamSpecs = cmInStream
			}
			if len(cmOut) > 0 {
				cfg.ConnmgrOutSpecs = cmOut
			}
			cfg.ReopenLog = out.Reopen
			svc, err := New(cfg, log.With().Str("component", "proxy").Logger())
			if err != nil {
				return cli.Startup(err)
			}
			log.Info().Str("config", f.Path()).Msg("starting...")
			return svc.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	lf.Register(fs)
	fs.StringVarP(&configPath, "config", "c", "", "config file (pushpin.conf format)")
	fs.StringVar(&ipcPrefix, "ipc-prefix", "", "override ipc_prefix config option")
	fs.StringArrayVar(&routeLines, "route", nil, "add route (overrides routes file)")
	fs.StringArrayVar(&cmIn, "connmgr-in-specs", nil, "connect PULL here instead of [proxy] condure_in_specs (repeatable)")
	fs.StringArrayVar(&cmInStream, "connmgr-in-stream-specs", nil, "connect ROUTER here instead of [proxy] condure_in_stream_specs (repeatable)")
	fs.StringArrayVar(&cmOut, "connmgr-out-specs", nil, "connect PUB here instead of [proxy] condure_out_specs (repeatable)")
	fs.BoolVar(&quietCheck, "quiet-check", false, "accepted for compatibility (update checks are never made)")
	return cmd
}
