package routes

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that no input panics Parse and that what loads is
// consistent: every route has a target, a non-empty id, and is found by
// ByID unless its id is shared.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/default.routes", "testdata/examples.routes"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b))
		}
	}
	for _, s := range []string{
		`a,id="x\"y\\z" t:1`, `a,id="x\n`, `a,id="x\`, "a, t:1", "=x t:1", `"id=q" t:1`,
		"a [::1]:80 [::1 [] zhttp/ zhttpreq/x test", "a,header=:v t:1", "#", "\"\r\n\"", "a\x00,\xff t:\xc3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tab, diags := Parse(strings.NewReader(src), "fuzz")
		ids := map[string]int{}
		for _, r := range tab.Routes() {
			ids[r.ID]++
		}
		for _, r := range tab.Routes() {
			if len(r.Targets) == 0 || r.ID == "" {
				t.Fatalf("route %+v", r)
			}
			if got := tab.ByID(r.ID); (ids[r.ID] == 1) != (got == r) {
				t.Fatalf("ByID(%q) = %p, route %p, count %d", r.ID, got, r, ids[r.ID])
			}
			for _, tg := range r.Targets {
				if tg.Kind == TargetHost && (tg.Port < 1 || tg.Port > 65535) {
					t.Fatalf("port %d", tg.Port)
				}
			}
		}
		for _, d := range diags {
			if d.Msg == "" || d.Line < 1 {
				t.Fatalf("diag %+v", d)
			}
		}
		tab.Lookup("a", "http", false, "/")
		tab.Lookup("*", "ws", true, "")
	})
}
