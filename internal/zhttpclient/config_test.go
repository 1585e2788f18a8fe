package zhttpclient

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigParse(t *testing.T) {
	cases := []struct {
		name  string
		text  string
		check func(t *testing.T, c Config)
		warn  string
		err   string
	}{
		{
			name: "runner template",
			text: `[General]
# instance routing id. keep blank for random. set for better error recovery
instance_id=

in_spec=ipc:///run/pp/pushpin-zurl-in
in_stream_spec=ipc:///run/pp/pushpin-zurl-in-stream
out_spec=ipc:///run/pp/pushpin-zurl-out
in_req_spec=
defpolicy=allow
allow=
deny=127.*,10.*,192.168.*,*.local
max_open_requests=2000
buffer_size=200000
timeout=600
in_hwm=1000
out_hwm=1000
`,
			check: func(t *testing.T, c Config) {
				want := DefaultConfig()
				want.InSpec = "ipc:///run/pp/pushpin-zurl-in"
				want.InStreamSpec = "ipc:///run/pp/pushpin-zurl-in-stream"
				want.OutSpec = "ipc:///run/pp/pushpin-zurl-out"
				want.Deny = []string{"127.*", "10.*", "192.168.*", "*.local"}
				want.MaxOpenRequests = 2000
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("got %+v\nwant %+v", c, want)
				}
				if !strings.HasPrefix(c.InstanceID, "zhttpclient_") {
					t.Fatalf("instance id %q", c.InstanceID)
				}
			},
		},
		{
			name: "all keys",
			text: "[General]\ninstance_id=zurl-a\nin_req_spec=ipc:///x/req\nipc_file_mode=660\ndefpolicy=deny\nallow= a.example , *.b.example,,10.0.0.0/8\n" +
				"max_open_requests=-5\nbuffer_size=1000\ntimeout=30\nconnection_max_time=60\nallow_ipv6=true\nin_hwm=5\nout_hwm=6\n",
			check: func(t *testing.T, c Config) {
				if c.InstanceID != "zurl-a" || c.InReqSpec != "ipc:///x/req" || c.IPCFileMode != 0o660 || c.DefPolicy != PolicyDeny ||
					!reflect.DeepEqual(c.Allow, []string{"a.example", "*.b.example", "10.0.0.0/8"}) || c.MaxOpenRequests != Unlimited ||
					c.BufferSize != 1000 || c.Timeout != 30*time.Second || c.ConnectionMaxTime != time.Minute || !c.AllowIPv6 ||
					c.InHWM != 5 || c.OutHWM != 6 {
					t.Fatalf("got %+v", c)
				}
			},
		},
		{
			name:  "keys without section, as QSettings reads them",
			text:  "in_req_spec=ipc:///x/req\n",
			check: func(t *testing.T, c Config) { expect(t, c.InReqSpec, "ipc:///x/req") },
		},
		{name: "max_open_requests 0 acts as 1", text: "[General]\nin_req_spec=ipc:///x\nmax_open_requests=0\n",
			check: func(t *testing.T, c Config) { expect(t, c.MaxOpenRequests, 1) }},
		{name: "bad integer is a warning", text: "[General]\nin_req_spec=ipc:///x\nbuffer_size=lots\n",
			check: func(t *testing.T, c Config) { expect(t, c.BufferSize, DefaultBufferSize) }, warn: "test.conf:3: buffer_size"},
		{name: "allow_ipv6 no", text: "[General]\nin_req_spec=ipc:///x\nallow_ipv6=0\n",
			check: func(t *testing.T, c Config) { expect(t, c.AllowIPv6, false) }},
		{name: "partial stream trio", text: "[General]\nin_spec=ipc:///x/in\n", err: "all of them must be set"},
		{name: "no interface", text: "[General]\n", err: "must set at least"},
		{name: "bad defpolicy", text: "[General]\nin_req_spec=ipc:///x\n\ndefpolicy=maybe\n", err: `test.conf:4: defpolicy: defpolicy must be set to "allow" or "deny"`},
		{name: "bad ipc_file_mode", text: "[General]\nin_req_spec=ipc:///x\nipc_file_mode=999\n", err: "invalid ipc_file_mode"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := parseConfig("test.conf", []byte(tc.text))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.warn != "" && (len(warns) != 1 || !strings.Contains(warns[0], tc.warn)) {
				t.Fatalf("warnings %q, want %q", warns, tc.warn)
			}
			if tc.warn == "" && len(warns) != 0 {
				t.Fatalf("unexpected warnings %q", warns)
			}
			tc.check(t, c)
		})
	}
}

func expect[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// The installed files parse: zurl's own /etc/zurl.conf and the template
// the Pushpin runner renders.
func TestConfigInstalledFiles(t *testing.T) {
	for _, path := range []string{"/etc/zurl.conf", "/usr/lib/pushpin/runner/zurl.conf.template"} {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Logf("skip %s: %v", path, err)
			continue
		}
		text := strings.NewReplacer("{{ rundir }}", "/run/x", "{{ ipc_prefix }}", "p-").Replace(string(raw))
		c, warns, err := parseConfig(path, []byte(text))
		if err != nil || len(warns) != 0 {
			t.Fatalf("%s: %v %q", path, err, warns)
		}
		if c.OutSpec == "" || len(c.Deny) != 4 || c.MaxOpenRequests != 2000 {
			t.Fatalf("%s: %+v", path, c)
		}
	}
}

func TestConfigLoadMissing(t *testing.T) {
	_, _, err := LoadConfig(filepath.Join(t.TempDir(), "nope.conf"))
	if err == nil || !strings.Contains(err.Error(), "failed to open") {
		t.Fatalf("err = %v", err)
	}
}
