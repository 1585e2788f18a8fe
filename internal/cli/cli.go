package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"tack/internal/logging"
)

// DefaultGCPercent is the GC target of every tack binary unless GOGC is set.
const DefaultGCPercent = 50

// Version is set at build time with -ldflags "-X tack/internal/cli.Version=...".
var Version = "dev"

// ExitError carries a specific exit code through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// ExitStartup is the exit code of a service that could not start (bad
// configuration, a port or socket in use, a missing certificate): the
// runner stops the suite instead of restarting it (sysexits EX_CONFIG).
const ExitStartup = 78

// Startup marks err (nil stays nil) as a failure to start: the process
// exits with ExitStartup.
func Startup(err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: ExitStartup, Err: err}
}

// Main runs cmd with a context that SIGINT and SIGTERM cancel, prints a
// returned error once with the binary name in front and returns the exit code.
func Main(cmd *cobra.Command) int {
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	if cmd.Version == "" {
		cmd.Version = Version
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// SIGHUP never ends a tack process (Go's default action would): log
	// rotation sends it, and the runner forwards it. What a process does
	// with it is up to its RunWithHangup (the proxy: its own loop); until
	// then it is dropped.
	spare := make(chan os.Signal, 1)
	signal.Notify(spare, syscall.SIGHUP)
	defer signal.Stop(spare)
	// The servers hold many small long-lived objects (a few kilobytes per
	// held connection) and little else: collecting at 50 % growth instead
	// of Go's 100 % keeps their resident memory near what they use, for a
	// few percent of CPU. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
	// TACK_CPUPROFILE=<dir> writes <dir>/<binary>.<pid>.pprof while the
	// process runs: a benchmarking aid, off unless set.
	if dir := os.Getenv("TACK_CPUPROFILE"); dir != "" {
		path := filepath.Join(dir, fmt.Sprintf("%s.%d.pprof", filepath.Base(os.Args[0]), os.Getpid()))
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() {
					pprof.StopCPUProfile()
					f.Close()
				}()
			}
		}
	}
	// TACK_ALLOCPROFILE=<dir> writes <dir>/<binary>.<pid>.allocs.pprof
	// (allocations over the process's life) when it ends: the same kind of
	// aid.
	if dir := os.Getenv("TACK_ALLOCPROFILE"); dir != "" {
		defer func() {
			path := filepath.Join(dir, fmt.Sprintf("%s.%d.allocs.pprof", filepath.Base(os.Args[0]), os.Getpid()))
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// LogFlags are Pushpin's logging flags, shared by proxy, handler and
// zhttp-client (connmgr uses --log-level, as condure does).
type LogFlags struct {
	LogFile   string
	LogLevel  string
	Verbose   bool
	LogFormat string // text or json (tack's own flag; default from $TACK_LOG_FORMAT)
}

// Register adds --logfile, --loglevel (and --log-level as an alias) and
// --verbose to fs.
func (lf *LogFlags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&lf.LogFile, "logfile", "", "log to this file instead of stderr")
	fs.StringVar(&lf.LogLevel, "loglevel", "", "log level: 0 error, 1 warn, 2 info, 3 debug, 4 trace")
	fs.StringVar(&lf.LogLevel, "log-level", "", "alias of --loglevel")
	fs.BoolVar(&lf.Verbose, "verbose", false, "same as --loglevel=3")
	fs.StringVar(&lf.LogFormat, "log-format", os.Getenv(logging.FormatEnv), "log output: text (Pushpin's lines) or json")
}

// Logger builds the process logger. service selects an entry of a
// "N,service:N" level list. The Output is to be closed at the end and
// reopened on SIGHUP (RunWithHangup).
func (lf *LogFlags) Logger(service string) (zerolog.Logger, *logging.Output, error) {
	level, err := logging.ParseLevel(lf.LogLevel, service)
	if err != nil {
		return zerolog.Nop(), nil, err
	}
	if lf.Verbose && level < logging.LevelDebug {
		level = logging.LevelDebug
	}
	format, err := logging.ParseFormat(lf.LogFormat)
	if err != nil {
		return zerolog.Nop(), nil, err
	}
	return logging.New(logging.Options{Level: level, File: lf.LogFile, Service: service, Format: format})
}

// RunWithHangup runs run(ctx) while handling SIGHUP as Pushpin's
// processes do: log "reloading", reopen out (log rotation: the following
// lines go to a fresh file at the same path), then call reload, if any.
func RunWithHangup(ctx context.Context, log zerolog.Logger, out *logging.Output, reload func(), run func(context.Context) error) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info().Msg("reloading")
				if out != nil && out.Path() != "" {
					if err := out.Reopen(); err != nil {
						log.Error().Err(err).Str("file", out.Path()).Msg("cannot reopen log file")
					} else {
						log.Info().Msg("log file reopened")
					}
				}
				if reload != nil {
					reload()
				}
			}
		}
	})
	err := run(ctx)
	cancel()
	wg.Wait()
	return err
}
