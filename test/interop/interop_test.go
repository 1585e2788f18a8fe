package interop

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

// Pushpin's own runner, proxy, handler and zurl, with tack-connmgr as condure.
func TestInteropConnmgrUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.condure_bin": filepath.Join(binDir, "tack-connmgr"),
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startPushpin(t, conf, "")
	d.waitReady(t, "/ready")
	d.checkPlain(t)
}

// Pushpin's runner with tack-zhttp-client as zurl.
func TestInteropZhttpClientUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.zurl_bin": filepath.Join(binDir, "tack-zhttp-client"),
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startPushpin(t, conf, "")
	d.waitReady(t, "/ready")
	d.checkPlain(t)
}

// Pushpin's runner with tack-proxy in place of pushpin-proxy (PATH symlink).
func TestInteropProxyUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "* "+be+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-proxy": filepath.Join(binDir, "tack-proxy")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")
	d.checkPlain(t)
}

// Pushpin's runner with tack-handler in place of pushpin-handler: the real
// proxy's inspect calls are answered at once.
func TestInteropHandlerUnderPushpin(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, "* "+be+"\n")
	links := symlinkDir(t, map[string]string{"pushpin-handler": filepath.Join(binDir, "tack-handler")})
	d.startPushpin(t, conf, links)
	d.waitReady(t, "/ready")
	d.checkPlain(t)
}

// Our runner with the real condure and zurl as its children.
func TestInteropRunnerWithPushpinConnmgrAndZurl(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.condure_bin": "/usr/bin/condure",
		"runner.zurl_bin":    "/usr/bin/zurl",
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startTack(t, conf)
	d.waitReady(t, "/ready")
	d.checkPlain(t)
}

// Our runner with the real pushpin-proxy in place of tack-proxy.
func TestInteropRunnerWithPushpinProxy(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.proxy_bin": "pushpin-proxy",
	})
	writeRoutes(t, d.dir, "* "+be+"\n")
	d.startTack(t, conf)
	d.waitReady(t, "/ready")
	d.checkPlain(t)
}

// TestInteropConnmgrListenersUnderPushpin: tack-connmgr as Pushpin 1.36's
// condure with https_ports and local_ports, under the real runner (which
// builds the --listen values and --tls-identities-dir) and the real
// pushpin-proxy: TLS requests arrive as https (ssl=yes route,
// X-Forwarded-Proto), the default_<port> certificate is served, and the
// unix socket serves too.
func TestInteropConnmgrListenersUnderPushpin(t *testing.T) {
	requirePushpin(t)
	echo := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s proto=%s\n", name, r.Header.Get("X-Forwarded-Proto"))
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	d := newDeployment(t)
	tlsPort := testutil.FreePort(t)
	ca := testutil.NewCA(t)
	crt, key := ca.Issue(t, time.Now().Add(time.Hour), "default.test", "127.0.0.1")
	certs := filepath.Join(d.dir, "runner", "certs")
	os.MkdirAll(certs, 0o755)
	os.WriteFile(filepath.Join(certs, fmt.Sprintf("default_%d.crt", tlsPort)), crt, 0o644)
	os.WriteFile(filepath.Join(certs, fmt.Sprintf("default_%d.key", tlsPort)), key, 0o600)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, map[string]string{
		"runner.condure_bin": filepath.Join(binDir, "tack-connmgr"),
		"runner.https_ports": fmt.Sprintf("127.0.0.1:%d", tlsPort),
		"runner.local_ports": "{rundir}/{ipc_prefix}server",
	})
	writeRoutes(t, d.dir, fmt.Sprintf("*,ssl=yes %s\n* %s\n", echo("secure"), echo("plain")))
	d.startPushpin(t, conf, "")
	d.waitReady(t, "/ready")

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/x", tlsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "secure proto=https\n" {
		t.Errorf("https: %d %q", resp.StatusCode, body)
	}

	sock := filepath.Join(d.dir, "run", "pushpin-server")
	uc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	defer uc.CloseIdleConnections()
	resp, err = uc.Get("http://local/y")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "plain proto=") {
		t.Errorf("unix socket: %d %q", resp.StatusCode, body)
	}
}
