package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// ConfigName is the file name the runner looks for.
const ConfigName = "pushpin.conf"

// SystemConfigDir is Pushpin's <sysconfdir>/pushpin on Debian.
const SystemConfigDir = "/etc/pushpin"

// ErrNoConfig is returned by FindDefault when no candidate exists.
var ErrNoConfig = errors.New("no config file found")

// absDir makes a rundir absolute against the working dir.
func absDir(dir string) (string, error) {
	if dir == "" {
		dir = "."
	}
	return filepath.Abs(dir)
}

// exeDir is the directory of the running executable, symlinks resolved.
func exeDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Dir(exe)
}

// repoConfigsDir is the configs/ dir of the source tree this package was
// built from; it exists in development and tests only.
func repoConfigsDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "configs")
}

// DefaultLibDir returns the directory holding our internal.conf: the first
// of <exedir>/../configs, the source tree's configs/ and /usr/lib/pushpin
// that contains internal.conf, else /usr/lib/pushpin.
func DefaultLibDir() string {
	var cands []string
	if d := exeDir(); d != "" {
		cands = append(cands, filepath.Join(d, "..", "configs"))
	}
	if d := repoConfigsDir(); d != "" {
		cands = append(cands, d)
	}
	for _, d := range cands {
		if fileExists(filepath.Join(d, InternalConfName)) {
			return filepath.Clean(d)
		}
	}
	return SystemLibDir
}

// FindDefault returns the config the runner uses without --config. It
// tries Pushpin's order — ./config/pushpin.conf, ./pushpin.conf,
// ./examples/config/pushpin.conf, /etc/pushpin/pushpin.conf (checked on
// 1.36: the first three are relative to the working dir, and the result
// is logged as an absolute path) — then our own configs/: next to the
// executable (<exedir>/../configs) and ./configs.
func FindDefault() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find config: %w", err)
	}
	return findDefault(defaultCandidates(wd, exeDir()))
}

func defaultCandidates(wd, exe string) []string {
	c := []string{
		filepath.Join(wd, "config", ConfigName),
		filepath.Join(wd, ConfigName),
		filepath.Join(wd, "examples", "config", ConfigName),
		filepath.Join(SystemConfigDir, ConfigName),
	}
	if exe != "" {
		c = append(c, filepath.Join(exe, "..", "configs", ConfigName))
	}
	return append(c, filepath.Join(wd, "configs", ConfigName))
}

func findDefault(cands []string) (string, error) {
	for _, c := range cands {
		if fileExists(c) {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("%w (tried %v)", ErrNoConfig, cands)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
