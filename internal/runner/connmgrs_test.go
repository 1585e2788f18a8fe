package runner

import (
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestPlanConnmgrs(t *testing.T) {
	tests := []struct {
		name                   string
		configured, maxConn    int
		cpus                   int
		fd                     uint64
		wantCount, wantMaxConn int
		wantProcs              int
	}{
		{"one configured keeps client_maxconn", 1, 50000, 8, 20000, 1, 50000, 0},
		{"auto: cores", 0, 10000, 4, 20000, 4, 2500, 1},
		{"auto: raised to fit the fd limit", 0, 100000, 2, 20000, 6, 16667, 1},
		{"auto: default maxconn on 2 cores", 0, 50000, 2, 20000, 3, 16667, 1},
		{"auto: capped", 0, 10000000, 2, 20000, MaxConnmgrCount, 19800, 1},
		{"configured share capped by fds", 2, 100000, 2, 20000, 2, 19800, 1},
		{"configured: cores shared", 2, 100000, 8, 20000, 2, 19800, 4},
		{"configured: cores shared, rounded down", 3, 30000, 8, 20000, 3, 10000, 2},
		{"auto: one core, room", 0, 1000, 1, 1 << 40, 1, 1000, 0},
		{"unlimited fds", 0, 50000, 2, ^uint64(0), 2, 25000, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planConnmgrs(tt.configured, tt.maxConn, tt.cpus, tt.fd)
			if p.count != tt.wantCount || p.maxConn != tt.wantMaxConn || p.procs != tt.wantProcs {
				t.Errorf("got %d × %d (GOMAXPROCS %d), want %d × %d (GOMAXPROCS %d)",
					p.count, p.maxConn, p.procs, tt.wantCount, tt.wantMaxConn, tt.wantProcs)
			}
		})
	}
}

// TestRunnerConnmgrCount: connmgr_count=3 starts three connection
// managers sharing the TCP ports (--reuse-port), each with its own id and
// sockets, the unix socket on the first only, and proxy and handler get
// every instance's sockets.
func TestRunnerConnmgrCount(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	conf := strings.NewReplacer("connmgr_count=1\n", "connmgr_count=3\n", "/fake/condure", "/fake/tack-connmgr",
		"/fake/pushpin-proxy", "/fake/tack-proxy", "/fake/pushpin-handler", "/fake/tack-handler").Replace(fullConf)
	if err := os.WriteFile("full.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := BuildConfig(Flags{Config: "full.conf", ID: -1}, "")
	if err != nil {
		t.Fatal(err)
	}
	run := "ipc://" + dir + "/run/pushpin-"
	tcp := "--listen=0.0.0.0:7000,stream --listen=127.0.0.1:7001,stream --listen=[::1]:7002,stream --listen=0.0.0.0:7443,stream,tls,default-cert=default_7443 --listen=127.0.0.1:8443,stream,tls,default-cert=default_8443"
	tail := " --buffer-size=1000 --stream-maxconn=33 --tls-identities-dir=./runner/certs --reuse-port"
	specs := func(flag, suffix string) string {
		var a []string
		for _, n := range []string{"condure", "condure-1", "condure-2"} {
			a = append(a, "--"+flag+"="+run+n+suffix)
		}
		return strings.Join(a, " ")
	}
	handlerSpecs := specs("connmgr-in-stream-specs", "-out-stream") + " " + specs("connmgr-out-specs", "-in")
	want := []string{
		"condure: /fake/tack-connmgr --log-level=1 " + tcp + " --listen=run/pushpin-server,local,stream --zclient-stream=" + run + "condure" + tail,
		"condure-1: /fake/tack-connmgr --log-level=1 --id=condure-1 " + tcp + " --zclient-stream=" + run + "condure-1" + tail,
		"condure-2: /fake/tack-connmgr --log-level=1 --id=condure-2 " + tcp + " --zclient-stream=" + run + "condure-2" + tail,
		"zurl: /fake/zurl --config=" + dir + "/run/zurl.conf --logfile=" + dir + "/log/zurl.log --verbose",
		"proxy: /fake/tack-proxy --config=full.conf --ipc-prefix=pushpin- --logfile=" + dir + "/log/pushpin-proxy.log --loglevel=3 --quiet-check " +
			specs("connmgr-in-specs", "-out") + " " + handlerSpecs,
		"handler: /fake/tack-handler --config=full.conf --ipc-prefix=pushpin- --logfile=" + dir + "/log/pushpin-handler.log --loglevel=0 " + handlerSpecs,
	}
	var got []string
	for _, u := range c.units() {
		got = append(got, u.name+": "+(&child{bin: c.Bins[u.kind], args: u.args}).commandLine())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("command lines:\n got %q\nwant %q", got, want)
	}
	if got, want := c.pidFileOf(c.connmgrName(2)), dir+"/run/condure-2.pid"; got != want {
		t.Errorf("pid file %s, want %s", got, want)
	}
	// Each connection manager runs on its share of the cores, unless the
	// environment sets GOMAXPROCS; the other services keep Go's default.
	var wantEnv []string
	if os.Getenv("GOMAXPROCS") == "" {
		wantEnv = []string{"GOMAXPROCS=" + strconv.Itoa(max(runtime.NumCPU()/3, 1))}
	}
	for _, u := range c.units() {
		want := wantEnv
		if u.kind != ServiceConnmgr {
			want = nil
		}
		if !reflect.DeepEqual(u.env, want) {
			t.Errorf("%s: env %q, want %q", u.name, u.env, want)
		}
	}
}

func TestRunnerConnmgrCountBad(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	// "3": fullConf runs Pushpin's binaries, which lack the flags.
	for _, v := range []string{"-1", "65", "x", "3"} {
		conf := strings.Replace(fullConf, "connmgr_count=1\n", "connmgr_count="+v+"\n", 1)
		if err := os.WriteFile("full.conf", []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := BuildConfig(Flags{Config: "full.conf", ID: -1}, ""); err == nil || !strings.Contains(err.Error(), "connmgr_count") {
			t.Errorf("connmgr_count=%s: err %v", v, err)
		}
	}
}

// TestRunnerConnmgrCountAutoPushpin: auto is one connection manager when
// Pushpin's binaries run (they lack --reuse-port and --connmgr-*-specs).
func TestRunnerConnmgrCountAutoPushpin(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	conf := strings.Replace(fullConf, "connmgr_count=1\n", "", 1)
	if err := os.WriteFile("full.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := BuildConfig(Flags{Config: "full.conf", ID: -1}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.ConnmgrCount != 1 || len(c.units()) != 4 {
		t.Fatalf("ConnmgrCount %d, %d units", c.ConnmgrCount, len(c.units()))
	}
}
