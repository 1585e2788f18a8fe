package grip

import (
	"testing"

	"tack/pkg/tnetstring"
)

func TestGripParseItemsBody(t *testing.T) {
	item := func(body string) string { return `{"items":[{"channel":"a",` + body + `}]}` }
	tests := []struct {
		name    string
		body    string
		wantErr string
		check   func(t *testing.T, items []Item)
	}{
		{name: "empty list", body: `{"items":[]}`, check: func(t *testing.T, items []Item) { eq(t, "len", len(items), 0) }},
		{name: "extra keys ignored", body: `{"items":[],"extra":1}`},
		{name: "duplicate items key last wins", body: `{"items":5,"items":[]}`},
		{name: "not json", body: `x`, wantErr: "Body is not valid JSON."},
		{name: "scalar", body: `5`, wantErr: "Body is not valid JSON."},
		{name: "string", body: `"x"`, wantErr: "Body is not valid JSON."},
		{name: "null", body: `null`, wantErr: "Body is not valid JSON."},
		{name: "trailing", body: `{"items":[]} x`, wantErr: "Body is not valid JSON."},
		{name: "invalid utf-8", body: "{\"items\":[{\"channel\":\"\xff\"}]}", wantErr: "Body is not valid JSON."},
		{name: "array", body: `[]`, wantErr: "Invalid format."},
		{name: "no items", body: `{}`, wantErr: "Invalid format: object does not contain 'items'"},
		{name: "items object", body: `{"items":{}}`, wantErr: "Invalid format: object contains 'items' with wrong type"},
		{name: "items null", body: `{"items":null}`, wantErr: "Invalid format: object contains 'items' with wrong type"},
		{name: "item not object", body: `{"items":[5]}`, wantErr: "Invalid format: publish item object is not an object"},
		{name: "one bad item rejects all", body: `{"items":[{"channel":"a","http-stream":{"content":"x"}},5]}`,
			wantErr: "Invalid format: publish item object is not an object"},
		{name: "unknown action empty message", body: item(`"http-stream":{"action":"bogus"}`), wantErr: "Invalid format: "},
		{name: "two items", body: `{"items":[{"channel":"a","http-stream":{"content":"x"}},{"channel":"b","ws-message":{"content":"y"}}]}`,
			check: func(t *testing.T, items []Item) {
				eq(t, "channels", []string{items[0].Channel, items[1].Channel}, []string{"a", "b"})
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items, err := ParseItems([]byte(tc.body))
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseItems succeeded, want %q", tc.wantErr)
				}
				eq(t, "error", errText(t, err), tc.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseItems: %v", err)
			}
			if tc.check != nil {
				tc.check(t, items)
			}
		})
	}
}

type itemCase struct {
	name    string
	json    string // a JSON item, or
	tnet    any    // a tnetstring item
	channel string // ParseItemForChannel
	wantErr string // errEmpty for an empty message
	check   func(t *testing.T, it Item)
}

func runItemCases(t *testing.T, cases []itemCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var v any = tc.tnet
			if tc.json != "" {
				var err error
				if v, err = decodeJSON([]byte(tc.json)); err != nil {
					t.Fatalf("bad test JSON: %v", err)
				}
			}
			it, err := ParseItemForChannel(v, tc.channel)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseItem succeeded, want %q", tc.wantErr)
				}
				want := tc.wantErr
				if want == errEmpty {
					want = ""
				}
				eq(t, "error", errText(t, err), want)
				return
			}
			if err != nil {
				t.Fatalf("ParseItem: %v", err)
			}
			if tc.check != nil {
				tc.check(t, it)
			}
		})
	}
}

func TestGripParseItem(t *testing.T) {
	runItemCases(t, []itemCase{
		{name: "all item fields", json: `{"channel":"a","id":"2","prev-id":"1","meta":{"sender":"s"},"size":7,"no-seq":true,"http-stream":{"content":"x"}}`,
			check: func(t *testing.T, it Item) {
				eq(t, "item", it, Item{Channel: "a", ID: "2", PrevID: "1", Meta: map[string]string{"sender": "s"}, Size: 7, NoSeq: true,
					HTTPStream: &HTTPStreamFormat{Content: []byte("x")}})
			}},
		{name: "size default", json: `{"channel":"a","http-stream":{"content":"x"}}`, check: func(t *testing.T, it Item) { eq(t, "Size", it.Size, -1) }},
		// Verified on 1.36: these convert (string → 0, 1.7 → 2, true → 1).
		{name: "size string", json: `{"channel":"a","size":"x","http-stream":{"content":"x"}}`, check: func(t *testing.T, it Item) { eq(t, "Size", it.Size, 0) }},
		{name: "size float", json: `{"channel":"a","size":1.7,"http-stream":{"content":"x"}}`, check: func(t *testing.T, it Item) { eq(t, "Size", it.Size, 2) }},
		{name: "size bool", json: `{"channel":"a","size":true,"http-stream":{"content":"x"}}`, check: func(t *testing.T, it Item) { eq(t, "Size", it.Size, 1) }},
		{name: "formats object", json: `{"channel":"a","formats":{"http-stream":{"content":"x"}},"http-response":5}`,
			check: func(t *testing.T, it Item) { eq(t, "HTTPResponse", it.HTTPResponse, (*HTTPResponseFormat)(nil)) }},
		{name: "formats with unknown keys only", json: `{"channel":"a","formats":{"foo":{}}}`,
			check: func(t *testing.T, it Item) {
				eq(t, "none", it.HTTPStream == nil && it.HTTPResponse == nil && it.WSMessage == nil, true)
			}},
		{name: "sub channel wins", json: `{"channel":"ignored","http-stream":{"content":"x"}}`, channel: "frame",
			check: func(t *testing.T, it Item) { eq(t, "Channel", it.Channel, "frame") }},
		{name: "sub channel needs none in item", json: `{"http-stream":{"content":"x"}}`, channel: "frame"},

		{name: "no channel", json: `{"http-stream":{"content":"x"}}`, wantErr: "publish item object does not contain 'channel'"},
		{name: "channel null", json: `{"channel":null,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'channel' with wrong type"},
		{name: "channel number", json: `{"channel":5,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'channel' with wrong type"},
		// Deliberate deviation: 1.36 publishes to "".
		{name: "channel empty", json: `{"channel":"","http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'channel' with invalid value"},
		{name: "id type", json: `{"channel":"a","id":5,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'id' with wrong type"},
		{name: "prev-id type", json: `{"channel":"a","prev-id":[],"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'prev-id' with wrong type"},
		{name: "formats null", json: `{"channel":"a","formats":null}`, wantErr: "publish item object contains 'formats' with wrong type"},
		{name: "formats number", json: `{"channel":"a","formats":5}`, wantErr: "publish item object contains 'formats' with wrong type"},
		{name: "formats empty", json: `{"channel":"a","formats":{}}`, wantErr: "no formats specified"},
		{name: "no formats", json: `{"channel":"a"}`, wantErr: "no formats specified"},
		{name: "top-level format null", json: `{"channel":"a","http-stream":null}`, wantErr: "'http-stream' is not an object"},
		{name: "format null in formats", json: `{"channel":"a","formats":{"http-stream":null}}`, wantErr: "'http-stream' is not an object"},
		{name: "meta type", json: `{"channel":"a","meta":[],"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'meta' with wrong type"},
		{name: "meta value type", json: `{"channel":"a","meta":{"k":1},"http-stream":{"content":"x"}}`, wantErr: "'meta' contains 'k' with wrong type"},
		{name: "meta value null", json: `{"channel":"a","meta":{"k":null},"http-stream":{"content":"x"}}`, wantErr: "'meta' contains 'k' with wrong type"},
		{name: "size negative", json: `{"channel":"a","size":-1,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'size' with invalid value"},
		{name: "size list", json: `{"channel":"a","size":[],"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'size' with wrong type"},
		{name: "size null", json: `{"channel":"a","size":null,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'size' with wrong type"},
		{name: "no-seq number", json: `{"channel":"a","no-seq":1,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'no-seq' with wrong type"},
		{name: "no-seq null", json: `{"channel":"a","no-seq":null,"http-stream":{"content":"x"}}`, wantErr: "publish item object contains 'no-seq' with wrong type"},
		{name: "format errors before meta", json: `{"channel":"a","meta":5,"http-stream":5}`, wantErr: "'http-stream' is not an object"},
	})
}

func TestGripParseFormatAction(t *testing.T) {
	action := func(want Action) func(t *testing.T, it Item) {
		return func(t *testing.T, it Item) { t.Helper(); eq(t, "Action", it.HTTPStream.Action, want) }
	}
	runItemCases(t, []itemCase{
		{name: "send", json: `{"channel":"a","http-stream":{"action":"send","content":"x"}}`, check: action(ActionSend)},
		{name: "hint needs no content", json: `{"channel":"a","http-stream":{"action":"hint"}}`, check: action(ActionHint)},
		{name: "close ignores content", json: `{"channel":"a","http-stream":{"action":"close","content":5}}`, check: action(ActionClose)},
		{name: "refresh", json: `{"channel":"a","http-stream":{"action":"refresh"}}`, check: action(ActionRefresh)},
		{name: "unknown", json: `{"channel":"a","http-stream":{"action":"bogus"}}`, wantErr: errEmpty},
		{name: "empty", json: `{"channel":"a","http-stream":{"action":"","content":"x"}}`, wantErr: errEmpty},
		{name: "case-sensitive", json: `{"channel":"a","http-stream":{"action":"Send","content":"x"}}`, wantErr: errEmpty},
		{name: "wrong type", json: `{"channel":"a","http-stream":{"action":5}}`, wantErr: "'http-stream' contains 'action' with wrong type"},
		{name: "null", json: `{"channel":"a","http-stream":{"action":null,"content":"x"}}`, wantErr: "'http-stream' contains 'action' with wrong type"},
	})
}

func TestGripParseHTTPResponseFormat(t *testing.T) {
	hr := func(body string) string { return `{"channel":"a","http-response":` + body + `}` }
	got := func(want HTTPResponseFormat) func(t *testing.T, it Item) {
		return func(t *testing.T, it Item) { t.Helper(); eq(t, "http-response", *it.HTTPResponse, want) }
	}
	runItemCases(t, []itemCase{
		{name: "defaults", json: hr(`{"body":"x"}`), check: got(HTTPResponseFormat{Code: 200, Reason: "OK", Body: []byte("x")})},
		{name: "all fields", json: hr(`{"code":404,"reason":"Nope","headers":[["X-A","1"],["X-A","2"]],"body":"x","content-filters":["build-id"]}`),
			check: got(HTTPResponseFormat{Code: 404, Reason: "Nope", Headers: []Header{{"X-A", "1"}, {"X-A", "2"}}, Body: []byte("x"),
				HaveContentFilters: true, ContentFilters: []string{"build-id"}})},
		{name: "headers object", json: hr(`{"headers":{"X-B":"2","X-A":"1"},"body":"x"}`),
			check: func(t *testing.T, it Item) {
				eq(t, "headers", it.HTTPResponse.Headers, []Header{{"X-A", "1"}, {"X-B", "2"}})
			}},
		{name: "reason from code", json: hr(`{"code":203,"body":"x"}`), check: func(t *testing.T, it Item) { eq(t, "Reason", it.HTTPResponse.Reason, "Non-Authoritative Information") }},
		// Quirk 3, verified on 1.36.
		{name: "code string is 0", json: hr(`{"code":"abc","body":"x"}`), check: func(t *testing.T, it Item) { eq(t, "Code", it.HTTPResponse.Code, 0) }},
		{name: "body-bin wins", json: hr(`{"body-bin":"aGk=","body":"x"}`), check: func(t *testing.T, it Item) { eq(t, "Body", string(it.HTTPResponse.Body), "hi") }},
		{name: "body-bin unpadded", json: hr(`{"body-bin":"aGk"}`), check: func(t *testing.T, it Item) { eq(t, "Body", string(it.HTTPResponse.Body), "hi") }},
		{name: "body before patch", json: hr(`{"body":"x","body-patch":5}`), check: func(t *testing.T, it Item) { eq(t, "patch", it.HTTPResponse.HaveBodyPatch, false) }},
		{name: "body-patch", json: hr(`{"body-patch":[{"op":"add","path":"/a","value":1}]}`),
			check: func(t *testing.T, it Item) {
				eq(t, "patch", it.HTTPResponse.HaveBodyPatch, true)
				eq(t, "ops", len(it.HTTPResponse.BodyPatch), 1)
			}},
		{name: "body-patch empty", json: hr(`{"body-patch":[]}`), check: func(t *testing.T, it Item) { eq(t, "patch", it.HTTPResponse.HaveBodyPatch, true) }},
		{name: "hint skips fields", json: hr(`{"action":"hint","code":"x","headers":5}`), check: got(HTTPResponseFormat{Action: ActionHint})},
		{name: "close accepted", json: hr(`{"action":"close"}`), check: got(HTTPResponseFormat{Action: ActionClose})},

		{name: "not object", json: hr(`5`), wantErr: "'http-response' is not an object"},
		{name: "list", json: hr(`[]`), wantErr: "'http-response' is not an object"},
		{name: "string", json: hr(`"x"`), wantErr: "'http-response' is not an object"},
		{name: "no body", json: hr(`{}`), wantErr: "'http-response' does not contain 'body', 'body-bin', or 'body-patch'"},
		{name: "code big", json: hr(`{"code":1000,"body":"x"}`), wantErr: "'http-response' contains 'code' with invalid value"},
		{name: "code string big", json: hr(`{"code":"1000","body":"x"}`), wantErr: "'http-response' contains 'code' with invalid value"},
		{name: "code negative", json: hr(`{"code":-1,"body":"x"}`), wantErr: "'http-response' contains 'code' with invalid value"},
		{name: "code null", json: hr(`{"code":null,"body":"x"}`), wantErr: "'http-response' contains 'code' with wrong type"},
		{name: "code list", json: hr(`{"code":[],"body":"x"}`), wantErr: "'http-response' contains 'code' with wrong type"},
		{name: "reason type", json: hr(`{"reason":5,"body":"x"}`), wantErr: "'http-response' contains 'reason' with wrong type"},
		{name: "headers type", json: hr(`{"headers":5,"body":"x"}`), wantErr: "'http-response' contains 'headers' with wrong type"},
		{name: "headers null", json: hr(`{"headers":null,"body":"x"}`), wantErr: "'http-response' contains 'headers' with wrong type"},
		{name: "headers element", json: hr(`{"headers":[5],"body":"x"}`), wantErr: "headers contains element with wrong type"},
		{name: "headers pair size", json: hr(`{"headers":[["a"]],"body":"x"}`), wantErr: "headers contains list with wrong number of elements"},
		{name: "header name", json: hr(`{"headers":[[1,"b"]],"body":"x"}`), wantErr: "header contains name element with wrong type"},
		{name: "header value", json: hr(`{"headers":[["a",1]],"body":"x"}`), wantErr: "header contains value element with wrong type"},
		{name: "header object value", json: hr(`{"headers":{"a":1},"body":"x"}`), wantErr: "headers contains 'a' with wrong type"},
		{name: "body type", json: hr(`{"body":5}`), wantErr: "'http-response' contains 'body' with wrong type"},
		{name: "body null", json: hr(`{"body":null}`), wantErr: "'http-response' contains 'body' with wrong type"},
		{name: "body-bin type", json: hr(`{"body-bin":5}`), wantErr: "'http-response' contains 'body-bin' with wrong type"},
		{name: "body-bin null", json: hr(`{"body-bin":null,"body":"x"}`), wantErr: "'http-response' contains 'body-bin' with wrong type"},
		// Deliberate deviation: 1.36 decodes bad base64 leniently.
		{name: "body-bin invalid", json: hr(`{"body-bin":"!!!"}`), wantErr: "'http-response' contains 'body-bin' with invalid value"},
		{name: "body-patch type", json: hr(`{"body-patch":5}`), wantErr: "'http-response' contains 'body-patch' with wrong type"},
		{name: "body-patch object", json: hr(`{"body-patch":{}}`), wantErr: "'http-response' contains 'body-patch' with wrong type"},
		{name: "content-filters type", json: hr(`{"content-filters":5,"body":"x"}`), wantErr: "'http-response' contains 'content-filters' with wrong type"},
		{name: "content-filters element", json: hr(`{"content-filters":[5],"body":"x"}`), wantErr: "content-filters contains element with wrong type"},
	})
}

func TestGripParseHTTPStreamFormat(t *testing.T) {
	hs := func(body string) string { return `{"channel":"a","http-stream":` + body + `}` }
	runItemCases(t, []itemCase{
		{name: "content", json: hs(`{"content":"x","content-filters":[]}`),
			check: func(t *testing.T, it Item) {
				eq(t, "f", *it.HTTPStream, HTTPStreamFormat{Content: []byte("x"), HaveContentFilters: true, ContentFilters: []string{}})
			}},
		{name: "content-bin wins", json: hs(`{"content-bin":"aGk=","content":"x"}`), check: func(t *testing.T, it Item) { eq(t, "c", string(it.HTTPStream.Content), "hi") }},
		{name: "no content", json: hs(`{}`), wantErr: "'http-stream' does not contain 'content' or 'content-bin'"},
		{name: "content type", json: hs(`{"content":5}`), wantErr: "'http-stream' contains 'content' with wrong type"},
		{name: "content-bin type", json: hs(`{"content-bin":5}`), wantErr: "'http-stream' contains 'content-bin' with wrong type"},
		{name: "content-bin invalid", json: hs(`{"content-bin":"!!!"}`), wantErr: "'http-stream' contains 'content-bin' with invalid value"},
		{name: "content-filters type", json: hs(`{"content-filters":{},"content":"x"}`), wantErr: "'http-stream' contains 'content-filters' with wrong type"},
	})
}

func TestGripParseWSMessageFormat(t *testing.T) {
	ws := func(body string) string { return `{"channel":"a","ws-message":` + body + `}` }
	got := func(want WSMessageFormat) func(t *testing.T, it Item) {
		return func(t *testing.T, it Item) { t.Helper(); eq(t, "ws-message", *it.WSMessage, want) }
	}
	runItemCases(t, []itemCase{
		{name: "text default", json: ws(`{"content":"x"}`), check: got(WSMessageFormat{Type: WSText, Content: []byte("x"), CloseCode: 1000})},
		{name: "binary default for content-bin", json: ws(`{"content-bin":"aGk="}`), check: got(WSMessageFormat{Type: WSBinary, Content: []byte("hi"), CloseCode: 1000})},
		{name: "explicit type kept", json: ws(`{"type":"text","content-bin":"aGk="}`), check: got(WSMessageFormat{Type: WSText, Content: []byte("hi"), CloseCode: 1000})},
		{name: "ping without content", json: ws(`{"type":"ping"}`), check: got(WSMessageFormat{Type: WSPing, CloseCode: 1000})},
		{name: "pong without content", json: ws(`{"type":"pong"}`), check: got(WSMessageFormat{Type: WSPong, CloseCode: 1000})},
		{name: "close defaults", json: ws(`{"action":"close"}`), check: got(WSMessageFormat{Action: ActionClose, CloseCode: 1000})},
		{name: "close code and reason", json: ws(`{"action":"close","code":4000,"reason":"bye","type":"foo"}`),
			check: got(WSMessageFormat{Action: ActionClose, CloseCode: 4000, CloseReason: "bye"})},
		{name: "close code string is 0", json: ws(`{"action":"close","code":"x"}`), check: got(WSMessageFormat{Action: ActionClose, CloseCode: 0})},
		// Verified on 1.36: no upper bound.
		{name: "close code large", json: ws(`{"action":"close","code":70000}`), check: got(WSMessageFormat{Action: ActionClose, CloseCode: 70000})},
		{name: "hint ignores type", json: ws(`{"action":"hint","type":"foo"}`), check: got(WSMessageFormat{Action: ActionHint, CloseCode: 1000})},
		{name: "filters", json: ws(`{"content":"x","content-filters":["var-subst"]}`),
			check: got(WSMessageFormat{Content: []byte("x"), CloseCode: 1000, HaveContentFilters: true, ContentFilters: []string{"var-subst"}})},

		{name: "no content", json: ws(`{}`), wantErr: "'ws-message' does not contain 'content' or 'content-bin'"},
		{name: "text no content", json: ws(`{"type":"text"}`), wantErr: "'ws-message' does not contain 'content' or 'content-bin'"},
		{name: "binary no content", json: ws(`{"type":"binary"}`), wantErr: "'ws-message' does not contain 'content' or 'content-bin'"},
		{name: "unknown type", json: ws(`{"type":"foo","content":"x"}`), wantErr: "'ws-message' contains 'type' with unknown value"},
		{name: "empty type", json: ws(`{"type":"","content":"x"}`), wantErr: "'ws-message' contains 'type' with unknown value"},
		{name: "type number", json: ws(`{"type":5}`), wantErr: "'ws-message' contains 'type' with wrong type"},
		{name: "type null", json: ws(`{"type":null,"content":"x"}`), wantErr: "'ws-message' contains 'type' with wrong type"},
		{name: "content type", json: ws(`{"content":5}`), wantErr: "'ws-message' contains 'content' with wrong type"},
		{name: "content-bin type", json: ws(`{"content-bin":5}`), wantErr: "'ws-message' contains 'content-bin' with wrong type"},
		{name: "content-bin invalid", json: ws(`{"content-bin":"!!!"}`), wantErr: "'ws-message' contains 'content-bin' with invalid value"},
		{name: "content-filters type", json: ws(`{"content-filters":{},"content":"x"}`), wantErr: "'ws-message' contains 'content-filters' with wrong type"},
		{name: "close code negative", json: ws(`{"action":"close","code":-1}`), wantErr: "'ws-message' contains 'code' with invalid value"},
		{name: "close code null", json: ws(`{"action":"close","code":null}`), wantErr: "'ws-message' contains 'code' with wrong type"},
		{name: "close reason type", json: ws(`{"action":"close","reason":5}`), wantErr: "'ws-message' contains 'reason' with wrong type"},
	})
}

// td builds a tnetstring dictionary from key/value pairs.
func td(kv ...any) tnetstring.Dict {
	var d tnetstring.Dict
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, tnetstring.Field{Key: kv[i].(string), Value: kv[i+1]})
	}
	return d
}

func TestGripParseItemTnetstring(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	runItemCases(t, []itemCase{
		{name: "all formats", tnet: td("channel", b("c"), "id", b("1"), "no-seq", true, "size", int64(3),
			"formats", td(
				"http-response", td("code", int64(201), "headers", []any{[]any{b("X-A"), b("1")}}, "body", b("r")),
				"http-stream", td("content", b("s")),
				"ws-message", td("content-bin", b("\x00\x01")),
			)),
			check: func(t *testing.T, it Item) {
				eq(t, "item", it, Item{Channel: "c", ID: "1", NoSeq: true, Size: 3,
					HTTPResponse: &HTTPResponseFormat{Code: 201, Reason: "Created", Headers: []Header{{"X-A", "1"}}, Body: b("r")},
					HTTPStream:   &HTTPStreamFormat{Content: b("s")},
					WSMessage:    &WSMessageFormat{Type: WSBinary, Content: b("\x00\x01"), CloseCode: 1000},
				})
			}},
		{name: "top-level formats", tnet: td("channel", b("c"), "http-stream", td("content", b("s"))),
			check: func(t *testing.T, it Item) { eq(t, "content", string(it.HTTPStream.Content), "s") }},
		{name: "code as bytes", tnet: td("channel", b("c"), "http-response", td("code", b("404"), "body", b(""))),
			check: func(t *testing.T, it Item) { eq(t, "code", it.HTTPResponse.Code, 404) }},
		{name: "header dict", tnet: td("channel", b("c"), "http-response", td("headers", td("B", b("2"), "A", b("1")), "body", b(""))),
			check: func(t *testing.T, it Item) {
				eq(t, "headers", it.HTTPResponse.Headers, []Header{{"B", "2"}, {"A", "1"}})
			}},
		{name: "null optional fields are absent", tnet: td("channel", b("c"), "id", nil, "formats", nil, "http-stream", td("content", b("s"), "action", nil)),
			check: func(t *testing.T, it Item) { eq(t, "id", it.ID, ""); eq(t, "action", it.HTTPStream.Action, ActionSend) }},
		{name: "null top-level format skipped", tnet: td("channel", b("c"), "http-stream", nil), wantErr: "no formats specified"},
		{name: "null format in formats", tnet: td("channel", b("c"), "formats", td("http-stream", nil)), wantErr: "'http-stream' is not an object"},
		{name: "null channel", tnet: td("channel", nil, "http-stream", td("content", b("s"))), wantErr: "publish item object contains 'channel' with wrong type"},
		{name: "body-bin not read", tnet: td("channel", b("c"), "http-response", td("body-bin", b("aGk="))),
			wantErr: "'http-response' does not contain 'body' or 'body-patch'"},
		{name: "content-bin not read for stream", tnet: td("channel", b("c"), "http-stream", td("content-bin", b("aGk="))),
			wantErr: "'http-stream' does not contain 'content'"},
		{name: "ws content-bin must be bytes", tnet: td("channel", b("c"), "ws-message", td("content-bin", int64(5))),
			wantErr: "'ws-message' contains 'content-bin' with wrong type"},
		{name: "no-seq must be bool", tnet: td("channel", b("c"), "no-seq", int64(1), "http-stream", td("content", b("s"))),
			wantErr: "publish item object contains 'no-seq' with wrong type"},
		{name: "not a dict", tnet: []any{}, wantErr: "publish item object is not an object"},
	})
}

func TestGripParseItemListTnetstring(t *testing.T) {
	args := td("items", []any{td("channel", []byte("c"), "http-stream", td("content", []byte("s")))})
	items, err := ParseItemList(args)
	if err != nil {
		t.Fatalf("ParseItemList: %v", err)
	}
	eq(t, "len", len(items), 1)
	_, err = ParseItemList(td())
	eq(t, "error", errText(t, err), "Invalid format: object does not contain 'items'")
	_, err = ParseItemList(td("items", []any{td("channel", []byte("c"))}))
	eq(t, "error", errText(t, err), "Invalid format: no formats specified")
}

func TestGripDecodeItemFrame(t *testing.T) {
	item := td("channel", []byte("c"), "http-stream", td("content", []byte("s")))
	enc := tnetstring.MustEncode(item)
	for name, frame := range map[string][]byte{
		"bare":       enc,
		"T prefix":   append([]byte("T"), enc...),
		"J prefix":   []byte(`J{"channel":"c","http-stream":{"content":"s"}}`),
		"J with bin": []byte(`J{"channel":"c","http-stream":{"content-bin":"cw=="}}`),
	} {
		t.Run(name, func(t *testing.T) {
			v, err := DecodeItemFrame(frame)
			if err != nil {
				t.Fatalf("DecodeItemFrame: %v", err)
			}
			it, err := ParseItem(v)
			if err != nil {
				t.Fatalf("ParseItem: %v", err)
			}
			eq(t, "content", string(it.HTTPStream.Content), "s")
		})
	}
	for _, frame := range []string{"", "J", "Jnull", "x", "T5:abc"} {
		if _, err := DecodeItemFrame([]byte(frame)); err == nil {
			t.Errorf("DecodeItemFrame(%q) succeeded", frame)
		}
	}
}
