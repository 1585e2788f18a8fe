package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
)

// ZurlTemplate is the template path under the lib dir (Pushpin:
// {libdir}/runner/zurl.conf.template).
const ZurlTemplate = "runner/zurl.conf.template"

var templateVar = regexp.MustCompile(`\{\{\s*([A-Za-z_]+)\s*\}\}`)

// renderZurlConf writes <rundir>/<fp>zurl.conf from the template with
// {{ rundir }} (absolute) and {{ ipc_prefix }} filled in.
func (c *Config) renderZurlConf() error {
	tpl := filepath.Join(c.LibDir, ZurlTemplate)
	data, err := os.ReadFile(tpl)
	if err != nil {
		return fmt.Errorf("read zurl template: %w", err)
	}
	vars := map[string]string{"rundir": c.RunDir, "ipc_prefix": c.IPCPrefix}
	out := templateVar.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(templateVar.FindSubmatch(m)[1])
		if v, ok := vars[name]; ok {
			return []byte(v)
		}
		return nil
	})
	if err := os.WriteFile(c.zurlConfPath(), out, 0o644); err != nil {
		return fmt.Errorf("write zurl config: %w", err)
	}
	return nil
}
