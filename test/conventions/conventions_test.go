package conventions

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"tack/internal/testutil"
)

// services are the per-process packages; none may import another.
var services = []string{"connmgr", "proxy", "handler", "zhttpclient", "runner"}

// allowed lists the exceptions: the runner's command embeds `tack publish`.
var allowed = map[string]bool{"tack/internal/runner -> tack/internal/publish": true}

type goFile struct {
	pkgDir string
	path   string
}

func walk(t *testing.T) []goFile {
	t.Helper()
	root := testutil.RepoRoot()
	var files []goFile
	for _, top := range []string{"cmd", "internal", "pkg", "test"} {
		filepath.WalkDir(filepath.Join(root, top), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata") {
				return filepath.SkipDir
			}
			if !d.IsDir() && strings.HasSuffix(p, ".go") {
				rel, _ := filepath.Rel(root, filepath.Dir(p))
				files = append(files, goFile{pkgDir: rel, path: p})
			}
			return nil
		})
	}
	return files
}

func TestConventionServicesIndependent(t *testing.T) {
	fset := token.NewFileSet()
	for _, f := range walk(t) {
		from := ""
		for _, s := range services {
			if f.pkgDir == filepath.Join("internal", s) {
				from = "tack/internal/" + s
			}
		}
		if from == "" {
			continue
		}
		af, err := parser.ParseFile(fset, f.path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, s := range services {
				to := "tack/internal/" + s
				if path == to && to != from && !allowed[from+" -> "+path] {
					t.Errorf("%s imports %s: services talk only over ZeroMQ", f.path, path)
				}
			}
		}
	}
}

func TestConventionDocGo(t *testing.T) {
	dirs := map[string]bool{}
	for _, f := range walk(t) {
		if !strings.HasSuffix(f.path, "_test.go") {
			dirs[f.pkgDir] = dirs[f.pkgDir] || filepath.Base(f.path) == "doc.go"
		}
	}
	for dir, has := range dirs {
		if !has && strings.HasPrefix(dir, "internal") || !has && strings.HasPrefix(dir, "pkg") {
			t.Errorf("%s has no doc.go", dir)
		}
	}
}

func TestConventionNoPrintInInternal(t *testing.T) {
	fset := token.NewFileSet()
	for _, f := range walk(t) {
		if !strings.HasPrefix(f.pkgDir, "internal") || strings.HasSuffix(f.path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.ParseFile(fset, f.path, src, 0); err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if strings.Contains(line, "fmt.Print") && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				t.Errorf("%s:%d uses fmt.Print*: log through zerolog", f.path, i+1)
			}
		}
	}
}

func TestConventionFileNames(t *testing.T) {
	for _, f := range walk(t) {
		if strings.Contains(filepath.Base(f.path), "-") {
			t.Errorf("%s: file names have no hyphens", f.path)
		}
	}
}
