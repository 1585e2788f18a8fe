package config

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json")

// resolved is the golden form of a loaded file.
type resolved struct {
	Path       string                    `json:"path"`
	Dir        string                    `json:"dir"`
	LibDir     string                    `json:"libdir"`
	RunDir     string                    `json:"rundir"`
	RawRunDir  string                    `json:"raw_rundir"`
	IPCPrefix  string                    `json:"ipc_prefix"`
	PortOffset int                       `json:"port_offset"`
	Values     map[string]map[string]any `json:"values"`
	Warnings   []string                  `json:"warnings"`
}

func dump(t *testing.T, f *File) []byte {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	repo := filepath.Dir(filepath.Dir(wd))
	// Golden files must not depend on where the repo is checked out.
	rel := strings.NewReplacer(wd, "$CWD", repo, "$REPO").Replace
	r := resolved{
		Path: f.Path(), Dir: f.Dir(), LibDir: rel(f.LibDir()), RawRunDir: f.RawRunDir(),
		RunDir: rel(f.RunDir()), IPCPrefix: f.IPCPrefix(), PortOffset: f.PortOffset(),
		Values: map[string]map[string]any{},
	}
	for _, s := range f.Sections() {
		m := map[string]any{}
		for _, k := range f.Keys(s) {
			if f.IsList(s, k) {
				m[k] = f.List(s, k)
			} else {
				m[k] = rel(f.String(s, k, ""))
			}
		}
		r.Values[s] = m
	}
	for _, w := range f.Warnings() {
		r.Warnings = append(r.Warnings, rel(w))
	}
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func TestConfigGolden(t *testing.T) {
	tests := []struct {
		file string
		opts Options
	}{
		{"debian.conf", Options{LibDir: "testdata/debian-lib"}},
		{"upstream.conf", Options{LibDir: "../../configs"}},
		{"lists.conf", Options{LibDir: "testdata/nolib"}},
		{"portoffset.conf", Options{LibDir: "testdata/nolib"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := Load(filepath.Join("testdata", tt.file), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := dump(t, f)
			golden := filepath.Join("testdata", strings.TrimSuffix(tt.file, ".conf")+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("resolved %s differs from %s:\n%s", tt.file, golden, got)
			}
		})
	}
}

// TestConfigQSettingsForms pins the value forms checked against the real
// Pushpin 1.36 runner (see doc.go); the golden file holds the same data.
func TestConfigQSettingsForms(t *testing.T) {
	f, err := Load("testdata/lists.conf", Options{LibDir: "testdata/nolib"})
	if err != nil {
		t.Fatal(err)
	}
	str := map[string]string{
		"plain":            "a value with   inner blanks",
		"semicolon":        "/tmp/a",
		"semicolon_spaced": "/tmp/a",
		"hash":             "/tmp/a#x",
		"quoted":           "/tmp/a;x,y#z",
		"quoted_blanks":    "/tmp/a ",
		"quoted_concat":    "/tmp/ab",
		"escapes":          "/tmp/AA\t\"",
		"continued":        "/tmp/ab",
		"repeated":         "second",
		"empty":            "",
		"quoted_list":      "", // a list reads as "" through String
		"merged":           "yes",
	}
	for k, want := range str {
		if got := f.String("runner", k, "def"); got != want {
			t.Errorf("String(runner, %s) = %q, want %q", k, got, want)
		}
	}
	lists := map[string][]string{
		"services":     {"condure", "zurl", "pushpin-proxy", "pushpin-handler"},
		"http_port":    {"7999", "127.0.0.1:8000", "[::1]:8001"},
		"quoted_list":  {"a,b", "c"},
		"single_comma": {"a"},
		"plain":        {"a value with   inner blanks"},
		"log_level":    {"2", "pushpin-proxy:3"},
	}
	for k, want := range lists {
		if got := f.List("runner", k); !reflect.DeepEqual(got, want) {
			t.Errorf("List(runner, %s) = %q, want %q", k, got, want)
		}
	}
	if f.List("runner", "empty") != nil || f.List("runner", "missing") != nil {
		t.Error("empty or missing list not nil")
	}
	if got := f.String("spaced", "k", ""); got != "v" {
		t.Errorf("[ spaced ] k = %q", got)
	}
	if f.Has("case", "K") || !f.Has("Case", "K") || f.Has("Case", "k") {
		t.Error("sections and keys must be case-sensitive")
	}
	if got := f.String("runner", "missing", "d-{ipc_prefix}"); got != "d-pushpin-" {
		t.Errorf("default not substituted: %q", got)
	}
}

func TestConfigSubstitutions(t *testing.T) {
	f, err := Load("testdata/portoffset.conf", Options{LibDir: "testdata/nolib"})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.String("handler", "push_in_spec", ""); got != "tcp://127.0.0.1:5660" {
		t.Errorf("push_in_spec = %q", got)
	}
	want := []string{"tcp://127.0.0.1:5662", "tcp://[::1]:5664", "tcp://*:5666"}
	if got := f.List("handler", "push_in_sub_specs"); !reflect.DeepEqual(got, want) {
		t.Errorf("push_in_sub_specs = %q", got)
	}
	// main-file values win over the include; include fills the rest
	if got := f.String("handler", "command_spec", ""); got != "tcp://localhost:5663" {
		t.Errorf("command_spec = %q", got)
	}
	if got := f.String("proxy", "command_spec", ""); got != "tcp://127.0.0.1:6100" {
		t.Errorf("proxy command_spec = %q", got)
	}
	if got := f.String("proxy", "condure_in_specs", ""); got != "ipc:///tmp/tack-offset-run/po-condure-out" {
		t.Errorf("condure_in_specs = %q", got)
	}
	// push_in_http_port is a bare number: the handler adds the offset itself
	if got, _ := f.Int("handler", "push_in_http_port", 0); got != 5561 {
		t.Errorf("push_in_http_port = %d", got)
	}

	g, err := Load("testdata/portoffset.conf", Options{LibDir: "x", IPCPrefix: "p3-", PortOffset: 30, ReplacePortOffset: true})
	if err != nil {
		t.Fatal(err)
	}
	if g.PortOffset() != 30 || g.IPCPrefix() != "p3-" {
		t.Errorf("offset %d prefix %q", g.PortOffset(), g.IPCPrefix())
	}
	if got := g.String("handler", "stats_spec", ""); got != "ipc:///tmp/tack-offset-run/p3-stats" {
		t.Errorf("stats_spec = %q", got)
	}
	h, err := Load("testdata/portoffset.conf", Options{LibDir: "x", PortOffset: 5})
	if err != nil {
		t.Fatal(err)
	}
	if h.PortOffset() != 105 {
		t.Errorf("added offset = %d", h.PortOffset())
	}
}

func TestConfigOffsetTCPPorts(t *testing.T) {
	tests := []struct{ in, want string }{
		{"tcp://127.0.0.1:5560", "tcp://127.0.0.1:5570"},
		{"tcp://[::1]:5560,tcp://*:1", "tcp://[::1]:5570,tcp://*:11"},
		{"x tcp://h:1/y tcp://h:2", "x tcp://h:11/y tcp://h:12"},
		{"tcp://nohost", "tcp://nohost"},
		{"tcp://h:", "tcp://h:"},
		{"tcp://[::1", "tcp://[::1"},
		{"ipc://x:1", "ipc://x:1"},
		{"tcp://:80", "tcp://:90"},
	}
	for _, tt := range tests {
		if got := OffsetTCPPorts(tt.in, 10); got != tt.want {
			t.Errorf("OffsetTCPPorts(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConfigRunDir(t *testing.T) {
	dir := t.TempDir()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		body, raw, abs string
		warn           bool
	}{
		{"[global]\nrundir=run\n", "run", filepath.Join(wd, "run"), false},
		{"[global]\nrundir=./a/../b/\n", "./a/../b/", filepath.Join(wd, "b"), false},
		{"[global]\nrundir=/x/y\n", "/x/y", "/x/y", false},
		{"[global]\n", "", wd, false},
		{"[runner]\nrundir=old\n", "old", filepath.Join(wd, "old"), true},
	}
	for i, tt := range tests {
		p := filepath.Join(dir, "c.conf")
		if err := os.WriteFile(p, []byte(tt.body), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Load(p, Options{LibDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if f.RawRunDir() != tt.raw || f.RunDir() != tt.abs {
			t.Errorf("%d: rundir %q → %q, want %q → %q", i, f.RawRunDir(), f.RunDir(), tt.raw, tt.abs)
		}
		if got := len(f.Warnings()) > 0; got != tt.warn {
			t.Errorf("%d: warnings %q", i, f.Warnings())
		}
	}
}

func TestConfigInclude(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib")
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("lib/internal.conf", "[proxy]\nfrom=lib\nboth=lib\n[global]\ninclude=other.conf\n")
	write("sub/inc.conf", "[proxy]\nfrom=sub\n")
	tests := []struct {
		name, include, want string
		warn                string
	}{
		{"libdir placeholder", "{libdir}/internal.conf", "lib", "not followed"},
		{"bare internal.conf", "internal.conf", "lib", "not followed"},
		{"relative to file", "sub/inc.conf", "sub", ""},
		{"absolute", filepath.Join(dir, "sub/inc.conf"), "sub", ""},
		{"missing", "nope.conf", "", "not found"},
		{"list", "a.conf,b.conf", "", "is a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := write("main.conf", "[global]\ninclude="+tt.include+"\n[proxy]\nboth=main\n")
			f, err := Load(p, Options{LibDir: lib})
			if err != nil {
				t.Fatal(err)
			}
			if got := f.String("proxy", "from", ""); got != tt.want {
				t.Errorf("from = %q, want %q", got, tt.want)
			}
			if got := f.String("proxy", "both", ""); got != "main" {
				t.Errorf("main file must win, got %q", got)
			}
			w := strings.Join(f.Warnings(), "\n")
			if (tt.warn == "") != (w == "") || !strings.Contains(w, tt.warn) {
				t.Errorf("warnings %q, want %q", w, tt.warn)
			}
		})
	}
}

func TestConfigBadInput(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body string
		err        string // substring of the Load error; "" = loads
		warn       string // substring of a warning
	}{
		{"ok", "[global]\nrundir=run\n", "", ""},
		{"bad port_offset", "[global]\n\nport_offset=abc\n", "bad.conf:3: [global] port_offset: \"abc\": not an integer", ""},
		{"include is a dir", "[global]\ninclude=.\n", "bad.conf:2: [global] include: read config", ""},
		{"no equals", "[proxy]\njunk line\n", "", "bad.conf:2: line has no '=', ignored"},
		{"empty key", "[proxy]\n=x\n", "", "bad.conf:2: empty key"},
		{"open section", "[proxy\nk=v\n", "", "bad.conf:1: section header has no closing ']'"},
		{"after section", "[proxy] junk\n", "", "text after section header"},
		{"open quote", "[proxy]\nk=\"abc\nl=1\n", "", "bad.conf:2: unterminated quote"},
		{"repeated", "[proxy]\nk=1\nk=2\n", "", "bad.conf:3: [proxy] k repeats line 2"},
		{"binary", "\x00\xff[\x00=\n==\n", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.conf")
			if err := os.WriteFile(p, []byte(tt.body), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Load(p, Options{LibDir: dir})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w := strings.Join(f.Warnings(), "\n"); !strings.Contains(w, tt.warn) {
				t.Errorf("warnings %q, want %q", w, tt.warn)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.conf"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.conf")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big, Options{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("big file: %v", err)
	}
}

func TestConfigTypedValues(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t.conf")
	body := "[s]\ni=42\nneg=-3\nempty=\nbad=12x\nlist=1,2\nt=true\nT=TRUE\none=1\nf=false\nzero=0\nnone=\noff=off\nyes=yes\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p, Options{LibDir: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ints := []struct {
		key  string
		want int
		err  string
	}{
		{"i", 42, ""}, {"neg", -3, ""}, {"empty", 7, ""}, {"missing", 7, ""},
		{"bad", 0, "t.conf:5: [s] bad: \"12x\": not an integer"},
		{"list", 0, "not an integer"},
	}
	for _, tt := range ints {
		got, err := f.Int("s", tt.key, 7)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Int(%s) = %d, %v; want %d, %q", tt.key, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrNotInteger) {
			t.Errorf("Int(%s) error not ErrNotInteger", tt.key)
		}
	}
	bools := []struct {
		key      string
		want, ok bool
	}{
		{"t", true, true}, {"T", true, true}, {"one", true, true}, {"f", false, true},
		{"zero", false, true}, {"none", false, true}, {"missing", true, true},
		{"off", true, false}, {"yes", true, false}, // QVariant::toBool: only "", 0, false are false
	}
	for _, tt := range bools {
		got, err := f.Bool("s", tt.key, true)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("Bool(%s) = %v, %v; want %v ok=%v", tt.key, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrNotBool) {
			t.Errorf("Bool(%s) error not ErrNotBool", tt.key)
		}
	}
	if got := f.Pos("s", "bad"); !strings.HasSuffix(got, "t.conf:5") {
		t.Errorf("Pos = %q", got)
	}
}

// TestConfigShipped parses our own configs/ with the default lib dir.
func TestConfigShipped(t *testing.T) {
	f, err := Load("../../configs/pushpin.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w := f.Warnings(); len(w) > 0 {
		t.Errorf("warnings: %q", w)
	}
	if got, want := filepath.Clean(f.LibDir()), filepath.Clean(repoConfigsDir()); got != want {
		t.Errorf("libdir %q, want %q", got, want)
	}
	want := []string{"condure", "zurl", "pushpin-proxy", "pushpin-handler"}
	if got := f.List("runner", "services"); !reflect.DeepEqual(got, want) {
		t.Errorf("services = %q", got)
	}
	checks := map[[2]string]string{
		{"runner", "http_port"}:          "7999",
		{"global", "rundir"}:             "run",
		{"runner", "logdir"}:             "log",
		{"proxy", "routesfile"}:          "routes",
		{"proxy", "sig_key"}:             "changeme",
		{"handler", "push_in_http_port"}: "5561",
		{"proxy", "zurl_out_specs"}:      "ipc://run/pushpin-zurl-in",
		{"proxy", "condure_in_specs"}:    "ipc://run/pushpin-condure-out",
		{"handler", "proxy_accept_spec"}: "ipc://run/pushpin-accept",
	}
	for k, want := range checks {
		if got := f.String(k[0], k[1], ""); got != want {
			t.Errorf("[%s] %s = %q, want %q", k[0], k[1], got, want)
		}
	}
	if f.Has("runner", "condure_bin") {
		t.Error("configs/pushpin.conf must not set condure_bin")
	}
	// Every key Pushpin's internal.conf has, ours has, with upstream values.
	deb, err := Load("testdata/debian.conf", Options{LibDir: "testdata/debian-lib"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"proxy", "handler"} {
		for _, k := range deb.include.keys(s) {
			got, _ := f.Raw(s, k)
			want := deb.include.sections[s][k]
			w := strings.Join(want.values, ", ")
			if strings.Contains(w, "/var/run/zurl/") {
				w = strings.Replace(w, "ipc:///var/run/zurl/", "ipc://{rundir}/{ipc_prefix}", 1)
			}
			if got != w {
				t.Errorf("internal.conf [%s] %s = %q, want %q", s, k, got, w)
			}
		}
	}
	if _, err := os.Stat("../../configs/routes"); err != nil {
		t.Error(err)
	}
}

func TestConfigFindDefault(t *testing.T) {
	wd := t.TempDir()
	exe := filepath.Join(t.TempDir(), "bin")
	c := defaultCandidates(wd, exe)
	want := []string{
		filepath.Join(wd, "config/pushpin.conf"),
		filepath.Join(wd, "pushpin.conf"),
		filepath.Join(wd, "examples/config/pushpin.conf"),
		"/etc/pushpin/pushpin.conf",
		filepath.Join(exe, "../configs/pushpin.conf"),
		filepath.Join(wd, "configs/pushpin.conf"),
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("candidates %q", c)
	}
	if _, err := findDefault(c[4:]); !errors.Is(err, ErrNoConfig) {
		t.Errorf("want ErrNoConfig, got %v", err)
	}
	for _, p := range []string{c[5], c[1]} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := findDefault([]string{c[0], c[1], c[4], c[5]})
		if err != nil || got != p {
			t.Errorf("found %q, %v; want %q", got, err, p)
		}
	}
}

func FuzzLoad(f *testing.F) {
	for _, name := range []string{"debian.conf", "upstream.conf", "lists.conf", "portoffset.conf"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("[global]\ninclude=\"x\nport_offset=\\x7fffffff\n[a\\\nb]\nk=\"\\1777777777\\x\",;\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "f.conf")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cf, err := Load(p, Options{LibDir: dir, PortOffset: 1})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		for _, s := range cf.Sections() {
			for _, k := range cf.Keys(s) {
				if !cf.Has(s, k) {
					t.Fatalf("listed key %s/%s not found", s, k)
				}
				_ = cf.String(s, k, "")
				for _, v := range cf.List(s, k) {
					if v == "" {
						t.Fatalf("empty list item in %s/%s", s, k)
					}
				}
				_, _ = cf.Int(s, k, 0)
				_, _ = cf.Bool(s, k, false)
			}
		}
	})
}
