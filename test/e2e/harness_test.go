package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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

// suite is one running tack deployment.
type suite struct {
	dir        string
	httpPort   int
	portOffset int
	runner     *testutil.Process
	publishAPI bool // the handler serves the HTTP publish API
}

// suiteOptions adjust the generated pushpin.conf.
type suiteOptions struct {
	routes string            // routes file content
	proxy  map[string]string // extra [proxy] keys
	runner map[string]string // extra [runner] keys
	files  map[string][]byte // more files to write, relative to the suite's dir
	env    []string          // more environment for the runner (and its children)
	// handler replaces [handler] keys; an empty value removes the key.
	handler map[string]string
}

func (s *suite) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.httpPort, path)
}

func (s *suite) publishURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/publish/", 5561+s.portOffset)
}

// writeConfig writes a pushpin.conf in the Pushpin 1.36 upstream layout
// (include of internal.conf, relative routes file) into dir.
func writeConfig(t *testing.T, dir string, httpPort, portOffset int, o suiteOptions) string {
	t.Helper()
	runner := map[string]string{
		"services":           "condure,zurl,pushpin-proxy,pushpin-handler",
		"http_port":          fmt.Sprint(httpPort),
		"logdir":             filepath.Join(dir, "log"),
		"log_level":          "2",
		"client_buffer_size": "8192",
		"client_maxconn":     "50000",
		// One connection manager (auto would start one per core); the
		// connmgr_count tests set their own.
		"connmgr_count": "1",
	}
	for k, v := range o.runner {
		runner[k] = v
	}
	proxy := map[string]string{
		"routesfile":               "routes",
		"debug":                    "false",
		"set_x_forwarded_protocol": "proto-only",
		"sig_iss":                  "pushpin",
		"sig_key":                  "changeme",
	}
	for k, v := range o.proxy {
		proxy[k] = v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\ninclude={libdir}/internal.conf\nrundir=%s\nipc_prefix=pushpin-\nport_offset=%d\nstats_connection_ttl=120\n\n", filepath.Join(dir, "run"), portOffset)
	section := func(name string, kv map[string]string) {
		fmt.Fprintf(&b, "[%s]\n", name)
		for k, v := range kv {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
		b.WriteString("\n")
	}
	section("runner", runner)
	section("proxy", proxy)
	b.WriteString(handlerSection(`[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=5561
stats_spec=ipc://{rundir}/{ipc_prefix}stats
command_spec=tcp://127.0.0.1:5563
message_rate=2500
message_hwm=25000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
`, o.handler))
	conf := filepath.Join(dir, "pushpin.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	routes := o.routes
	if routes == "" {
		routes = "* test\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "routes"), []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	return conf
}

// handlerSection applies set to the [handler] section text base: a key
// of base is replaced by its value in set or, when that is empty, removed;
// keys base lacks are appended.
func handlerSection(base string, set map[string]string) string {
	var b strings.Builder
	done := map[string]bool{}
	for _, line := range strings.SplitAfter(base, "\n") {
		k, _, ok := strings.Cut(line, "=")
		if v, has := set[k]; ok && has {
			done[k] = true
			if v != "" {
				fmt.Fprintf(&b, "%s=%s\n", k, v)
			}
			continue
		}
		b.WriteString(line)
	}
	for k, v := range set {
		if !done[k] && v != "" {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
	}
	return b.String()
}

// startSuite starts `tack --config <generated pushpin.conf> --merge-output`
// and waits until a request through the whole path succeeds.
func startSuite(t *testing.T, o suiteOptions) *suite {
	t.Helper()
	s := startRunner(t, o)
	s.waitReady(t)
	return s
}

// startRunner writes the config (and o.files) into a new dir and starts
// the runner on it without waiting for it to serve.
func startRunner(t *testing.T, o suiteOptions) *suite {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	// One block: the handler's 5560..5563 (+offset) and the client port.
	base := testutil.FreePortBlock(t, 5)
	s := &suite{dir: dir, httpPort: base + 4, portOffset: base - 5560}
	if p, set := o.handler["push_in_http_port"]; !set || p != "" {
		s.publishAPI = true
	}
	if p, ok := o.runner["http_port"]; ok {
		fmt.Sscan(p, &s.httpPort)
	}
	conf := writeConfig(t, dir, s.httpPort, s.portOffset, o)
	for name, b := range o.files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s.runner = testutil.Start(t, dir, o.env, filepath.Join(binDir, "tack"), "--config", conf, "--merge-output")
	return s
}

// waitReady polls until the client listener answers (any complete HTTP
// response below 500) and, when the handler serves it, the publish API
// answers too (the handler may start after the proxy).
func (s *suite) waitReady(t *testing.T) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	testutil.Eventually(t, 20*time.Second, func() error {
		resp, err := c.Get(s.url("/"))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		if !s.publishAPI {
			return nil
		}
		resp, err = c.Get(s.publishURL())
		if err != nil {
			return fmt.Errorf("publish API: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	})
}
