package handler

import (
	"errors"
	"reflect"
	"testing"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/tnetstring"
)

// startCommandInput runs the command server on a free port with uris for
// get-zmq-uris and returns a DEALER connected to it.
func startCommandInput(t *testing.T, eng engineAPI, uris zmqURIs) (*commandInput, *zmq.Socket) {
	t.Helper()
	zctx := newZctx(t)
	c, err := newCommandInput(zctx, InputsConfig{CommandSpec: "tcp://127.0.0.1:0"}, uris, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "command", c.Run)
	d := testSocket(t, zmq.DEALER)
	if err := d.Connect(c.Spec()); err != nil {
		t.Fatal(err)
	}
	return c, d
}

// call sends frames and returns the reply frames.
func call(t *testing.T, d *zmq.Socket, frames ...[]byte) [][]byte {
	t.Helper()
	args := make([]any, len(frames))
	for i, f := range frames {
		args[i] = f
	}
	if _, err := d.SendMessage(args...); err != nil {
		t.Fatal(err)
	}
	r, err := d.RecvMessageBytes(0)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return r
}

// request sends one ZRPC request the way a REQ socket frames it and
// returns the decoded reply.
func request(t *testing.T, d *zmq.Socket, req tnetstring.Dict) tnetstring.Dict {
	t.Helper()
	r := call(t, d, nil, tnetstring.MustEncode(req))
	if len(r) != 2 || len(r[0]) != 0 {
		t.Fatalf("reply frames %q, want [\"\", reply]", r)
	}
	reply, err := tnetstring.DecodeDict(r[1])
	if err != nil {
		t.Fatalf("decode reply %q: %v", r[1], err)
	}
	return reply
}

func zreq(id, method string, args tnetstring.Dict) tnetstring.Dict {
	d := tnetstring.Dict{{Key: "id", Value: []byte(id)}, {Key: "method", Value: []byte(method)}}
	if args != nil {
		d = append(d, tnetstring.Field{Key: "args", Value: args})
	}
	return d
}

var cmdItem = tnetstring.Dict{
	{Key: "channel", Value: []byte("a")},
	{Key: "formats", Value: tnetstring.Dict{{Key: "http-stream", Value: tnetstring.Dict{{Key: "content", Value: []byte("x")}}}}},
}

// TestCommandMethods checks each method's reply against what a 1.36
// pushpin-handler answered to the same request (REQ client, tnetstring).
func TestCommandMethods(t *testing.T) {
	eng := &fakeEngine{live: map[string]bool{"c1": true, "c3": true}}
	_, d := startCommandInput(t, eng, zmqURIs{PublishPull: "tcp://127.0.0.1:35560", PublishSub: "tcp://127.0.0.1:35562"})
	null := any(nil)
	ok := func(id string, value any) tnetstring.Dict {
		return tnetstring.Dict{{Key: "id", Value: []byte(id)}, {Key: "success", Value: true}, {Key: "value", Value: value}}
	}
	fail := func(id, cond string, value ...string) tnetstring.Dict {
		r := tnetstring.Dict{{Key: "id", Value: []byte(id)}, {Key: "success", Value: false}, {Key: "condition", Value: []byte(cond)}}
		if len(value) > 0 {
			r = append(r, tnetstring.Field{Key: "value", Value: []byte(value[0])})
		}
		return r
	}
	tests := []struct {
		name string
		req  tnetstring.Dict
		want tnetstring.Dict
	}{
		{"unknown method", zreq("c2", "nope", nil), fail("c2", "method-not-found")},
		{"no id", tnetstring.Dict{{Key: "method", Value: []byte("nope")}},
			tnetstring.Dict{{Key: "success", Value: false}, {Key: "condition", Value: []byte("method-not-found")}}},
		{"recover", zreq("c4", "recover", nil), ok("c4", null)},
		{"recover ignores args", zreq("c4b", "recover", tnetstring.Dict{{Key: "x", Value: int64(1)}}), ok("c4b", null)},
		{"publish without args", zreq("c5", "publish", nil),
			fail("c5", "bad-request", "Invalid format: object does not contain 'items'")},
		{"publish empty args", zreq("c6", "publish", tnetstring.Dict{}),
			fail("c6", "bad-request", "Invalid format: object does not contain 'items'")},
		{"publish items not a list", zreq("c7", "publish", tnetstring.Dict{{Key: "items", Value: []byte("x")}}),
			fail("c7", "bad-request", "Invalid format: object contains 'items' with wrong type")},
		{"publish items", zreq("c8", "publish", tnetstring.Dict{{Key: "items", Value: []any{cmdItem}}}), ok("c8", null)},
		// A bare item is not accepted: args must hold "items".
		{"publish a single item", zreq("c9", "publish", cmdItem),
			fail("c9", "bad-request", "Invalid format: object does not contain 'items'")},
		{"publish item without channel", zreq("c10", "publish", tnetstring.Dict{{Key: "items", Value: []any{tnetstring.Dict{}}}}),
			fail("c10", "bad-request", "Invalid format: publish item object does not contain 'channel'")},
		{"publish item not an object", zreq("c11", "publish", tnetstring.Dict{{Key: "items", Value: []any{int64(1)}}}),
			fail("c11", "bad-request", "Invalid format: publish item object is not an object")},
		{"refresh without args", zreq("c12", "refresh", nil), fail("c12", "bad-request")},
		{"refresh channel", zreq("c13", "refresh", tnetstring.Dict{{Key: "channel", Value: []byte("a")}}), ok("c13", null)},
		{"refresh channel not a string", zreq("c14", "refresh", tnetstring.Dict{{Key: "channel", Value: int64(3)}}), fail("c14", "bad-request")},
		{"refresh cid", zreq("c14b", "refresh", tnetstring.Dict{{Key: "cid", Value: []byte("conn-1")}}), ok("c14b", null)},
		{"conncheck without args", zreq("c15", "conncheck", nil), fail("c15", "bad-request")},
		{"conncheck ids not a list", zreq("c16", "conncheck", tnetstring.Dict{{Key: "ids", Value: []byte("x")}}), fail("c16", "bad-request")},
		{"conncheck id not a string", zreq("c17", "conncheck", tnetstring.Dict{{Key: "ids", Value: []any{int64(1)}}}), fail("c17", "bad-request")},
		{"conncheck", zreq("c18", "conncheck", tnetstring.Dict{{Key: "ids", Value: []any{[]byte("c1"), []byte("c2"), []byte("c3")}}}),
			ok("c18", []any{[]byte("c1"), []byte("c3")})},
		{"conncheck none live", zreq("c19", "conncheck", tnetstring.Dict{{Key: "ids", Value: []any{[]byte("zz")}}}), ok("c19", []any{})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := request(t, d, tt.req); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("reply\n got %s\nwant %s", tnetstring.MustEncode(got), tnetstring.MustEncode(tt.want))
			}
		})
	}
	items := eng.items()
	if len(items) != 1 || items[0].Channel != "a" || streamContent(items[0]) != "x" {
		t.Errorf("published %+v, want the one item of c8", items)
	}
	if eng.recoverCount() != 2 {
		t.Errorf("recover called %d times, want 2", eng.recoverCount())
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if want := [][2]string{{"", "a"}, {"conn-1", ""}}; !reflect.DeepEqual(eng.refreshes, want) {
		t.Errorf("refreshes %q, want %q", eng.refreshes, want)
	}
}

// TestCommandGetZMQURIs: the captured 1.36 reply carries the bound specs
// (zmq-wire §4.7); here they are real ports picked from port 0.
func TestCommandGetZMQURIs(t *testing.T) {
	zctx := newZctx(t)
	eng := &fakeEngine{}
	cfg := InputsConfig{PullSpec: "tcp://127.0.0.1:0", SubSpecs: []string{"tcp://127.0.0.1:*"}, CommandSpec: "tcp://127.0.0.1:0"}
	in, err := newInputs(zctx, cfg, eng, newChannelSet(), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runInput(t, "inputs", in.Run)
	d := testSocket(t, zmq.DEALER)
	if err := d.Connect(in.cmd.Spec()); err != nil {
		t.Fatal(err)
	}
	got := request(t, d, zreq("c1", "get-zmq-uris", nil))
	want := tnetstring.Dict{{Key: "id", Value: []byte("c1")}, {Key: "success", Value: true}, {Key: "value", Value: tnetstring.Dict{
		{Key: "command", Value: []byte(in.cmd.Spec())},
		{Key: "publish-pull", Value: []byte(in.pull.Spec())},
		{Key: "publish-sub", Value: []byte(in.sub.Spec())},
	}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("reply\n got %s\nwant %s", tnetstring.MustEncode(got), tnetstring.MustEncode(want))
	}
	for _, spec := range []string{in.cmd.Spec(), in.pull.Spec(), in.sub.Spec()} {
		if spec == "tcp://127.0.0.1:0" || spec == "tcp://127.0.0.1:*" {
			t.Errorf("spec %q is not the bound one", spec)
		}
	}
	// the reported PULL spec really is where the PULL socket listens
	push := testSocket(t, zmq.PUSH)
	if err := push.Connect(in.pull.Spec()); err != nil {
		t.Fatal(err)
	}
	if _, err := push.Send(tnetItem, 0); err != nil {
		t.Fatal(err)
	}
	waitItems(t, eng, 1)
}

// TestCommandGetZMQURIsPartial: unconfigured inputs, and the SUB input when
// it connects, are left out of the reply.
func TestCommandGetZMQURIsPartial(t *testing.T) {
	_, d := startCommandInput(t, &fakeEngine{}, zmqURIs{})
	got := request(t, d, zreq("c1", "get-zmq-uris", nil))
	v, _ := got.Dict("value")
	if len(v) != 1 || v[0].Key != "command" {
		t.Errorf("value %s, want only command", tnetstring.MustEncode(v))
	}
}

// TestCommandFraming: replies go back on the routing frames; what Pushpin
// drops without a reply is dropped (checked by the next reply's id).
func TestCommandFraming(t *testing.T) {
	_, d := startCommandInput(t, &fakeEngine{}, zmqURIs{})
	good := tnetstring.MustEncode(zreq("ok", "nope", nil))
	for _, frames := range [][][]byte{
		{good},                            // no delimiter
		{nil, good, []byte("extra")},      // a frame after the request
		{nil, []byte("garbage")},          // not a tnetstring
		{nil, []byte("T" + string(good))}, // T prefix: ZRPC is bare
		{nil, tnetstring.MustEncode([]any{[]byte("x")})},                                                                       // not a dict
		{nil, tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: []byte("c3")}})},                                        // no method
		{nil, tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: int64(5)}, {Key: "method", Value: []byte("recover")}})}, // id not a string
		{nil, tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: []byte("c19")}, {Key: "method", Value: int64(5)}})},     // method not a string
		{nil, tnetstring.MustEncode(tnetstring.Dict{{Key: "id", Value: []byte("c18")}, {Key: "method", Value: []byte("publish")}, {Key: "args", Value: []any{}}})},
	} {
		args := make([]any, len(frames))
		for i, f := range frames {
			args[i] = f
		}
		if _, err := d.SendMessage(args...); err != nil {
			t.Fatal(err)
		}
	}
	r := call(t, d, []byte("route"), nil, good)
	if len(r) != 3 || string(r[0]) != "route" || len(r[1]) != 0 {
		t.Fatalf("reply frames %q, want [route, \"\", reply]", r)
	}
	reply, _ := tnetstring.DecodeDict(r[2])
	if id, _ := reply.Bytes("id"); string(id) != "ok" {
		t.Errorf("first reply is for %q, want the valid request", id)
	}
	// extra empty frames: the envelope ends at the first one (as 1.36)
	r = call(t, d, nil, nil, good)
	if len(r) != 2 || len(r[0]) != 0 {
		t.Errorf("reply frames %q, want [\"\", reply]", r)
	}
}

func TestCommandQueueFull(t *testing.T) {
	eng := &fakeEngine{}
	eng.setErr(ErrQueueFull)
	_, d := startCommandInput(t, eng, zmqURIs{})
	for _, req := range []tnetstring.Dict{
		zreq("p", "publish", tnetstring.Dict{{Key: "items", Value: []any{cmdItem}}}),
		zreq("r", "recover", nil),
	} {
		got := request(t, d, req)
		if cond, _ := got.Bytes("condition"); string(cond) != condUnavailable || got.Bool("success") {
			t.Errorf("reply %s, want condition %s", tnetstring.MustEncode(got), condUnavailable)
		}
	}
}

type condErr string

func (e condErr) Error() string     { return string(e) }
func (e condErr) Condition() string { return string(e) }

func TestCommandEngineConditions(t *testing.T) {
	if got := cmdEngineFailure(condErr("item-not-found")); !reflect.DeepEqual(got, cmdFailure("item-not-found", nil)) {
		t.Errorf("conditioner: %v", got)
	}
	if got := cmdEngineFailure(errors.New("boom")); !reflect.DeepEqual(got, cmdFailure(condInternal, "boom")) {
		t.Errorf("plain error: %v", got)
	}
}
