package handler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
)

// GRIP WebSocket control messages: the JSON a backend sends after `c:`,
// which the proxy forwards in a ws-control `grip` item (grip-reference
// §6.2; Pushpin src/handler/wscontrolmessage.cpp). Errors use Pushpin's
// wording ("grip control object ...").

// wsControlType is a control message `type`.
type wsControlType uint8

const (
	wcSubscribe wsControlType = iota + 1
	wcUnsubscribe
	wcDetach
	wcSession
	wcSetMeta
	wcKeepAlive
	wcSendDelayed
	wcFlushDelayed
)

var wsControlTypes = map[string]wsControlType{
	"subscribe": wcSubscribe, "unsubscribe": wcUnsubscribe, "detach": wcDetach, "session": wcSession,
	"set-meta": wcSetMeta, "keep-alive": wcKeepAlive, "send-delayed": wcSendDelayed, "flush-delayed": wcFlushDelayed,
}

// Defaults of the keep-alive and send-delayed timeouts (Pushpin 1.36
// DEFAULT_WS_KEEPALIVE_TIMEOUT, DEFAULT_WS_SENDDELAYED_TIMEOUT), seconds.
const (
	defaultWSKeepAliveTimeout   = 55
	defaultWSSendDelayedTimeout = 1
)

// wsControlMessage is one parsed control message.
type wsControlMessage struct {
	typ     wsControlType
	channel string
	filters []string
	// session
	sessionID string
	// set-meta; hasValue false removes the name
	metaName  string
	metaValue string
	hasValue  bool
	// keep-alive and send-delayed
	messageType string // text, binary, ping, pong
	content     []byte
	hasContent  bool
	timeout     int // seconds; 0 = default
	mode        string
}

const wcObj = "grip control object"

// parseWSControl parses the JSON of a control message.
func parseWSControl(b []byte) (*wsControlMessage, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("grip control message is not valid json: %w", err)
	}
	if d.More() {
		return nil, fmt.Errorf("grip control message is not valid json: data after the value")
	}
	o, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("grip control packet is not an object")
	}
	typ, _, err := wcString(o, "type", true)
	if err != nil {
		return nil, err
	}
	m := &wsControlMessage{typ: wsControlTypes[typ]}
	if m.typ == 0 {
		return nil, fmt.Errorf("'type' contains unknown value: %s", typ)
	}
	switch m.typ {
	case wcSubscribe, wcUnsubscribe:
		if m.channel, _, err = wcString(o, "channel", true); err != nil {
			return nil, err
		}
		if m.channel == "" {
			return nil, fmt.Errorf("%s contains 'channel' with invalid value", wcObj)
		}
		if m.typ == wcSubscribe {
			if m.filters, err = wcFilters(o); err != nil {
				return nil, err
			}
		}
	case wcSession:
		if m.sessionID, _, err = wcString(o, "id", false); err != nil {
			return nil, err
		}
	case wcSetMeta:
		if m.metaName, _, err = wcString(o, "name", true); err != nil {
			return nil, err
		}
		if m.metaName == "" {
			return nil, fmt.Errorf("%s contains 'name' with invalid value", wcObj)
		}
		if m.metaValue, m.hasValue, err = wcString(o, "value", false); err != nil {
			return nil, err
		}
	case wcKeepAlive, wcSendDelayed:
		if err := m.parseMessage(o); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// parseMessage reads the message fields of keep-alive and send-delayed.
func (m *wsControlMessage) parseMessage(o map[string]any) error {
	mt, ok, err := wcString(o, "message-type", false)
	if err != nil {
		return err
	}
	m.messageType = "text"
	if ok {
		switch mt {
		case "text", "binary", "ping", "pong":
			m.messageType = mt
		default:
			return fmt.Errorf("%s contains 'message-type' with unknown value", wcObj)
		}
	}
	if v, ok := o["content-bin"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return fmt.Errorf("%s contains 'content-bin' with wrong type", wcObj)
		}
		// Qt's fromBase64 is lenient; padding is optional here too.
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
				return fmt.Errorf("%s contains 'content-bin' with invalid value", wcObj)
			}
		}
		m.content, m.hasContent = b, true
	} else if v, ok := o["content"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return fmt.Errorf("%s contains 'content' with wrong type", wcObj)
		}
		m.content, m.hasContent = []byte(s), true
	}
	if m.hasContent {
		if v, ok := o["timeout"]; ok {
			n, ok := wcInt(v)
			if !ok {
				return fmt.Errorf("%s contains 'timeout' with wrong type", wcObj)
			}
			if n < 0 {
				return fmt.Errorf("%s contains 'timeout' with invalid value", wcObj)
			}
			m.timeout = n
		}
	}
	if m.typ == wcKeepAlive {
		if m.mode, _, err = wcString(o, "mode", false); err != nil {
			return err
		}
	}
	return nil
}

// wcString reads a string field; null counts as absent.
func wcString(o map[string]any, key string, required bool) (string, bool, error) {
	v, ok := o[key]
	if !ok || v == nil {
		if required {
			return "", false, fmt.Errorf("%s does not contain '%s'", wcObj, key)
		}
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, fmt.Errorf("%s contains '%s' with wrong type", wcObj, key)
	}
	return s, true, nil
}

func wcFilters(o map[string]any) ([]string, error) {
	v, ok := o["filters"]
	if !ok || v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%s contains 'filters' with wrong type", wcObj)
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("filters contains value with wrong type")
		}
		out = append(out, s)
	}
	return out, nil
}

// wcInt converts a timeout as Qt's toInt would: a number (truncated) or a
// numeric string.
func wcInt(v any) (int, bool) {
	var f float64
	switch x := v.(type) {
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, false
		}
	case string:
		var n json.Number = json.Number(x)
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if math.IsNaN(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return 0, false
	}
	return int(f), true
}
