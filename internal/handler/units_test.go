package handler

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tack/internal/config"
	"tack/internal/grip"
	"tack/internal/testutil"
	"tack/pkg/zhttp"
)

func TestConfigShippedAndDebian(t *testing.T) {
	for _, path := range []string{
		filepath.Join(testutil.RepoRoot(), "configs", "pushpin.conf"),
		"/etc/pushpin/pushpin.conf",
	} {
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			f, err := config.Load(path, config.Options{})
			if err != nil {
				t.Skipf("%s: %v", path, err)
			}
			c, err := ConfigFromFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(c.InstanceID, "handler_") || len(c.AcceptSpecs) != 1 || len(c.InspectSpecs) != 1 ||
				len(c.ConnmgrOutSpecs) != 1 || len(c.ConnmgrStreamSpecs) != 1 || len(c.RetryOutSpecs) != 1 ||
				!strings.HasSuffix(c.ConnmgrOutSpecs[0], "condure-in") || !strings.HasSuffix(c.ConnmgrStreamSpecs[0], "condure-out-stream") ||
				!strings.HasSuffix(c.StatsSpec, "stats") || len(c.ProxyStatsSpecs) != 1 {
				t.Fatalf("specs %+v", c)
			}
			if c.IDCacheTTL != 60*time.Second || c.MessageWait != 5*time.Second || c.SubscriptionLinger != 60*time.Second ||
				c.ConnectionSubscriptionMax != 20 || !c.UpdateOnFirstSubscription || c.StatsReportInterval != 10*time.Second {
				t.Fatalf("values %+v", c)
			}
		})
	}
}

func TestConfigListKeysAndErrors(t *testing.T) {
	f := writeConf(t, "[proxy]\nconnmgr_out_specs=ipc://a\ncondure_out_specs=ipc://b\nconnmgr_in_stream_specs=ipc://c\n"+
		"[handler]\nproxy_accept_specs=ipc://x,ipc://y\nproxy_accept_spec=ipc://z\nproxy_inspect_spec=ipc://i\nid_cache_ttl=abc\n")
	_, err := ConfigFromFile(f)
	if err == nil || !strings.Contains(err.Error(), "id_cache_ttl") {
		t.Fatalf("err %v", err)
	}
	f = writeConf(t, "[proxy]\nconnmgr_out_specs=ipc://a\ncondure_out_specs=ipc://b\nconnmgr_in_stream_specs=ipc://c\n"+
		"[handler]\nproxy_accept_specs=ipc://x,ipc://y\nproxy_accept_spec=ipc://z\nproxy_inspect_spec=ipc://i\n")
	c, err := ConfigFromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.AcceptSpecs, " ") != "ipc://x ipc://y ipc://z" || strings.Join(c.ConnmgrOutSpecs, " ") != "ipc://a ipc://b" {
		t.Fatalf("%+v", c)
	}
}

func TestBodyPatch(t *testing.T) {
	tests := []struct {
		name, in string
		patch    []any
		want     string
	}{
		{"replace", `{"a":1,"b":[1,2]}` + "\n", []any{map[string]any{"op": "replace", "path": "/a", "value": "x"}}, `{"a":"x","b":[1,2]}` + "\n"},
		{"add array", `{"b":[1,2]}` + "\r\n", []any{map[string]any{"op": "add", "path": "/b/1", "value": 9.0}}, `{"b":[1,9,2]}` + "\r\n"},
		{"append and remove", `{"b":[1,2],"c":true}`, []any{
			map[string]any{"op": "add", "path": "/b/-", "value": 3.0},
			map[string]any{"op": "remove", "path": "/c"},
		}, `{"b":[1,2,3]}`},
		{"move copy test", `{"a":{"x":1},"b":2}`, []any{
			map[string]any{"op": "copy", "from": "/a/x", "path": "/c"},
			map[string]any{"op": "move", "from": "/b", "path": "/a/y"},
			map[string]any{"op": "test", "path": "/c", "value": 1.0},
		}, `{"a":{"x":1,"y":2},"c":1}`},
		{"failed test", `{"a":1}`, []any{map[string]any{"op": "test", "path": "/a", "value": 2.0}}, ``},
		{"not json", `hello`, []any{map[string]any{"op": "remove", "path": "/a"}}, ``},
		{"escaped pointer <html>", `{"a/b":"<i>"}`, []any{map[string]any{"op": "replace", "path": "/a~1b", "value": "<b>"}}, `{"a/b":"<b>"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(applyBodyPatch([]byte(tt.in), tt.patch)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCORSHeaders(t *testing.T) {
	req := []grip.Header{{Name: "Origin", Value: "http://x.example"}, {Name: "Access-Control-Request-Headers", Value: "a, b"}}
	got := applyCORS(req, []grip.Header{{Name: "Server", Value: "s"}, {Name: "Date", Value: "d"}, {Name: "Content-Type", Value: "t"}, {Name: "X-Plain", Value: "1"}})
	want := map[string]string{
		"Access-Control-Allow-Methods":     "OPTIONS, HEAD, GET, POST, PUT, DELETE",
		"Access-Control-Allow-Headers":     "a, b",
		"Access-Control-Expose-Headers":    "Server, Date, X-Plain",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Origin":      "http://x.example",
		"Access-Control-Max-Age":           "3600",
	}
	for k, v := range want {
		if g := getHeader(got, k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
}

// The shared-payload frames decode to the same packet the zhttp encoder
// would produce.
func TestFramesDecode(t *testing.T) {
	frame := sessionFrame([]byte("condure"), []byte("handler_1"), []byte("0-1-2"), 7,
		appendField(nil, "user-data", []byte("ud")),
		headFragment(200, "OK", []grip.Header{{Name: "A", Value: "b"}}, []byte("body"), true))
	dest, raw, err := zhttp.SplitPubFrame(frame)
	if err != nil || string(dest) != "condure" {
		t.Fatal(dest, err)
	}
	p, err := zhttp.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.From) != "handler_1" || string(p.ID) != "0-1-2" || p.Seq != 7 || p.Code != 200 || p.Reason != "OK" ||
		len(p.Headers) != 1 || string(p.Body) != "body" || !p.More || string(p.UserData.([]byte)) != "ud" {
		t.Fatalf("%+v", p)
	}
	p, err = zhttp.Parse(mustRaw(t, sessionFrame([]byte("c"), []byte("h"), []byte("i"), 0, nil, nil)))
	if err != nil || p.More || p.Body != nil || p.Seq != 0 {
		t.Fatalf("%+v %v", p, err)
	}
}

func mustRaw(t *testing.T, frame []byte) []byte {
	t.Helper()
	_, raw, err := zhttp.SplitPubFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestSequencerParkAndExpire(t *testing.T) {
	q := newSequencer(time.Minute, 5*time.Second)
	now := time.Unix(1000, 0)
	a := &grip.Item{Channel: "c", ID: "1"}
	if q.seen(a, now) || !q.seen(a, now.Add(59*time.Second)) || q.seen(a, now.Add(61*time.Second)) {
		t.Fatal("id cache")
	}
	p := &grip.Item{Channel: "c", ID: "3", PrevID: "2"}
	if !q.park(p, now) || q.park(&grip.Item{Channel: "c", ID: "x", PrevID: "2"}, now) {
		t.Fatal("park")
	}
	if got := q.expire(now.Add(4 * time.Second)); len(got) != 0 {
		t.Fatal("released early")
	}
	if got := q.expire(now.Add(5 * time.Second)); len(got) != 1 || got[0] != p {
		t.Fatal("not released")
	}
	for i := 0; i < ChannelParkedMax; i++ {
		if !q.park(&grip.Item{Channel: "d", PrevID: string(rune('a' + i))}, now) {
			t.Fatalf("park %d", i)
		}
	}
	if q.park(&grip.Item{Channel: "d", PrevID: "zzz"}, now) {
		t.Fatal("parked beyond the bound")
	}
	q.clearChannel("d")
	if q.nParked != 0 {
		t.Fatal(q.nParked)
	}
}
