package connmgr

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

func parseArgs(args []string) (Config, error) {
	f := &flags{}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	return f.config()
}

func TestCommandFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{
			name: "Pushpin 1.36 runner command line",
			args: []string{"--log-level=3", "--listen=0.0.0.0:27999,stream",
				"--zclient-stream=ipc:///tmp/cap/rr/run/pushpin-condure", "--buffer-size=8192", "--stream-maxconn=50000"},
			check: func(t *testing.T, c Config) {
				if c.ID != "condure" || len(c.Listen) != 1 || c.Listen[0].Addr != "0.0.0.0:27999" || !c.Listen[0].Stream ||
					c.ZClientStream[0] != "ipc:///tmp/cap/rr/run/pushpin-condure" || c.BufferSize != 8192 || c.StreamMaxConn != 50000 {
					t.Errorf("%+v", c)
				}
			},
		},
		{
			name: "defaults are condure's",
			check: func(t *testing.T, c Config) {
				if c.ID != "condure" || c.Listen[0].Addr != "0.0.0.0:8000" || c.ZClientStream[0] != "ipc://client" ||
					c.BufferSize != 8192 || c.StreamMaxConn != 10000 || c.StreamTimeout != 1800*time.Second {
					t.Errorf("%+v", c)
				}
			},
		},
		{
			name: "port only, repeated listen, connect to two bases",
			args: []string{"--listen=7999", "--listen=[::1]:8001,stream", "--zclient-connect",
				"--zclient-stream=ipc://a", "--zclient-stream=tcp://127.0.0.1:5000", "--ipc-file-mode=770", "--id=c2"},
			check: func(t *testing.T, c Config) {
				if c.Listen[0].Addr != "0.0.0.0:7999" || c.Listen[1].Addr != "[::1]:8001" || !c.ZClientConnect ||
					len(c.ZClientStream) != 2 || c.IPCFileMode != 0o770 || c.ID != "c2" {
					t.Errorf("%+v", c)
				}
			},
		},
		{
			name: "tls and local",
			args: []string{"--listen=0.0.0.0:443,stream,tls,default-cert=default_443", "--listen=/tmp/x.sock,local,stream,mode=660,user=root,group=root", "--tls-identities-dir=/c"},
			check: func(t *testing.T, c Config) {
				want := []Listener{
					{Addr: "0.0.0.0:443", Stream: true, TLS: true, DefaultCert: "default_443"},
					{Addr: "/tmp/x.sock", Stream: true, Local: true, Mode: 0o660, User: "root", Group: "root"},
				}
				if fmt.Sprint(c.Listen) != fmt.Sprint(want) || c.TLSIdentities != "/c" {
					t.Errorf("%+v", c.Listen)
				}
			},
		},
		{name: "tls local", args: []string{"--listen=/tmp/x.sock,local,tls"}, wantErr: "tls on a local listener is not supported yet"},
		{name: "mode on tcp", args: []string{"--listen=80,mode=600"}, wantErr: "local listeners only"},
		{name: "bad local mode", args: []string{"--listen=/x,local,mode=999"}, wantErr: "not an octal mode"},
		{name: "req mode", args: []string{"--listen=8001,req"}, wantErr: "req mode is not supported yet"},
		{name: "compression", args: []string{"--compression"}, check: func(t *testing.T, c Config) {
			if !c.Compression {
				t.Error("--compression not set")
			}
		}},
		{name: "two binds", args: []string{"--zclient-stream=ipc://a", "--zclient-stream=ipc://b"}, wantErr: "not supported yet"},
		{name: "bad listen param", args: []string{"--listen=80,bogus"}, wantErr: "invalid param: bogus"},
		{name: "bad port", args: []string{"--listen=99999"}, wantErr: "bad port"},
		{name: "bad base", args: []string{"--zclient-stream=inproc://x"}, wantErr: "base spec must be ipc or tcp"},
		{name: "id with space", args: []string{"--id=a b"}, wantErr: "cannot be empty or contain a space"},
		{name: "bad mode", args: []string{"--ipc-file-mode=9"}, wantErr: "not an octal mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseArgs(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestCommandStreamSpecs(t *testing.T) {
	tests := []struct{ base, out, stream, in string }{
		{"ipc:///run/pushpin/pushpin-condure", "ipc:///run/pushpin/pushpin-condure-out", "ipc:///run/pushpin/pushpin-condure-out-stream", "ipc:///run/pushpin/pushpin-condure-in"},
		{"tcp://127.0.0.1:5000", "tcp://127.0.0.1:5000", "tcp://127.0.0.1:5001", "tcp://127.0.0.1:5002"},
	}
	for _, tc := range tests {
		o, s, i, err := StreamSpecs(tc.base)
		if err != nil || o != tc.out || s != tc.stream || i != tc.in {
			t.Errorf("%s: %s %s %s %v", tc.base, o, s, i, err)
		}
	}
}

func TestCommandHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
		not  string
	}{
		{args: []string{"--help"}, want: []string{"--zclient-stream", "--listen", "--buffer-size", "--stream-maxconn"}, not: "--zserver-stream"},
		{args: []string{"-V"}, want: []string{"tack-connmgr test\n"}},
		{args: []string{"--sizes"}, want: []string{"conn = "}},
	} {
		cmd := Command()
		cmd.Version = "test"
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(tc.args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, out.String())
			}
		}
		// The 1.41 runner enables client mode when --help mentions it.
		if tc.not != "" && strings.Contains(out.String(), tc.not) {
			t.Errorf("%v: output mentions %q", tc.args, tc.not)
		}
	}
}

// TestConnmgrQueueFull: when the PUSH queue cannot take a first packet the
// client gets 503 at once instead of waiting.
func TestConnmgrQueueFull(t *testing.T) {
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := DefaultConfig()
	cfg.Listen = []Listener{{Addr: "127.0.0.1:0", Stream: true}}
	cfg.ZClientStream = []string{"ipc://" + dir + "/c"}
	s, err := New(cfg, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, ln := range s.lns {
			ln.Close()
		}
		closeUnstarted([]*zsock.Socket{s.push, s.rtr, s.sub})
		s.zctx.Close()
	}()
	for s.push.TrySend(zsock.Message{[]byte("x")}) { // nobody runs the owner
	}
	c := &conn{s: s, closed: make(chan struct{}), wake: make(chan struct{}, 1), mb: mailbox{req: 1}}
	p := zhttp.New()
	p.Method, p.URI = "GET", "http://x/"
	s.eng.start(connMsg{kind: msgStart, c: c, req: 1, id: "0-1-1", pkt: p}, time.Now())
	if c.mb.reject != 503 || c.mb.rejectMsg != msgQueueFull {
		t.Fatalf("mailbox %+v", c.mb)
	}
	if len(s.eng.sessions) != 0 {
		t.Fatalf("%d sessions kept", len(s.eng.sessions))
	}
}
