package connmgr

import (
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"tack/internal/cli"
	"tack/pkg/zhttp"
)

// flags holds condure 1.9.1's command line, spelled as `condure --help`
// prints it, which is what Pushpin 1.36's runner passes (zmq-wire.md §6.1).
type flags struct {
	log            cli.LogFlags
	id             string
	listen         []string
	zclientStream  []string
	zclientReq     []string
	zclientConnect bool
	ipcFileMode    string
	workers        int
	reqMaxConn     int
	streamMaxConn  int
	bufferSize     int
	bodyBufferSize int
	messagesMax    int
	reqTimeout     int
	streamTimeout  int
	tlsIdentities  string
	compression    bool
	reusePort      bool
	sizes          bool
	version        bool
}

// Command returns the tack-connmgr root command.
func Command() *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "tack-connmgr",
		Short: "HTTP connection manager (drop-in for condure 1.9.1)",
		Long: "tack-connmgr accepts HTTP/1.x client connections and hands each request to a zhttp\n" +
			"server (the proxy) over ZeroMQ, like Pushpin's condure.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.sizes {
				printSizes(cmd)
				return nil
			}
			cfg, err := f.config()
			if err != nil {
				return cli.Startup(err)
			}
			log, out, err := f.log.Logger("condure")
			if err != nil {
				return cli.Startup(err)
			}
			defer out.Close()
			s, err := New(cfg, log)
			if err != nil {
				return cli.Startup(err)
			}
			// SIGHUP reopens --logfile, if any (condure 1.9.1 dies of
			// it; the runner does not forward it).
			return cli.RunWithHangup(cmd.Context(), log, out, nil, s.Run)
		},
	}
	cmd.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	f.register(cmd.Flags())
	return cmd
}

// register adds condure's flags to fs.
func (f *flags) register(fs *pflag.FlagSet) {
	f.log.Register(fs)
	fs.StringVar(&f.id, "id", DefaultID, "Instance ID")
	fs.StringArrayVar(&f.listen, "listen", []string{DefaultListen}, "Listen on `[addr:]port[,params...]` (params: stream, req, tls, default-cert=NAME, local)")
	fs.StringArrayVar(&f.zclientStream, "zclient-stream", []string{DefaultZClientSpec}, "ZeroMQ client PUSH/ROUTER/SUB `spec-base`")
	fs.StringArrayVar(&f.zclientReq, "zclient-req", []string{DefaultZClientSpec}, "ZeroMQ client REQ `spec` (req mode; not supported yet)")
	fs.BoolVar(&f.zclientConnect, "zclient-connect", false, "ZeroMQ client sockets should connect instead of bind")
	fs.StringVar(&f.ipcFileMode, "ipc-file-mode", "", "Permissions for ZeroMQ IPC binds (`octal`)")
	fs.IntVar(&f.workers, "workers", DefaultWorkers, "Number of worker threads (accepted for compatibility)")
	fs.IntVar(&f.reqMaxConn, "req-maxconn", DefaultReqMaxConn, "Maximum number of concurrent connections in req mode")
	fs.IntVar(&f.streamMaxConn, "stream-maxconn", DefaultStreamMaxConn, "Maximum number of concurrent connections in stream mode")
	fs.IntVar(&f.bufferSize, "buffer-size", DefaultBufferSize, "Connection buffer size: request head limit, body packet size and credits")
	fs.IntVar(&f.bodyBufferSize, "body-buffer-size", DefaultBodyBufferSize, "Body buffer size for connections in req mode")
	fs.IntVar(&f.messagesMax, "messages-max", DefaultMessagesMax, "Maximum number of queued WebSocket messages per connection")
	fs.IntVar(&f.reqTimeout, "req-timeout", DefaultReqTimeout, "Client timeout in req mode (seconds)")
	fs.IntVar(&f.streamTimeout, "stream-timeout", DefaultStreamTimeout, "Client timeout in stream mode (seconds)")
	fs.StringVar(&f.tlsIdentities, "tls-identities-dir", ".", "Directory containing certificates and private keys")
	fs.BoolVar(&f.compression, "compression", false, "Allow compression to be used (WebSocket permessage-deflate)")
	fs.BoolVar(&f.reusePort, "reuse-port", false, "Share TCP listen ports with other processes (SO_REUSEPORT; tack's runner uses it for connmgr_count > 1)")
	fs.BoolVar(&f.sizes, "sizes", false, "Prints sizes of tasks and other objects")
	fs.BoolVarP(&f.version, "version", "V", false, "Print version information")
}

// config turns the flags into a validated Config.
func (f *flags) config() (Config, error) {
	cfg := DefaultConfig()
	cfg.ID = f.id
	cfg.Listen = cfg.Listen[:0]
	for _, v := range f.listen {
		l, err := ParseListen(v)
		if err != nil {
			return Config{}, err
		}
		cfg.Listen = append(cfg.Listen, l)
	}
	cfg.ZClientStream = f.zclientStream
	cfg.ZClientReq = f.zclientReq
	cfg.ZClientConnect = f.zclientConnect
	if f.ipcFileMode != "" {
		m, err := strconv.ParseUint(f.ipcFileMode, 8, 32)
		if err != nil {
			return Config{}, fmt.Errorf("ipc-file-mode %q: not an octal mode", f.ipcFileMode)
		}
		cfg.IPCFileMode = os.FileMode(m)
	}
	cfg.Workers = f.workers
	cfg.ReqMaxConn = f.reqMaxConn
	cfg.StreamMaxConn = f.streamMaxConn
	cfg.BufferSize = f.bufferSize
	cfg.BodyBufferSize = f.bodyBufferSize
	cfg.MessagesMax = f.messagesMax
	cfg.ReqTimeout = time.Duration(f.reqTimeout) * time.Second
	cfg.StreamTimeout = time.Duration(f.streamTimeout) * time.Second
	cfg.TLSIdentities = f.tlsIdentities
	cfg.Compression = f.compression
	cfg.ReusePort = f.reusePort
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// printSizes answers --sizes with the per-connection objects that stay
// allocated while a connection is idle (condure prints its task sizes).
func printSizes(cmd *cobra.Command) {
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "conn = %d\n", unsafe.Sizeof(conn{}))
	fmt.Fprintf(out, "session = %d\n", unsafe.Sizeof(session{}))
	fmt.Fprintf(out, "packet = %d\n", unsafe.Sizeof(zhttp.Packet{}))
}
