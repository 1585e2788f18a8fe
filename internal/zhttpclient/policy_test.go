package zhttpclient

import "testing"

func TestPolicy(t *testing.T) {
	template := []string{"127.*", "10.*", "192.168.*", "*.local"}
	cases := []struct {
		def         string
		allow, deny []string
		subject     string
		want        bool
	}{
		{PolicyAllow, nil, template, "127.0.0.1", false},
		{PolicyAllow, nil, template, "example.com", true},
		{PolicyAllow, nil, template, "printer.LOCAL", false},
		{PolicyAllow, nil, template, "::ffff:127.0.0.1", false},
		{PolicyAllow, nil, template, "[::1]", true},
		{PolicyAllow, []string{"127.0.0.1"}, template, "127.0.0.1", true},
		{PolicyAllow, nil, []string{"10.0.0.0/8"}, "10.1.2.3", false},
		{PolicyAllow, nil, []string{"10.0.0.0/8"}, "11.1.2.3", true},
		{PolicyAllow, nil, []string{"10.0.0.0/8"}, "ten.example", true},
		{PolicyAllow, nil, []string{"fc00::/7"}, "fd00::1", false},
		{PolicyAllow, nil, []string{"Example.COM"}, "example.com", false},
		{PolicyAllow, nil, []string{"a*a"}, "a", true}, // zurl would match: its halves may overlap
		{PolicyAllow, nil, []string{"a*a"}, "aba", false},
		{PolicyAllow, nil, []string{"*"}, "anything", false},
		{PolicyDeny, nil, nil, "example.com", false},
		{PolicyDeny, []string{"*.example.com"}, nil, "api.example.com", true},
		{PolicyDeny, []string{"*.example.com"}, []string{"bad.example.com"}, "bad.example.com", false},
	}
	for _, tc := range cases {
		p := newPolicy(tc.def, tc.allow, tc.deny)
		if got := p.Allowed(tc.subject); got != tc.want {
			t.Errorf("defpolicy=%s allow=%v deny=%v: Allowed(%q) = %v, want %v", tc.def, tc.allow, tc.deny, tc.subject, got, tc.want)
		}
	}
}
