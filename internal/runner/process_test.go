package runner

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tack/internal/testutil"
)

// tackBin is the runner binary TestMain builds.
var tackBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tkrun")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tackBin = filepath.Join(dir, "tack")
	build := exec.Command("go", "build", "-o", tackBin, "tack/cmd/runner")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build runner:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := 0
	func() {
		defer os.RemoveAll(dir)
		goleak.VerifyTestMain(wrapM{m, &code})
	}()
	os.Exit(code)
}

// wrapM lets TestMain clean up after goleak.VerifyTestMain, which exits.
type wrapM struct {
	m    *testing.M
	code *int
}

func (w wrapM) Run() int { *w.code = w.m.Run(); return *w.code }

// fakeScript is a stand-in service: it logs Pushpin-style lines, reports
// SIGHUP and SIGTERM, and runs `extra` every 50 ms.
func fakeScript(name, termTrap, extra string) string {
	return `#!/bin/sh
name=` + name + `
log() { echo "[INFO] 2026-01-01 00:00:00.000 $name $*"; }
trap 'log got HUP' HUP
` + termTrap + `
log hello pid=$$
i=0
while :; do
	sleep 0.05 &
	wait $!
	i=$((i+1))
	` + extra + `
done
`
}

type procEnv struct {
	dir  string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan error
}

// startRunner writes fake services and a config into a temp dir and
// starts the runner on it with -m --verbose.
func startRunner(t *testing.T, scripts map[string]string, extraArgs ...string) *procEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("process test")
	}
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, "fake-"+name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`[global]
include={libdir}/internal.conf
libdir=%[2]s
rundir=%[1]s/run
ipc_prefix=t-
[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:%[3]d
connmgr_count=1
logdir=%[1]s/log
condure_bin=%[1]s/fake-condure
zurl_bin=%[1]s/fake-zurl
proxy_bin=%[1]s/fake-proxy
handler_bin=%[1]s/fake-handler
`, dir, filepath.Join(wd, "..", "..", "configs"), port)
	cp := filepath.Join(dir, "pushpin.conf")
	if err := os.WriteFile(cp, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	e := &procEnv{dir: dir, out: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	e.cmd = exec.Command(tackBin, append([]string{"--config=" + cp, "-m", "--verbose"}, extraArgs...)...)
	e.cmd.Dir = dir
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { e.done <- e.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-e.done:
		default:
			_ = e.cmd.Process.Kill()
			<-e.done
		}
		if t.Failed() {
			t.Logf("runner output:\n%s", e.out.String())
		}
	})
	return e
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *procEnv) has(s string) func() bool {
	return func() bool { return strings.Contains(e.out.String(), s) }
}

func (e *procEnv) pid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, "run", file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(string(b), "\n"))
	if err != nil {
		t.Fatalf("pid file %s: %q", file, b)
	}
	return n
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func (e *procEnv) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-e.done:
		e.done <- err // keep it for Cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("runner still running after %v", timeout)
		return nil
	}
}

const termExits = `trap 'log got TERM; exit 0' TERM`

func TestRunnerProcessLifecycle(t *testing.T) {
	e := startRunner(t, map[string]string{
		"condure": fakeScript("condure", termExits, ":"),
		"zurl":    fakeScript("zurl", termExits, `[ $i -ge 4 ] && { log crashing; exit 3; }`),
		"proxy":   fakeScript("proxy", termExits, ":"),
		"handler": fakeScript("handler", termExits, ":"),
	})
	eventually(t, 5*time.Second, "started", e.has(" started\n"))
	for _, n := range []string{"condure", "zurl", "proxy", "handler"} {
		eventually(t, 5*time.Second, n+" hello", e.has("00:00:00.000 ["+n+"] "+n+" hello"))
	}

	// Start order and command lines.
	out := e.out.String()
	last := -1
	for _, n := range []string{"condure", "zurl", "proxy", "handler"} {
		i := strings.Index(out, "starting "+n+"\n")
		if i < 0 || i < last {
			t.Fatalf("%s not started in order", n)
		}
		last = i
	}
	if !strings.Contains(out, "running: "+e.dir+"/fake-proxy --config="+e.dir+"/pushpin.conf --ipc-prefix=t- --loglevel=3 --quiet-check\n") {
		t.Error("proxy command line not logged as expected")
	}

	proxyPID := e.pid(t, "pushpin-proxy.pid")
	handlerPID := e.pid(t, "pushpin-handler.pid")
	condurePID := e.pid(t, "condure.pid")

	// zurl crashes every ~200 ms; it is restarted with growing delays
	// while the others keep running untouched.
	eventually(t, 10*time.Second, "three zurl restarts", func() bool {
		return strings.Count(e.out.String(), "restarting zurl") >= 3
	})
	if !strings.Contains(e.out.String(), "zurl: Unexpected return code: 3") {
		t.Error("crash not reported")
	}
	var delays []string
	for _, m := range regexp.MustCompile(`restarting zurl delay=(\S+)`).FindAllStringSubmatch(e.out.String(), 3) {
		delays = append(delays, m[1])
	}
	if strings.Join(delays, " ") != "100 200 400" {
		t.Errorf("restart delays %q, want 100 200 400 (ms)", delays)
	}
	for name, pid := range map[string]int{"proxy": proxyPID, "handler": handlerPID, "condure": condurePID} {
		if !alive(pid) {
			t.Errorf("%s (pid %d) died while zurl restarted", name, pid)
		}
	}
	if e.pid(t, "pushpin-proxy.pid") != proxyPID || e.pid(t, "condure.pid") != condurePID {
		t.Error("pid of a healthy service changed")
	}

	// SIGHUP goes to proxy and handler (and zurl, which is crashing
	// here: TestRunnerProcessHangup), not to condure.
	if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "proxy HUP", e.has("[proxy] proxy got HUP"))
	eventually(t, 5*time.Second, "handler HUP", e.has("[handler] handler got HUP"))

	// SIGTERM stops everything well within the grace period.
	start := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.waitExit(t, StopGrace); err != nil {
		t.Errorf("runner exit: %v", err)
	}
	if d := time.Since(start); d >= StopGrace {
		t.Errorf("stop took %v", d)
	}
	out = e.out.String()
	for _, want := range []string{"stopping...", "[proxy] proxy got TERM", "[handler] handler got TERM", "[condure] condure got TERM", " stopped\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "condure got HUP") {
		t.Error("condure got SIGHUP")
	}
	for _, pid := range []int{proxyPID, handlerPID, condurePID} {
		if alive(pid) {
			t.Errorf("pid %d still alive", pid)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(e.dir, "run", "*.pid")); len(m) != 0 {
		t.Errorf("pid files left: %q", m)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "run", "zurl.conf")); err != nil {
		t.Error(err)
	}
}

func TestRunnerProcessKillAfterGrace(t *testing.T) {
	stubborn := `trap 'log ignoring TERM' TERM`
	e := startRunner(t, map[string]string{
		"condure": fakeScript("condure", termExits, ":"),
		"zurl":    fakeScript("zurl", termExits, ":"),
		"proxy":   fakeScript("proxy", termExits, ":"),
		"handler": fakeScript("handler", stubborn, ":"),
	})
	eventually(t, 5*time.Second, "handler hello", e.has("[handler] handler hello"))
	eventually(t, 5*time.Second, "started", e.has(" started\n"))
	handlerPID := e.pid(t, "pushpin-handler.pid")
	start := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.waitExit(t, StopGrace+3*time.Second); err != nil {
		t.Errorf("runner exit: %v", err)
	}
	if d := time.Since(start); d < StopGrace-100*time.Millisecond {
		t.Errorf("stubborn child killed after %v, before the grace period", d)
	}
	if !strings.Contains(e.out.String(), "handler running while needing to exit, forcing quit") {
		t.Error("no forced-quit warning")
	}
	if alive(handlerPID) {
		t.Error("stubborn handler still alive")
	}
}

func TestRunnerProcessSecondSignal(t *testing.T) {
	stubborn := `trap 'log ignoring TERM' TERM`
	e := startRunner(t, map[string]string{
		"condure": fakeScript("condure", stubborn, ":"),
		"zurl":    fakeScript("zurl", stubborn, ":"),
		"proxy":   fakeScript("proxy", stubborn, ":"),
		"handler": fakeScript("handler", stubborn, ":"),
	})
	eventually(t, 5*time.Second, "started", e.has(" started\n"))
	eventually(t, 5*time.Second, "handler hello", e.has("[handler] handler hello"))
	if err := e.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "TERM reached children", e.has("[handler] handler ignoring TERM"))
	start := time.Now()
	if err := e.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := e.waitExit(t, StopGrace); err != nil {
		t.Errorf("runner exit: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("second signal took %v", d)
	}
}

func TestRunnerProcessHangup(t *testing.T) {
	e := startRunner(t, map[string]string{
		"condure": fakeScript("condure", termExits, ":"),
		"zurl":    fakeScript("zurl", termExits, ":"),
		"proxy":   fakeScript("proxy", termExits, ":"),
		"handler": fakeScript("handler", termExits, ":"),
	})
	eventually(t, 5*time.Second, "started", e.has(" started\n"))
	for _, n := range []string{"condure", "zurl", "proxy", "handler"} {
		eventually(t, 5*time.Second, n+" hello", e.has("["+n+"] "+n+" hello"))
	}
	for range 2 {
		if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range []string{"zurl", "proxy", "handler"} {
		eventually(t, 5*time.Second, n+" HUP", func() bool {
			return strings.Count(e.out.String(), "["+n+"] "+n+" got HUP") == 2
		})
	}
	if strings.Contains(e.out.String(), "condure got HUP") {
		t.Error("condure got SIGHUP")
	}
	if n := strings.Count(e.out.String(), " reloading\n"); n != 2 {
		t.Errorf("runner logged reloading %d times, want 2", n)
	}
	if strings.Contains(e.out.String(), "Exited") {
		t.Error("a child exited on SIGHUP")
	}
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.waitExit(t, StopGrace); err != nil {
		t.Errorf("runner exit: %v", err)
	}
}
