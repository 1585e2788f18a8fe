package broker

import (
	"github.com/spf13/cobra"

	"tack/internal/cli"
	"tack/internal/logging"
)

// Command returns `tack broker`.
func Command() *cobra.Command {
	var cfg Config
	var level int
	var format string
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Forward ZeroMQ publishes to many tack instances (XSUB/XPUB)",
		Long: "Bind an XSUB socket for publishers (PUB or XPUB, connecting) and an XPUB socket for the\n" +
			"SUB publish inputs of tack instances ([handler] push_in_sub_specs=<xpub spec> with\n" +
			"push_in_sub_connect=true). Subscriptions are forwarded upstream, so items only travel\n" +
			"to instances with listeners on their channel.",
		Args:    cobra.NoArgs,
		Version: cli.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			f, err := logging.ParseFormat(format)
			if err != nil {
				return err
			}
			log := logging.NewWriter(cmd.ErrOrStderr(), level)
			if f == logging.FormatJSON {
				log = logging.NewJSON(cmd.ErrOrStderr(), level, "broker")
			}
			b, err := New(cfg, log)
			if err != nil {
				return err
			}
			return b.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&cfg.XSub, "xsub", []string{DefaultXSubSpec}, "bind spec for publishers; repeatable")
	fs.StringArrayVar(&cfg.XPub, "xpub", []string{DefaultXPubSpec}, "bind spec for tack instances' SUB inputs; repeatable")
	fs.IntVar(&cfg.HWM, "hwm", DefaultHWM, "high-water mark (messages) per peer")
	fs.IntVar(&level, "loglevel", 2, "log level 0..3")
	fs.StringVar(&format, "log-format", "text", "log output: text or json")
	return cmd
}
