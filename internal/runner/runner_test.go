package runner

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// fullConf is the config the golden lines below were captured with, from
// the real Pushpin 1.36 runner (`pushpin --config=full.conf <flags>`,
// working dir /tmp/tkr/r, fake binaries named by condure_bin/zurl_bin and
// pushpin-proxy/pushpin-handler on PATH).
const fullConf = `[global]
include={libdir}/internal.conf
rundir=run
ipc_prefix=pushpin-
port_offset=0
[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=7000,127.0.0.1:7001,[::1]:7002
https_ports=7443,127.0.0.1:8443
local_ports={rundir}/{ipc_prefix}server
logdir=log
log_level=2,proxy:3,condure:1,zurl:4,handler:0
client_buffer_size=1000
client_maxconn=99
connmgr_count=1
condure_bin=/fake/condure
zurl_bin=/fake/zurl
proxy_bin=/fake/pushpin-proxy
handler_bin=/fake/pushpin-handler
`

const capturedListen = "--listen=0.0.0.0:7000,stream --listen=127.0.0.1:7001,stream --listen=[::1]:7002,stream --listen=0.0.0.0:7443,stream,tls,default-cert=default_7443 --listen=127.0.0.1:8443,stream,tls,default-cert=default_8443 --listen=run/pushpin-server,local,stream"

func TestRunnerArgsMatchPushpin(t *testing.T) {
	tests := []struct {
		name  string
		flags Flags
		want  []string // as logged by Pushpin 1.36 ("running: ..."), cwd /tmp/tkr/r
	}{
		{"verbose", Flags{Verbose: true, ID: -1}, []string{
			"/fake/condure --log-level=3 " + capturedListen + " --zclient-stream=ipc:///tmp/tkr/r/run/pushpin-condure --buffer-size=1000 --stream-maxconn=99 --tls-identities-dir=./runner/certs",
			"/fake/zurl --config=/tmp/tkr/r/run/zurl.conf --logfile=/tmp/tkr/r/log/zurl.log --verbose",
			"/fake/pushpin-proxy --config=full.conf --ipc-prefix=pushpin- --logfile=/tmp/tkr/r/log/pushpin-proxy.log --loglevel=3 --quiet-check",
			"/fake/pushpin-handler --config=full.conf --ipc-prefix=pushpin- --logfile=/tmp/tkr/r/log/pushpin-handler.log --loglevel=3",
		}},
		{"id port route", Flags{Verbose: true, ID: 3, Port: "127.0.0.1:9000", Routes: []string{"* test", "b c"}}, []string{
			"/fake/condure --log-level=3 --listen=127.0.0.1:9000,stream --zclient-stream=ipc:///tmp/tkr/r/run/p3-condure --buffer-size=1000 --stream-maxconn=99",
			"/fake/zurl --config=/tmp/tkr/r/run/p3-zurl.conf --logfile=/tmp/tkr/r/log/p3-zurl.log --verbose",
			"/fake/pushpin-proxy --config=full.conf --ipc-prefix=p3- --logfile=/tmp/tkr/r/log/p3-pushpin-proxy.log --loglevel=3 --route=* test --route=b c --quiet-check",
			"/fake/pushpin-handler --config=full.conf --ipc-prefix=p3- --port-offset=30 --logfile=/tmp/tkr/r/log/p3-pushpin-handler.log --loglevel=3",
		}},
		{"id 0", Flags{Verbose: true, ID: 0}, []string{
			"/fake/condure --log-level=3 " + capturedListen + " --zclient-stream=ipc:///tmp/tkr/r/run/p0-condure --buffer-size=1000 --stream-maxconn=99 --tls-identities-dir=./runner/certs",
			"/fake/zurl --config=/tmp/tkr/r/run/p0-zurl.conf --logfile=/tmp/tkr/r/log/p0-zurl.log --verbose",
			"/fake/pushpin-proxy --config=full.conf --ipc-prefix=p0- --logfile=/tmp/tkr/r/log/p0-pushpin-proxy.log --loglevel=3 --quiet-check",
			"/fake/pushpin-handler --config=full.conf --ipc-prefix=p0- --logfile=/tmp/tkr/r/log/p0-pushpin-handler.log --loglevel=3",
		}},
		// 1.36 names per-service levels pushpin-proxy/pushpin-handler/condure/zurl.
		{"levels", Flags{LogLevel: "3,pushpin-proxy:1,pushpin-handler:1,condure:4,zurl:2", ID: -1}, []string{
			"/fake/condure --log-level=4 " + capturedListen + " --zclient-stream=ipc:///tmp/tkr/r/run/pushpin-condure --buffer-size=1000 --stream-maxconn=99 --tls-identities-dir=./runner/certs",
			"/fake/zurl --config=/tmp/tkr/r/run/zurl.conf --logfile=/tmp/tkr/r/log/zurl.log --loglevel=2",
			"/fake/pushpin-proxy --config=full.conf --ipc-prefix=pushpin- --logfile=/tmp/tkr/r/log/pushpin-proxy.log --loglevel=1 --quiet-check",
			"/fake/pushpin-handler --config=full.conf --ipc-prefix=pushpin- --logfile=/tmp/tkr/r/log/pushpin-handler.log --loglevel=1",
		}},
		{"merged", Flags{Verbose: true, MergeOutput: true, ID: -1}, []string{
			"/fake/condure --log-level=3 " + capturedListen + " --zclient-stream=ipc:///tmp/tkr/r/run/pushpin-condure --buffer-size=1000 --stream-maxconn=99 --tls-identities-dir=./runner/certs",
			"/fake/zurl --config=/tmp/tkr/r/run/zurl.conf --verbose",
			"/fake/pushpin-proxy --config=full.conf --ipc-prefix=pushpin- --loglevel=3 --quiet-check",
			"/fake/pushpin-handler --config=full.conf --ipc-prefix=pushpin- --loglevel=3",
		}},
	}
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("full.conf", []byte(fullConf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl := tt.flags
			fl.Config = "full.conf"
			c, err := BuildConfig(fl, "")
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range c.Services {
				ch := child{bin: c.Bins[k], args: c.Args(k)}
				got = append(got, ch.commandLine())
			}
			for i := range tt.want {
				tt.want[i] = strings.ReplaceAll(tt.want[i], "/tmp/tkr/r", dir)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("command lines:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestRunnerAllowCompression: [runner] allow_compression=true (Pushpin
// 1.37+) passes --compression to the connection manager.
func TestRunnerAllowCompression(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	conf := strings.Replace(fullConf, "client_maxconn=99\n", "client_maxconn=99\nallow_compression=true\n", 1)
	if err := os.WriteFile("full.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := BuildConfig(Flags{Config: "full.conf", ID: -1}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Args(ServiceConnmgr), " "); !strings.Contains(got, "--stream-maxconn=99 --compression") {
		t.Fatalf("connmgr args %q", got)
	}
}

func TestRunnerShippedConfig(t *testing.T) {
	exe := t.TempDir()
	for _, n := range []string{"tack-connmgr", "tack-zhttp-client", "tack-proxy", "tack-handler"} {
		if err := os.WriteFile(filepath.Join(exe, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(wd, "../../configs/pushpin.conf")
	c, err := BuildConfig(Flags{Config: conf, ID: -1}, exe)
	if err != nil {
		t.Fatal(err)
	}
	// connmgr_count is auto there (cores, fd limit); with one, the lines
	// are Pushpin's (TestRunnerConnmgrCount covers several).
	if want := planConnmgrs(0, DefaultClientMaxConn, runtime.NumCPU(), nofileLimit()).count; c.ConnmgrCount != want {
		t.Errorf("ConnmgrCount = %d, want %d", c.ConnmgrCount, want)
	}
	c.ConnmgrCount = 1
	want := []string{
		exe + "/tack-connmgr --log-level=2 --listen=0.0.0.0:7999,stream --zclient-stream=ipc://" + wd + "/run/pushpin-condure --buffer-size=8192 --stream-maxconn=50000",
		exe + "/tack-zhttp-client --config=" + wd + "/run/zurl.conf --logfile=" + wd + "/log/zurl.log --loglevel=2",
		exe + "/tack-proxy --config=" + conf + " --ipc-prefix=pushpin- --logfile=" + wd + "/log/pushpin-proxy.log --loglevel=2 --quiet-check",
		exe + "/tack-handler --config=" + conf + " --ipc-prefix=pushpin- --logfile=" + wd + "/log/pushpin-handler.log --loglevel=2",
	}
	var got []string
	for _, k := range c.Services {
		got = append(got, (&child{bin: c.Bins[k], args: c.Args(k)}).commandLine())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("command lines:\n got %q\nwant %q", got, want)
	}
}

func TestRunnerServices(t *testing.T) {
	tests := []struct {
		services string
		want     []string
		err      string
	}{
		{"condure,zurl,pushpin-proxy,pushpin-handler", []string{"connmgr", "zurl", "proxy", "handler"}, ""},
		{"handler,proxy,connmgr", []string{"connmgr", "proxy", "handler"}, ""},
		{"pushpin-handler,zurl,condure", []string{"connmgr", "zurl", "handler"}, ""},
		{"condure,foo,condure", []string{"connmgr"}, ""},
		{"mongrel2", nil, "names no service"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		p := filepath.Join(dir, "s.conf")
		body := "[global]\nrundir=" + dir + "\n[runner]\nservices=" + tt.services + "\nhttp_port=1\n" +
			"condure_bin=/x/c\nzurl_bin=/x/z\nproxy_bin=/x/p\nhandler_bin=/x/h\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := BuildConfig(Flags{Config: p, ID: -1}, "")
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.services, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c.Services, tt.want) {
			t.Errorf("%s: %q, want %q", tt.services, c.Services, tt.want)
		}
	}
}

func TestRunnerBinaries(t *testing.T) {
	exe := t.TempDir()
	for _, n := range []string{"tack-connmgr", "tack-zhttp-client", "tack-proxy", "tack-handler"} {
		if err := os.WriteFile(filepath.Join(exe, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, keys string
		want       map[string]string
		err        string
	}{
		{"defaults", "", map[string]string{"connmgr": exe + "/tack-connmgr", "zurl": exe + "/tack-zhttp-client", "proxy": exe + "/tack-proxy", "handler": exe + "/tack-handler"}, ""},
		{"debian names mean tack", "condure_bin=condure\nzurl_bin=zurl\n", map[string]string{"connmgr": exe + "/tack-connmgr", "zurl": exe + "/tack-zhttp-client"}, ""},
		{"absolute honoured", "condure_bin=/usr/bin/condure\nzurl_bin=/opt/zurl\nproxy_bin=/usr/bin/pushpin-proxy\nhandler_bin=./h\n", map[string]string{"connmgr": "/usr/bin/condure", "zurl": "/opt/zurl", "proxy": "/usr/bin/pushpin-proxy", "handler": "./h"}, ""},
		{"name looked up in PATH", "condure_bin=sh\n", map[string]string{"connmgr": "/usr/bin/sh"}, ""},
		{"missing name", "proxy_bin=no-such-binary-xyz\n", nil, "proxy_bin"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "b.conf")
			body := "[global]\nrundir=" + dir + "\n[runner]\nservices=condure,zurl,pushpin-proxy,pushpin-handler\nhttp_port=1\n" + tt.keys
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := BuildConfig(Flags{Config: p, ID: -1}, exe)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				got := c.Bins[k]
				if k == "connmgr" && want == "/usr/bin/sh" {
					if filepath.Base(got) != "sh" {
						t.Errorf("%s: %q", k, got)
					}
					continue
				}
				if got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestRunnerFlagErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "e.conf")
	body := "[global]\nrundir=" + dir + "\n[runner]\nservices=condure\nhttp_port=1\ncondure_bin=/x\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		flags Flags
		err   string
	}{
		{Flags{Port: "0", ID: -1}, "port must be greater than or equal to 1"},
		{Flags{Port: "x:y", ID: -1}, "invalid port"},
		{Flags{LogLevel: "-1", ID: -1}, "log level must be greater than or equal to 0"},
		{Flags{LogLevel: "2,:3", ID: -1}, "log level component name cannot be empty"},
		{Flags{LogLevel: "2,proxy:-1", ID: -1}, "log level for service proxy must be greater than or equal to 0"},
		{Flags{ID: -2}, "id must be greater than or equal to 0"},
	}
	for _, tt := range tests {
		fl := tt.flags
		fl.Config = p
		if _, err := BuildConfig(fl, ""); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%+v: error %v, want %q", tt.flags, err, tt.err)
		}
	}
	bad := filepath.Join(dir, "bad.conf")
	if err := os.WriteFile(bad, []byte("[runner]\nservices=condure\nhttp_port=\"1,2\"\nclient_maxconn=lots\ncondure_bin=/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := BuildConfig(Flags{Config: bad, ID: -1}, "")
	for _, want := range []string{"bad.conf:3: invalid http port: 1,2", "bad.conf:4: [runner] client_maxconn"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}

func TestRunnerPrefixLine(t *testing.T) {
	tests := []struct{ in, want string }{
		{"[INFO] 2026-01-01 00:00:00.000 proxy out\n", "[INFO] 2026-01-01 00:00:00.000 [proxy] proxy out\n"},
		{"[WARN] a b c d\n", "[WARN] a b [proxy] c d\n"},
		{"[INFO]  2026 x y\n", "[INFO]  2026 [proxy] x y\n"},
		{"[INFO] 2026-01-01 00:00:00.000\n", "[INFO] 2026-01-01 00:00:00.000\n"},
		{"[WARN] x\n", "[WARN] x\n"},
		{"plain line\n", "plain line\n"},
		{" [INFO] a b c\n", " [INFO] a b c\n"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := string(prefixLine([]byte(tt.in), "proxy")); got != tt.want {
			t.Errorf("prefixLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRunnerCopyLines(t *testing.T) {
	var b strings.Builder
	long := strings.Repeat("x", MaxLine+10)
	copyLines(strings.NewReader("[I] d t a\nno newline"+"\n"+long), &b, "z", true)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if lines[0] != "[I] d t [z] a" || lines[1] != "no newline" || len(lines) != 4 {
		t.Errorf("lines %q", lines[:2])
	}
}

func TestRunnerZurlConf(t *testing.T) {
	dir := t.TempDir()
	c := &Config{RunDir: dir, LibDir: "../../configs", IPCPrefix: "p1-", FilePrefix: "p1-"}
	if err := c.renderZurlConf(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "p1-zurl.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"in_spec=ipc://" + dir + "/p1-zurl-in\n",
		"in_stream_spec=ipc://" + dir + "/p1-zurl-in-stream\n",
		"out_spec=ipc://" + dir + "/p1-zurl-out\n",
		"deny=127.*,10.*,192.168.*,*.local\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("zurl.conf lacks %q", want)
		}
	}
	if strings.Contains(string(got), "{{") {
		t.Error("unrendered placeholder")
	}
}

func TestRunnerLocalPortOptions(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "/r/s", want: "/r/s,local,stream"},
		{in: "/r/s?mode=660&user=www-data&group=adm", want: "/r/s,local,stream,mode=660,user=www-data,group=adm"},
		{in: "/r/s?group=adm", want: "/r/s,local,stream,group=adm"},
		{in: "/r/s?owner=x", err: `unknown option "owner"`},
		{in: "/r/s?mode=6,6", err: `bad mode`},
		{in: "?mode=600", err: "empty path"},
	} {
		got, err := localListen(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.in, got, err, tc.want)
		}
	}
}
