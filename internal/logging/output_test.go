package logging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOutputReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	out, err := OpenOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	log := NewWriter(out, LevelInfo)
	log.Info().Msg("before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("still old")
	if err := out.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("after")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	for _, c := range []struct {
		b    []byte
		want string
		not  string
	}{{old, "still old", "after"}, {cur, "after", "before"}} {
		if !contains(c.b, c.want) || contains(c.b, c.not) {
			t.Errorf("file %q: want %q and not %q", c.b, c.want, c.not)
		}
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	log.Info().Msg("discarded") // after Close: no panic, nothing written
	if cur2, _ := os.ReadFile(path); contains(cur2, "discarded") {
		t.Error("line written after Close")
	}
}

func TestOutputStderrAndBadPath(t *testing.T) {
	out, err := OpenOutput("")
	if err != nil || out.Path() != "" || out.Reopen() != nil || out.Close() != nil {
		t.Fatalf("stderr output: %v", err)
	}
	if _, err := OpenOutput(filepath.Join(t.TempDir(), "missing", "x.log")); err == nil {
		t.Error("open in a missing directory succeeded")
	}
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }
