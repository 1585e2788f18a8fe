package handler

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"tack/internal/config"
	"tack/internal/grip"
	"tack/internal/testutil"
	"tack/internal/zsock"
)

// TestMain checks that no test in the package leaks a goroutine.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeEngine is an engineAPI that records calls. err, when set, is returned
// by Publish and Recover.
type fakeEngine struct {
	mu         sync.Mutex // guards every field
	published  [][]grip.Item
	recovers   int
	refreshes  [][2]string
	connchecks [][]string
	live       map[string]bool
	err        error
	gate       chan struct{} // PublishWait waits until it is closed
}

var _ engineAPI = (*fakeEngine)(nil)

func (f *fakeEngine) Publish(items []grip.Item) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.published = append(f.published, items)
	return nil
}

// PublishWait records like Publish; a set err stands for a wait that
// timed out. While gate is set and open it waits, as the engine does when
// a session holds the inputs back.
func (f *fakeEngine) PublishWait(ctx context.Context, items []grip.Item) error {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ErrQueueFull
		}
	}
	return f.Publish(items)
}

func (f *fakeEngine) Recover() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.recovers++
	return nil
}

func (f *fakeEngine) Refresh(cid, channel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes = append(f.refreshes, [2]string{cid, channel})
	return f.err
}

func (f *fakeEngine) ConnCheck(ids []string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connchecks = append(f.connchecks, ids)
	var out []string
	for _, id := range ids {
		if f.live[id] {
			out = append(out, id)
		}
	}
	return out
}

func (f *fakeEngine) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

// items returns every published item, flattened, in order.
func (f *fakeEngine) items() []grip.Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []grip.Item
	for _, b := range f.published {
		out = append(out, b...)
	}
	return out
}

func (f *fakeEngine) batches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.published)
}

func (f *fakeEngine) recoverCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recovers
}

// testLogger logs through t, shown only when the test fails.
func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

// runInput runs r until the test ends and fails the test if Run returns
// an error or does not return within 5 s of cancellation.
func runInput(t *testing.T, name string, run func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: Run did not return after cancel", name)
		}
	})
}

// newZctx returns a zsock context closed at cleanup (register it before
// the sockets' runInput so that it is closed after they stopped).
func newZctx(t *testing.T) *zsock.Context {
	t.Helper()
	zctx, err := zsock.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { zctx.Close() })
	return zctx
}

func writeConf(t *testing.T, body string) *config.File {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "pushpin.conf")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path, config.Options{LibDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestInputsConfigFromFile(t *testing.T) {
	tests := []struct {
		name    string
		conf    string
		want    InputsConfig
		wantErr string // substring; "" means no error
	}{
		{
			name: "shipped",
			conf: `[handler]
push_in_spec=tcp://127.0.0.1:5560
push_in_sub_specs=tcp://127.0.0.1:5562
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=5561
push_in_http_max_headers_size=10000
push_in_http_max_body_size=1000000
command_spec=tcp://127.0.0.1:5563
`,
			want: InputsConfig{PullSpec: "tcp://127.0.0.1:5560", SubSpecs: []string{"tcp://127.0.0.1:5562"},
				HTTPEnabled: true, HTTPAddr: "127.0.0.1", HTTPPort: 5561,
				MaxHeadersSize: 10000, MaxBodySize: 1000000, CommandSpec: "tcp://127.0.0.1:5563"},
		},
		{
			name: "port offset shifts specs and the http port",
			conf: "[global]\nport_offset=30000\n[handler]\npush_in_spec=tcp://127.0.0.1:5560\npush_in_http_port=5561\ncommand_spec=tcp://*:5563\n",
			want: InputsConfig{PullSpec: "tcp://127.0.0.1:35560", HTTPEnabled: true, HTTPPort: 35561,
				MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize, CommandSpec: "tcp://*:35563"},
		},
		{
			name: "nothing set: every input off, default limits",
			conf: "[handler]\n",
			want: InputsConfig{MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize},
		},
		{
			name: "legacy singular sub spec appended, connect",
			conf: "[handler]\npush_in_sub_specs=tcp://a:1, tcp://b:2\npush_in_sub_spec=tcp://c:3\npush_in_sub_connect=true\n",
			want: InputsConfig{SubSpecs: []string{"tcp://a:1", "tcp://b:2", "tcp://c:3"}, SubConnect: true,
				MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize},
		},
		{
			name: "1.36 spelling of the limits",
			conf: "[handler]\npush_in_max_headers_size=500\npush_in_max_body_size=600\n",
			want: InputsConfig{MaxHeadersSize: 500, MaxBodySize: 600},
		},
		{
			name: "http spelling wins over 1.36 spelling",
			conf: "[handler]\npush_in_max_headers_size=500\npush_in_http_max_headers_size=700\n",
			want: InputsConfig{MaxHeadersSize: 700, MaxBodySize: DefaultMaxBodySize},
		},
		{
			name: "ipc file mode",
			conf: "[handler]\nipc_file_mode=770\n",
			want: InputsConfig{MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize, IPCFileMode: 0o770},
		},
		{
			name: "empty http port leaves the api off",
			conf: "[handler]\npush_in_http_port=\n",
			want: InputsConfig{MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize},
		},
		{
			name: "nats url and prefix",
			conf: "[handler]\npush_in_nats_url=nats://a:4222, nats://b:4222\npush_in_nats_subject_prefix=app.push.\n",
			want: InputsConfig{NATSURL: "nats://a:4222,nats://b:4222", NATSSubjectPrefix: "app.push.",
				MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize},
		},
		{name: "bad nats url", conf: "[handler]\npush_in_nats_url=http://a:4222\n", wantErr: "push_in_nats_url"},
		{name: "nats url without host", conf: "[handler]\npush_in_nats_url=nats://\n", wantErr: "no host"},
		{name: "wildcard nats prefix", conf: "[handler]\npush_in_nats_subject_prefix=a.*.\n", wantErr: "push_in_nats_subject_prefix"},
		{name: "bad http port", conf: "[handler]\npush_in_http_port=abc\n", wantErr: "push_in_http_port"},
		{name: "http port out of range", conf: "[handler]\npush_in_http_port=70000\n", wantErr: "is not a tcp port"},
		{name: "bad body size", conf: "[handler]\npush_in_http_max_body_size=x\n", wantErr: "push_in_http_max_body_size"},
		{name: "zero header size", conf: "[handler]\npush_in_http_max_headers_size=0\n", wantErr: "not a positive size"},
		{
			name:    "all errors at once",
			conf:    "[handler]\npush_in_http_port=abc\npush_in_max_body_size=-1\n",
			wantErr: "push_in_max_body_size",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := inputsConfigFromFile(writeConf(t, tt.conf))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "pushpin.conf:") {
					t.Errorf("error %q does not name the file and line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.NATSSubjectPrefix == "" {
				tt.want.NATSSubjectPrefix = DefaultNATSSubjectPrefix
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestInputsConfigWarnings(t *testing.T) {
	got, err := inputsConfigFromFile(writeConf(t, "[handler]\npush_in_sub_connect=yes\nipc_file_mode=9z\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Pushpin reads "yes" as true (QVariant::toBool) and ignores a bad mode.
	if !got.SubConnect || got.IPCFileMode != 0 || len(got.Warnings) != 2 {
		t.Errorf("got %+v, want SubConnect, no mode and two warnings", got)
	}
}

func TestInputsConfigShippedFile(t *testing.T) {
	f, err := config.Load(filepath.Join(testutil.RepoRoot(), "configs", "pushpin.conf"), config.Options{})
	if err != nil {
		t.Skipf("configs/pushpin.conf: %v", err)
	}
	got, err := inputsConfigFromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if got.PullSpec != "tcp://127.0.0.1:5560" || got.HTTPPort != 5561 || got.CommandSpec != "tcp://127.0.0.1:5563" {
		t.Errorf("got %+v", got)
	}
}

func TestInputsResolveBindSpec(t *testing.T) {
	for _, spec := range []string{"tcp://127.0.0.1:0", "tcp://127.0.0.1:*"} {
		got, err := resolveBindSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, "tcp://127.0.0.1:") || strings.HasSuffix(got, ":0") || strings.HasSuffix(got, ":*") {
			t.Errorf("resolveBindSpec(%q) = %q", spec, got)
		}
	}
	for _, spec := range []string{"tcp://127.0.0.1:5560", "ipc:///tmp/x", "inproc://a"} {
		if got, _ := resolveBindSpec(spec); got != spec {
			t.Errorf("resolveBindSpec(%q) = %q, want it unchanged", spec, got)
		}
	}
}

// TestInputsStartAndUndo starts every input through newInputs, then checks
// that a failing start (a busy port) closes what was already bound.
func TestInputsStartAndUndo(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{}
	cfg := InputsConfig{
		PullSpec: "tcp://127.0.0.1:0", SubSpecs: []string{"tcp://127.0.0.1:0"}, CommandSpec: "tcp://127.0.0.1:0",
		HTTPEnabled: true, HTTPAddr: "127.0.0.1", MaxHeadersSize: DefaultMaxHeadersSize, MaxBodySize: DefaultMaxBodySize,
	}
	in, err := newInputs(zctx, cfg, eng, newChannelSet(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if in.cmd.uris.PublishPull != in.pull.Spec() || in.cmd.uris.PublishSub != in.sub.Spec() || in.cmd.Spec() == "" {
		t.Errorf("uris = %+v", in.cmd.uris)
	}

	runInput(t, "inputs", in.Run)

	// A second set whose HTTP port is taken: the PULL socket it bound
	// first must be closed again, so its spec can be bound once more.
	busy := InputsConfig{
		PullSpec:    fmt.Sprintf("tcp://127.0.0.1:%d", testutil.FreePort(t)),
		HTTPEnabled: true, HTTPAddr: "127.0.0.1", HTTPPort: in.http.Addr().(*net.TCPAddr).Port,
	}
	if _, err := newInputs(zctx, busy, eng, newChannelSet(), nil, testLogger(t)); err == nil {
		t.Fatal("newInputs with a busy http port: no error")
	}
	// libzmq unbinds in its I/O thread, shortly after the close.
	testutil.Eventually(t, 2*time.Second, func() error {
		p, err := newPullInput(zctx, busy, eng, zerolog.Nop())
		if err != nil {
			return fmt.Errorf("pull spec still bound after a failed start: %w", err)
		}
		closeSocket(p.sock)
		return nil
	})
}
