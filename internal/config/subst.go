package config

import (
	"strconv"
	"strings"
)

// substitute replaces {libdir}, {rundir} and {ipc_prefix} in s and, when
// offset is set, adds the port offset to every tcp://host:port in it.
func (f *File) substitute(s string, offset bool) string {
	if strings.IndexByte(s, '{') >= 0 {
		s = strings.NewReplacer(
			"{libdir}", f.libDir,
			"{rundir}", f.rawRunDir,
			"{ipc_prefix}", f.ipcPrefix,
		).Replace(s)
	}
	if offset && f.portOffset != 0 {
		s = OffsetTCPPorts(s, f.portOffset)
	}
	return s
}

// OffsetTCPPorts adds n to the port of every tcp://host:port in s (host
// may be a bracketed IPv6 address or "*"). Pushpin applies port_offset
// this way to every config value (checked on 1.36 with a runner value
// tcp://127.0.0.1:5000/x and port_offset=5 → tcp://127.0.0.1:5005/x).
func OffsetTCPPorts(s string, n int) string {
	const scheme = "tcp://"
	if n == 0 || !strings.Contains(s, scheme) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, scheme)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+len(scheme)])
		s = s[i+len(scheme):]
		// host
		j := 0
		if strings.HasPrefix(s, "[") {
			k := strings.IndexByte(s, ']')
			if k < 0 {
				continue
			}
			j = k + 1
		} else {
			for j < len(s) && !strings.ContainsRune(":/,; \t[]", rune(s[j])) {
				j++
			}
		}
		if j >= len(s) || s[j] != ':' {
			continue
		}
		k := j + 1
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		if k == j+1 || k-j-1 > 9 {
			continue
		}
		port, _ := strconv.Atoi(s[j+1 : k])
		b.WriteString(s[:j+1])
		b.WriteString(strconv.Itoa(port + n))
		s = s[k:]
	}
}
