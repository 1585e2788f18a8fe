package routes

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func boolp(b bool) *bool { return &b }

// parseOne parses a single line and returns its route (nil if skipped) and
// the first diagnostic message.
func parseOne(t *testing.T, line string) (*Route, string) {
	t.Helper()
	tab, diags := Parse(strings.NewReader(line+"\n"), "/etc/pp/routes")
	var msg string
	if len(diags) > 0 {
		msg = diags[0].Msg
	}
	rs := tab.Routes()
	if len(rs) > 1 {
		t.Fatalf("%q: %d routes, want at most 1", line, len(rs))
	}
	if len(rs) == 1 {
		return rs[0], msg
	}
	return nil, msg
}

func TestParseLines(t *testing.T) {
	tests := []struct {
		name  string
		line  string
		err   string // substring of the diagnostic; "" = loads
		check func(t *testing.T, r *Route)
	}{
		{name: "wildcard", line: "* localhost:8080", check: func(t *testing.T, r *Route) {
			want := []Target{{Kind: TargetHost, Host: "localhost", Port: 8080, Props: map[string][]string{}}}
			if r.Domain != "*" || !r.HasDomain || !reflect.DeepEqual(r.Targets, want) {
				t.Errorf("got %+v", r)
			}
			if r.ID != "*,*,*,*" || r.IDExplicit {
				t.Errorf("id %q explicit=%v", r.ID, r.IDExplicit)
			}
		}},
		{name: "multiple spaces", line: "   a  t:1   t:2   ", check: func(t *testing.T, r *Route) {
			if r.Domain != "a" || len(r.Targets) != 2 || r.Targets[1].Port != 2 {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "tab is not a separator", line: "a\tt:1", err: "must specify condition and at least one target"},
		{name: "tab is part of a value", line: "\ta t:1", check: func(t *testing.T, r *Route) {
			if r.Domain != "\ta" {
				t.Errorf("domain %q", r.Domain)
			}
		}},
		{name: "comment", line: "a t:1 # x y", check: func(t *testing.T, r *Route) {
			if len(r.Targets) != 1 {
				t.Errorf("targets %+v", r.Targets)
			}
		}},
		{name: "hash in quotes", line: `a,id="x # y" t:1`, check: func(t *testing.T, r *Route) {
			if r.ID != "x # y" {
				t.Errorf("id %q", r.ID)
			}
		}},
		{name: "quoted domain with space", line: `"a b" t:1`, check: func(t *testing.T, r *Route) {
			if r.Domain != "a b" {
				t.Errorf("domain %q", r.Domain)
			}
		}},
		{name: "escapes", line: `a,id="x\"y\\z",prefix=p"q r"s t:1`, check: func(t *testing.T, r *Route) {
			if r.ID != `x"y\z` || r.Prefix != "pq rs" {
				t.Errorf("id %q prefix %q", r.ID, r.Prefix)
			}
		}},
		{name: "backslash outside quotes is literal", line: `a\x t:1`, check: func(t *testing.T, r *Route) {
			if r.Domain != `a\x` {
				t.Errorf("domain %q", r.Domain)
			}
		}},
		{name: "unexpected escape", line: `a,id="x\ny" t:1`, err: "unexpected escape character: n"},
		{name: "unterminated quote", line: `a,id="x t:1`, err: "unterminated quoted section"},
		{name: "quote opened outside", line: `a,id=x\"y t:1`, err: "unterminated quoted section"},
		{name: "unterminated escape", line: `a,id="x\`, err: "unterminated escape sequence"},
		{name: "trailing comma", line: "a, t:1", err: "expecting prop"},
		{name: "double comma", line: "a,,x t:1", err: "expecting prop"},
		{name: "empty quoted prop", line: `a,"" t:1`, err: "expecting prop"},
		{name: "trailing comma on target", line: "a t:1,", err: "expecting prop"},
		{name: "empty prop name", line: "a,=x t:1", err: "empty prop name"},
		{name: "empty prop name first", line: "=x t:1", err: "empty prop name"},
		{name: "quoted equals still splits", line: `a,"=x" t:1`, err: "empty prop name"},
		{name: "first item with = is a prop", line: "id=foo target:80", check: func(t *testing.T, r *Route) {
			if r.HasDomain || r.Domain != "" || r.ID != "foo" || !r.IDExplicit {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "quoted first item with = is a prop", line: `"id=q" t:1`, check: func(t *testing.T, r *Route) {
			if r.HasDomain || r.ID != "q" {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "no target", line: "a,id=x", err: "must specify condition and at least one target"},
		{name: "no domain or id", line: ",proto=http t:1", err: "condition has no domain or id"},
		{name: "empty id is no id", line: ",id= t:1", err: "condition has no domain or id"},
		{name: "empty quoted domain", line: `"" t:1`, err: "condition has no domain or id"},
		{name: "proto", line: "a,proto=ws t:1", check: func(t *testing.T, r *Route) {
			if r.Proto != "ws" || r.ID != "a,ws,*,*" {
				t.Errorf("proto %q id %q", r.Proto, r.ID)
			}
		}},
		{name: "bad proto", line: "a,proto=https t:1", err: "proto must be set to 'http' or 'ws'"},
		{name: "proto is case-sensitive", line: "a,proto=HTTP t:1", err: "proto must be set"},
		{name: "proto without value", line: "a,proto t:1", err: "proto must be set"},
		{name: "ssl no id quirk", line: "a,ssl=no,path_beg=/x t:1", check: func(t *testing.T, r *Route) {
			if r.SSL == nil || *r.SSL || r.ID != "a,*,ssl,/x" {
				t.Errorf("ssl %v id %q", r.SSL, r.ID)
			}
		}},
		{name: "ssl yes id quirk", line: "a,proto=http,ssl=yes t:1", check: func(t *testing.T, r *Route) {
			if r.SSL == nil || !*r.SSL || r.ID != "a,http,no-ssl,*" {
				t.Errorf("ssl %v id %q", r.SSL, r.ID)
			}
		}},
		{name: "bad ssl", line: "a,ssl=maybe t:1", err: "ssl must be set to 'yes' or 'no'"},
		{name: "ssl without value", line: "a,ssl t:1", err: "ssl must be set"},
		{name: "empty path_beg", line: "a,path_beg= t:1", err: "path_beg cannot be empty"},
		{name: "path_beg without value", line: "a,path_beg t:1", err: "path_beg cannot be empty"},
		{name: "last path_beg wins", line: "a,path_beg=/a,path_beg=/b t:1", check: func(t *testing.T, r *Route) {
			if r.PathBeg != "/b" {
				t.Errorf("path_beg %q", r.PathBeg)
			}
		}},
		{name: "bad jsonp_mode", line: "a,jsonp_mode=x t:1", err: "jsonp_mode must be set to 'basic' or 'extended'"},
		{name: "header no colon", line: "a,header=foo t:1", err: "header must use format 'name:value'"},
		{name: "header leading colon", line: "a,header=:v t:1", err: "header must use format"},
		{name: "header empty", line: "a,header= t:1", err: "header must use format"},
		{name: "error order proto before ssl", line: "a,ssl=q,proto=x t:1", err: "proto must be set"},
		{name: "error order path_beg before header", line: "a,header=x,path_beg= t:1", err: "path_beg cannot be empty"},
		{name: "error order condition before target", line: "a,proto=x host", err: "proto must be set"},
		{name: "headers", line: `a,header=X-A:1,header=X-B:,header="X-C:  two words",header=X-D:a:b t:1`, check: func(t *testing.T, r *Route) {
			want := []HeaderRule{{"X-A", "1"}, {"X-B", ""}, {"X-C", "two words"}, {"X-D", "a:b"}}
			if !reflect.DeepEqual(r.Headers, want) {
				t.Errorf("headers %+v", r.Headers)
			}
		}},
		{name: "all condition options", line: "a,id=x,sig_iss=iss,sig_key=base64:c2VjcmV0,prefix=p-,orig_headers,as_host=b:81," +
			"path_rem=3,debug,aco,session,no_grip,jsonp_mode=basic,jsonp_cb=cb,jsonp_body=b,jsonp_defcb=d,jsonp_defmethod=PUT," +
			"sockjs=/s,sockjs_as_path=/p,log_level=2,weird=1 t:1", check: func(t *testing.T, r *Route) {
			ll := 2
			want := Route{
				Line: 1, Source: "/etc/pp/routes:1", Domain: "a", HasDomain: true, ID: "x", IDExplicit: true,
				SigIss: "iss", SigKey: "base64:c2VjcmV0", HasSigIss: true, HasSigKey: true,
				Prefix: "p-", OrigHeaders: true, AsHost: "b:81", PathRem: 3,
				Debug: true, ACO: true, Session: true, NoGrip: true,
				JSONPMode: "basic", JSONPCallback: "cb", JSONPBody: "b", JSONPDefCallback: "d", JSONPDefMethod: "PUT",
				SockJS: "/s", SockJSAsPath: "/p", LogLevel: &ll,
				Targets: r.Targets, Props: r.Props,
			}
			if !reflect.DeepEqual(*r, want) {
				t.Errorf("got  %+v\nwant %+v", *r, want)
			}
			if got := r.Props["weird"]; !reflect.DeepEqual(got, []string{"1"}) {
				t.Errorf("unknown prop kept as %v", got)
			}
		}},
		{name: "defaults", line: "a t:1", check: func(t *testing.T, r *Route) {
			if r.JSONPMode != "extended" || r.JSONPCallback != "callback" || r.LogLevel != nil || r.HasSigKey || r.HasSigIss {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "empty sig_key is set", line: "a,sig_key=,sig_iss= t:1", check: func(t *testing.T, r *Route) {
			if !r.HasSigKey || r.SigKey != "" || !r.HasSigIss {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "relative key file", line: "a,sig_key=file:keys/k.pem t:1", check: func(t *testing.T, r *Route) {
			if r.SigKey != "file:/etc/pp/keys/k.pem" {
				t.Errorf("sig_key %q", r.SigKey)
			}
		}},
		{name: "absolute key file", line: "a,sig_key=file:/k.pem t:1", check: func(t *testing.T, r *Route) {
			if r.SigKey != "file:/k.pem" {
				t.Errorf("sig_key %q", r.SigKey)
			}
		}},
		{name: "replace_beg", line: "a,path_beg=/stream/,replace_beg=/,path_rem=1 t:1", check: func(t *testing.T, r *Route) {
			if !r.HasReplaceBeg || r.ReplaceBeg != "/" || r.PathRem != len("/stream/") {
				t.Errorf("got %+v", r)
			}
		}},
		{name: "bad path_rem is zero", line: "a,path_rem=abc t:1", check: func(t *testing.T, r *Route) {
			if r.PathRem != 0 {
				t.Errorf("path_rem %d", r.PathRem)
			}
		}},
		{name: "flag with value is on", line: "a,debug=false t:1", check: func(t *testing.T, r *Route) {
			if !r.Debug {
				t.Error("debug off")
			}
		}},

		// Targets.
		{name: "target no port", line: "a host", err: "target bad format"},
		{name: "target empty port", line: "a host:", err: "target invalid port"},
		{name: "target port 0", line: "a host:0", err: "target invalid port"},
		{name: "target port too big", line: "a host:65536", err: "target invalid port"},
		{name: "target port negative", line: "a host:-1", err: "target invalid port"},
		{name: "target port letters", line: "a host:abc", err: "target invalid port"},
		{name: "target two colons", line: "a a:b:80", err: "target invalid port"},
		{name: "target bare ipv6", line: "a ::1:80", err: "target invalid port"},
		{name: "target port with space", line: `a "host: 80"`, err: "target invalid port"},
		{name: "target TEST", line: "a TEST", err: "target bad format"},
		{name: "target zhttp without slash", line: "a zhttp", err: "target bad format"},
		{name: "target ipv6 no close", line: "a [::1:80", err: "target bad format"},
		{name: "target ipv6 no port", line: "a [::1]", err: "target bad format"},
		{name: "target ipv6 bad port", line: "a [::1]:x", err: "target invalid port"},
		{name: "one bad target skips line", line: "a t:1 bad", err: "target bad format"},
		{name: "target forms", line: "a h:65535 [::1]:80 :80 test,sub=x zhttp/tcp://127.0.0.1:9000 zhttpreq/ipc:///tmp/x h:+80 h:080", check: func(t *testing.T, r *Route) {
			got := make([]string, len(r.Targets))
			for i, tg := range r.Targets {
				got[i] = tg.Kind.String() + "|" + tg.Host + "|" + strconv.Itoa(tg.Port) + "|" + tg.Spec
			}
			want := []string{"host|h|65535|", "host|::1|80|", "host||80|", "test||0|", "zhttp||0|tcp://127.0.0.1:9000",
				"zhttpreq||0|ipc:///tmp/x", "host|h|80|", "host|h|80|"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		}},
		{name: "target options", line: "a h:80,ssl,untrusted,trust_connect_host,insecure,over_http,one_event,host=in:1,sub=a,sub=b,ipc_file_mode=0660", check: func(t *testing.T, r *Route) {
			tg := r.Targets[0]
			want := Target{Kind: TargetHost, Host: "h", Port: 80, SSL: true, Untrusted: true, TrustConnectHost: true, Insecure: true,
				OverHTTP: true, OneEvent: true, HostOverride: "in:1", Subs: []string{"a", "b"}, IPCFileMode: "0660", Props: tg.Props}
			if !reflect.DeepEqual(tg, want) {
				t.Errorf("got  %+v\nwant %+v", tg, want)
			}
		}},
		{name: "blank", line: "   "},
		{name: "comment line", line: "   # * t:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, msg := parseOne(t, tt.line)
			if tt.err != "" {
				if !strings.Contains(msg, tt.err) {
					t.Fatalf("%q: diag %q, want %q", tt.line, msg, tt.err)
				}
				if r != nil {
					t.Fatalf("%q: line loaded despite error", tt.line)
				}
				return
			}
			if msg != "" {
				t.Fatalf("%q: unexpected diag %q", tt.line, msg)
			}
			if tt.check == nil {
				if r != nil {
					t.Fatalf("%q: got a route, want none", tt.line)
				}
				return
			}
			if r == nil {
				t.Fatalf("%q: no route", tt.line)
			}
			tt.check(t, r)
		})
	}
}

func TestParseFileDiagnostics(t *testing.T) {
	src := strings.Join([]string{
		"# comment",
		"* t:1",
		"a bad",
		"",
		"* t:2", // duplicate of line 2
		",id=x t:3",
		",id=y t:4", // id-only routes are not duplicate-checked
		"a,proto=http t:5\r",
	}, "\n")
	tab, diags := Parse(strings.NewReader(src), "r")
	var got []string
	for _, d := range diags {
		got = append(got, d.String())
	}
	want := []string{"r:3: target bad format", "r:5: skipping duplicate condition"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diags %q, want %q", got, want)
	}
	if tab.Len() != 4 {
		t.Errorf("Len %d, want 4", tab.Len())
	}
	if r := tab.Routes()[3]; r.Line != 8 || r.Source != "r:8" || r.Targets[0].Port != 5 {
		t.Errorf("last route %+v", r)
	}
}

func TestParseFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, _, err := ParseFile(missing)
	if err == nil || !strings.Contains(err.Error(), "unable to open routes file: "+missing) {
		t.Fatalf("err %v", err)
	}
}

// TestParseDefaultRoutes parses the routes file Pushpin 1.36 ships.
func TestParseDefaultRoutes(t *testing.T) {
	tab, diags, err := ParseFile("testdata/default.routes")
	if err != nil || len(diags) != 0 {
		t.Fatalf("err %v diags %v", err, diags)
	}
	if tab.Len() != 1 {
		t.Fatalf("Len %d", tab.Len())
	}
	r := tab.Lookup("example.com", "http", false, "/")
	if r == nil || r.Targets[0].Kind != TargetTest {
		t.Fatalf("lookup %+v", r)
	}
}

// TestParseReferenceExamples parses the examples of grip-reference §7.3.
func TestParseReferenceExamples(t *testing.T) {
	tab, diags, err := ParseFile("testdata/examples.routes")
	if err != nil {
		t.Fatal(err)
	}
	// The last two lines repeat the "*" condition of the first and are
	// skipped, as Pushpin 1.36 does.
	var got []string
	for _, d := range diags {
		got = append(got, d.Msg)
	}
	if want := []string{msgDuplicate, msgDuplicate}; !reflect.DeepEqual(got, want) {
		t.Errorf("diags %q", got)
	}
	if tab.Len() != 3 {
		t.Fatalf("Len %d", tab.Len())
	}
	api := tab.Lookup("api.example.com", "http", true, "/stream/x")
	if api == nil || api.PathRem != len("/stream/") || api.ReplaceBeg != "/" ||
		api.Targets[0].Host != "10.0.0.5" || !api.Targets[0].SSL || api.Targets[0].HostOverride != "internal.example" {
		t.Errorf("api route %+v", api)
	}
	if tab.Lookup("api.example.com", "http", false, "/stream/x") != nil {
		t.Error("ssl=yes route matched a plain request")
	}
	ws := tab.ByID("ws")
	if ws == nil || ws.Proto != "ws" || !ws.Targets[0].OverHTTP || !reflect.DeepEqual(ws.Targets[0].Subs, []string{"broadcast"}) {
		t.Errorf("ws route %+v", ws)
	}
	if got := tab.Lookup("other", "ws", false, "/ws/1"); got != ws {
		t.Errorf("ws lookup %+v", got)
	}
	if got := tab.Lookup("other", "http", false, "/ws/1"); got == nil || got.Targets[0].Host != "localhost" {
		t.Errorf("http lookup %+v", got)
	}
	if tab.ByID("push") != nil {
		t.Error("skipped duplicate line is reachable by id")
	}
}

func TestParseLinesRoute(t *testing.T) {
	tab, diags := ParseLines([]string{"x bad", "* t:1,sub=a", "y,sig_key=file:k t:2", "* t:3"})
	var got []string
	for _, d := range diags {
		got = append(got, d.String())
	}
	want := []string{"<route>:1: target bad format", "<route>:1: skipping duplicate condition"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("diags %q", got)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if r := tab.ByID("y,*,*,*"); r == nil || r.SigKey != "file:"+filepath.Join(wd, "k") {
		t.Errorf("route %+v", r)
	}
}
