package publish

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"tack/internal/cli"
)

// Command returns `tack publish`; its arguments and flags are
// pushpin-publish's (`pushpin-publish --help` on 1.36).
func Command() *cobra.Command {
	o := Options{}
	defaultSpec := os.Getenv(SpecEnv)
	if defaultSpec == "" {
		defaultSpec = DefaultSpec
	}
	cmd := &cobra.Command{
		Use:   "publish [flags] <channel> [--] [content]",
		Short: "Publish messages to Pushpin (pushpin-publish)",
		Long: "Publish one message to a channel through a GRIP publish endpoint: the HTTP API\n" +
			"(http://localhost:5561, or $GRIP_URL) or a ZeroMQ PUSH spec. Content starting\n" +
			"with @ names a file whose bytes are sent as they are.",
		Args:    cobra.RangeArgs(1, 2),
		Version: cli.Version,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Usage is for argument errors (as clap prints it), not for a
			// failed publish.
			cmd.SilenceUsage = true
			o.Channel = args[0]
			if len(args) == 2 {
				o.Content, o.HaveContent = args[1], true
			}
			if err := Run(cmd.Context(), o); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Published")
			return nil
		},
	}
	cmd.SetVersionTemplate("tack publish {{.Version}}\n")
	fs := cmd.Flags()
	fs.BoolVar(&o.Close, "close", false, "Close streaming and WebSocket connections")
	fs.BoolVar(&o.Hint, "hint", false, "Send hint instead of content")
	fs.BoolVar(&o.NoEOL, "no-eol", false, "Don't add newline to HTTP payloads")
	fs.BoolVar(&o.NoSeq, "no-seq", false, "Bypass sequencing buffer")
	fs.BoolVar(&o.Patch, "patch", false, "Content is JSON patch")
	fs.BoolP("version", "V", false, "Prints version information")
	fs.StringVar(&o.Code, "code", "200", "HTTP response code to use")
	fs.StringArrayVarP(&o.Headers, "header", "H", nil, `Add HTTP response header ("K: V")`)
	fs.StringVar(&o.ID, "id", "", "Payload ID")
	fs.StringArrayVarP(&o.Meta, "meta", "M", nil, `Add meta variable ("K=V")`)
	fs.StringVar(&o.PrevID, "prev-id", "", "Previous payload ID")
	fs.StringVar(&o.Sender, "sender", "", "Sender meta value")
	fs.StringVar(&o.Spec, "spec", defaultSpec, "GRIP URL or ZeroMQ PUSH spec")
	fs.StringVarP(&o.User, "user", "u", "", "Authenticate using basic auth (user:pass)")
	return cmd
}
