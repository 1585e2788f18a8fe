package connmgr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tack/internal/zsock"
)

// DefaultHandshakeTimeout bounds a TLS handshake: a client that connects
// to a TLS port and never finishes is closed after it, holding only its
// own goroutine and connection slot until then.
const DefaultHandshakeTimeout = 10 * time.Second

// ErrInUse marks a listener address another process is serving.
var ErrInUse = errors.New("in use by another process")

// openListener opens one --listen value: a TCP port, or a unix socket
// (local). A unix socket path another live process accepts on is refused
// with ErrInUse; a stale socket file left by a dead process is replaced.
//
// With reusePort a TCP listener sets SO_REUSEPORT, so that the several
// connmgr processes one runner starts (its connmgr_count) accept on the
// same port, the kernel spreading new connections over them. Linux only
// lets sockets of the same user share a port this way, and a socket
// without the option (any other server) still makes the port busy.
func openListener(l Listener, reusePort bool) (net.Listener, error) {
	if !l.Local {
		var lc net.ListenConfig
		if reusePort {
			lc.Control = setReusePort
		}
		ln, err := lc.Listen(context.Background(), l.network(), l.Addr)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", l.Addr, err)
		}
		return ln, nil
	}
	if err := ClaimUnixPath(l.Addr); err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Addr, err)
	}
	ln, err := net.Listen("unix", l.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", l.Addr, err)
	}
	if err := applyOwnership(l); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen %s: %w", l.Addr, err)
	}
	return ln, nil
}

// setReusePort is a net.ListenConfig Control that sets SO_REUSEPORT.
func setReusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", serr)
	}
	return nil
}

// checkDefaultCert loads a TLS listener's default-cert.
func checkDefaultCert(ids *identities, l Listener) error {
	if _, err := ids.get(l.DefaultCert); err != nil {
		return fmt.Errorf("listen %s: default certificate %q in %s: %w", l.Addr, l.DefaultCert, ids.dir, err)
	}
	return nil
}

// ClaimUnixPath makes path free for a new unix socket: nothing there is
// fine, a socket nobody accepts on (left by a process that died) is
// removed, a socket a live process accepts on is ErrInUse, and any other
// file is refused.
func ClaimUnixPath(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if zsock.UnixSocketLive(path) {
		return ErrInUse
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// applyOwnership sets the mode, user and group of a unix listener's
// socket file (the mode=, user=, group= listen params).
func applyOwnership(l Listener) error {
	if l.Mode != 0 {
		if err := os.Chmod(l.Addr, l.Mode); err != nil {
			return fmt.Errorf("set mode: %w", err)
		}
	}
	if l.User == "" && l.Group == "" {
		return nil
	}
	uid, gid := -1, -1
	if l.User != "" {
		u, err := user.Lookup(l.User)
		if err != nil {
			return fmt.Errorf("user %q: %w", l.User, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if l.Group != "" {
		g, err := user.LookupGroup(l.Group)
		if err != nil {
			return fmt.Errorf("group %q: %w", l.Group, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(l.Addr, uid, gid); err != nil {
		return fmt.Errorf("set owner: %w", err)
	}
	return nil
}
