package metrics

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/rs/zerolog"
)

func TestFormatPushpinText(t *testing.T) {
	got := Format("pp_", Values{RequestsReceived: 3, ConnectionsConnected: 1, ConnectionMinutes: 5})
	// Captured from pushpin-proxy 1.36 (prometheus_prefix=pp_ added).
	want := "# HELP pp_request_received Number of requests received\n# TYPE pp_request_received counter\npp_request_received 3\n" +
		"# HELP pp_connection_connected Number of concurrent connections\n# TYPE pp_connection_connected gauge\npp_connection_connected 1\n" +
		"# HELP pp_connection_minute Number of minutes clients have been connected\n# TYPE pp_connection_minute counter\npp_connection_minute 5\n" +
		"# HELP pp_message_received Number of messages received by the publish API\n# TYPE pp_message_received counter\npp_message_received 0\n" +
		"# HELP pp_message_sent Number of messages sent to clients\n# TYPE pp_message_sent counter\npp_message_sent 0\n"
	// Pushpin's five come first, exactly; tack's own drop counters follow.
	want += "# HELP pp_message_dropped Number of deliveries dropped (message_hwm exceeded or client not reading)\n# TYPE pp_message_dropped counter\npp_message_dropped 0\n" +
		"# HELP pp_ws_message_dropped Number of messages to WebSocket clients dropped (connection outbound queue full)\n# TYPE pp_ws_message_dropped counter\npp_ws_message_dropped 0\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestListenForms(t *testing.T) {
	for _, tc := range []struct{ spec, err string }{
		{"127.0.0.1:0", ""},
		{"ipc://" + t.TempDir() + "/prom", ""},
		{"nope", "bad value"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := Listen(tc.spec, "[proxy] prometheus_port", "", func() Values { return Values{RequestsReceived: 7} }, zerolog.Nop())
			if tc.err != "" {
				if err == nil {
					s.Close()
					t.Fatalf("no error for %q", tc.spec)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			if s.Addr().Network() != "tcp" {
				return
			}
			resp, err := http.Get("http://" + s.Addr().String() + "/anything")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain" || string(b) != Format("", Values{RequestsReceived: 7}) {
				t.Fatalf("%d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
		})
	}
}
