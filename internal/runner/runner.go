package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/rs/zerolog"

	"tack/internal/logging"
)

// Runner starts and supervises the configured services.
type Runner struct {
	cfg    *Config
	log    zerolog.Logger
	out    io.Writer    // merged child output (the runner's log sink)
	reopen func() error // reopens the runner's log file on SIGHUP; may be nil
}

// New returns a Runner. out receives child output under --merge-output;
// reopen (optional) reopens the runner's log file on SIGHUP.
func New(cfg *Config, log zerolog.Logger, out io.Writer, reopen func() error) *Runner {
	return &Runner{cfg: cfg, log: log, out: out, reopen: reopen}
}

// Run starts the services in order and supervises them until ctx is done,
// then stops them all and returns once every child and goroutine is gone.
func (r *Runner) Run(ctx context.Context) error {
	r.log.Info().Msg("starting...")
	for _, w := range r.cfg.Warnings {
		r.log.Warn().Msg(w)
	}
	if err := os.MkdirAll(r.cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("create rundir: %w", err)
	}
	// Nothing in the run directory is touched before the lock is held,
	// and no child starts before the ports it needs are known to be free.
	lock, err := r.cfg.lockRunDir()
	if err != nil {
		r.log.Error().Msg(err.Error())
		return err
	}
	defer lock.Close()
	if err := r.cfg.preflight(); err != nil {
		err = fmt.Errorf("cannot start: %w", err)
		r.log.Error().Msg(err.Error())
		return err
	}
	if !r.cfg.MergeOutput {
		if err := os.MkdirAll(r.cfg.LogDir, 0o755); err != nil {
			return fmt.Errorf("create logdir: %w", err)
		}
	}
	if r.cfg.has(ServiceZurl) {
		if err := r.cfg.renderZurlConf(); err != nil {
			return err
		}
	}

	// Signals seen while running: SIGHUP is forwarded; a second
	// SIGINT/SIGTERM (the first one cancelled ctx, in cli.Main) kills
	// the children at once.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	term := make(chan os.Signal, 2)
	signal.Notify(term, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(term)

	// Children stop on their own context, cancelled after "stopping..."
	// is logged, so the log reads in order.
	childCtx, stopChildren := context.WithCancel(context.WithoutCancel(ctx))
	defer stopChildren()
	kill := make(chan struct{})
	failed := make(chan error, len(r.cfg.units()))
	var wg sync.WaitGroup
	var children []*child
	var files []*logging.Output
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, u := range r.cfg.units() {
		c, f, err := r.newChild(u)
		if err == nil {
			var run *running
			if run, err = c.start(); err == nil {
				children = append(children, c)
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.supervise(childCtx, run, kill, failed)
				}()
			}
		}
		if f != nil {
			files = append(files, f)
		}
		if err != nil {
			// A failed start undoes itself: stop what is running.
			r.log.Error().Err(err).Msg("Error running: " + u.name)
			stopChildren()
			wg.Wait()
			return err
		}
	}
	r.log.Info().Msg("started")

	var failure error
	for done := false; !done; {
		select {
		case failure = <-failed:
			// A child could not start: stop the suite rather than loop.
			r.log.Error().Msg(failure.Error())
			done = true
		case <-hup:
			r.log.Info().Msg("reloading")
			if r.reopen != nil {
				if err := r.reopen(); err != nil {
					r.log.Error().Err(err).Msg("cannot reopen log file")
				}
			}
			// The files we write child output to (condure's log,
			// stray output of the others) follow a rotation too.
			for _, f := range files {
				if err := f.Reopen(); err != nil {
					r.log.Error().Err(err).Str("file", f.Path()).Msg("cannot reopen log file")
				}
			}
			for _, c := range children {
				if forwardsHangup(c.kind) {
					c.signal(syscall.SIGHUP)
				}
			}
		case <-ctx.Done():
			done = true
		}
	}
	r.log.Info().Msg("stopping...")
	stopChildren()
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	signals := 0
	for {
		select {
		case <-term:
			// The first signal is the one that cancelled ctx.
			if signals++; signals == 2 {
				close(kill)
			}
		case <-stopped:
			r.log.Info().Msg("stopped")
			return failure
		}
	}
}

// forwardsHangup says which children get the runner's SIGHUP: proxy and
// handler (as Pushpin 1.36: they reopen --logfile, the proxy reloads its
// routes) and zurl, which reopens --logfile too (zurl 1.x logs
// "reloading" and keeps running). Not condure: 1.36 does not forward it,
// and condure 1.9.1 dies of it (checked); its output is a file the runner
// itself reopens.
func forwardsHangup(kind string) bool {
	return kind == ServiceProxy || kind == ServiceHandler || kind == ServiceZurl
}

// newChild prepares the child for a unit, opening its output file when
// output is not merged.
func (r *Runner) newChild(u unit) (*child, *logging.Output, error) {
	kind := u.kind
	c := &child{
		kind: kind, name: u.name, bin: r.cfg.Bins[kind], args: u.args,
		pid: r.cfg.pidFileOf(u.file), out: r.out, prefix: true, env: append(r.cfg.ChildEnv(), u.env...), log: r.log,
	}
	if r.cfg.MergeOutput {
		return c, nil, nil
	}
	// Pushpin writes condure's output to <logdir>/<fp>condure.log; the
	// other services log to their own --logfile, and any stray output
	// (a Go panic, say) is appended to that same file.
	f, err := logging.OpenOutput(r.cfg.outputFileOf(u.file))
	if err != nil {
		return nil, nil, fmt.Errorf("open %s output: %w", u.name, err)
	}
	c.out, c.prefix = f, false
	return c, f, nil
}
