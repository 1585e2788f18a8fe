package handler

import (
	"testing"

	"tack/internal/grip"
)

func TestFilterSubstVars(t *testing.T) {
	meta := map[string]string{"user": "alice", "x)y": "paren"}
	for _, tc := range []struct {
		in, want, err string
	}{
		{"hello %(user)s!", "hello alice!", ""},
		{"100%% sure", "100% sure", ""},
		{"plain", "plain", ""},
		{"", "", ""},
		{`%(x\)y)s`, "paren", ""},
		{"%(nobody)s", "", "no sub meta 'nobody'"},
		{"%s", "", "directive 's' needs an argument"},
		{"%I", "", "unknown directive 'I'"},
		{"50%", "", "unexpected end of format"},
		{"%(user", "", "unterminated directive argument"},
	} {
		got, err := substVars([]byte(tc.in), meta)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("substVars(%q): err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("substVars(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestFilterApplyContentFiltersKeepsSlice(t *testing.T) {
	in := []byte("no directives")
	out, err := applyContentFilters([]string{"var-subst"}, in, &hsession{in: &grip.Instruct{}})
	if err != nil || &out[0] != &in[0] {
		t.Errorf("content without directives should be returned as is")
	}
}
