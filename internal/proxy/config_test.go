package proxy

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"tack/internal/config"
)

func loadConf(t *testing.T, text string) *config.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pushpin.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

const confSpecs = `[proxy]
condure_in_specs=ipc://a
condure_in_stream_specs=ipc://b
condure_out_specs=ipc://c
zurl_out_specs=ipc://d
zurl_out_stream_specs=ipc://e
zurl_in_specs=ipc://f
`

func TestProxyConfigStats(t *testing.T) {
	c, err := ConfigFromFile(loadConf(t, "[global]\nstats_connection_ttl=30\n"+confSpecs+
		"stats_spec=ipc://s\ncommand_spec=ipc://cmd\nstats_report_interval=5\nprometheus_port=127.0.0.1:9100\nprometheus_prefix=pp_\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.StatsSpec != "ipc://s" || c.CommandSpec != "ipc://cmd" || c.StatsReportInterval != 5*time.Second ||
		c.StatsConnectionTTL != 30*time.Second || c.PrometheusPort != "127.0.0.1:9100" || c.PrometheusPrefix != "pp_" {
		t.Fatalf("%+v", c)
	}
	c, err = ConfigFromFile(loadConf(t, confSpecs), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.StatsReportInterval != DefaultStatsReportInterval || c.StatsConnectionTTL != DefaultStatsConnectionTTL || c.StatsSpec != "" {
		t.Fatalf("defaults %+v", c)
	}
	if _, err := ConfigFromFile(loadConf(t, confSpecs+"stats_report_interval=x\n"), nil); err == nil {
		t.Fatal("bad stats_report_interval accepted")
	}
}

// share_all works with tack-proxy (inspect.go, share.go): no warning.
func TestProxyConfigShareAllNoWarning(t *testing.T) {
	w := UnsupportedWarnings(loadConf(t, confSpecs+"prometheus_port=9100\n[handler]\nshare_all=true\n"))
	if len(w) != 0 {
		t.Fatalf("warnings %q", w)
	}
	c, err := ConfigFromFile(loadConf(t, confSpecs+"handler_inspect_spec=ipc://x/inspect\n"), nil)
	if err != nil || len(c.InspectSpecs) != 1 || c.InspectSpecs[0] != "ipc://x/inspect" {
		t.Fatalf("inspect specs %q, %v", c.InspectSpecs, err)
	}
}
