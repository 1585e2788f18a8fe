package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

// jsGripVersion is the js-grip release the test backend uses.
const jsGripVersion = "4.3.0"

// ensureJSGrip returns a directory whose node_modules holds js-grip
// (@fanoutio/grip), installing Node.js (apt-get) and the package (npm,
// cached under the user cache directory) when missing.
func ensureJSGrip(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		cmd := exec.Command("apt-get", "install", "-y", "nodejs", "npm")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("Node.js is needed for the js-grip test: apt-get install -y nodejs npm: %v\n%s", err, out)
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "tack-test", "jsgrip-"+jsGripVersion)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@fanoutio", "grip", "package.json")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("npm", "install", "--no-audit", "--no-fund", "--silent", "@fanoutio/grip@"+jsGripVersion)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install @fanoutio/grip@%s: %v\n%s", jsGripVersion, err, out)
	}
	return dir
}

// startJSGripBackend runs testdata/<script> with Node.js and js-grip
// (Grip-Sig key "changeme") and returns it and its host:port.
func startJSGripBackend(t *testing.T, script string) (*testutil.Process, string) {
	t.Helper()
	mods := ensureJSGrip(t)
	dir := testutil.ShortTempDir(t)
	src, err := os.ReadFile(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "backend.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(mods, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	node := testutil.Start(t, dir, nil, "node", "backend.mjs", "changeme")
	port := node.WaitFor(t, `READY (\d+)`, 20*time.Second)[1]
	return node, "127.0.0.1:" + port
}

// TestE2EJSGrip puts a backend written with js-grip (the GRIP library
// Node.js users have) behind tack: its Grip-Sig check must pass, its
// GripInstruct headers must hold the requests, and its Publisher must reach
// the held clients through tack's publish API.
func TestE2EJSGrip(t *testing.T) {
	node, be := startJSGripBackend(t, "jsgrip-backend.mjs")
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})

	// Unsigned, the backend refuses: it really checks Grip-Sig.
	resp, err := http.Get("http://" + be + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("direct request got %d, want 403", resp.StatusCode)
	}

	gripURL := url.QueryEscape(fmt.Sprintf("http://127.0.0.1:%d/", 5561+s.portOffset))
	publish := func(kind string) {
		resp, err := http.Get("http://" + be + "/publish?kind=" + kind + "&grip=" + gripURL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("js-grip publish (%s): %d %s", kind, resp.StatusCode, b)
		}
	}

	// Streaming: held by GripInstruct.setHoldStream, fed by publishHttpStream.
	br, done := openStream(t, s.url("/stream"), "[js-grip stream]\n")
	defer done()
	expectLine(t, br, "hello from js-grip\n", func() { publish("stream") })

	// Long-polling: setHoldLongPoll, answered by publishHttpResponse.
	got := make(chan string, 1)
	go getInto(s.url("/poll"), got)
	deadline := time.Now().Add(15 * time.Second)
	for {
		publish("response")
		select {
		case r := <-got:
			if r != "200 answer from js-grip\n" {
				t.Fatalf("long-poll got %q", r)
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("long-poll never answered")
		}
		if strings.Contains(node.Output(), "Error") {
			t.Fatalf("backend: %s", node.Output())
		}
	}
}
