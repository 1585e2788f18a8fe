package testutil

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATSServer starts an embedded NATS server on 127.0.0.1 (port 0: a free
// one) and shuts it down when the test ends. Restart a stopped one on the
// same port with NATSServer(t, port).
func NATSServer(t testing.TB, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = -1 // nats-server's "pick a free port"
	}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// NATSSubjects lists the subjects the clients of srv subscribe to (the
// server's own subscriptions left out), one entry per subscription.
func NATSSubjects(t testing.TB, srv *server.Server) []string {
	t.Helper()
	cz, err := srv.Connz(&server.ConnzOptions{Subscriptions: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range cz.Conns {
		out = append(out, c.Subs...)
	}
	return out
}
