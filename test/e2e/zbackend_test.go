package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

// systemPython is Debian's interpreter, the one python3-zmq installs into
// (a python3 earlier on PATH, e.g. pyenv's, does not see it).
const systemPython = "/usr/bin/python3"

// ensurePythonZMQ installs python3-zmq when the system Python lacks it.
func ensurePythonZMQ(t *testing.T) {
	t.Helper()
	if exec.Command(systemPython, "-c", "import zmq").Run() == nil {
		return
	}
	cmd := exec.Command("apt-get", "install", "-y", "python3-zmq")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the Python example needs python3-zmq: apt-get install -y python3-zmq: %v\n%s", err, out)
	}
	if out, err := exec.Command(systemPython, "-c", "import zmq").CombinedOutput(); err != nil {
		t.Fatalf("python3-zmq installed but not importable: %v\n%s", err, out)
	}
}

// buildGoExample builds examples/zhttpreq-go and returns the binary.
func buildGoExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "zhttpreq-go")
	cmd := exec.Command("go", "build", "-o", bin, "./examples/zhttpreq-go")
	cmd.Dir = testutil.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build example: %v\n%s", err, out)
	}
	return bin
}

// checkZhttpreqExample runs the README flow against a suite whose only
// route is `* zhttpreq/<spec>` answered by the example backend: a plain
// answer (GET and POST), then a GRIP stream hold that receives a publish.
func checkZhttpreqExample(t *testing.T, spec, plainPrefix string, backend func(dir, spec string) *testutil.Process) {
	dir := testutil.ShortTempDir(t)
	// The backend connects first: the proxy binds when it loads the routes.
	be := backend(dir, spec)
	s := startSuite(t, suiteOptions{routes: "* zhttpreq/" + spec + "\n"})

	c := &http.Client{Timeout: 10 * time.Second}
	resp := mustDo(t, c, "GET", s.url("/hello?x=1"), nil, nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), plainPrefix) || !strings.Contains(string(b), "GET /hello") {
		t.Fatalf("plain answer: %d %q", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain" {
		t.Errorf("Content-Type %q", ct)
	}
	resp = mustDo(t, c, "POST", s.url("/form"), http.Header{"Content-Type": {"text/plain"}}, strings.NewReader("some body"))
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "POST /form") {
		t.Fatalf("POST answer: %d %q", resp.StatusCode, b)
	}

	br, closeStream := openStream(t, s.url("/stream"), "welcome to the stream\n")
	defer closeStream()
	expectLine(t, br, "published\n", func() {
		s.postPublish(t, `{"items":[`+streamItem("test", "published\n")+`]}`)
	})
	// The backend is still served after the hold.
	resp = mustDo(t, c, "GET", s.url("/again"), nil, nil)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "GET /again") {
		t.Fatalf("answer after the hold: %d %q", resp.StatusCode, b)
	}
	if be.Exited() {
		t.Fatalf("backend exited:\n%s", be.Output())
	}
}

func TestE2EZhttpreqExampleGo(t *testing.T) {
	bin := buildGoExample(t)
	spec := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	checkZhttpreqExample(t, spec, "hello there (", func(dir, spec string) *testutil.Process {
		return testutil.Start(t, dir, nil, bin, "-connect", spec)
	})
}

func TestE2EZhttpreqExamplePython(t *testing.T) {
	ensurePythonZMQ(t)
	script := filepath.Join(testutil.RepoRoot(), "examples", "zhttpreq-python", "backend.py")
	spec := "ipc://" + filepath.Join(testutil.ShortTempDir(t), "zreq")
	checkZhttpreqExample(t, spec, "hello there from python (", func(dir, spec string) *testutil.Process {
		return testutil.Start(t, dir, nil, systemPython, script, spec)
	})
}

// TestE2EZhttpTargetsAbsent: routes to ZeroMQ backends that nobody has
// connected to answer 502 with Pushpin's text within a few seconds and log
// a warning naming the target; a plain route beside them still works.
func TestE2EZhttpTargetsAbsent(t *testing.T) {
	req := fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t))
	stream := "ipc://" + filepath.Join(testutil.ShortTempDir(t), "zs")
	s := startSuite(t, suiteOptions{routes: "*,path_beg=/req/ zhttpreq/" + req + "\n*,path_beg=/stream/ zhttp/" + stream + "\n* test\n"})
	c := &http.Client{Timeout: 20 * time.Second}
	for _, path := range []string{"/req/x", "/stream/x", "/req/y"} {
		start := time.Now()
		resp := mustDo(t, c, "GET", s.url(path), nil, nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || string(b) != "Error while proxying to origin.\n" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("%s: 502 after %v", path, d)
		}
	}
	for _, spec := range []string{req, stream} {
		s.runner.WaitFor(t, `WARN.*zhttp service unreachable or silent.*target=`+regexp.QuoteMeta(spec), 5*time.Second)
	}
	resp := mustDo(t, c, "GET", s.url("/"), nil, nil)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("test route: %d", resp.StatusCode)
	}
}
