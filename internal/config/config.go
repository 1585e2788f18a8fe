package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Defaults mirrored from Pushpin 1.36.
const (
	// DefaultIPCPrefix is Pushpin's [global] ipc_prefix default.
	DefaultIPCPrefix = "pushpin-"
	// DefaultPortOffset is Pushpin's [global] port_offset default.
	DefaultPortOffset = 0
	// SystemLibDir is the lib dir of the Debian Pushpin package, the last
	// place DefaultLibDir looks.
	SystemLibDir = "/usr/lib/pushpin"
	// InternalConfName is the include value Pushpin rewrites to
	// {libdir}/internal.conf.
	InternalConfName = "internal.conf"
	// MaxFileSize bounds a config file (ours; Pushpin has no limit). Real
	// files are a few KiB.
	MaxFileSize = 16 << 20
)

// Options are the command-line values that change how a file is resolved.
type Options struct {
	// LibDir is the compiled-in lib dir ({libdir}); a [global] libdir in
	// the file overrides it, as in Pushpin. Empty means DefaultLibDir().
	LibDir string
	// IPCPrefix overrides [global] ipc_prefix when non-empty (--ipc-prefix).
	IPCPrefix string
	// PortOffset is added to [global] port_offset, or replaces it when
	// ReplacePortOffset is set.
	PortOffset int
	// ReplacePortOffset makes PortOffset replace [global] port_offset.
	// Pushpin's handler --port-offset=N does this (checked on 1.36: with
	// port_offset=3000 in the file, --port-offset=0 gives offset 0).
	ReplacePortOffset bool
}

// File is a loaded config file. It is read-only after Load and safe for
// concurrent use.
type File struct {
	path       string
	dir        string
	libDir     string
	rawRunDir  string // [global] rundir as written; what {rundir} becomes
	runDir     string // rawRunDir made absolute against the working dir
	ipcPrefix  string
	portOffset int
	main       *parsed
	include    *parsed // nil without a readable include
	warnings   []string
}

// Load reads the file at path and its [global] include (whose keys act as
// defaults for keys missing from the main file) and resolves the global
// settings. All problems found are returned together.
func Load(path string, opts Options) (*File, error) {
	main, err := readFile(path)
	if err != nil {
		return nil, err
	}
	f := &File{path: path, dir: filepath.Dir(path), main: main}
	f.warnings = append(f.warnings, main.warnings...)
	var errs []error

	// {libdir}: [global] libdir (deprecated in Pushpin, still honoured),
	// else the compiled-in value, which for us is Options.LibDir.
	f.libDir = opts.LibDir
	if e := main.get("global", "libdir"); e != nil && e.scalar() != "" {
		f.libDir = e.scalar()
	}
	if f.libDir == "" {
		f.libDir = DefaultLibDir()
	}
	// Pushpin's compiled-in lib dir is absolute; make ours so too, so a
	// relative one does not become relative to the config dir in include.
	if abs, err := filepath.Abs(f.libDir); err == nil {
		f.libDir = abs
	}

	// rundir comes from the main file only so that include={rundir}/...
	// works; Pushpin reads it the same way ([runner] rundir is the
	// deprecated fallback).
	if e := main.get("global", "rundir"); e != nil {
		f.rawRunDir = e.scalar()
	} else if e := main.get("runner", "rundir"); e != nil {
		f.rawRunDir = e.scalar()
		f.warnings = append(f.warnings, fmt.Sprintf("%s:%d: [runner] rundir is deprecated, use [global] rundir", e.file, e.line))
	}
	f.runDir, err = absDir(f.rawRunDir)
	if err != nil {
		errs = append(errs, fmt.Errorf("resolve rundir: %w", err))
	}

	f.ipcPrefix = DefaultIPCPrefix
	if e := main.get("global", "ipc_prefix"); e != nil {
		f.ipcPrefix = e.scalar()
	}
	if opts.IPCPrefix != "" {
		f.ipcPrefix = opts.IPCPrefix
	}

	if err := f.loadInclude(); err != nil {
		errs = append(errs, err)
	}

	f.portOffset = DefaultPortOffset
	if e := f.lookup("global", "port_offset"); e != nil && e.scalar() != "" {
		v, err := strconv.Atoi(strings.TrimSpace(e.scalar()))
		if err != nil {
			errs = append(errs, &Error{File: e.file, Line: e.line, Section: "global", Key: "port_offset",
				Err: fmt.Errorf("%q: %w", e.scalar(), ErrNotInteger)})
		}
		f.portOffset = v
	}
	if opts.ReplacePortOffset {
		f.portOffset = opts.PortOffset
	} else {
		f.portOffset += opts.PortOffset
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

func readFile(path string) (*parsed, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config: %w", err)
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: path, Err: fmt.Errorf("%w (over %d bytes)", ErrTooLarge, MaxFileSize)}
	}
	return parseINI(path, data), nil
}

// loadInclude reads [global] include. Checked on Pushpin 1.36: a relative
// path is relative to the main file's dir, the bare value "internal.conf"
// means {libdir}/internal.conf, a missing file is ignored, a list value
// is ignored, and an include inside the included file is not followed.
func (f *File) loadInclude() error {
	e := f.main.get("global", "include")
	if e == nil {
		return nil
	}
	if e.isList {
		f.warnings = append(f.warnings, fmt.Sprintf("%s:%d: [global] include is a list; ignored (quote it)", e.file, e.line))
		return nil
	}
	raw := e.scalar()
	if raw == "" {
		return nil
	}
	if raw == InternalConfName {
		raw = "{libdir}/" + InternalConfName
	}
	path := f.substitute(raw, false)
	if !filepath.IsAbs(path) {
		path = filepath.Join(f.dir, path)
	}
	inc, err := readFile(path)
	if errors.Is(err, os.ErrNotExist) {
		f.warnings = append(f.warnings, fmt.Sprintf("%s:%d: include file %s not found; ignored", e.file, e.line, path))
		return nil
	}
	if err != nil {
		return &Error{File: e.file, Line: e.line, Section: "global", Key: "include", Err: err}
	}
	f.warnings = append(f.warnings, inc.warnings...)
	if ie := inc.get("global", "include"); ie != nil && ie.scalar() != "" {
		f.warnings = append(f.warnings, fmt.Sprintf("%s:%d: include inside an included file is not followed", ie.file, ie.line))
	}
	f.include = inc
	return nil
}

func (p *parsed) get(section, key string) *entry {
	if p == nil {
		return nil
	}
	return p.sections[section][key]
}

// scalar is the value as QVariant::toString gives it: empty for a list.
func (e *entry) scalar() string {
	if e.isList {
		return ""
	}
	return e.values[0]
}

// lookup finds a key in the main file, then in the include.
func (f *File) lookup(section, key string) *entry {
	if e := f.main.get(section, key); e != nil {
		return e
	}
	return f.include.get(section, key)
}

// Path returns the path given to Load.
func (f *File) Path() string { return f.path }

// Dir returns the directory of the file (Pushpin's config dir: routesfile
// and runner/certs are relative to it).
func (f *File) Dir() string { return f.dir }

// Has reports whether section/key is set in the file or its include.
func (f *File) Has(section, key string) bool { return f.lookup(section, key) != nil }

// Pos returns "file:line" of section/key, or "" when it is not set; use it
// to point at a value in an error message.
func (f *File) Pos(section, key string) string {
	e := f.lookup(section, key)
	if e == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", e.file, e.line)
}

// Raw returns the value as written (unsubstituted); a list is joined
// with ", ".
func (f *File) Raw(section, key string) (string, bool) {
	e := f.lookup(section, key)
	if e == nil {
		return "", false
	}
	return strings.Join(e.values, ", "), true
}

// IsList reports whether section/key was written as a list (an unquoted
// comma). String returns "" for such a value, as Pushpin does.
func (f *File) IsList(section, key string) bool {
	e := f.lookup(section, key)
	return e != nil && e.isList
}

// String returns the substituted value of section/key, or def (also
// substituted) when it is not set. A value written as a list gives "",
// as QVariant::toString does in Pushpin (quote values that hold commas).
func (f *File) String(section, key, def string) string {
	e := f.lookup(section, key)
	if e == nil {
		return f.substitute(def, true)
	}
	return f.substitute(e.scalar(), true)
}

// List returns the substituted items of section/key; a scalar is a
// one-item list. Empty items are dropped. Nil when not set.
func (f *File) List(section, key string) []string {
	e := f.lookup(section, key)
	if e == nil {
		return nil
	}
	var out []string
	for _, v := range e.values {
		if v = f.substitute(v, true); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Int returns section/key as a decimal integer, or def when it is not
// set or empty (an empty value is treated as unset). For any other
// non-integer text Pushpin silently uses 0; Int returns 0 and an *Error
// wrapping ErrNotInteger that names the file and line.
func (f *File) Int(section, key string, def int) (int, error) {
	e := f.lookup(section, key)
	if e == nil {
		return def, nil
	}
	s := strings.TrimSpace(f.substitute(e.scalar(), false))
	if s == "" && !e.isList {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, &Error{File: e.file, Line: e.line, Section: section, Key: key,
			Err: fmt.Errorf("%q: %w", strings.Join(e.values, ","), ErrNotInteger)}
	}
	return v, nil
}

// Bool returns section/key as a boolean, or def when it is not set.
// Pushpin (QVariant::toBool) reads "", "0" and "false" (any case) as false
// and everything else as true, so "off" and "no" are true. Bool returns
// that same value; for text other than true/false/1/0/"" it also returns
// an *Error wrapping ErrNotBool, so the caller can warn or refuse.
func (f *File) Bool(section, key string, def bool) (bool, error) {
	e := f.lookup(section, key)
	if e == nil {
		return def, nil
	}
	s := strings.TrimSpace(f.substitute(e.scalar(), false))
	switch strings.ToLower(s) {
	case "true", "1":
		return true, nil
	case "false", "0", "":
		return false, nil
	}
	return true, &Error{File: e.file, Line: e.line, Section: section, Key: key,
		Err: fmt.Errorf("%q (Pushpin reads it as true): %w", s, ErrNotBool)}
}

// Sections returns the names of all sections in the file and its include,
// sorted.
func (f *File) Sections() []string {
	seen := map[string]bool{}
	for _, p := range []*parsed{f.main, f.include} {
		if p == nil {
			continue
		}
		for s := range p.sections {
			seen[s] = true
		}
	}
	return sortedKeys(seen)
}

// Keys returns the keys set in section (file and include), sorted.
func (f *File) Keys(section string) []string {
	seen := map[string]bool{}
	for _, p := range []*parsed{f.main, f.include} {
		if p == nil {
			continue
		}
		for k := range p.sections[section] {
			seen[k] = true
		}
	}
	return sortedKeys(seen)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RunDir returns [global] rundir as an absolute, cleaned path; a relative
// rundir is relative to the working directory (checked on Pushpin 1.36:
// rundir=run with the config elsewhere gives <cwd>/run), and an unset one
// is the working directory itself. {rundir} in values is replaced by the
// value as written, as Pushpin's proxy and handler do.
func (f *File) RunDir() string { return f.runDir }

// RawRunDir returns [global] rundir as written (what {rundir} becomes).
func (f *File) RawRunDir() string { return f.rawRunDir }

// IPCPrefix returns the ipc prefix after Options.IPCPrefix.
func (f *File) IPCPrefix() string { return f.ipcPrefix }

// PortOffset returns the port offset after Options.PortOffset.
func (f *File) PortOffset() int { return f.portOffset }

// LibDir returns the directory {libdir} stands for.
func (f *File) LibDir() string { return f.libDir }

// Warnings returns problems Pushpin would ignore, as "file:line: message".
func (f *File) Warnings() []string { return append([]string(nil), f.warnings...) }
