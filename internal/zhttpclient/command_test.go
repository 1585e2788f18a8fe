package zhttpclient

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The exact argument forms the Pushpin 1.36 runner passes to zurl.
func TestCommandRunnerArgs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	dir, err := os.MkdirTemp("", "tk")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := DefaultConfig()
	cfg.InstanceID = ""
	cfg.InSpec, cfg.InStreamSpec, cfg.OutSpec = "ipc://"+dir+"/in", "ipc://"+dir+"/in-stream", "ipc://"+dir+"/out"
	conf := filepath.Join(dir, "zurl.conf")
	if err := writeConfig(conf, &cfg); err != nil {
		t.Fatal(err)
	}
	logfile := filepath.Join(dir, "zurl.log")
	cmd := Command()
	cmd.SetArgs([]string{"--config=" + conf, "--logfile=" + logfile, "--loglevel=2"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitLog := func(path, text string) {
		eventually(t, waitFor, func() error {
			b, _ := os.ReadFile(path)
			if !bytes.Contains(b, []byte(text)) {
				return fmt.Errorf("%s: no %q in %q", path, text, b)
			}
			return nil
		})
	}
	waitLog(logfile, "started")
	if b, _ := os.ReadFile(logfile); !bytes.Contains(b, []byte(fmt.Sprintf("instance_id=zhttpclient_%d", os.Getpid()))) {
		t.Fatalf("log %q", b)
	}
	// SIGHUP reopens the log file (log rotation) instead of ending us.
	if err := os.Rename(logfile, logfile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(logfile+".1", "reloading")
	waitLog(logfile, "log file reopened")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("command did not stop")
	}
}

func TestCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("[General]\ndefpolicy=maybe\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--config=" + filepath.Join(dir, "missing.conf")}, "failed to open"},
		{[]string{"--config="}, "parameter to --config missing"},
		{[]string{"--config=" + bad, "--verbose"}, "defpolicy"},
		{[]string{"--config=" + bad, "--loglevel=x"}, "--loglevel"},
		{[]string{"extra"}, "unknown command"},
	}
	for _, tc := range cases {
		cmd := Command()
		cmd.SetArgs(tc.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}
