package proxy

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"tack/internal/logging"
	"tack/pkg/wscontrol"
	"tack/pkg/zhttp"
)

// testRequest collects the request body for the built-in test handler
// (grip-reference §11.8), bounded by TestBodyMax.
type testRequest struct {
	body     []byte
	tooLarge bool
}

const (
	testHello    = "Hello from the Pushpin test handler!\n"
	testNotFound = "no such test resource\n"
	testTooLarge = "request too large\n"

	testResponseBody = "nothing for now\n"
	testStreamBody   = "[stream opened]\n"
)

func (e *engine) startTest(s *session, now time.Time) {
	s.test = &testRequest{}
	s.req = outboundRequest{uri: s.first.URI, headers: s.first.Headers}
	if len(s.pendingOut) > 0 {
		e.testAppend(s, s.pendingOut)
		s.pendingOut = nil
	}
	if !s.reqMore {
		e.testRespond(s, now)
		return
	}
	// Let the body come: one window at a time, acknowledged as consumed.
	c := zhttp.New()
	c.Type = zhttp.TypeCredit
	c.Credits = TestBodyMax
	s.inOutstanding = TestBodyMax
	e.sendIn(s, c, now)
}

func (e *engine) testAppend(s *session, b []byte) {
	if s.test.tooLarge {
		return
	}
	if len(s.test.body)+len(b) > TestBodyMax {
		s.test.tooLarge = true
		s.test.body = nil
		return
	}
	s.test.body = append(s.test.body, b...)
}

func (e *engine) testBody(s *session, b []byte, more bool, now time.Time) {
	e.testAppend(s, b)
	if !more {
		e.testRespond(s, now)
		return
	}
	// Keep reading (and discarding once too large) so the client is not stuck.
	if s.inOutstanding < TestBodyMax/2 {
		c := zhttp.New()
		c.Type = zhttp.TypeCredit
		c.Credits = TestBodyMax - s.inOutstanding
		s.inOutstanding = TestBodyMax
		e.sendIn(s, c, now)
	}
}

// testResource maps a path (after the route's path_beg prefix is removed)
// to the test handler's answer.
func testResource(routePrefix, rawPath string) string {
	path := rawPath
	if p := strings.TrimSuffix(routePrefix, "/"); p != "" && strings.HasPrefix(path, p) {
		path = path[len(p):]
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	if path == "" {
		path = "/"
	}
	return path
}

func testChannels(u *url.URL) []string {
	ch := u.Query()["channel"]
	if len(ch) == 0 {
		return []string{"test"}
	}
	return ch
}

func (e *engine) testRespond(s *session, now time.Time) {
	if s.test.tooLarge {
		e.respond(s, 400, "Bad Request", "text/plain", testTooLarge, now)
		return
	}
	prefix := ""
	if s.route != nil {
		prefix = s.route.PathBeg
	}
	switch testResource(prefix, s.ci.path) {
	case "/":
		e.respond(s, 200, "OK", "text/plain", testHello, now)
	case "/response", "/stream":
		// GRIP holds, handed to the handler like any backend's.
		mode, body := "response", testResponseBody
		if strings.HasSuffix(s.ci.path, "stream") || strings.HasSuffix(strings.TrimSuffix(s.ci.path, "/"), "stream") {
			mode, body = "stream", testStreamBody
		}
		head := zhttp.New()
		head.Code, head.Reason = 200, "OK"
		head.Headers = []zhttp.Header{
			{Name: "Content-Type", Value: "text/plain"},
			{Name: "Grip-Hold", Value: mode},
			{Name: "Grip-Channel", Value: strings.Join(testChannels(s.ci.rawURI), ", ")},
		}
		head.Body = []byte(body)
		e.startGRIP(s, head, now)
	default:
		e.respond(s, 404, "Not Found", "text/plain", testNotFound, now)
	}
}

// wsStartTest answers a WebSocket routed to the test handler like
// Pushpin's (src/proxy/testwebsocket.cpp): only /ws is accepted (101
// without extensions); the connection subscribes to its `channel`
// parameters (default "test") through ws-control, as a GRIP backend's
// `c:{"type":"subscribe",...}` messages would, and every client message is
// echoed back.
func (e *engine) wsStartTest(s *session, now time.Time) {
	ws := s.ws
	if testResource(s.route.PathBeg, s.ci.path) != "/ws" {
		e.wsReject(s, 404, "Not Found", testNotFound, "", now)
		return
	}
	ws.test = true
	ws.connected = true
	ws.outDone = true
	// Like Pushpin 1.36, GRIP applies whatever the route's no_grip or the
	// client's trust (verified: a `* test,no_grip` route still subscribes).
	if e.wsControlOn() {
		e.wsControlStart(s, now)
		for _, ch := range s.targets[s.ti].Subs {
			e.wsControlRequest(s, wsSubscribeItem(ch), now)
		}
		for _, ch := range testChannels(s.ci.rawURI) {
			e.wsControlRequest(s, wsGripSubscribeItem(ch), now)
		}
	} else {
		e.log.Warn().Str(logging.FieldRID, string(s.in.ID)).Msg("websocket: test handler without ws-control sockets: echo only, no subscriptions")
	}
	e.wsAccept(s, "", []zhttp.Header{}, now)
	e.log.Info().Str(logging.FieldRID, string(s.in.ID)).Str("uri", s.first.URI).Str("target", "test").
		Str("cid", ws.cid).Msg("websocket connected")
}

// wsGripSubscribeItem is a `grip` item carrying a subscribe control
// message, what Pushpin's test WebSocket sends.
func wsGripSubscribeItem(channel string) wscontrol.Item {
	msg, _ := json.Marshal(struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
	}{"subscribe", channel})
	it := wscontrol.NewItem(nil, wscontrol.TypeGrip)
	it.Message = msg
	it.HasMessage = true
	return it
}

// wsTestFrame echoes a client frame: messages come back as they were sent
// (fragments included); a ping is answered with a pong (Pushpin's test
// WebSocket sends the ping itself back); pongs are consumed.
func (e *engine) wsTestFrame(s *session, p *zhttp.Packet, now time.Time) {
	switch p.Type {
	case zhttp.TypeData:
		e.wsBackendMessage(s, p, now)
	case zhttp.TypePing:
		e.wsToClient(s, wsFrame{typ: zhttp.TypePong, body: p.Body, owed: len(p.Body)}, now)
	default:
		s.ws.toClient.owed += int64(len(p.Body))
		e.wsGrantOut(s, now)
	}
}
