package interop

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := testutil.BuildAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	testutil.CleanupBuild()
	os.Exit(code)
}

func requirePushpin(t *testing.T) {
	t.Helper()
	if !testutil.EnsurePushpin(t) {
		t.Skip("real Pushpin not available: apt-get install -y pushpin")
	}
}

// deployment is one running mixed suite.
type deployment struct {
	dir        string
	httpPort   int
	portOffset int
	proc       *testutil.Process
}

func (d *deployment) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", d.httpPort, path)
}

// debianConfig returns Debian's /etc/pushpin/pushpin.conf rewritten for a
// private run: temp rundir/logdir, free ports, runner-managed zurl (whose
// specs the [proxy] section then has to name, as zmq-wire.md §7.1 says),
// plus the given overrides (section.key → value; an empty value deletes).
func debianConfig(t *testing.T, dir string, httpPort, portOffset int, over map[string]string) string {
	t.Helper()
	src, err := os.ReadFile("/etc/pushpin/pushpin.conf")
	if err != nil {
		t.Fatalf("read Debian config: %v", err)
	}
	set := map[string]string{
		"global.rundir":               filepath.Join(dir, "run"),
		"global.port_offset":          fmt.Sprint(portOffset),
		"runner.services":             "condure,zurl,pushpin-proxy,pushpin-handler",
		"runner.http_port":            fmt.Sprint(httpPort),
		"runner.logdir":               filepath.Join(dir, "log"),
		"runner.log_level":            "2",
		"proxy.routesfile":            "routes",
		"proxy.zurl_out_specs":        "ipc://{rundir}/{ipc_prefix}zurl-in",
		"proxy.zurl_out_stream_specs": "ipc://{rundir}/{ipc_prefix}zurl-in-stream",
		"proxy.zurl_in_specs":         "ipc://{rundir}/{ipc_prefix}zurl-out",
	}
	for k, v := range over {
		set[k] = v
	}
	var out []string
	section := ""
	done := map[string]bool{}
	flush := func() {
		for k, v := range set {
			if strings.HasPrefix(k, section+".") && !done[k] && v != "" {
				out = append(out, strings.TrimPrefix(k, section+".")+"="+v)
				done[k] = true
			}
		}
	}
	for _, line := range strings.Split(string(src), "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "[") && strings.HasSuffix(trim, "]") {
			flush()
			section = strings.Trim(trim, "[]")
			out = append(out, line)
			continue
		}
		if key, _, ok := strings.Cut(trim, "="); ok && !strings.HasPrefix(trim, "#") {
			full := section + "." + strings.TrimSpace(key)
			if v, ok := set[full]; ok {
				done[full] = true
				if v != "" {
					out = append(out, strings.TrimSpace(key)+"="+v)
				}
				continue
			}
		}
		out = append(out, line)
	}
	flush()
	conf := filepath.Join(dir, "pushpin.conf")
	if err := os.WriteFile(conf, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

func writeRoutes(t *testing.T, dir, routes string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "routes"), []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newDeployment prepares a private directory and ports.
func newDeployment(t *testing.T) *deployment {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	// One block: the handler's 5560..5563 (+offset) and the client port.
	base := testutil.FreePortBlock(t, 5)
	return &deployment{dir: dir, httpPort: base + 4, portOffset: base - 5560}
}

// startPushpin runs the real Pushpin runner on conf with PATH prefixed by
// pathDir (where symlinks may replace pushpin-proxy/pushpin-handler).
func (d *deployment) startPushpin(t *testing.T, conf, pathDir string) {
	t.Helper()
	var env []string
	if pathDir != "" {
		env = append(env, "PATH="+pathDir+":"+os.Getenv("PATH"))
	}
	d.proc = testutil.Start(t, d.dir, env, "pushpin", "--config", conf, "--merge-output", "--verbose")
}

// startTack runs our runner on conf.
func (d *deployment) startTack(t *testing.T, conf string) {
	t.Helper()
	d.proc = testutil.Start(t, d.dir, nil, filepath.Join(binDir, "tack"), "--config", conf, "--merge-output")
}

// symlinkDir makes a directory holding name → target symlinks.
func symlinkDir(t *testing.T, links map[string]string) string {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitReady polls until a plain GET through the deployment succeeds.
func (d *deployment) waitReady(t *testing.T, path string) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	testutil.Eventually(t, 30*time.Second, func() error {
		resp, err := c.Get(d.url(path))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}

// waitGripPath opens held streams on path until one receives a publish:
// proof that the whole hand-off path works before a test measures it. (A
// hand-off that waits long for a handler trips the real condure, which
// then sends the handler a packet out of sequence; tack-proxy avoids the
// wait by starting hand-offs only once a handler is connected.)
func (d *deployment) waitGripPath(t *testing.T, path string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, func() error {
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(d.url(path + "?channel=warm-up"))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil || resp.StatusCode != 200 {
			return fmt.Errorf("warm-up stream: status %d: %v", resp.StatusCode, err)
		}
		got := make(chan error, 1)
		go func() {
			_, err := br.ReadString('\n')
			got <- err
		}()
		for i := 0; i < 10; i++ {
			pub, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/publish/", 5561+d.portOffset), "application/json",
				strings.NewReader(`{"items":[{"channel":"warm-up","formats":{"http-stream":{"content":"ok\n"}}}]}`))
			if err == nil {
				pub.Body.Close()
			}
			select {
			case err := <-got:
				return err
			case <-time.After(200 * time.Millisecond):
			}
		}
		return fmt.Errorf("warm-up publish never arrived")
	})
}

// publish posts items to the deployment's HTTP publish API.
func (d *deployment) publish(t *testing.T, body string) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/publish/", 5561+d.portOffset)
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %q", resp.StatusCode, b)
	}
}

// newBackend is an origin that echoes what it received.
func newBackend(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", "yes")
		json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "uri": r.RequestURI, "length": len(body)})
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// checkPlain proxies a GET and a POST larger than the connmgr buffer and
// the 100000-byte prefetch through the deployment.
func (d *deployment) checkPlain(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(d.url("/plain?x=1&y=%2F"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"uri":"/plain?x=1\u0026y=%2F"`) || resp.Header.Get("X-Backend") != "yes" {
		t.Fatalf("GET: %d %q", resp.StatusCode, body)
	}
	// The body goes in follow-up packets on the stream sockets, which
	// connect on their own: at start-up the real processes retry their
	// connects every 100 ms, one socket at a time, and condure's stream
	// ROUTER can still find the proxy unreachable ("stream zmq send to:
	// Host unreachable") after a GET went through. Retried until the path
	// is up; the next attempt must then succeed whole.
	big := strings.Repeat("z", 300000)
	c = &http.Client{Timeout: 10 * time.Second}
	testutil.Eventually(t, 40*time.Second, func() error {
		resp, err := c.Post(d.url("/upload"), "text/plain", strings.NewReader(big))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !regexp.MustCompile(`"length":300000`).Match(body) {
			return fmt.Errorf("POST: %d %q", resp.StatusCode, body)
		}
		return nil
	})
}

var _ = net.Dial
