package interop

import (
	"path/filepath"
	"testing"
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
