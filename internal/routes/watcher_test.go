package routes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"tack/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes data next to path and renames it over path, as
// editors and config managers do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func firstPort(w *Watcher) int {
	rs := w.Current().Routes()
	if len(rs) == 0 {
		return 0
	}
	return rs[0].Targets[0].Port
}

func wantPort(w *Watcher, port int) func() error {
	return func() error {
		if got := firstPort(w); got != port {
			return errors.New("table still routes to t:" + strconv.Itoa(got))
		}
		return nil
	}
}

func TestWatcherReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "routes")
	writeFile(t, path, "* t:1\n")

	var logs testutil.SyncBuffer
	w, err := NewWatcher(path, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if got := firstPort(w); got != 1 {
		t.Fatalf("initial table t:%d", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// fsnotify may not be watching yet when Run has just started, so
	// rewrite until the change is seen.
	var lastWrite time.Time
	eventually(t, 10*time.Second, func() error {
		if time.Since(lastWrite) > 200*time.Millisecond {
			writeFile(t, path, "* t:2\nbad\n")
			lastWrite = time.Now()
		}
		return wantPort(w, 2)()
	})
	old := w.Current()

	replaceFile(t, path, "* t:3\n")
	eventually(t, 5*time.Second, wantPort(w, 3))
	if old.Lookup("x", "http", false, "/").Targets[0].Port != 2 {
		t.Error("reload modified the old table")
	}

	// A removed file keeps the old table.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "unable to open routes file: "+path) {
			return errors.New("no open error logged")
		}
		return nil
	})
	if got := firstPort(w); got != 3 {
		t.Errorf("table after remove t:%d, want t:3", got)
	}

	// A file created again is picked up.
	writeFile(t, path, "* t:4\n")
	eventually(t, 5*time.Second, wantPort(w, 4))

	for _, want := range []string{
		"routes file changed, reloading",
		"routes loaded with 1 entries",
		"routes:2: must specify condition and at least one target",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestWatcherExplicitReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes")
	var logs testutil.SyncBuffer
	w, err := NewWatcher(path, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if w.Current() == nil || w.Current().Len() != 0 {
		t.Fatal("missing file did not give an empty table")
	}
	if !strings.Contains(logs.String(), "unable to open routes file") {
		t.Errorf("log %s", logs.String())
	}
	writeFile(t, path, "* t:1\na t:2\n")
	w.Reload()
	if w.Current().Len() != 2 {
		t.Fatalf("Len %d after Reload", w.Current().Len())
	}
	if !strings.Contains(logs.String(), "routes loaded with 2 entries") {
		t.Errorf("log %s", logs.String())
	}
	if _, err := NewWatcher("", zerolog.Nop()); err == nil {
		t.Error("empty path accepted")
	}
}

func TestWatcherStatic(t *testing.T) {
	tab, _ := ParseLines([]string{"* t:1"})
	w := NewStaticWatcher(tab)
	w.Reload()
	if w.Current() != tab {
		t.Fatal("static watcher changed its table")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
