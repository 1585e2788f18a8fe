package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/cli"
)

// child supervises one service process: it starts it, copies its output,
// restarts it after a crash and stops it when the runner stops.
type child struct {
	kind   string
	name   string // Pushpin's display name: condure, zurl, proxy, handler
	bin    string
	args   []string
	pid    string // pid file path
	out    io.Writer
	prefix bool
	env    []string // added to the runner's environment
	log    zerolog.Logger

	mu   sync.Mutex // guards proc
	proc *os.Process

	tail lineTail // the last output lines, to explain a failed start
}

// running is one started process and the channels that report its end.
type running struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan error    // cmd.Wait result; buffered
	drained chan struct{} // output copier done
	r       *os.File      // read end of the output pipe
}

// commandLine is the line Pushpin logs as "running: ...".
func (c *child) commandLine() string {
	return strings.Join(append([]string{c.bin}, c.args...), " ")
}

// start launches the process in its own process group.
func (c *child) start() (*running, error) {
	c.log.Info().Msg("starting " + c.name)
	c.log.Debug().Msg("running: " + c.commandLine())
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", c.name, err)
	}
	cmd := exec.Command(c.bin, c.args...)
	cmd.Stdout, cmd.Stderr = w, w
	if len(c.env) > 0 {
		cmd.Env = append(os.Environ(), c.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", c.name, err)
	}
	w.Close() // the child holds the write end now
	run := &running{cmd: cmd, started: time.Now(), exited: make(chan error, 1), drained: make(chan struct{}), r: r}
	go func() {
		defer close(run.drained)
		copyLines(r, io.MultiWriter(c.out, &c.tail), c.name, c.prefix)
	}()
	go func() { run.exited <- cmd.Wait() }()
	c.mu.Lock()
	c.proc = cmd.Process
	c.mu.Unlock()
	if err := os.WriteFile(c.pid, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		c.log.Warn().Err(err).Str("file", c.pid).Msg("cannot write pid file")
	}
	return run, nil
}

// finish waits for the output copier (bounded: a grandchild may hold the
// pipe open) and forgets the process.
func (c *child) finish(run *running) {
	t := time.NewTimer(ReaderDrain)
	select {
	case <-run.drained:
	case <-t.C:
		run.r.Close() // unblocks the copier
		<-run.drained
	}
	t.Stop()
	run.r.Close()
	c.mu.Lock()
	c.proc = nil
	c.mu.Unlock()
}

// signal sends sig to the process (not its group); false when not running.
func (c *child) signal(sig syscall.Signal) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return false
	}
	return syscall.Kill(c.proc.Pid, sig) == nil
}

// PID returns the current pid, or 0.
func (c *child) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	return c.proc.Pid
}

// exitCode is the exit status of a process that exited normally, else -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// exitReason words an unexpected exit as Pushpin 1.36 does.
func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "Exited uncleanly"
		}
		return "Unexpected return code: " + strconv.Itoa(ee.ExitCode())
	}
	if err != nil {
		return "Exited uncleanly"
	}
	return "Exited unexpectedly"
}

// supervise owns run until ctx is done: it restarts the process with
// exponential backoff after each crash, and on ctx done stops it
// (SIGTERM to the group, SIGKILL after StopGrace or on kill). A first run
// that exits with cli.ExitStartup could not start at all: that is
// reported on failed (buffered) and the process is not restarted.
func (c *child) supervise(ctx context.Context, run *running, kill <-chan struct{}, failed chan<- error) {
	delay := RestartMin
	defer os.Remove(c.pid)
	first := true
	for {
		select {
		case err := <-run.exited:
			c.finish(run)
			if first && exitCode(err) == cli.ExitStartup {
				failed <- fmt.Errorf("%s failed to start: %s", c.name, c.tail.String())
				return
			}
			first = false
			c.log.Error().Msg(c.name + ": " + exitReason(err))
			if time.Since(run.started) >= RestartReset {
				delay = RestartMin
			}
			for run = nil; run == nil; {
				c.log.Warn().Dur("delay", delay).Msg("restarting " + c.name)
				if !sleepCtx(ctx, delay) {
					return
				}
				delay = min(2*delay, RestartMax)
				var err error
				if run, err = c.start(); err != nil {
					c.log.Error().Err(err).Msg("Error running: " + c.bin)
				}
			}
		case <-ctx.Done():
			c.stop(run, kill)
			return
		}
	}
}

func (c *child) stop(run *running, kill <-chan struct{}) {
	c.log.Info().Msg("stopping " + c.name)
	pgid := run.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(StopGrace)
	defer t.Stop()
	select {
	case <-run.exited:
	case <-t.C:
		c.log.Warn().Msg(c.name + " running while needing to exit, forcing quit")
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-run.exited
	case <-kill:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-run.exited
	}
	c.finish(run)
}

// sleepCtx waits d or until ctx is done; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
