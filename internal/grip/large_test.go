package grip

import "testing"

func TestProxyLargeHead(t *testing.T) {
	h := func(kv ...string) []Header {
		var out []Header
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, Header{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		hs      []Header
		ok, err bool
		code    int
		reason  string
		left    int // headers left
	}{
		{name: "stream", hs: h("Grip-Hold", "stream", "Grip-Channel", "a", "Content-Length", "9", "X-A", "1"), ok: true, code: 200, reason: "OK", left: 1},
		{name: "response hold", hs: h("Grip-Hold", "response", "Grip-Channel", "a")},
		{name: "instruct content", hs: h("Content-Type", "application/grip-instruct")},
		{name: "next link only", hs: h("Grip-Link", "</n>; rel=next", "Grip-Channel", "a"), ok: true, code: 200, reason: "OK"},
		{name: "gone link only", hs: h("Grip-Link", "</g>; rel=gone", "Grip-Channel", "a")},
		{name: "build-id filter", hs: h("Grip-Hold", "stream", "Grip-Channel", "x, a; filter=build-id")},
		{name: "status", hs: h("Grip-Hold", "stream", "Grip-Channel", "a", "Grip-Status", "404"), ok: true, code: 404, reason: "Not Found"},
		{name: "status with reason", hs: h("Grip-Hold", "stream", "Grip-Channel", "a", "Grip-Status", "203 Big"), ok: true, code: 203, reason: "Big"},
		{name: "bad status", hs: h("Grip-Hold", "stream", "Grip-Channel", "a", "Grip-Status", "x"), ok: true, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lh, ok, err := ProxyLargeHead(200, "OK", tc.hs)
			if ok != tc.ok || (err != nil) != tc.err {
				t.Fatalf("ok %v err %v", ok, err)
			}
			if !ok || err != nil {
				return
			}
			if lh.Code != tc.code || lh.Reason != tc.reason || len(lh.Headers) != tc.left {
				t.Fatalf("head %+v", lh)
			}
		})
	}
}
