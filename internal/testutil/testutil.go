package testutil

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. It
// is taken below the ephemeral range (32768+), where the kernel also picks
// client ports, so that a busy machine does not grab it before the server
// under test binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePortBlock(t, 1)
}

// portSeq spreads successive picks within one test process.
var portSeq atomic.Uint64

// handedOut remembers the ports returned in this test process: a block is
// free when picked but bound only later by the processes a test starts, so
// a later pick must not land inside it.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// claim marks base..base+n-1 as handed out unless one of them already is.
func claim(base, n int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	for i := 0; i < n; i++ {
		if handedOut.ports[base+i] {
			return false
		}
	}
	for i := 0; i < n; i++ {
		handedOut.ports[base+i] = true
	}
	return true
}

// FreePortBlock returns a base port p such that p..p+n-1 were free, below
// 32768 (the ephemeral range), as Pushpin's handler ports must be.
func FreePortBlock(t testing.TB, n int) int {
	t.Helper()
	for try := 0; try < 200; try++ {
		base := 20000 + int(portSeq.Add(1)*131+uint64(os.Getpid())*7+uint64(time.Now().UnixNano()%997))%12000
		ok := true
		var ls []net.Listener
		for i := 0; i < n; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok && claim(base, n) {
			return base
		}
	}
	t.Fatalf("no free block of %d ports", n)
	return 0
}

// ShortTempDir returns a temp dir with a short path (ipc paths must fit in
// 107 bytes), removed at cleanup.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Eventually polls f until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binaries maps binary names to their main packages.
var Binaries = map[string]string{
	"tack":              "./cmd/runner",
	"tack-connmgr":      "./cmd/connmgr",
	"tack-proxy":        "./cmd/proxy",
	"tack-handler":      "./cmd/handler",
	"tack-zhttp-client": "./cmd/zhttp-client",
}

// BuildAll builds every tack binary once per test process into a temp dir
// and returns it. Call CleanupBuild from TestMain.
func BuildAll() (string, error) {
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "tkbin")
		if buildErr != nil {
			return
		}
		for name, pkg := range Binaries {
			cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, name), pkg)
			cmd.Dir = RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", name, err, out)
				return
			}
		}
	})
	return buildDir, buildErr
}

// CleanupBuild removes the binaries BuildAll made.
func CleanupBuild() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Process is a child process whose combined output is captured.
type Process struct {
	Name string
	Cmd  *exec.Cmd
	mu   sync.Mutex // guards out
	out  bytes.Buffer
	done chan struct{}
}

// Start runs a command and stops it (SIGTERM, then SIGKILL after 5 s) at
// cleanup. Its output is kept and printed if the test fails.
func Start(t testing.TB, dir string, env []string, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Process{Name: filepath.Base(name), Cmd: cmd, done: make(chan struct{})}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.mu.Unlock()
		}
		pr.Close()
	}()
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("--- output of %s %s:\n%s", p.Name, strings.Join(args, " "), p.Output())
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitFor waits until the output matches re and returns the first match's
// submatches.
func (p *Process) WaitFor(t testing.TB, re string, timeout time.Duration) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	Eventually(t, timeout, func() error {
		if m = rx.FindStringSubmatch(p.Output()); m != nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before printing %q", p.Name, re)
		default:
		}
		return fmt.Errorf("%s has not printed %q", p.Name, re)
	})
	return m
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig syscall.Signal) {
	if p.Cmd.Process != nil {
		syscall.Kill(-p.Cmd.Process.Pid, sig)
	}
}

// Stop sends SIGTERM and waits up to grace before SIGKILL.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Wait waits for the process to exit.
func (p *Process) Wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// EnsurePushpin installs the real Pushpin when it is missing and reports
// whether it is available.
func EnsurePushpin(t testing.TB) bool {
	t.Helper()
	if _, err := exec.LookPath("pushpin"); err == nil {
		if _, err := exec.LookPath("condure"); err == nil {
			return true
		}
	}
	cmd := exec.Command("apt-get", "install", "-y", "pushpin")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("apt-get install -y pushpin: %v\n%s", err, out)
		return false
	}
	_, err := exec.LookPath("pushpin")
	return err == nil
}

// GetOK repeats req until it answers 200 (a hold is accepted once the
// handler's sockets are connected) and returns that response, body open.
func GetOK(t testing.TB, c *http.Client, req *http.Request, timeout time.Duration) *http.Response {
	t.Helper()
	var resp *http.Response
	Eventually(t, timeout, func() error {
		r, err := c.Do(req)
		if err != nil {
			return err
		}
		if r.StatusCode != 200 {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			return fmt.Errorf("status %d %q", r.StatusCode, b)
		}
		resp = r
		return nil
	})
	return resp
}
