package grip

import (
	"fmt"

	"tack/pkg/tnetstring"
)

// Action is a publish format's `action`.
type Action int

// Publish actions.
const (
	ActionSend    Action = iota // the default
	ActionHint                  // re-fetch (response: retry; stream: next link)
	ActionClose                 // end the stream / close the WebSocket
	ActionRefresh               // WebSocket-over-HTTP: request the backend now
)

func (a Action) String() string {
	switch a {
	case ActionHint:
		return "hint"
	case ActionClose:
		return "close"
	case ActionRefresh:
		return "refresh"
	default:
		return "send"
	}
}

// WSMessageType is a ws-message `type`.
type WSMessageType int

// WebSocket message types.
const (
	WSText WSMessageType = iota
	WSBinary
	WSPing
	WSPong
)

func (t WSMessageType) String() string {
	switch t {
	case WSBinary:
		return "binary"
	case WSPing:
		return "ping"
	case WSPong:
		return "pong"
	default:
		return "text"
	}
}

// DefaultWSCloseCode is the close code sent for `action: close` without a
// `code` (grip-reference §4.1).
const DefaultWSCloseCode = 1000

// HTTPResponseFormat is an item's `http-response` format. Fields other than
// Action are only read for ActionSend.
type HTTPResponseFormat struct {
	Action Action
	// Code defaults to 200, Reason to the code's standard phrase.
	Code    int
	Reason  string
	Headers []Header
	Body    []byte
	// BodyPatch is the JSON-patch list when the item used `body-patch`
	// (HaveBodyPatch) instead of a body; elements are decoded JSON or
	// tnetstring values.
	HaveBodyPatch bool
	BodyPatch     []any
	// ContentFilters is `content-filters` when HaveContentFilters.
	HaveContentFilters bool
	ContentFilters     []string
}

// HTTPStreamFormat is an item's `http-stream` format.
type HTTPStreamFormat struct {
	Action             Action
	Content            []byte
	HaveContentFilters bool
	ContentFilters     []string
}

// WSMessageFormat is an item's `ws-message` format.
type WSMessageFormat struct {
	Action Action
	// Type defaults to WSText with `content` and WSBinary with `content-bin`.
	Type    WSMessageType
	Content []byte
	// CloseCode (default DefaultWSCloseCode) and CloseReason are read for
	// ActionClose.
	CloseCode          int
	CloseReason        string
	HaveContentFilters bool
	ContentFilters     []string
}

// Item is one publish item (grip-reference §4.1).
type Item struct {
	Channel string
	ID      string
	PrevID  string
	// Formats present in the item; nil when absent.
	HTTPResponse *HTTPResponseFormat
	HTTPStream   *HTTPStreamFormat
	WSMessage    *WSMessageFormat
	Meta         map[string]string
	NoSeq        bool
	// Size overrides the content size for stats; -1 when absent.
	Size int
}

// ParseItems parses the body of a POST to the HTTP publish API
// (`{"items":[...]}`, grip-reference §4.2). An error's message is the reply
// body Pushpin sends with status 400, without the trailing newline:
// "Body is not valid JSON.", "Invalid format." or "Invalid format: <msg>".
// One bad item rejects the whole batch (quirk 21).
func ParseItems(body []byte) ([]Item, error) {
	v, err := decodeJSON(body)
	if err != nil {
		return nil, formatErr("Body is not valid JSON.")
	}
	if _, ok := asObj(v); !ok {
		return nil, formatErr("Invalid format.")
	}
	return ParseItemList(v)
}

// ParseItemList parses a decoded `{"items":[...]}` object: a JSON value
// or, for the command socket's `publish` method, its tnetstring args.
// Errors read "Invalid format: <msg>" (the ZRPC bad-request value).
func ParseItemList(v any) ([]Item, error) {
	o, ok := asObj(v)
	if !ok {
		return nil, formatErr("Invalid format.")
	}
	l, _, err := o.list("object", "items", true)
	if err != nil {
		return nil, prefixed(err)
	}
	items := make([]Item, 0, len(l))
	for _, iv := range l {
		it, err := ParseItem(iv)
		if err != nil {
			return nil, prefixed(err)
		}
		items = append(items, it)
	}
	return items, nil
}

func prefixed(err error) error {
	return formatErr("Invalid format: " + err.Error())
}

// DecodeItemFrame decodes a PULL-socket message frame or the payload frame
// of a SUB message (grip-reference §4.3): a 'J' prefix means JSON, a 'T'
// prefix tnetstring, anything else a bare tnetstring. Pass the result to
// ParseItem or ParseItemForChannel.
func DecodeItemFrame(frame []byte) (any, error) {
	if len(frame) > 0 && frame[0] == 'J' {
		v, err := decodeJSON(frame[1:])
		if err != nil {
			return nil, fmt.Errorf("decode json item: %w", err)
		}
		return v, nil
	}
	if len(frame) > 0 && frame[0] == 'T' {
		frame = frame[1:]
	}
	v, err := tnetstring.Decode(frame)
	if err != nil {
		return nil, fmt.Errorf("decode tnetstring item: %w", err)
	}
	return v, nil
}

// ParseItem parses one decoded item: a JSON object (map[string]any) or a
// tnetstring dictionary. Errors carry Pushpin's message without any prefix.
func ParseItem(v any) (Item, error) {
	return ParseItemForChannel(v, "")
}

// ParseItemForChannel is ParseItem for the SUB input: a non-empty channel
// (the message's first frame) replaces the item's own `channel`.
func ParseItemForChannel(v any, channel string) (Item, error) {
	const pn = "publish item object"
	o, ok := asObj(v)
	if !ok {
		return Item{}, errNotObject(pn)
	}
	it := Item{Channel: channel, Size: -1}
	var err error
	if channel == "" {
		if it.Channel, _, err = o.str(pn, "channel", true); err != nil {
			return Item{}, err
		}
		// Deliberate deviation: 1.36 accepts an empty channel (and delivers
		// to nobody unless someone subscribed to ""); the publish API
		// rejects it with 400.
		if it.Channel == "" {
			return Item{}, errInvalid(pn, "channel")
		}
	}
	if it.ID, _, err = o.str(pn, "id", false); err != nil {
		return Item{}, err
	}
	if it.PrevID, _, err = o.str(pn, "prev-id", false); err != nil {
		return Item{}, err
	}

	type fmtEntry struct {
		name string
		v    any
		ok   bool
	}
	names := [3]string{"http-response", "http-stream", "ws-message"}
	var entries [3]fmtEntry
	formats, haveFormats, err := o.object(pn, "formats", false)
	if err != nil {
		return Item{}, err
	}
	found := false
	if haveFormats {
		// With a `formats` object, top-level format keys are ignored
		// (quirk 22).
		found = !formats.empty()
		for i, n := range names {
			fv, ok := formats.get(n)
			entries[i] = fmtEntry{n, fv, ok}
		}
	} else {
		for i, n := range names {
			fv, ok := o.get(n)
			ok = ok && !o.absent(fv)
			entries[i] = fmtEntry{n, fv, ok}
			found = found || ok
		}
	}
	if !found {
		return Item{}, formatErr("no formats specified")
	}
	for _, e := range entries {
		if !e.ok {
			continue
		}
		switch e.name {
		case "http-response":
			f, err := parseHTTPResponseFormat(e.v)
			if err != nil {
				return Item{}, err
			}
			it.HTTPResponse = f
		case "http-stream":
			f, err := parseHTTPStreamFormat(e.v)
			if err != nil {
				return Item{}, err
			}
			it.HTTPStream = f
		case "ws-message":
			f, err := parseWSMessageFormat(e.v)
			if err != nil {
				return Item{}, err
			}
			it.WSMessage = f
		}
	}

	meta, ok, err := o.object(pn, "meta", false)
	if err != nil {
		return Item{}, err
	}
	if ok {
		it.Meta = map[string]string{}
		if err := stringMap(meta, it.Meta); err != nil {
			return Item{}, err
		}
	}

	if n, ok, err := o.integer(pn, "size"); err != nil {
		return Item{}, err
	} else if ok {
		if n < 0 {
			return Item{}, errInvalid(pn, "size")
		}
		it.Size = n
	}

	if nv, ok := o.get("no-seq"); ok {
		b, isBool := nv.(bool)
		if !isBool {
			return Item{}, errWrongType(pn, "no-seq")
		}
		it.NoSeq = b
	}
	return it, nil
}

// formatHead checks that a format is an object and reads its action.
func formatHead(v any, pn string) (obj, Action, error) {
	o, ok := asObj(v)
	if !ok {
		return obj{}, 0, errNotObject(pn)
	}
	s, present, err := o.str(pn, "action", false)
	if err != nil {
		return obj{}, 0, err
	}
	if !present {
		return o, ActionSend, nil
	}
	switch s {
	case "send":
		return o, ActionSend, nil
	case "hint":
		return o, ActionHint, nil
	case "close":
		return o, ActionClose, nil
	case "refresh":
		// Accepted as in 1.38+; 1.36 rejects it like any unknown action.
		return o, ActionRefresh, nil
	}
	// Pushpin rejects an unknown action without a message (quirk 2).
	return obj{}, 0, formatErr("")
}

// contentFilters reads the optional `content-filters` list.
func contentFilters(o obj, pn string) (bool, []string, error) {
	v, ok := o.get("content-filters")
	if !ok {
		return false, nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return false, nil, errWrongType(pn, "content-filters")
	}
	fs, err := stringList(l, "content-filters contains element with wrong type")
	if err != nil {
		return false, nil, err
	}
	return true, fs, nil
}

// binField reads a JSON `-bin` field: a base64 string. Deliberate deviation:
// 1.36 decodes invalid base64 leniently (skipping bad characters); we reject
// it as an invalid value, so the publish API answers 400.
func binField(o obj, pn, key string) ([]byte, error) {
	s, _, err := o.str(pn, key, false)
	if err != nil {
		return nil, err
	}
	b, ok := decodeBase64Strict(s)
	if !ok {
		return nil, errInvalid(pn, key)
	}
	return b, nil
}

func parseHTTPResponseFormat(v any) (*HTTPResponseFormat, error) {
	const pn = "'http-response'"
	o, action, err := formatHead(v, pn)
	if err != nil {
		return nil, err
	}
	f := &HTTPResponseFormat{Action: action}
	if action != ActionSend {
		return f, nil
	}
	f.Code = 200
	if n, ok, err := o.integer(pn, "code"); err != nil {
		return nil, err
	} else if ok {
		if n < 0 || n > 999 {
			return nil, errInvalid(pn, "code")
		}
		f.Code = n
	}
	if f.Reason, _, err = o.str(pn, "reason", false); err != nil {
		return nil, err
	}
	if f.Reason == "" {
		f.Reason = ReasonPhrase(f.Code)
	}
	if hv, ok := o.get("headers"); ok {
		if f.Headers, err = headerList(hv, pn); err != nil {
			return nil, err
		}
	}
	if f.HaveContentFilters, f.ContentFilters, err = contentFilters(o, pn); err != nil {
		return nil, err
	}
	_, hasBin := o.get("body-bin")
	_, hasBody := o.get("body")
	_, hasPatch := o.get("body-patch")
	switch {
	case o.json && hasBin:
		if f.Body, err = binField(o, pn, "body-bin"); err != nil {
			return nil, err
		}
	case hasBody:
		bv, _ := o.get("body")
		b, ok := toBytes(bv)
		if !ok {
			return nil, errWrongType(pn, "body")
		}
		f.Body = b
	case hasPatch:
		l, _, err := o.list(pn, "body-patch", false)
		if err != nil {
			return nil, err
		}
		f.HaveBodyPatch = true
		f.BodyPatch = l
	case o.json:
		return nil, formatErr(pn + " does not contain 'body', 'body-bin', or 'body-patch'")
	default:
		return nil, formatErr(pn + " does not contain 'body' or 'body-patch'")
	}
	return f, nil
}

func parseHTTPStreamFormat(v any) (*HTTPStreamFormat, error) {
	const pn = "'http-stream'"
	o, action, err := formatHead(v, pn)
	if err != nil {
		return nil, err
	}
	f := &HTTPStreamFormat{Action: action}
	if action != ActionSend {
		return f, nil
	}
	if f.HaveContentFilters, f.ContentFilters, err = contentFilters(o, pn); err != nil {
		return nil, err
	}
	_, hasBin := o.get("content-bin")
	cv, hasContent := o.get("content")
	switch {
	case o.json && hasBin:
		if f.Content, err = binField(o, pn, "content-bin"); err != nil {
			return nil, err
		}
	case hasContent:
		b, ok := toBytes(cv)
		if !ok {
			return nil, errWrongType(pn, "content")
		}
		f.Content = b
	case o.json:
		return nil, formatErr(pn + " does not contain 'content' or 'content-bin'")
	default:
		return nil, formatErr(pn + " does not contain 'content'")
	}
	return f, nil
}

func parseWSMessageFormat(v any) (*WSMessageFormat, error) {
	const pn = "'ws-message'"
	o, action, err := formatHead(v, pn)
	if err != nil {
		return nil, err
	}
	f := &WSMessageFormat{Action: action, CloseCode: DefaultWSCloseCode}
	switch action {
	case ActionSend:
		return parseWSSend(o, f)
	case ActionClose:
		if n, ok, err := o.integer(pn, "code"); err != nil {
			return nil, err
		} else if ok {
			if n < 0 {
				return nil, errInvalid(pn, "code")
			}
			f.CloseCode = n
		}
		if f.CloseReason, _, err = o.str(pn, "reason", false); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func parseWSSend(o obj, f *WSMessageFormat) (*WSMessageFormat, error) {
	const pn = "'ws-message'"
	typ, haveType, err := o.str(pn, "type", false)
	if err != nil {
		return nil, err
	}
	if haveType {
		switch typ {
		case "text":
			f.Type = WSText
		case "binary":
			f.Type = WSBinary
		case "ping":
			f.Type = WSPing
		case "pong":
			f.Type = WSPong
		default:
			return nil, formatErr(pn + " contains 'type' with unknown value")
		}
	}
	if f.HaveContentFilters, f.ContentFilters, err = contentFilters(o, pn); err != nil {
		return nil, err
	}
	if bv, ok := o.get("content-bin"); ok {
		if o.json {
			if _, isStr := bv.(string); !isStr {
				return nil, errWrongType(pn, "content-bin")
			}
			if f.Content, err = binField(o, pn, "content-bin"); err != nil {
				return nil, err
			}
		} else {
			b, isBytes := bv.([]byte)
			if !isBytes {
				return nil, errWrongType(pn, "content-bin")
			}
			f.Content = append([]byte(nil), b...)
		}
		if !haveType {
			f.Type = WSBinary
		}
		return f, nil
	}
	if cv, ok := o.get("content"); ok {
		b, ok := toBytes(cv)
		if !ok {
			return nil, errWrongType(pn, "content")
		}
		f.Content = b
		if !haveType {
			f.Type = WSText
		}
		return f, nil
	}
	if !haveType || f.Type == WSText || f.Type == WSBinary {
		return nil, formatErr(pn + " does not contain 'content' or 'content-bin'")
	}
	return f, nil
}
