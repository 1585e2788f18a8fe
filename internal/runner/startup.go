package runner

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"tack/internal/zsock"
)

// listenCheck is one listener the runner asks connmgr for, as checked
// before the start: a TCP address (with its default certificate for
// https ports) or a unix socket path.
type listenCheck struct {
	addr  string
	local bool
	cert  string // identity name of an https port
}

// TailLines is how many lines of a child's output are kept to explain a
// failed start.
const TailLines = 3

// errRunDirBusy: another live runner holds the run directory's lock.
var errRunDirBusy = errors.New("is in use by another running instance")

// LockFile is the lock a runner holds on its run directory while it runs.
func (c *Config) LockFile() string {
	return filepath.Join(c.RunDir, c.FilePrefix+"tack.lock")
}

// lockRunDir takes an exclusive flock on LockFile before any socket or pid
// file in the run directory is touched, so that a second instance on the
// same directory (and the same --id) stops instead of replacing the first
// one's sockets. The lock is held as long as the returned file is open;
// the kernel drops it when the runner dies.
func (c *Config) lockRunDir() (*os.File, error) {
	path := c.LockFile()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				owner = "pid " + strings.TrimSpace(string(b))
			}
			return nil, fmt.Errorf("run directory %s (%s) %w (%s); stop it, or give this one another rundir or --id", c.RunDir, path, errRunDirBusy, owner)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// preflight checks what the connection manager will open, so that a
// port in use, a unix socket path another process serves or a missing TLS
// certificate stops the start with a clear message before any child runs.
// (The connmgr checks the same again when it starts; the runner does not
// import it: services share no code but the wire.)
func (c *Config) preflight() error {
	if !c.has(ServiceConnmgr) {
		return nil
	}
	var errs []error
	for _, l := range c.listens {
		var err error
		switch {
		case l.local:
			if zsock.UnixSocketLive(l.addr) {
				err = errors.New("in use by another process")
			}
		default:
			err = portFree(l.addr)
			if err == nil && l.cert != "" {
				err = certLoads(c.certsDir(), l.cert)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listen %s: %w", l.addr, err))
		}
	}
	return errors.Join(errs...)
}

// portFree tells whether addr (host:port) can be listened on now.
func portFree(addr string) error {
	network := "tcp4"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			network = "tcp6"
		}
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// certLoads tells whether the identity NAME.crt/NAME.key in dir loads.
func certLoads(dir, name string) error {
	crt, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for _, f := range []string{crt, key} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("default certificate %q: %w (put %s.crt and %s.key in %s)", name, err, name, name, dir)
		}
	}
	if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
		return fmt.Errorf("default certificate %q in %s: %w", name, dir, err)
	}
	return nil
}

// certsDir is what condure gets as --tls-identities-dir; Pushpin joins
// without cleaning ("./runner/certs" for a config in the working dir).
func (c *Config) certsDir() string {
	return c.ConfigDir + "/runner/certs"
}

// lineTail keeps the last TailLines lines written to it.
type lineTail struct {
	mu    sync.Mutex // guards lines
	lines []string
}

func (t *lineTail) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	if line == "" {
		return len(p), nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > TailLines {
		t.lines = t.lines[len(t.lines)-TailLines:]
	}
	return len(p), nil
}

func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "; ")
}
