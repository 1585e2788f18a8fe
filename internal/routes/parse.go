package routes

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RouteLineSource is the Source that Pushpin gives --route lines in its
// logs; each such line is reported as line 1.
const RouteLineSource = "<route>"

// Parse reads a routes file from r. source names it in diagnostics and in
// Route.Source; relative "file:" sig_key paths are resolved against the
// directory of source. Lines with errors are skipped and reported as Diags.
func Parse(r io.Reader, source string) (*Table, []Diag) {
	data, err := io.ReadAll(r)
	b := newBuilder(baseDir(filepath.Dir(source)))
	if err != nil {
		// A read error mid-file loads what was read, like a short file.
		b.diags = append(b.diags, Diag{Source: source, Line: 0, Msg: "read error: " + err.Error()})
	}
	for i, line := range splitLines(data) {
		b.addLine(source, i+1, line)
	}
	return b.table(), b.diags
}

// ParseFile reads and parses the routes file at path. The error is non-nil
// only when the file cannot be read; it then reads
// "unable to open routes file: <path>".
func ParseFile(path string) (*Table, []Diag, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("unable to open routes file: %s: %w", path, err)
	}
	t, d := Parse(bytes.NewReader(data), path)
	return t, d, nil
}

// ParseLines parses routes given as --route lines. As in Pushpin, each is
// reported as "<route>:1" and relative "file:" sig_key paths are resolved
// against the current directory.
func ParseLines(lines []string) (*Table, []Diag) {
	b := newBuilder(baseDir("."))
	for _, l := range lines {
		// A --route value is one line; anything after a newline is ignored
		// rather than parsed as a second route.
		l, _, _ = strings.Cut(l, "\n")
		b.addLine(RouteLineSource, 1, strings.TrimSuffix(l, "\r"))
	}
	return b.table(), b.diags
}

// baseDir returns dir as an absolute path, or dir itself if that fails.
func baseDir(dir string) string {
	if a, err := filepath.Abs(dir); err == nil {
		return a
	}
	return dir
}

// splitLines splits on '\n' and drops a trailing '\r' from each line.
func splitLines(data []byte) []string {
	s := string(data)
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// condKey identifies a condition for the duplicate check.
type condKey struct {
	domain, proto string
	ssl           int // -1 any, 0 no, 1 yes
	pathBeg       string
}

// builder accumulates routes and diagnostics for one Table.
type builder struct {
	dir    string // for relative file: keys
	routes []*Route
	seen   map[condKey]bool
	diags  []Diag
}

func newBuilder(dir string) *builder {
	return &builder{dir: dir, seen: make(map[condKey]bool)}
}

func (b *builder) addLine(source string, n int, line string) {
	r, msg := b.parseLine(line)
	if msg != "" {
		b.diags = append(b.diags, Diag{Source: source, Line: n, Msg: msg})
		return
	}
	if r == nil {
		return // blank or comment
	}
	r.Line = n
	r.Source = source + ":" + strconv.Itoa(n)
	if r.HasDomain {
		k := condKey{domain: r.Domain, proto: r.Proto, ssl: sslKey(r.SSL), pathBeg: r.PathBeg}
		if b.seen[k] {
			b.diags = append(b.diags, Diag{Source: source, Line: n, Msg: msgDuplicate})
			return
		}
		b.seen[k] = true
	}
	b.routes = append(b.routes, r)
}

func sslKey(p *bool) int {
	switch {
	case p == nil:
		return -1
	case *p:
		return 1
	}
	return 0
}

// parseLine returns the route of one line, nil for a blank or comment
// line, or the Diag message of the first problem. Checks run in Pushpin's
// order: tokens, section count, proto, ssl, path_beg, jsonp_mode, header,
// domain/id, targets (the duplicate check is the caller's).
func (b *builder) parseLine(line string) (*Route, string) {
	secs, err := lexLine(line)
	if err != nil {
		return nil, err.Error()
	}
	if len(secs) == 0 {
		return nil, ""
	}
	if len(secs) < 2 {
		return nil, msgNeedTarget
	}
	r, msg := b.parseCondition(secs[0])
	if msg != "" {
		return nil, msg
	}
	for _, s := range secs[1:] {
		t, msg := parseTarget(s)
		if msg != "" {
			return nil, msg
		}
		r.Targets = append(r.Targets, t)
	}
	return r, ""
}

// propMap indexes a section's props: every value in order, by name.
func propMap(ps []prop) map[string][]string {
	m := make(map[string][]string, len(ps))
	for _, p := range ps {
		m[p.name] = append(m[p.name], p.value)
	}
	return m
}

// last returns the last value of a single-valued prop.
func last(m map[string][]string, name string) (string, bool) {
	v, ok := m[name]
	if !ok {
		return "", false
	}
	return v[len(v)-1], true
}

func has(m map[string][]string, name string) bool {
	_, ok := m[name]
	return ok
}

func (b *builder) parseCondition(s section) (*Route, string) {
	m := propMap(s.props)
	r := &Route{
		Domain:        s.value,
		HasDomain:     s.value != "",
		JSONPMode:     DefaultJSONPMode,
		JSONPCallback: DefaultJSONPCallback,
		Props:         m,
	}

	if v, ok := last(m, "proto"); ok {
		if v != "http" && v != "ws" {
			return nil, msgBadProto
		}
		r.Proto = v
	}
	if v, ok := last(m, "ssl"); ok {
		var on bool
		switch v {
		case "yes":
			on = true
		case "no":
		default:
			return nil, msgBadSSL
		}
		r.SSL = &on
	}
	if v, ok := last(m, "path_beg"); ok {
		if v == "" {
			return nil, msgEmptyPathBeg
		}
		r.PathBeg = v
	}
	if v, ok := last(m, "jsonp_mode"); ok {
		if v != "basic" && v != "extended" {
			return nil, msgBadJSONPMode
		}
		r.JSONPMode = v
	}
	for _, v := range m["header"] {
		name, value, ok := strings.Cut(v, ":")
		if !ok || name == "" {
			return nil, msgBadHeader
		}
		r.Headers = append(r.Headers, HeaderRule{Name: name, Value: strings.TrimLeft(value, " ")})
	}

	if v, ok := last(m, "id"); ok && v != "" {
		r.ID, r.IDExplicit = v, true
	}
	if !r.HasDomain && !r.IDExplicit {
		return nil, msgNoDomainOrID
	}
	if !r.IDExplicit {
		r.ID = SynthesizedID(r.Domain, r.Proto, r.SSL, r.PathBeg)
	}

	r.SigIss, r.HasSigIss = last(m, "sig_iss")
	if v, ok := last(m, "sig_key"); ok {
		r.SigKey, r.HasSigKey = resolveKeyFile(v, b.dir), true
	}
	r.Prefix, _ = last(m, "prefix")
	r.OrigHeaders = has(m, "orig_headers")
	r.AsHost, _ = last(m, "as_host")
	if v, ok := last(m, "path_rem"); ok {
		// Pushpin reads a non-number as 0; a negative count removes nothing.
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			r.PathRem = n
		}
	}
	if v, ok := last(m, "replace_beg"); ok {
		r.ReplaceBeg, r.HasReplaceBeg = v, true
		r.PathRem = len(r.PathBeg)
	}
	r.Debug = has(m, "debug")
	r.ACO = has(m, "aco")
	r.Session = has(m, "session")
	r.NoGrip = has(m, "no_grip")
	if v, ok := last(m, "jsonp_cb"); ok {
		r.JSONPCallback = v
	}
	r.JSONPBody, _ = last(m, "jsonp_body")
	r.JSONPDefCallback, _ = last(m, "jsonp_defcb")
	r.JSONPDefMethod, _ = last(m, "jsonp_defmethod")
	r.SockJS, _ = last(m, "sockjs")
	r.SockJSAsPath, _ = last(m, "sockjs_as_path")
	if v, ok := last(m, "log_level"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			r.LogLevel = &n
		}
	}
	return r, ""
}

// SynthesizedID is the id Pushpin gives a route without id=:
// "domain,proto,ssl,path" with "*" for each unset part. Pushpin prints
// ssl=no as "ssl" and ssl=yes as "no-ssl" (grip-reference §13 quirk 8,
// verified on 1.36 via Pushpin-Route); we keep that so ids interoperate.
func SynthesizedID(domain, proto string, ssl *bool, pathBeg string) string {
	star := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	sslPart := "*"
	if ssl != nil {
		if *ssl {
			sslPart = "no-ssl"
		} else {
			sslPart = "ssl"
		}
	}
	return star(domain) + "," + star(proto) + "," + sslPart + "," + star(pathBeg)
}

// resolveKeyFile makes the path of a "file:" key absolute against dir, the
// routes file's directory; other key forms are returned unchanged.
func resolveKeyFile(key, dir string) string {
	p, ok := strings.CutPrefix(key, "file:")
	if !ok || p == "" || filepath.IsAbs(p) {
		return key
	}
	return "file:" + filepath.Join(dir, p)
}

func parseTarget(s section) (Target, string) {
	m := propMap(s.props)
	t := Target{
		SSL:              has(m, "ssl"),
		Untrusted:        has(m, "untrusted"),
		TrustConnectHost: has(m, "trust_connect_host"),
		Insecure:         has(m, "insecure"),
		OverHTTP:         has(m, "over_http"),
		OneEvent:         has(m, "one_event"),
		Subs:             m["sub"],
		Props:            m,
	}
	t.HostOverride, _ = last(m, "host")
	t.IPCFileMode, _ = last(m, "ipc_file_mode")

	v := s.value
	if spec, ok := strings.CutPrefix(v, "zhttp/"); ok {
		t.Kind, t.Spec = TargetZHTTP, spec
		return t, ""
	}
	if spec, ok := strings.CutPrefix(v, "zhttpreq/"); ok {
		t.Kind, t.Spec = TargetZHTTPReq, spec
		return t, ""
	}
	if v == "test" {
		t.Kind = TargetTest
		return t, ""
	}

	var host, port string
	if rest, ok := strings.CutPrefix(v, "["); ok {
		// [ipv6]:port, as Pushpin 1.41 accepts.
		h, after, ok := strings.Cut(rest, "]")
		if !ok || h == "" {
			return Target{}, msgTargetBadFormat
		}
		p, ok := strings.CutPrefix(after, ":")
		if !ok {
			return Target{}, msgTargetBadFormat
		}
		host, port = h, p
	} else {
		h, p, ok := strings.Cut(v, ":")
		if !ok {
			return Target{}, msgTargetBadFormat
		}
		host, port = h, p
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return Target{}, msgTargetInvalidPort
	}
	t.Kind, t.Host, t.Port = TargetHost, host, n
	return t, ""
}
