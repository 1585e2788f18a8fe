package grip

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// hdrs builds headers from "Name: value" lines (the value is kept verbatim
// after ": ").
func hdrs(lines ...string) []Header {
	var hs []Header
	for _, l := range lines {
		name, value, _ := strings.Cut(l, ":")
		hs = append(hs, Header{Name: name, Value: strings.TrimPrefix(value, " ")})
	}
	return hs
}

// errText returns the message of a *FormatError, or fails.
func errText(t *testing.T, err error) string {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *FormatError", err, err)
	}
	return fe.Msg
}

func TestGripIsGRIP(t *testing.T) {
	tests := []struct {
		name string
		hs   []Header
		want bool
	}{
		{"none", hdrs("Content-Type: text/plain", "X-A: 1"), false},
		{"grip header", hdrs("Grip-Status: 200"), true},
		{"grip header any case", hdrs("gRIP-whatever: x"), true},
		{"grip prefix needs dash", hdrs("Gripx: 1"), false},
		{"instruct type", hdrs("Content-Type: application/grip-instruct"), true},
		{"instruct type with params", hdrs("Content-Type: application/grip-instruct;charset=utf-8"), true},
		// Verified on 1.36: these are relayed as plain responses.
		{"instruct type space before semicolon", hdrs("Content-Type: application/grip-instruct ; charset=utf-8"), false},
		{"instruct type other case", hdrs("Content-Type: Application/Grip-Instruct"), false},
		{"only first content type counts", hdrs("Content-Type: text/plain", "Content-Type: application/grip-instruct"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsGRIP(tc.hs); got != tc.want {
				t.Fatalf("IsGRIP = %v, want %v", got, tc.want)
			}
		})
	}
}

type instructCase struct {
	name    string
	code    int // 0 means 200
	reason  string
	hs      []Header
	body    string
	opts    ParseOptions
	wantErr string // "" means success; use errEmpty for an empty message
	check   func(t *testing.T, in *Instruct)
}

// errEmpty marks rows whose expected error message is empty.
const errEmpty = "\x00empty"

func runInstructCases(t *testing.T, cases []instructCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code := tc.code
			if code == 0 {
				code = 200
			}
			in, err := Parse(code, tc.reason, tc.hs, []byte(tc.body), tc.opts)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse succeeded, want error %q", tc.wantErr)
				}
				want := tc.wantErr
				if want == errEmpty {
					want = ""
				}
				if got := errText(t, err); got != want {
					t.Fatalf("error %q, want %q", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tc.check != nil {
				tc.check(t, in)
			}
		})
	}
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s = %#v, want %#v", what, got, want)
	}
}

func TestGripParseHold(t *testing.T) {
	runInstructCases(t, []instructCase{
		{name: "absent", hs: hdrs("Grip-Channel: a"), check: func(t *testing.T, in *Instruct) { eq(t, "Hold", in.Hold, HoldNone) }},
		{name: "response", hs: hdrs("Grip-Hold: response"), check: func(t *testing.T, in *Instruct) { eq(t, "Hold", in.Hold, HoldResponse) }},
		{name: "stream", hs: hdrs("grip-hold: stream"), check: func(t *testing.T, in *Instruct) { eq(t, "Hold", in.Hold, HoldStream) }},
		{name: "first header wins", hs: hdrs("Grip-Hold: stream", "Grip-Hold: bogus"), check: func(t *testing.T, in *Instruct) { eq(t, "Hold", in.Hold, HoldStream) }},
		{name: "bogus", hs: hdrs("Grip-Hold: bogus"), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
		{name: "case-sensitive value", hs: hdrs("Grip-Hold: Response"), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
		{name: "no params", hs: hdrs("Grip-Hold: stream; x=y"), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
		{name: "no list", hs: hdrs("Grip-Hold: stream, response"), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
		{name: "empty", hs: hdrs("Grip-Hold: "), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
		{name: "quoted", hs: hdrs(`Grip-Hold: "stream"`), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
	})
}

func TestGripParseChannel(t *testing.T) {
	chans := func(want ...Channel) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) { t.Helper(); eq(t, "Channels", in.Channels, want) }
	}
	ch := func(name string) Channel { return Channel{Name: name, BackendName: name} }
	seven := "Grip-Channel: a; filter=f1; filter=f2; filter=f3; filter=f4; filter=f5; filter=f6; filter=f7"
	many := make([]string, 25)
	for i := range many {
		many[i] = "Grip-Channel: c" + string(rune('a'+i))
	}
	runInstructCases(t, []instructCase{
		{name: "single", hs: hdrs("Grip-Channel: a"), check: chans(ch("a"))},
		{name: "repeated and comma lists", hs: hdrs("Grip-Channel: a, b", "grip-channel: c"), check: chans(ch("a"), ch("b"), ch("c"))},
		{name: "prev-id and filters", hs: hdrs("Grip-Channel: a; prev-id=5; filter=skip-self; FILTER=ignored; filter=build-id"),
			check: chans(Channel{Name: "a", BackendName: "a", PrevID: "5", Filters: []string{"skip-self", "build-id"}})},
		{name: "prev-id key case-insensitive", hs: hdrs("Grip-Channel: a; PREV-ID=7"),
			check: chans(Channel{Name: "a", BackendName: "a", PrevID: "7"})},
		{name: "quoted param with escapes and separators", hs: hdrs(`Grip-Channel: e ; prev-id="a\"b;c,d"; filter=skip-self`),
			check: chans(Channel{Name: "e", BackendName: "e", PrevID: `a"b;c,d`, Filters: []string{"skip-self"}})},
		// Verified on 1.36: a quoted name keeps its quotes (the main value is
		// not unquoted) but its comma does not split the list.
		{name: "quoted name keeps quotes", hs: hdrs(`Grip-Channel: "q,1", b`), check: chans(ch(`"q,1"`), ch("b"))},
		// Verified on 1.36: an empty item subscribes to "".
		{name: "empty item kept", hs: hdrs("Grip-Channel: a,,b"), check: chans(ch("a"), ch(""), ch("b"))},
		{name: "trailing comma", hs: hdrs("Grip-Channel: a,"), check: chans(ch("a"))},
		// Verified on 1.36: an item with broken quoting is skipped silently.
		{name: "broken quoting skipped", hs: hdrs(`Grip-Channel: a, c; prev-id="x`), check: chans(ch("a"))},
		{name: "broken quoting alone skipped", hs: hdrs(`Grip-Channel: c; prev-id="x`, "Grip-Channel: d"), check: chans(ch("d"))},
		{name: "lone backslash in quote skipped", hs: hdrs(`Grip-Channel: c; prev-id="x\`), check: chans()},
		{name: "empty header", hs: hdrs("Grip-Channel: "), check: chans()},
		{name: "prefix", hs: hdrs("Grip-Channel: a"), opts: ParseOptions{ChannelPrefix: "p-"},
			check: chans(Channel{Name: "p-a", BackendName: "a"})},
		// Verified on 1.36: seven filters are fine (no limit before 1.41).
		{name: "no filter limit by default", hs: hdrs(seven), check: func(t *testing.T, in *Instruct) { eq(t, "filters", len(in.Channels[0].Filters), 7) }},
		{name: "1.41 filter limit", hs: hdrs(seven), opts: ParseOptions{MaxFiltersPerChannel: FilterMax141, ChannelPrefix: "p-"},
			wantErr: "too many filters for channel 'a'"},
		{name: "subscription max default", hs: hdrs(many...), check: func(t *testing.T, in *Instruct) {
			eq(t, "len", len(in.Channels), DefaultConnectionSubscriptionMax)
			eq(t, "dropped", in.ChannelsDropped, 5)
			eq(t, "last", in.Channels[19].Name, "ct")
		}},
		{name: "subscription max option", hs: hdrs("Grip-Channel: a, b, c"), opts: ParseOptions{ConnectionSubscriptionMax: 2},
			check: func(t *testing.T, in *Instruct) {
				eq(t, "len", len(in.Channels), 2)
				eq(t, "dropped", in.ChannelsDropped, 1)
			}},
		{name: "subscription unlimited", hs: hdrs(many...), opts: ParseOptions{ConnectionSubscriptionMax: -1},
			check: func(t *testing.T, in *Instruct) { eq(t, "len", len(in.Channels), 25) }},
	})
}

func TestGripParseTimeout(t *testing.T) {
	timeout := func(d time.Duration) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) { t.Helper(); eq(t, "Timeout", in.Timeout, d) }
	}
	runInstructCases(t, []instructCase{
		{name: "default", hs: hdrs("Grip-Hold: response"), check: timeout(DefaultTimeout)},
		{name: "value", hs: hdrs("Grip-Timeout: 30"), check: timeout(30 * time.Second)},
		{name: "raised to minimum", hs: hdrs("Grip-Timeout: 2"), check: timeout(MinTimeout)},
		{name: "zero raised", hs: hdrs("Grip-Timeout: 0"), check: timeout(MinTimeout)},
		{name: "plus sign", hs: hdrs("Grip-Timeout: +7"), check: timeout(7 * time.Second)},
		{name: "minus zero", hs: hdrs("Grip-Timeout: -0"), check: timeout(MinTimeout)},
		{name: "int32 max", hs: hdrs("Grip-Timeout: 2147483647"), check: timeout(2147483647 * time.Second)},
		{name: "not a number", hs: hdrs("Grip-Timeout: abc"), wantErr: "failed to parse Grip-Timeout"},
		{name: "fraction", hs: hdrs("Grip-Timeout: 1.5"), wantErr: "failed to parse Grip-Timeout"},
		{name: "hex", hs: hdrs("Grip-Timeout: 0x10"), wantErr: "failed to parse Grip-Timeout"},
		{name: "overflow", hs: hdrs("Grip-Timeout: 99999999999"), wantErr: "failed to parse Grip-Timeout"},
		{name: "params", hs: hdrs("Grip-Timeout: 5;a=b"), wantErr: "failed to parse Grip-Timeout"},
		{name: "list", hs: hdrs("Grip-Timeout: 5,6"), wantErr: "failed to parse Grip-Timeout"},
		{name: "empty", hs: hdrs("Grip-Timeout: "), wantErr: "failed to parse Grip-Timeout"},
		{name: "negative", hs: hdrs("Grip-Timeout: -1"), wantErr: "Grip-Timeout has invalid value"},
		// Order: Grip-Hold is checked before Grip-Timeout.
		{name: "hold error first", hs: hdrs("Grip-Timeout: x", "Grip-Hold: x"), wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
	})
}

func TestGripParseKeepAlive(t *testing.T) {
	ka := func(want *KeepAlive) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) { t.Helper(); eq(t, "KeepAlive", in.KeepAlive, want) }
	}
	runInstructCases(t, []instructCase{
		{name: "absent", hs: hdrs("Grip-Hold: stream"), check: ka(nil)},
		{name: "empty header ignored", hs: hdrs("Grip-Keep-Alive: "), check: ka(nil)},
		{name: "raw default", hs: hdrs("Grip-Keep-Alive: ka, more"),
			check: ka(&KeepAlive{Data: []byte("ka, more"), Timeout: DefaultKeepAliveTimeout, Mode: KeepAliveIdle})},
		{name: "cstring", hs: hdrs(`Grip-Keep-Alive: ka\n\r\\\x41\q; format=cstring; timeout=2`),
			check: ka(&KeepAlive{Data: []byte("ka\n\r\\A"), Timeout: 2 * time.Second, Mode: KeepAliveIdle})},
		{name: "base64", hs: hdrs("Grip-Keep-Alive: aGkK; format=base64; mode=interval"),
			check: ka(&KeepAlive{Data: []byte("hi\n"), Timeout: DefaultKeepAliveTimeout, Mode: KeepAliveInterval})},
		// Verified on 1.36: bad base64 is accepted (decoded leniently).
		{name: "base64 lenient", hs: hdrs("Grip-Keep-Alive: !!!aGk=; format=base64"),
			check: ka(&KeepAlive{Data: []byte("hi"), Timeout: DefaultKeepAliveTimeout, Mode: KeepAliveIdle})},
		{name: "timeout zero raised", hs: hdrs("Grip-Keep-Alive: x; timeout=0"),
			check: ka(&KeepAlive{Data: []byte("x"), Timeout: MinKeepAliveTimeout, Mode: KeepAliveIdle})},
		{name: "empty format and mode are defaults", hs: hdrs("Grip-Keep-Alive: x; format=; mode="),
			check: ka(&KeepAlive{Data: []byte("x"), Timeout: DefaultKeepAliveTimeout, Mode: KeepAliveIdle})},
		{name: "first header only", hs: hdrs("Grip-Keep-Alive: a", "Grip-Keep-Alive: b; format=bogus"),
			check: ka(&KeepAlive{Data: []byte("a"), Timeout: DefaultKeepAliveTimeout, Mode: KeepAliveIdle})},
		{name: "broken quoting ignores header", hs: hdrs(`Grip-Keep-Alive: ka; format="x`), check: ka(nil)},
		{name: "empty data", hs: hdrs("Grip-Keep-Alive: ; timeout=5"), wantErr: "Grip-Keep-Alive cannot be empty"},
		{name: "bad mode", hs: hdrs("Grip-Keep-Alive: ka; MODE=foo"), wantErr: "no such Grip-Keep-Alive mode 'foo'"},
		{name: "mode before timeout and format", hs: hdrs("Grip-Keep-Alive: ka; format=bar; timeout=x; mode=foo"), wantErr: "no such Grip-Keep-Alive mode 'foo'"},
		{name: "bad timeout", hs: hdrs("Grip-Keep-Alive: ka; timeout=x"), wantErr: "failed to parse Grip-Keep-Alive timeout value"},
		{name: "empty timeout", hs: hdrs("Grip-Keep-Alive: ka; timeout="), wantErr: "failed to parse Grip-Keep-Alive timeout value"},
		{name: "timeout before format", hs: hdrs("Grip-Keep-Alive: ka; timeout=x; format=bar"), wantErr: "failed to parse Grip-Keep-Alive timeout value"},
		{name: "negative timeout", hs: hdrs("Grip-Keep-Alive: ka; timeout=-1"), wantErr: "Grip-Keep-Alive timeout has invalid value"},
		{name: "bad format", hs: hdrs("Grip-Keep-Alive: ka; format=foo"), wantErr: "no such Grip-Keep-Alive format 'foo'"},
		{name: "format case-sensitive", hs: hdrs("Grip-Keep-Alive: ka; format=CSTRING"), wantErr: "no such Grip-Keep-Alive format 'CSTRING'"},
		{name: "cstring trailing backslash", hs: hdrs(`Grip-Keep-Alive: ka\; format=cstring`), wantErr: "failed to parse Grip-Keep-Alive cstring format"},
		{name: "cstring short hex", hs: hdrs(`Grip-Keep-Alive: ka\x4; format=cstring`), wantErr: "failed to parse Grip-Keep-Alive cstring format"},
		{name: "cstring bad hex", hs: hdrs(`Grip-Keep-Alive: ka\xzz; format=cstring`), wantErr: "failed to parse Grip-Keep-Alive cstring format"},
	})
}

func TestGripParseSetMeta(t *testing.T) {
	meta := func(want map[string]string) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) { t.Helper(); eq(t, "Meta", in.Meta, want) }
	}
	runInstructCases(t, []instructCase{
		{name: "absent", hs: hdrs("Grip-Hold: stream"), check: meta(map[string]string{})},
		{name: "pairs", hs: hdrs(`Grip-Set-Meta: user=alice, id_format="%(chan)s,x"`, "Grip-Set-Meta: k = v"),
			check: meta(map[string]string{"user": "alice", "id_format": "%(chan)s,x", "k": "v"})},
		{name: "only first pair of an item", hs: hdrs("Grip-Set-Meta: a=1; b=2"), check: meta(map[string]string{"a": "1"})},
		{name: "last wins", hs: hdrs("Grip-Set-Meta: a=1, a=2"), check: meta(map[string]string{"a": "2"})},
		// Verified on 1.36: accepted.
		{name: "no value", hs: hdrs("Grip-Set-Meta: foo"), check: meta(map[string]string{"foo": ""})},
		{name: "no key", hs: hdrs("Grip-Set-Meta: =x"), check: meta(map[string]string{"": "x"})},
		{name: "trailing comma", hs: hdrs("Grip-Set-Meta: a=1,"), check: meta(map[string]string{"a": "1"})},
		{name: "empty item", hs: hdrs("Grip-Set-Meta: a=1,,b=2"), wantErr: "Grip-Set-Meta cannot be empty"},
		{name: "leading comma", hs: hdrs("Grip-Set-Meta: ,a=1"), wantErr: "Grip-Set-Meta cannot be empty"},
	})
}

func TestGripParseStatus(t *testing.T) {
	status := func(st *Status, code int, reason string) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) {
			t.Helper()
			eq(t, "Status", in.Status, st)
			eq(t, "Response.Code", in.Response.Code, code)
			eq(t, "Response.Reason", in.Response.Reason, reason)
		}
	}
	runInstructCases(t, []instructCase{
		{name: "absent keeps backend status", code: 201, reason: "Made", hs: hdrs("Grip-Hold: stream"), check: status(nil, 201, "Made")},
		{name: "absent fills reason", code: 404, hs: hdrs("Grip-Hold: stream"), check: status(nil, 404, "Not Found")},
		{name: "code only", hs: hdrs("Grip-Status: 203"), check: status(&Status{Code: 203}, 203, "Non-Authoritative Information")},
		{name: "code and reason", hs: hdrs("Grip-Status: 299 Weird  Thing"), check: status(&Status{Code: 299, Reason: "Weird  Thing"}, 299, "Weird  Thing")},
		{name: "undefined reason", hs: hdrs("Grip-Status: 799"), check: status(&Status{Code: 799}, 799, "Undefined Reason")},
		{name: "plus sign", hs: hdrs("Grip-Status: +204"), check: status(&Status{Code: 204}, 204, "No Content")},
		{name: "zero", hs: hdrs("Grip-Status: 0"), check: status(&Status{Code: 0}, 0, "Undefined Reason")},
		{name: "first header", hs: hdrs("Grip-Status: 201", "Grip-Status: 202"), check: status(&Status{Code: 201}, 201, "Created")},
		{name: "empty ignored", code: 200, reason: "OK", hs: hdrs("Grip-Status: "), check: status(nil, 200, "OK")},
		{name: "too big", hs: hdrs("Grip-Status: 1000"), wantErr: "Grip-Status contains invalid status code"},
		{name: "negative", hs: hdrs("Grip-Status: -1"), wantErr: "Grip-Status contains invalid status code"},
		{name: "not a number", hs: hdrs("Grip-Status: abc"), wantErr: "Grip-Status contains invalid status code"},
		{name: "no space", hs: hdrs("Grip-Status: 200OK"), wantErr: "Grip-Status contains invalid status code"},
	})
}

func TestGripParseLink(t *testing.T) {
	links := func(next, gone *Link) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) {
			t.Helper()
			eq(t, "NextLink", in.NextLink, next)
			eq(t, "GoneLink", in.GoneLink, gone)
		}
	}
	next := func(uri string, d time.Duration) *Link { return &Link{URI: uri, Rel: RelNext, Timeout: d} }
	runInstructCases(t, []instructCase{
		{name: "next default timeout", hs: hdrs("Grip-Link: </next?x=1>; rel=next"), check: links(next("/next?x=1", DefaultNextLinkTimeout), nil)},
		{name: "next timeout", hs: hdrs("Grip-Link: <http://h:8080/n>; rel=next; timeout=3"), check: links(next("http://h:8080/n", 3*time.Second), nil)},
		{name: "rel key any case, quoted rel", hs: hdrs(`Grip-Link: <x>;REL="next"`), check: links(next("x", DefaultNextLinkTimeout), nil)},
		{name: "gone", hs: hdrs("Grip-Link: </gone>; rel=gone"), check: links(nil, &Link{URI: "/gone", Rel: RelGone})},
		{name: "both in one header", hs: hdrs("Grip-Link: </n>; rel=next, </g>; rel=gone"),
			check: links(next("/n", DefaultNextLinkTimeout), &Link{URI: "/g", Rel: RelGone})},
		{name: "last next wins", hs: hdrs("Grip-Link: </a>; rel=next", "Grip-Link: </b>; rel=next; timeout=1"), check: links(next("/b", time.Second), nil)},
		{name: "no params ignored", hs: hdrs("Grip-Link: x"), check: links(nil, nil)},
		{name: "no rel ignored", hs: hdrs("Grip-Link: <x>"), check: links(nil, nil)},
		{name: "other rel ignored", hs: hdrs("Grip-Link: x; rel=other"), check: links(nil, nil)},
		{name: "rel value case-sensitive", hs: hdrs("Grip-Link: <x>; rel=Next; timeout=-1"), check: links(nil, nil)},
		// Verified on 1.36: QUrl's tolerant mode accepts these.
		{name: "space escaped", hs: hdrs("Grip-Link: <a b>; rel=next"), check: links(next("a%20b", DefaultNextLinkTimeout), nil)},
		{name: "stray percent escaped", hs: hdrs("Grip-Link: <%zz>; rel=next"), check: links(next("%25zz", DefaultNextLinkTimeout), nil)},
		{name: "network-path reference", hs: hdrs("Grip-Link: <//h/x>; rel=next"), check: links(next("//h/x", DefaultNextLinkTimeout), nil)},
		{name: "scheme single slash", hs: hdrs("Grip-Link: <http:/x>; rel=next"), check: links(next("http:/x", DefaultNextLinkTimeout), nil)},
		{name: "empty brackets", hs: hdrs("Grip-Link: <>; rel=next"), wantErr: "failed to parse Grip-Link value"},
		{name: "no brackets", hs: hdrs("Grip-Link: x; rel=next"), wantErr: "failed to parse Grip-Link value"},
		{name: "gone without brackets", hs: hdrs("Grip-Link: x; rel=gone"), wantErr: "failed to parse Grip-Link value"},
		{name: "comma splits uri", hs: hdrs("Grip-Link: <x, y>; rel=next"), wantErr: "failed to parse Grip-Link value"},
		{name: "bad ipv6", hs: hdrs("Grip-Link: <http://[x>; rel=next"), wantErr: "Grip-Link contains invalid link"},
		{name: "bad port", hs: hdrs("Grip-Link: <http://a:b/>; rel=next"), wantErr: "Grip-Link contains invalid link"},
		{name: "port too big", hs: hdrs("Grip-Link: <http://h:99999/>; rel=next"), wantErr: "Grip-Link contains invalid link"},
		{name: "empty scheme", hs: hdrs("Grip-Link: <:x>; rel=next"), wantErr: "Grip-Link contains invalid link"},
		{name: "digit scheme", hs: hdrs("Grip-Link: <1:x>; rel=next"), wantErr: "Grip-Link contains invalid link"},
		{name: "bad timeout", hs: hdrs("Grip-Link: <x>; rel=next; timeout=a"), wantErr: "failed to parse Grip-Link timeout value"},
		{name: "negative timeout", hs: hdrs("Grip-Link: <x>; foo; rel=next; timeout=-2"), wantErr: "Grip-Link timeout has invalid value"},
	})
}

func TestGripParseResponseHeaders(t *testing.T) {
	names := func(want ...string) func(t *testing.T, in *Instruct) {
		return func(t *testing.T, in *Instruct) {
			t.Helper()
			var got []string
			for _, h := range in.Response.Headers {
				got = append(got, h.Name+": "+h.Value)
			}
			eq(t, "headers", got, want)
		}
	}
	runInstructCases(t, []instructCase{
		// Verified on 1.36: only these four hop headers go; Upgrade, TE,
		// Trailer and Proxy-Connection are relayed.
		{name: "grip and hop headers dropped",
			hs:    hdrs("Grip-Foo: z", "X-C: 3", "Connection: foo", "keep-alive: 5", "Content-Encoding: gzip", "Transfer-Encoding: chunked", "Content-Length: 3", "Upgrade: x", "TE: x", "Trailer: x"),
			check: names("X-C: 3", "Upgrade: x", "TE: x", "Trailer: x")},
		{name: "expose whitelist", hs: hdrs("Grip-Expose-Headers: x-a, X-B", "X-A: 1", "X-B: 2", "X-C: 3", "Grip-Foo: z"),
			check: func(t *testing.T, in *Instruct) {
				names("X-A: 1", "X-B: 2")(t, in)
				eq(t, "ExposeHeaders", in.ExposeHeaders, []string{"x-a", "X-B"})
			}},
		{name: "expose never keeps grip headers", hs: hdrs("Grip-Expose-Headers: Grip-Foo", "Grip-Foo: z"), check: names()},
		{name: "body kept", hs: hdrs("Grip-Hold: stream"), body: "hi\n", check: func(t *testing.T, in *Instruct) { eq(t, "body", string(in.Response.Body), "hi\n") }},
	})
}

func TestGripParseJSON(t *testing.T) {
	ct := "Content-Type: application/grip-instruct"
	runInstructCases(t, []instructCase{
		{name: "full", hs: hdrs(ct, "Grip-Channel: h", "X-Dropped: 1"),
			body: `{"hold":{"mode":"stream","channels":[{"name":"i1","prev-id":"p","filters":["skip-self"]},{"name":"i2"}],"timeout":6,` +
				`"keep-alive":{"content":"ka\n","timeout":3},"meta":{"user":"alice"}},` +
				`"response":{"code":202,"headers":{"X-J":"1"},"body":"instruct timeout\n"}}`,
			opts: ParseOptions{ChannelPrefix: "p:"},
			check: func(t *testing.T, in *Instruct) {
				eq(t, "JSON", in.JSON, true)
				eq(t, "Hold", in.Hold, HoldStream)
				eq(t, "Channels", in.Channels, []Channel{
					{Name: "p:h", BackendName: "h"},
					{Name: "p:i1", BackendName: "i1", PrevID: "p", Filters: []string{"skip-self"}},
					{Name: "p:i2", BackendName: "i2"},
				})
				eq(t, "Timeout", in.Timeout, 6*time.Second)
				eq(t, "KeepAlive", in.KeepAlive, &KeepAlive{Data: []byte("ka\n"), Timeout: 3 * time.Second, Mode: KeepAliveInterval})
				eq(t, "Meta", in.Meta, map[string]string{"user": "alice"})
				eq(t, "Response", in.Response, Response{Code: 202, Reason: "Accepted", Headers: []Header{{"X-J", "1"}}, Body: []byte("instruct timeout\n")})
			}},
		{name: "hold defaults to response", hs: hdrs(ct), body: `{"hold":{"channels":[]}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "Hold", in.Hold, HoldResponse) }},
		{name: "no hold keeps header hold", hs: hdrs(ct, "Grip-Hold: stream"), body: `{}`,
			check: func(t *testing.T, in *Instruct) {
				eq(t, "Hold", in.Hold, HoldStream)
				eq(t, "Response", in.Response, Response{Code: 200, Reason: "OK"})
			}},
		{name: "header keep-alive mode and data survive", hs: hdrs(ct, "Grip-Keep-Alive: hk; mode=idle; timeout=9"),
			body: `{"hold":{"channels":[],"keep-alive":{}}}`,
			check: func(t *testing.T, in *Instruct) {
				eq(t, "KeepAlive", in.KeepAlive, &KeepAlive{Data: []byte("hk"), Timeout: DefaultKeepAliveTimeout, Mode: KeepAliveIdle})
			}},
		{name: "keep-alive content-bin wins", hs: hdrs(ct), body: `{"hold":{"channels":[],"keep-alive":{"content-bin":"aGk=","content":"x","timeout":0}}}`,
			check: func(t *testing.T, in *Instruct) {
				eq(t, "KeepAlive", in.KeepAlive, &KeepAlive{Data: []byte("hi"), Timeout: MinKeepAliveTimeout, Mode: KeepAliveInterval})
			}},
		// Verified on 1.36: a string converts to 0, then the minimum applies.
		{name: "timeout string", hs: hdrs(ct), body: `{"hold":{"channels":[],"timeout":"x"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "Timeout", in.Timeout, MinTimeout) }},
		{name: "meta merges with header", hs: hdrs(ct, "Grip-Set-Meta: a=1, b=2"), body: `{"hold":{"channels":[],"meta":{"b":"3"}}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "Meta", in.Meta, map[string]string{"a": "1", "b": "3"}) }},
		{name: "json filters unlimited", hs: hdrs(ct), opts: ParseOptions{MaxFiltersPerChannel: FilterMax141},
			body:  `{"hold":{"channels":[{"name":"a","filters":["1","2","3","4","5","6"]}]}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "filters", len(in.Channels[0].Filters), 6) }},
		{name: "grip-status then json reason", hs: hdrs(ct, "Grip-Status: 203 Hey"), body: `{"response":{"reason":"Yo","body":"b"}}`,
			check: func(t *testing.T, in *Instruct) {
				eq(t, "code", in.Response.Code, 203)
				eq(t, "reason", in.Response.Reason, "Yo")
			}},
		{name: "grip-status kept without json code", hs: hdrs(ct, "Grip-Status: 203 Hey"), body: `{"response":{"body":"b"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "reason", in.Response.Reason, "Hey") }},
		{name: "json code resets reason", hs: hdrs(ct, "Grip-Status: 203 Hey"), body: `{"response":{"code":204,"body":"b"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "reason", in.Response.Reason, "No Content") }},
		{name: "backend reason kept", reason: "Fine", hs: hdrs(ct), body: `{"response":{"reason":"","body":"b"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "reason", in.Response.Reason, "Fine") }},
		{name: "code conversions", hs: hdrs(ct), body: `{"response":{"code":" +201 "}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 201) }},
		{name: "code rounds half up", hs: hdrs(ct), body: `{"response":{"code":201.5}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 202) }},
		{name: "code truncates to 32 bits", hs: hdrs(ct), body: `{"response":{"code":4294967497}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 201) }},
		{name: "code string truncates to 32 bits", hs: hdrs(ct), body: `{"response":{"code":"4294967497"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 201) }},
		{name: "code bad string is 0", hs: hdrs(ct), body: `{"response":{"code":"x"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 0) }},
		{name: "code bool", hs: hdrs(ct), body: `{"response":{"code":true}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 1) }},
		// Verified on 1.36: JSON response headers keep Grip-* names but lose
		// the hop headers.
		{name: "json headers", hs: hdrs(ct), body: `{"response":{"headers":[["Grip-Foo","1"],["Connection","x"],["Content-Length","55"],["X-A","2"]],"body":"b"}}`,
			check: func(t *testing.T, in *Instruct) {
				eq(t, "headers", in.Response.Headers, []Header{{"Grip-Foo", "1"}, {"X-A", "2"}})
			}},
		{name: "json header object sorted", hs: hdrs(ct), body: `{"response":{"headers":{"b":"2","a":"1"}}}`,
			check: func(t *testing.T, in *Instruct) {
				eq(t, "headers", in.Response.Headers, []Header{{"a", "1"}, {"b", "2"}})
			}},
		{name: "body-bin wins and is lenient", hs: hdrs(ct), body: `{"response":{"body-bin":"!!!aGk=","body":"x"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "body", string(in.Response.Body), "hi") }},
		{name: "content-type params", hs: hdrs("Content-Type: application/grip-instruct; charset=utf-8"), body: `{"response":{"body":"j"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "body", string(in.Response.Body), "j") }},
		{name: "other content type not json", hs: hdrs("Content-Type: Application/Grip-Instruct", "Grip-Hold: stream"), body: `{`,
			check: func(t *testing.T, in *Instruct) { eq(t, "JSON", in.JSON, false) }},

		{name: "code not 200", code: 201, hs: hdrs(ct), body: `{}`, wantErr: "response code for application/grip-instruct content must be 200"},
		{name: "grip-status does not count", hs: hdrs(ct, "Grip-Status: 203"), body: `{"response":{"body":"b"}}`,
			check: func(t *testing.T, in *Instruct) { eq(t, "code", in.Response.Code, 203) }},
		{name: "not json", hs: hdrs(ct), body: `x`, wantErr: "failed to parse application/grip-instruct content as JSON"},
		{name: "scalar json", hs: hdrs(ct), body: `5`, wantErr: "failed to parse application/grip-instruct content as JSON"},
		{name: "null json", hs: hdrs(ct), body: `null`, wantErr: "failed to parse application/grip-instruct content as JSON"},
		{name: "trailing garbage", hs: hdrs(ct), body: `{} x`, wantErr: "failed to parse application/grip-instruct content as JSON"},
		{name: "invalid utf-8", hs: hdrs(ct), body: "{\"response\":{\"body\":\"\xff\"}}", wantErr: "failed to parse application/grip-instruct content as JSON"},
		{name: "array", hs: hdrs(ct), body: `[]`, wantErr: "instruct must be an object"},
		{name: "hold wrong type", hs: hdrs(ct), body: `{"hold":5}`, wantErr: "instruct contains 'hold' with wrong type"},
		{name: "hold null", hs: hdrs(ct), body: `{"hold":null}`, wantErr: "instruct contains 'hold' with wrong type"},
		{name: "no channels", hs: hdrs(ct), body: `{"hold":{}}`, wantErr: "hold does not contain 'channels'"},
		{name: "mode null", hs: hdrs(ct), body: `{"hold":{"mode":null,"channels":[]}}`, wantErr: "hold contains 'mode' with wrong type"},
		{name: "bad mode", hs: hdrs(ct), body: `{"hold":{"mode":"foo","channels":[]}}`, wantErr: "hold 'mode' must be set to either 'response' or 'stream'"},
		{name: "mode before channels", hs: hdrs(ct), body: `{"hold":{"mode":"foo"}}`, wantErr: "hold 'mode' must be set to either 'response' or 'stream'"},
		{name: "channels wrong type", hs: hdrs(ct), body: `{"hold":{"channels":5}}`, wantErr: "hold contains 'channels' with wrong type"},
		{name: "channel not object", hs: hdrs(ct), body: `{"hold":{"channels":[5]}}`, wantErr: "channel is not an object"},
		{name: "channel no name", hs: hdrs(ct), body: `{"hold":{"channels":[{}]}}`, wantErr: "channel does not contain 'name'"},
		{name: "channel name type", hs: hdrs(ct), body: `{"hold":{"channels":[{"name":5}]}}`, wantErr: "channel contains 'name' with wrong type"},
		{name: "channel name null", hs: hdrs(ct), body: `{"hold":{"channels":[{"name":null}]}}`, wantErr: "channel contains 'name' with wrong type"},
		{name: "prev-id type", hs: hdrs(ct), body: `{"hold":{"channels":[{"name":"a","prev-id":5}]}}`, wantErr: "channel contains 'prev-id' with wrong type"},
		{name: "filters type", hs: hdrs(ct), body: `{"hold":{"channels":[{"name":"a","filters":5}]}}`, wantErr: "channel contains 'filters' with wrong type"},
		{name: "filter element type", hs: hdrs(ct), body: `{"hold":{"channels":[{"name":"a","filters":[5]}]}}`, wantErr: "filters contains value with wrong type"},
		{name: "timeout list", hs: hdrs(ct), body: `{"hold":{"channels":[],"timeout":[]}}`, wantErr: "hold contains 'timeout' with wrong type"},
		{name: "timeout null", hs: hdrs(ct), body: `{"hold":{"channels":[],"timeout":null}}`, wantErr: "hold contains 'timeout' with wrong type"},
		{name: "timeout negative", hs: hdrs(ct), body: `{"hold":{"channels":[],"timeout":-1}}`, wantErr: "hold contains 'timeout' with invalid value"},
		{name: "keep-alive type", hs: hdrs(ct), body: `{"hold":{"channels":[],"keep-alive":5}}`, wantErr: "hold contains 'keep-alive' with wrong type"},
		{name: "keep-alive content type", hs: hdrs(ct), body: `{"hold":{"channels":[],"keep-alive":{"content":5}}}`, wantErr: "keep-alive contains 'content' with wrong type"},
		{name: "keep-alive content-bin type", hs: hdrs(ct), body: `{"hold":{"channels":[],"keep-alive":{"content-bin":5}}}`, wantErr: "keep-alive contains 'content-bin' with wrong type"},
		{name: "keep-alive timeout null", hs: hdrs(ct), body: `{"hold":{"channels":[],"keep-alive":{"timeout":null}}}`, wantErr: "keep-alive contains 'timeout' with wrong type"},
		{name: "keep-alive timeout negative", hs: hdrs(ct), body: `{"hold":{"channels":[],"keep-alive":{"timeout":-3}}}`, wantErr: "keep-alive contains 'timeout' with invalid value"},
		{name: "meta type", hs: hdrs(ct), body: `{"hold":{"channels":[],"meta":5}}`, wantErr: "hold contains 'meta' with wrong type"},
		{name: "meta value type", hs: hdrs(ct), body: `{"hold":{"channels":[],"meta":{"a":5}}}`, wantErr: "'meta' contains 'a' with wrong type"},
		{name: "response not object", hs: hdrs(ct), body: `{"response":5}`, wantErr: errEmpty},
		{name: "response code null", hs: hdrs(ct), body: `{"response":{"code":null}}`, wantErr: "response contains 'code' with wrong type"},
		{name: "response code big", hs: hdrs(ct), body: `{"response":{"code":1000}}`, wantErr: "response contains 'code' with invalid value"},
		{name: "response reason type", hs: hdrs(ct), body: `{"response":{"reason":5}}`, wantErr: "response contains 'reason' with wrong type"},
		{name: "response headers type", hs: hdrs(ct), body: `{"response":{"headers":5}}`, wantErr: "response contains 'headers' with wrong type"},
		{name: "headers element type", hs: hdrs(ct), body: `{"response":{"headers":[5]}}`, wantErr: "headers contains element with wrong type"},
		{name: "headers pair size", hs: hdrs(ct), body: `{"response":{"headers":[["a"]]}}`, wantErr: "headers contains list with wrong number of elements"},
		{name: "header name type", hs: hdrs(ct), body: `{"response":{"headers":[[1,"b"]]}}`, wantErr: "header contains name element with wrong type"},
		{name: "header value type", hs: hdrs(ct), body: `{"response":{"headers":[["a",1]]}}`, wantErr: "header contains value element with wrong type"},
		{name: "header object value type", hs: hdrs(ct), body: `{"response":{"headers":{"a":5}}}`, wantErr: "headers contains 'a' with wrong type"},
		{name: "body type", hs: hdrs(ct), body: `{"response":{"body":5}}`, wantErr: "response contains 'body' with wrong type"},
		{name: "body-bin type", hs: hdrs(ct), body: `{"response":{"body-bin":5}}`, wantErr: "response contains 'body-bin' with wrong type"},
		{name: "header errors first", hs: hdrs(ct, "Grip-Hold: x"), body: `x`, wantErr: "Grip-Hold must be set to either 'response' or 'stream'"},
	})
}
