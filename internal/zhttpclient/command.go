package zhttpclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

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
		return fmt.Errorf("parameter to --loglevel invalid: %w", err)
	}
	if lf.Verbose && level < logging.LevelDebug {
		level = logging.LevelDebug
	}
	var out io.Writer = os.Stderr
	var file *logFile
	if lf.LogFile != "" {
		file, err = openLogFile(lf.LogFile)
		if err != nil {
			return err
		}
		defer file.Close()
		out = file
	}
	format, err := logging.ParseFormat(lf.LogFormat)
	if err != nil {
		return err
	}
	log := logging.NewWriter(out, level)
	if format == logging.FormatJSON {
		log = logging.NewJSON(out, level, LogService)
	}
	cfg, warns, err := LoadConfig(configFile)
	if err != nil {
		return err
	}
	for _, w := range warns {
		log.Warn().Str("config", configFile).Msg(w)
	}
	svc, err := New(cfg, log)
	if err != nil {
		return err
	}

	// SIGHUP reopens the log file, as zurl's does (the runner forwards it;
	// Go's default action would end the process).
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
				if file != nil {
					if err := file.reopen(); err != nil {
						log.Error().Err(err).Msg("reopen log file")
					} else {
						log.Info().Msg("log file reopened")
					}
				}
			}
		}
	})
	err = svc.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// logFile is an append-only log file that SIGHUP can reopen (log
// rotation). mu guards f.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("failed to open log file: %w", err)
	}
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

func (l *logFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
