package zhttp

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"tack/pkg/tnetstring"
)

type kv = tnetstring.Field

func fl(key string, value any) kv { return kv{Key: key, Value: value} }

// raw encodes d with the T prefix.
func raw(d ...kv) []byte { return append([]byte("T"), tnetstring.MustEncode(tnetstring.Dict(d))...) }

var idX = kv{Key: "id", Value: "x"}

func idList(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = tnetstring.Dict{{Key: "id", Value: fmt.Sprintf("0-0-%x", i)}, {Key: "seq", Value: i}}
	}
	return l
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    func(p *Packet) // applied to New() with ID "x"
		wantErr string          // substring; "" = must succeed
	}{
		{"minimal", raw(idX), func(p *Packet) {}, ""},
		{"from id seq", raw(fl("from", "condure"), idX, fl("seq", 3)), func(p *Packet) {
			p.From, p.Seq = []byte("condure"), 3
		}, ""},
		{"every common field", raw(idX, fl("type", "credit"), fl("credits", 0), fl("more", true),
			fl("ext", tnetstring.Dict{{Key: "multi", Value: true}, {Key: "quiet", Value: true}}),
			fl("user-data", tnetstring.Dict{{Key: "k", Value: "v"}})),
			func(p *Packet) {
				p.Type, p.Credits, p.More, p.Multi, p.ExtQuiet = TypeCredit, 0, true, true, true
				p.UserData = tnetstring.Dict{{Key: "k", Value: []byte("v")}}
			}, ""},
		{"every request field", raw(idX, fl("method", "POST"), fl("uri", "https://h/p?q"),
			fl("headers", []any{[]string{"A", "1"}, []string{"a", "2"}}), fl("body", "b"),
			fl("stream", true), fl("router-resp", true), fl("max-size", 1000000), fl("timeout", 5000),
			fl("peer-address", "::1"), fl("peer-port", 40000), fl("connect-host", "127.0.0.1"),
			fl("connect-port", 8080), fl("ignore-policies", true), fl("trust-connect-host", true),
			fl("ignore-tls-errors", true), fl("follow-redirects", true),
			fl("passthrough", tnetstring.Dict{{Key: "route", Value: "r"}})),
			func(p *Packet) {
				p.Method, p.URI, p.Body = "POST", "https://h/p?q", []byte("b")
				p.Headers, p.HasHeaders = []Header{{"A", "1"}, {"a", "2"}}, true
				p.Stream, p.RouterResp, p.MaxSize, p.Timeout = true, true, 1000000, 5000
				p.PeerAddress, p.PeerPort, p.ConnectHost, p.ConnectPort = "::1", 40000, "127.0.0.1", 8080
				p.IgnorePolicies, p.TrustConnectHost, p.IgnoreTLSErrors, p.FollowRedirects = true, true, true, true
				p.Passthrough = tnetstring.Dict{{Key: "route", Value: []byte("r")}}
			}, ""},
		{"response fields", raw(idX, fl("code", 200), fl("reason", "OK"), fl("headers", []any{}), fl("body", "")),
			func(p *Packet) {
				p.Code, p.Reason, p.HasHeaders, p.Body = 200, "OK", true, []byte{}
			}, ""},
		{"data with code but no headers reads as having headers", raw(idX, fl("code", 101)),
			func(p *Packet) { p.Code, p.HasHeaders = 101, true }, ""},
		{"error with code keeps headers absent", raw(idX, fl("type", "error"), fl("condition", "rejected"), fl("code", 403)),
			func(p *Packet) { p.Type, p.Condition, p.Code = TypeError, CondRejected, 403 }, ""},
		{"websocket message", raw(idX, fl("content-type", "binary"), fl("body", "\x00\xff")),
			func(p *Packet) { p.ContentType, p.Body = "binary", []byte("\x00\xff") }, ""},
		{"websocket close", raw(idX, fl("type", "close"), fl("code", 1000), fl("body", "bye")),
			func(p *Packet) { p.Type, p.Code, p.Body = TypeClose, 1000, []byte("bye") }, ""},
		{"explicit empty type is data", raw(idX, fl("type", "")), func(p *Packet) {}, ""},
		{"false flags", raw(idX, fl("more", false), fl("stream", false)), func(p *Packet) {}, ""},
		{"empty ext", raw(idX, fl("ext", tnetstring.Dict{})), func(p *Packet) {}, ""},
		{"null user-data reads as absent", raw(idX, fl("user-data", nil)), func(p *Packet) {}, ""},
		{"user-data of any type", raw(idX, fl("user-data", []any{1, 2.5, "s"})), func(p *Packet) {
			p.UserData = []any{int64(1), 2.5, []byte("s")}
		}, ""},
		{"last duplicate wins", raw(idX, fl("seq", 1), fl("seq", 2), fl("from", "a"), fl("from", "b")),
			func(p *Packet) { p.Seq, p.From = 2, []byte("b") }, ""},

		// Leniency of the C++ decoders (zmq-wire.md §1.1, §2.14).
		{"ints as digit strings", raw(idX, fl("seq", "7"), fl("credits", "8192"), fl("code", "200"),
			fl("max-size", "10"), fl("timeout", "20"), fl("connect-port", "443")),
			func(p *Packet) {
				p.Seq, p.Credits, p.Code, p.HasHeaders, p.MaxSize, p.Timeout, p.ConnectPort = 7, 8192, 200, true, 10, 20, 443
			}, ""},
		{"peer-port as bytes (C++ encoder)", raw(idX, fl("peer-address", "127.0.0.1"), fl("peer-port", "33144")),
			func(p *Packet) { p.PeerAddress, p.PeerPort = "127.0.0.1", 33144 }, ""},
		{"unknown fields ignored", raw(idX, fl("client-cert", "c"), fl("backend-data", 1), fl("old-from", []any{}),
			fl("x-future", tnetstring.Dict{}), fl("", nil)), func(p *Packet) {}, ""},
		{"ext.multi not a bool reads as false (C++)", raw(idX, fl("ext", tnetstring.Dict{{Key: "multi", Value: "true"}})),
			func(p *Packet) {}, ""},
		{"more than 64 headers accepted (C++)", raw(idX, fl("headers", func() []any {
			h := make([]any, 65)
			for i := range h {
				h[i] = []string{"X", "y"}
			}
			return h
		}())), func(p *Packet) {
			p.HasHeaders = true
			for i := 0; i < 65; i++ {
				p.Headers = append(p.Headers, Header{"X", "y"})
			}
		}, ""},

		// List-form ids (§2.2).
		{"list-form ids", raw(fl("id", idList(2)), fl("type", "keep-alive")), func(p *Packet) {
			p.ID, p.Type = nil, TypeKeepAlive
			p.IDs = []IDSeq{{[]byte("0-0-0"), 0}, {[]byte("0-0-1"), 1}}
		}, ""},
		{"128 ids", raw(fl("id", idList(128))), func(p *Packet) {
			p.ID = nil
			for i := 0; i < 128; i++ {
				p.IDs = append(p.IDs, IDSeq{[]byte(fmt.Sprintf("0-0-%x", i)), int64(i)})
			}
		}, ""},
		{"list entry without seq", raw(fl("id", []any{tnetstring.Dict{{Key: "id", Value: "a"}}})), func(p *Packet) {
			p.ID, p.IDs = nil, []IDSeq{{[]byte("a"), -1}}
		}, ""},
		{"list entry seq as digits", raw(fl("id", []any{tnetstring.Dict{{Key: "id", Value: "a"}, {Key: "seq", Value: "4"}}})),
			func(p *Packet) { p.ID, p.IDs = nil, []IDSeq{{[]byte("a"), 4}} }, ""},
		{"top-level seq beside list goes to the first entry (C++)",
			raw(fl("seq", 9), fl("id", []any{tnetstring.Dict{{Key: "id", Value: "a"}}, tnetstring.Dict{{Key: "id", Value: "b"}}})),
			func(p *Packet) { p.ID, p.IDs = nil, []IDSeq{{[]byte("a"), 9}, {[]byte("b"), -1}} }, ""},
		{"duplicate id: bytes after list", raw(fl("id", idList(1)), idX), func(p *Packet) {}, ""},
		{"duplicate id: list after bytes", raw(idX, fl("id", idList(1))), func(p *Packet) {
			p.ID, p.IDs = nil, []IDSeq{{[]byte("0-0-0"), 0}}
		}, ""},
		{"129 ids", raw(fl("id", idList(129))), nil, "129 entries"},
		{"empty id list", raw(fl("id", []any{})), nil, "0 entries"},
		{"id list entry not a dict", raw(fl("id", []any{"a"})), nil, "list-form id entry"},
		{"id list entry without id", raw(fl("id", []any{tnetstring.Dict{{Key: "seq", Value: 1}}})), nil, "without id"},
		{"id list entry id not bytes", raw(fl("id", []any{tnetstring.Dict{{Key: "id", Value: 1}}})), nil, "without id"},
		{"id list entry negative seq", raw(fl("id", []any{tnetstring.Dict{{Key: "id", Value: "a"}, {Key: "seq", Value: -1}}})), nil, "negative"},
		{"id list entry seq not int", raw(fl("id", []any{tnetstring.Dict{{Key: "id", Value: "a"}, {Key: "seq", Value: true}}})), nil, "must be int"},

		// Rejections.
		{"empty input", []byte{}, nil, "missing T prefix"},
		{"missing T prefix", tnetstring.MustEncode(tnetstring.Dict{idX}), nil, "missing T prefix"},
		{"JSON prefix", []byte(`J{"id":"x"}`), nil, "missing T prefix"},
		{"lower-case t", append([]byte("t"), tnetstring.MustEncode(tnetstring.Dict{idX})...), nil, "missing T prefix"},
		{"T only", []byte("T"), nil, "truncated"},
		{"truncated", []byte("T20:2:id,1:x,}"), nil, "truncated"},
		{"trailing bytes", append(raw(idX), 'x'), nil, "trailing"},
		{"not a dict", []byte("T0:]"), nil, "not a dictionary"},
		{"missing id", raw(fl("from", "a")), nil, "missing id"},
		{"id not bytes", raw(fl("id", 1)), nil, `"id" must be bytes or list`},
		{"unknown type", raw(idX, fl("type", "bogus")), nil, `unknown type "bogus"`},
		{"type not bytes", raw(idX, fl("type", 1)), nil, `"type" must be bytes`},
		{"from not bytes", raw(fl("from", 1), idX), nil, `"from" must be bytes`},
		{"method not bytes", raw(idX, fl("method", []any{})), nil, `"method" must be bytes`},
		{"uri not bytes", raw(idX, fl("uri", nil)), nil, `"uri" must be bytes`},
		{"reason not bytes", raw(idX, fl("reason", 1)), nil, `"reason" must be bytes`},
		{"condition not bytes", raw(idX, fl("condition", true)), nil, `"condition" must be bytes`},
		{"body not bytes", raw(idX, fl("body", 1)), nil, `"body" must be bytes`},
		{"content-type not bytes", raw(idX, fl("content-type", 1)), nil, `"content-type" must be bytes`},
		{"peer-address not bytes", raw(idX, fl("peer-address", 1)), nil, `"peer-address" must be bytes`},
		{"connect-host not bytes", raw(idX, fl("connect-host", 1)), nil, `"connect-host" must be bytes`},
		{"seq not a number", raw(idX, fl("seq", "x")), nil, `"seq" must be int`},
		{"seq bool", raw(idX, fl("seq", true)), nil, `"seq" must be int`},
		{"seq float", raw(idX, fl("seq", 1.0)), nil, `"seq" must be int`},
		{"negative seq", raw(idX, fl("seq", -1)), nil, `"seq" must not be negative`},
		{"negative seq string", raw(idX, fl("seq", "-5")), nil, `"seq" must not be negative`},
		{"negative credits", raw(idX, fl("credits", -1)), nil, `"credits" must not be negative`},
		{"negative code", raw(idX, fl("code", -200)), nil, `"code" must not be negative`},
		{"negative peer-port", raw(idX, fl("peer-port", "-1")), nil, `"peer-port" must not be negative`},
		{"negative connect-port", raw(idX, fl("connect-port", -1)), nil, `"connect-port" must not be negative`},
		{"negative max-size", raw(idX, fl("max-size", -1)), nil, `"max-size" must not be negative`},
		{"negative timeout", raw(idX, fl("timeout", -1)), nil, `"timeout" must not be negative`},
		{"credits not int", raw(idX, fl("credits", []any{})), nil, `"credits" must be int`},
		{"peer-port junk", raw(idX, fl("peer-port", "80x")), nil, `"peer-port" must be int`},
		{"more not bool", raw(idX, fl("more", 1)), nil, `"more" must be bool`},
		{"more as bytes", raw(idX, fl("more", "true")), nil, `"more" must be bool`},
		{"stream not bool", raw(idX, fl("stream", "true")), nil, `"stream" must be bool`},
		{"router-resp not bool", raw(idX, fl("router-resp", 1)), nil, `"router-resp" must be bool`},
		{"ignore-policies not bool", raw(idX, fl("ignore-policies", 1)), nil, `"ignore-policies" must be bool`},
		{"trust-connect-host not bool", raw(idX, fl("trust-connect-host", 1)), nil, `"trust-connect-host" must be bool`},
		{"ignore-tls-errors not bool", raw(idX, fl("ignore-tls-errors", 1)), nil, `"ignore-tls-errors" must be bool`},
		{"follow-redirects not bool", raw(idX, fl("follow-redirects", 1)), nil, `"follow-redirects" must be bool`},
		{"ext not dict", raw(idX, fl("ext", []any{})), nil, `"ext" must be dict`},
		{"headers not a list", raw(idX, fl("headers", tnetstring.Dict{})), nil, "headers must be a list"},
		{"header not a list", raw(idX, fl("headers", []any{"Host: x"})), nil, "[name, value] pair"},
		{"header with one element", raw(idX, fl("headers", []any{[]string{"Host"}})), nil, "[name, value] pair"},
		{"header with three elements", raw(idX, fl("headers", []any{[]string{"A", "b", "c"}})), nil, "[name, value] pair"},
		{"header name not bytes", raw(idX, fl("headers", []any{[]any{1, "b"}})), nil, "must be bytes"},
		{"header value not bytes", raw(idX, fl("headers", []any{[]any{"a", nil}})), nil, "must be bytes"},
	}
	// Every packet type of §2.5.
	for _, typ := range []string{TypeError, TypeCredit, TypeKeepAlive, TypeCancel, TypeHandoffStart,
		TypeHandoffProceed, TypeClose, TypePing, TypePong} {
		typ := typ
		tests = append(tests, struct {
			name    string
			in      []byte
			want    func(p *Packet)
			wantErr string
		}{"type " + typ, raw(idX, fl("type", typ)), func(p *Packet) { p.Type = typ }, ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error %q", tt.in, got, tt.wantErr)
				}
				if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) err = %v, want ErrFormat containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			want := New()
			want.ID = []byte("x")
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", tt.in, got, want)
			}
			// Whatever parses must survive a round trip.
			again, err := Parse(got.Encode())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip: %+v, %v", again, err)
			}
		})
	}
}

// keys lists the top-level keys of an encoded packet in order.
func keys(t *testing.T, b []byte) []string {
	t.Helper()
	d, err := tnetstring.DecodeDict(b[1:])
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, f := range d {
		ks = append(ks, f.Key)
	}
	return ks
}

func TestEncodeFieldPresence(t *testing.T) {
	tests := []struct {
		name string
		p    func(p *Packet)
		want string // comma-separated keys in order
	}{
		{"minimal", func(p *Packet) {}, "id"},
		{"empty from is written", func(p *Packet) { p.From = []byte{} }, "from,id"},
		{"zero seq is written", func(p *Packet) { p.Seq = 0 }, "id,seq"},
		{"data with code always has reason and headers", func(p *Packet) { p.Code = 200 }, "id,code,reason,headers"},
		{"websocket accept", func(p *Packet) { p.Code, p.Reason, p.Credits = 101, "Switching Protocols", 200000 },
			"id,code,reason,headers,credits"},
		{"close with code has neither", func(p *Packet) { p.Type, p.Code = TypeClose, 4000 }, "id,type,code"},
		{"error rejected keeps what it has", func(p *Packet) {
			p.Type, p.Condition, p.Code, p.Body = TypeError, CondRejected, 200, []byte("b")
		}, "id,type,condition,code,body"},
		{"reason without code", func(p *Packet) { p.Reason = "OK" }, "id,reason"},
		{"empty headers present on the wire", func(p *Packet) { p.HasHeaders = true }, "id,headers"},
		{"headers without HasHeaders", func(p *Packet) { p.Headers = []Header{{"A", "b"}} }, "id,headers"},
		{"false flags omitted", func(p *Packet) {
			p.More, p.Stream, p.RouterResp, p.IgnorePolicies, p.TrustConnectHost, p.IgnoreTLSErrors, p.FollowRedirects,
				p.Multi, p.ExtQuiet = false, false, false, false, false, false, false, false, false
		}, "id"},
		{"true flags", func(p *Packet) {
			p.More, p.Stream, p.RouterResp, p.IgnorePolicies, p.TrustConnectHost, p.IgnoreTLSErrors, p.FollowRedirects = true, true, true, true, true, true, true
		}, "id,more,stream,router-resp,ignore-policies,trust-connect-host,ignore-tls-errors,follow-redirects"},
		{"ext.multi", func(p *Packet) { p.Multi = true }, "id,ext"},
		{"nil body omitted, empty body written", func(p *Packet) { p.Body = []byte{} }, "id,body"},
		{"zero credits written", func(p *Packet) { p.Credits = 0 }, "id,credits"},
		{"peer-port without peer-address", func(p *Packet) { p.PeerPort = 1 }, "id,peer-port"},
		{"request", func(p *Packet) {
			p.From, p.Seq, p.Multi, p.Method, p.URI, p.HasHeaders, p.Credits, p.Stream = []byte("c"), 0, true, "GET", "http://x/", true, 8192, true
			p.PeerAddress, p.PeerPort, p.MaxSize, p.Timeout, p.ConnectHost, p.ConnectPort = "1.2.3.4", 5, 6, 7, "h", 8
			p.UserData, p.Passthrough = []byte("u"), []byte("p")
		}, "from,id,seq,ext,method,uri,headers,credits,stream,max-size,timeout,peer-address,peer-port,connect-host,connect-port,passthrough,user-data"},
		{"list-form ids have no top-level seq", func(p *Packet) {
			p.ID, p.IDs, p.Type, p.Seq = nil, []IDSeq{{[]byte("a"), 1}}, TypeKeepAlive, 5
		}, "id,type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New()
			p.ID = []byte("x")
			tt.p(p)
			if got := strings.Join(keys(t, p.Encode()), ","); got != tt.want {
				t.Fatalf("keys = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestEncodeExact(t *testing.T) {
	t.Run("extMulti", func(t *testing.T) {
		p := New()
		p.ID, p.Multi, p.ExtQuiet = []byte("x"), true, true
		want := "T49:2:id,1:x,3:ext,30:5:multi,4:true!5:quiet,4:true!}}"
		if got := string(p.Encode()); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("list-form ids", func(t *testing.T) {
		p := New()
		p.From, p.Multi, p.Type = []byte("condure"), true, TypeKeepAlive
		p.IDs = []IDSeq{{[]byte("1-0-0"), 2}, {[]byte("1-1-1"), 2}}
		// §2.8, captured from condure.
		want := "T126:4:from,7:condure,2:id,54:23:2:id,5:1-0-0,3:seq,1:2#}23:2:id,5:1-1-1,3:seq,1:2#}]3:ext,15:5:multi,4:true!}4:type,10:keep-alive,}"
		if got := string(p.Encode()); got != want {
			t.Fatalf("got  %q\nwant %q", got, want)
		}
	})
	t.Run("list entry without seq omits it", func(t *testing.T) {
		p := New()
		p.IDs, p.Type = []IDSeq{{[]byte("a"), -1}}, TypeCancel
		want := "T37:2:id,12:9:2:id,1:a,}]4:type,6:cancel,}"
		if got := string(p.Encode()); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
	t.Run("response as the A.1 fake proxy wrote it", func(t *testing.T) {
		p := New()
		p.From, p.ID, p.Seq, p.Code, p.Reason = []byte("proxy_test"), []byte("1-2-b"), 0, 200, "OK"
		p.Headers, p.Body, p.More = []Header{{"Content-Type", "text/plain"}}, []byte("hello\n"), true
		want := "condure T149:4:from,10:proxy_test,2:id,5:1-2-b,3:seq,1:0#4:code,3:200#6:reason,2:OK,7:headers,34:30:12:Content-Type,10:text/plain,]]4:body,6:hello\n,4:more,4:true!}"
		if got := string(PubFrame([]byte("condure"), p)); got != want {
			t.Fatalf("got  %q\nwant %q", got, want)
		}
	})
}

func TestEncodeAppend(t *testing.T) {
	p := New()
	p.ID = []byte("x")
	got := p.Append([]byte("prefix "))
	if string(got) != "prefix "+string(p.Encode()) {
		t.Fatalf("Append = %q", got)
	}
}

func TestEncodeUnsupportedUserDataPanics(t *testing.T) {
	// Only a programming error reaches this: decoded values always encode.
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	p := New()
	p.ID, p.UserData = []byte("x"), struct{}{}
	p.Encode()
}

func TestPubFrame(t *testing.T) {
	p := New()
	p.ID, p.Type = []byte("1"), TypeCancel
	f := PubFrame([]byte("condure"), p)
	if !bytes.HasPrefix(f, []byte("condure T")) || !bytes.Equal(f[len("condure "):], p.Encode()) {
		t.Fatalf("PubFrame = %q", f)
	}
}

func TestPubFrameSplit(t *testing.T) {
	tests := []struct {
		name, in, dest, pkt string
		wantErr             bool
	}{
		{"zhttp", "condure T0:}", "condure", "T0:}", false},
		{"stats", "conn T0:}", "conn", "T0:}", false},
		{"first space splits", "a b c", "a", "b c", false},
		{"empty packet", "condure ", "condure", "", false},
		{"no space", "condureT0:}", "", "", true},
		{"empty address", " T0:}", "", "", true},
		{"empty frame", "", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, pkt, err := SplitPubFrame([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("err = %v, want ErrFormat", err)
				}
				return
			}
			if err != nil || string(dest) != tt.dest || string(pkt) != tt.pkt {
				t.Fatalf("SplitPubFrame(%q) = %q, %q, %v", tt.in, dest, pkt, err)
			}
		})
	}
}

func TestPacketHelpers(t *testing.T) {
	p := New()
	p.Headers = []Header{{"Content-Type", "a"}, {"content-type", "b"}}
	if v, ok := p.Header("CONTENT-TYPE"); !ok || v != "a" {
		t.Errorf("Header = %q, %v", v, ok)
	}
	if _, ok := p.Header("Content-Typ"); ok {
		t.Error("Header matched a prefix")
	}
	if p.IsRequestStart() {
		t.Error("IsRequestStart without uri")
	}
	p.URI = "http://x/"
	if !p.IsRequestStart() {
		t.Error("IsRequestStart with uri")
	}
	p.Type = TypeError
	if p.IsRequestStart() {
		t.Error("IsRequestStart on error")
	}

	p.IDs = append(p.IDs, IDSeq{ID: []byte("a")})
	p.Seq, p.Code, p.Body, p.More = 3, 200, []byte("x"), true
	p.Reset()
	want := New()
	want.Headers, want.IDs = p.Headers, p.IDs
	if !reflect.DeepEqual(p, want) || len(p.Headers) != 0 || cap(p.Headers) < 2 || cap(p.IDs) < 1 {
		t.Fatalf("Reset = %+v", p)
	}
}

// TestAppendMatchesDict: the field-by-field encoder writes exactly the
// bytes of the Dict form, for every field set (FuzzParse checks the same
// on arbitrary parsed packets).
func TestAppendMatchesDict(t *testing.T) {
	full := New()
	full.From, full.ID, full.Seq, full.Type, full.Condition = []byte("f"), []byte("i"), 7, TypeError, CondRejected
	full.Credits, full.More, full.Multi, full.ExtQuiet = 1024, true, true, true
	full.UserData, full.Passthrough = tnetstring.Dict{{Key: "k", Value: []any{int64(1), true, nil}}}, []byte("p")
	full.Method, full.URI, full.Stream, full.RouterResp, full.MaxSize, full.Timeout = "GET", "ws://h/", true, true, 5, 6
	full.PeerAddress, full.PeerPort, full.ConnectHost, full.ConnectPort = "1.2.3.4", 80, "h", 81
	full.IgnorePolicies, full.TrustConnectHost, full.IgnoreTLSErrors, full.FollowRedirects = true, true, true, true
	full.Code, full.Reason, full.Headers, full.Body, full.ContentType = 1000, "bye", []Header{{"A", "b"}, {"", ""}}, []byte{}, "text"
	multi := New()
	multi.IDs, multi.Body, multi.ContentType = []IDSeq{{[]byte("a"), 3}, {[]byte("b"), -1}}, []byte("m"), "binary"
	data := New()
	data.ID, data.Code, data.Type = []byte("x"), 200, TypeData
	for name, p := range map[string]*Packet{"full": full, "multi": multi, "data with code": data, "empty": New()} {
		want := append([]byte("T"), tnetstring.MustEncode(p.Dict())...)
		if got := p.Encode(); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", name, got, want)
		}
	}
}
