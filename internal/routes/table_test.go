package routes

import (
	"strings"
	"testing"
)

// TestTablePrecedence checks the lookup walk of grip-reference §7.4; want
// is the target port chosen (0 = no route). The first six cases and
// "wildcard for other hosts" were also run through Pushpin 1.36, which
// chose the same targets.
func TestTablePrecedence(t *testing.T) {
	tests := []struct {
		name   string
		routes string
		host   string
		proto  string
		ssl    bool
		path   string
		want   int
	}{
		{"proto beats later ssl", "h,proto=http,path_beg=/x t:1\nh,ssl=no t:2", "h", "http", false, "/x", 1},
		{"proto beats later longer path", "h,proto=http t:1\nh,path_beg=/y t:2", "h", "http", false, "/y", 1},
		{"later proto beats ssl", "h,ssl=no t:1\nh,proto=http t:2", "h", "http", false, "/", 2},
		{"quirk 7: ssl beats longer path", "h,path_beg=/abc t:1\nh,ssl=no,path_beg=/a t:2", "h", "http", false, "/abc", 2},
		{"longer path beats ssl", "h,ssl=no,path_beg=/a t:1\nh,path_beg=/abc t:2", "h", "http", false, "/abc", 2},
		{"longer path wins", "h,path_beg=/a t:1\nh,path_beg=/ab t:2\nh t:3", "h", "http", false, "/abc", 2},
		{"first wins ties", "h,path_beg=/a t:1\nh,path_beg=/b t:2\nh,ssl=no,path_beg=/a t:3\nh,ssl=yes,path_beg=/a t:4", "h", "http", false, "/a", 3},
		{"no path match falls to plain", "h,path_beg=/a t:1\nh,path_beg=/b t:2\nh t:3", "h", "http", false, "/c", 3},
		{"both proto, longer path", "h,proto=ws t:1\nh,proto=ws,path_beg=/s t:2", "h", "ws", false, "/s", 2},
		{"proto mismatch", "h,proto=ws t:1", "h", "http", false, "/", 0},
		{"ssl mismatch", "h,ssl=yes t:1", "h", "http", false, "/", 0},
		{"ssl match", "h,ssl=yes t:1", "h", "ws", true, "/", 1},
		{"no fallback to wildcard", "h,proto=ws t:1\n* t:9", "h", "http", false, "/", 0},
		{"wildcard for other hosts", "h t:1\n* t:9", "other", "http", false, "/", 9},
		{"no wildcard, no route", "h t:1", "other", "http", false, "/", 0},
		{"host lowercased and port stripped", "h.example t:1", "H.Example:8080", "http", false, "/", 1},
		{"ipv6 host", "::1 t:1", "[::1]:7999", "http", false, "/", 1},
		{"domain is case-sensitive", "H t:1\n* t:9", "h", "http", false, "/", 9},
		{"id-only route is not matched", "id=x t:1", "", "http", false, "/", 0},
		{"path is prefix-matched on the raw path", "h,path_beg=/a%20 t:1", "h", "http", false, "/a%20b", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, diags := Parse(strings.NewReader(tt.routes), "r")
			if len(diags) != 0 {
				t.Fatalf("diags %v", diags)
			}
			got := 0
			if r := tab.Lookup(tt.host, tt.proto, tt.ssl, tt.path); r != nil {
				got = r.Targets[0].Port
			}
			if got != tt.want {
				t.Errorf("Lookup(%q, %q, %v, %q) chose t:%d, want t:%d", tt.host, tt.proto, tt.ssl, tt.path, got, tt.want)
			}
		})
	}
}

func TestTableByID(t *testing.T) {
	tab, diags := Parse(strings.NewReader(strings.Join([]string{
		"a,id=dup t:1",
		"b,id=dup t:2",
		"c,id=one t:3",
		"h,ssl=no t:4",
		"h,proto=ws,ssl=yes,path_beg=/x t:5",
		`h,id="h,*,ssl,*" t:6`, // explicit id equal to line 4's synthesised one
		",id=only t:7",
	}, "\n")), "r")
	if len(diags) != 0 {
		t.Fatalf("diags %v", diags)
	}
	tests := []struct {
		id   string
		want int
	}{
		{"dup", 0},
		{"one", 3},
		{"h,ws,no-ssl,/x", 5},
		{"h,*,ssl,*", 0},
		{"only", 7},
		{"nope", 0},
		{"", 0},
	}
	for _, tt := range tests {
		got := 0
		if r := tab.ByID(tt.id); r != nil {
			got = r.Targets[0].Port
		}
		if got != tt.want {
			t.Errorf("ByID(%q) = t:%d, want t:%d", tt.id, got, tt.want)
		}
	}
}

func TestTableNil(t *testing.T) {
	var tab *Table
	if tab.Len() != 0 || tab.Routes() != nil || tab.ByID("x") != nil || tab.Lookup("h", "http", false, "/") != nil {
		t.Error("nil table not empty")
	}
	if (&Table{}).Lookup("h", "http", false, "/") != nil {
		t.Error("empty table matched")
	}
}

func TestTableRoutesIsCopy(t *testing.T) {
	tab, _ := Parse(strings.NewReader("a t:1\nb t:2"), "r")
	rs := tab.Routes()
	rs[0] = nil
	if tab.Routes()[0] == nil {
		t.Error("Routes exposes the table's slice")
	}
}
