package routes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// ReloadDebounce is how long the watcher waits after the last change to
// the routes file before reloading it (Pushpin waits 1 s).
const ReloadDebounce = time.Second

// Watcher holds the current Table of a routes file and replaces it when the
// file changes (Run) or on request (Reload, e.g. on SIGHUP). Current is safe
// for concurrent use and never blocks.
type Watcher struct {
	path string // absolute; empty for a static watcher
	log  zerolog.Logger
	cur  atomic.Pointer[Table]

	mu sync.Mutex // serialises reloads so an older read never replaces a newer one
}

// NewWatcher loads the routes file at path. As in Pushpin, a missing or
// unreadable file is logged ("unable to open routes file") and the watcher
// starts with an empty table, to be filled when the file appears; the error
// is non-nil only when path is empty.
func NewWatcher(path string, log zerolog.Logger) (*Watcher, error) {
	if path == "" {
		return nil, errors.New("routes file path is empty")
	}
	w := &Watcher{path: baseDir(path), log: log}
	w.cur.Store(&Table{})
	w.Reload()
	return w, nil
}

// NewStaticWatcher returns a Watcher that always holds t, for routes given
// as --route lines (Pushpin does not watch or reload those): Reload does
// nothing and Run only waits for its context.
func NewStaticWatcher(t *Table) *Watcher {
	w := &Watcher{}
	if t == nil {
		t = &Table{}
	}
	w.cur.Store(t)
	return w
}

// Path returns the absolute path of the watched file ("" if static).
func (w *Watcher) Path() string { return w.path }

// Current returns the table in use now; it is never nil.
func (w *Watcher) Current() *Table { return w.cur.Load() }

// Reload reads the file again and swaps the new table in. Bad lines are
// logged as warnings and skipped; if the file cannot be read the error is
// logged and the current table stays.
func (w *Watcher) Reload() {
	if w.path == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t, diags, err := ParseFile(w.path)
	if err != nil {
		w.log.Warn().Err(err).Str("path", w.path).Msg("unable to open routes file: " + w.path)
		return
	}
	for _, d := range diags {
		w.log.Warn().Str("source", d.Source).Int("line", d.Line).Msg(d.String())
	}
	w.cur.Store(t)
	w.log.Info().Int("entries", t.Len()).Msg("routes loaded with " + strconv.Itoa(t.Len()) + " entries")
}

// Run watches the routes file until ctx is done, reloading ReloadDebounce
// after the first of a burst of changes. It watches the file's directory, so a file that
// is replaced by rename (as editors and config managers do), removed or
// created later is still followed. Run returns nil when ctx is done and an
// error only if the watch cannot be set up.
func (w *Watcher) Run(ctx context.Context) error {
	if w.path == "" {
		<-ctx.Done()
		return nil
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch routes file: %w", err)
	}
	defer fw.Close() // waits for fsnotify's reader goroutine
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch routes file dir %s: %w", dir, err)
	}

	timer := time.NewTimer(ReloadDebounce)
	timer.Stop()
	defer timer.Stop()
	pending := false // timer is running
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) != w.path || ev.Op == fsnotify.Chmod {
				continue
			}
			// The first change starts the delay and later ones ride along,
			// so a burst of writes gives one reload and a file that is
			// written continuously is still reloaded every ReloadDebounce.
			if !pending {
				timer.Reset(ReloadDebounce)
				pending = true
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn().Err(err).Str("path", w.path).Msg("routes file watch error")
		case <-timer.C:
			pending = false
			w.log.Info().Str("path", w.path).Msg("routes file changed, reloading")
			w.Reload()
		}
	}
}
