package wscontrol

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"tack/pkg/tnetstring"
)

// Captured from Pushpin 1.36 (proxy → handler and handler → proxy).
var captures = []struct {
	name string
	raw  string
	want []Item
}{
	{
		name: "here",
		raw:  `145:5:items,132:127:4:type,4:here,3:cid,36:ce8f0d77-e1b1-4077-bb5c-df2d11e762cf,3:ttl,2:60#5:route,8:*,ws,*,*,3:uri,27:ws://127.0.0.1:7999/ws/room,}]}`,
		want: []Item{{CID: []byte("ce8f0d77-e1b1-4077-bb5c-df2d11e762cf"), Type: TypeHere, TTL: 60, Route: "*,ws,*,*", URI: "ws://127.0.0.1:7999/ws/room", Code: -1, LogLevel: -1, Timeout: -1}},
	},
	{
		name: "grip",
		raw:  `142:5:items,129:124:4:type,4:grip,3:cid,36:ce8f0d77-e1b1-4077-bb5c-df2d11e762cf,6:req-id,1:0,7:message,37:{"type":"subscribe","channel":"wsch"},}]}`,
		want: []Item{{CID: []byte("ce8f0d77-e1b1-4077-bb5c-df2d11e762cf"), Type: TypeGrip, ReqID: []byte("0"), Message: []byte(`{"type":"subscribe","channel":"wsch"}`), HasMessage: true, Code: -1, LogLevel: -1, TTL: -1, Timeout: -1}},
	},
	{
		name: "ack keep-alive-setup cancel",
		raw:  `190:5:items,177:43:6:req-id,1:1,3:cid,8:ws-cid-1,4:type,3:ack,}85:15:keep-alive-mode,4:idle,7:timeout,2:20#3:cid,8:ws-cid-1,4:type,16:keep-alive-setup,}37:3:cid,11:unknown-cid,4:type,6:cancel,}]}`,
		want: []Item{
			{CID: []byte("ws-cid-1"), Type: TypeAck, ReqID: []byte("1"), Code: -1, LogLevel: -1, TTL: -1, Timeout: -1},
			{CID: []byte("ws-cid-1"), Type: TypeKeepAliveSetup, KeepAliveMode: "idle", Timeout: 20, Code: -1, LogLevel: -1, TTL: -1},
			{CID: []byte("unknown-cid"), Type: TypeCancel, Code: -1, LogLevel: -1, TTL: -1, Timeout: -1},
		},
	},
	{
		name: "close",
		raw:  `121:5:items,108:103:3:cid,36:ce8f0d77-e1b1-4077-bb5c-df2d11e762cf,4:type,5:close,4:code,4:4002#6:reason,15:done by publish,}]}`,
		want: []Item{{CID: []byte("ce8f0d77-e1b1-4077-bb5c-df2d11e762cf"), Type: TypeClose, Code: 4002, Reason: "done by publish", LogLevel: -1, TTL: -1, Timeout: -1}},
	},
}

func TestParseCaptures(t *testing.T) {
	for _, c := range captures {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.raw))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Items) != len(c.want) {
				t.Fatalf("got %d items, want %d", len(p.Items), len(c.want))
			}
			for i := range c.want {
				if !itemEqual(p.Items[i], c.want[i]) {
					t.Errorf("item %d = %+v, want %+v", i, p.Items[i], c.want[i])
				}
			}
			// Re-encoding and parsing again keeps every field.
			q, err := Parse(p.Encode())
			if err != nil {
				t.Fatal(err)
			}
			for i := range c.want {
				if !itemEqual(q.Items[i], c.want[i]) {
					t.Errorf("round trip item %d = %+v, want %+v", i, q.Items[i], c.want[i])
				}
			}
		})
	}
}

func TestEncodeSendAsPushpin(t *testing.T) {
	it := NewItem([]byte("ce8f0d77-e1b1-4077-bb5c-df2d11e762cf"), TypeSend)
	it.ContentType = "text"
	it.Message = []byte("published text")
	it.ReqID = []byte("77")
	p := Packet{Items: []Item{it}}
	want := `143:5:items,130:125:3:cid,36:ce8f0d77-e1b1-4077-bb5c-df2d11e762cf,4:type,4:send,6:req-id,2:77,12:content-type,4:text,7:message,14:published text,}]}`
	if got := string(p.Encode()); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// An empty message is still sent (an empty text frame is a message).
	it.Message, it.HasMessage = nil, true
	if got := p.Items[0].Dict(); got == nil {
		t.Fatal("nil dict")
	}
	p.Items[0] = it
	if !bytes.Contains(p.Encode(), []byte("7:message,0:,")) {
		t.Fatalf("empty message left out: %s", p.Encode())
	}
}

func TestParseErrors(t *testing.T) {
	for _, raw := range []string{
		``,
		`3:abc,`,
		`21:5:items,8:4:cid,]}`,              // items not dicts
		`35:5:items,22:18:4:type,4:here,}]}`, // no cid
		`31:5:items,18:14:3:cid,1:x,}]}`,     // no type
		`43:5:items,30:26:3:cid,1:x,4:type,1:y,}]}`,           // wrong length
		`49:5:items,36:32:3:cid,1:x,4:type,1:y,3:ttl,1:x,}]}`, // ttl not int
		`12:5:items,1:x,}`, // items not list
	} {
		if _, err := Parse([]byte(raw)); !errors.Is(err, ErrFormat) {
			t.Errorf("Parse(%q) = %v, want ErrFormat", raw, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range captures {
		f.Add([]byte(c.raw))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		ref, refErr := parseDict(b)
		if (err == nil) != (refErr == nil) || (err == nil && !reflect.DeepEqual(p, ref)) {
			t.Fatalf("Parse(%q) = %+v, %v; the Dict path gives %+v, %v", b, p, err, ref, refErr)
		}
		reuse := Packet{From: []byte("old"), Items: make([]Item, 2, 300)}
		if err2 := ParseTo(&reuse, b); (err2 == nil) != (err == nil) || (err == nil && !reflect.DeepEqual(reuse, *p)) {
			t.Fatalf("ParseTo(%q) = %+v, %v; Parse gives %+v, %v", b, reuse, err2, p, err)
		}
		if err != nil {
			return
		}
		enc := p.Encode()
		if want := tnetstring.MustEncode(p.Dict()); !bytes.Equal(enc, want) {
			t.Fatalf("Append and Dict encodings differ:\n got %q\nwant %q", enc, want)
		}
		if _, err := Parse(enc); err != nil {
			t.Fatalf("re-encoded packet does not parse: %v", err)
		}
	})
}

// TestAppendMatchesDict: the field-by-field encoder writes exactly the
// bytes of the Dict form, every field set or none.
func TestAppendMatchesDict(t *testing.T) {
	full := Item{CID: []byte("c"), Type: TypeSend, ReqID: []byte("3"), URI: "ws://h/", ContentType: "binary",
		Message: []byte("m"), HasMessage: true, Queue: true, Code: 1000, Reason: "r", Debug: true, Route: "x",
		SeparateStats: true, ChannelPrefix: "p", LogLevel: 2, Trusted: true, Channel: "ch", TTL: 60,
		Timeout: 5, KeepAliveMode: "idle"}
	empty := NewItem(nil, "")
	empty.HasMessage = true
	for _, p := range []Packet{
		{Items: []Item{full, NewItem([]byte("d"), TypeAck)}},
		{From: []byte("proxy_1"), Items: []Item{empty}},
		{},
	} {
		if got, want := p.Encode(), tnetstring.MustEncode(p.Dict()); !bytes.Equal(got, want) {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	}
}

func itemEqual(a, b Item) bool {
	return bytes.Equal(a.CID, b.CID) && a.Type == b.Type && bytes.Equal(a.ReqID, b.ReqID) &&
		a.URI == b.URI && a.ContentType == b.ContentType && bytes.Equal(a.Message, b.Message) &&
		a.HasMessage == b.HasMessage && a.Queue == b.Queue && a.Code == b.Code && a.Reason == b.Reason &&
		a.Debug == b.Debug && a.Route == b.Route && a.SeparateStats == b.SeparateStats &&
		a.ChannelPrefix == b.ChannelPrefix && a.LogLevel == b.LogLevel && a.Trusted == b.Trusted &&
		a.Channel == b.Channel && a.TTL == b.TTL && a.Timeout == b.Timeout && a.KeepAliveMode == b.KeepAliveMode
}
