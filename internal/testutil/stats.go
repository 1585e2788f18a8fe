package testutil

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/tnetstring"
)

// StatsSub is a SUB connected to a stats socket (zmq-wire.md §4.6); only
// the test goroutine uses it.
type StatsSub struct {
	t    testing.TB
	sock *zmq.Socket
}

// StatsPacket is one decoded stats packet.
type StatsPacket struct {
	Type string
	D    tnetstring.Dict
}

// NewStatsSub connects a SUB, subscribed to everything, to spec.
func NewStatsSub(t testing.TB, spec string) *StatsSub {
	t.Helper()
	s, err := zmq.NewSocket(zmq.SUB)
	if err != nil {
		t.Fatal(err)
	}
	s.SetLinger(0)
	s.SetRcvtimeo(100 * time.Millisecond)
	if err := s.SetSubscribe(""); err != nil {
		t.Fatal(err)
	}
	if err := s.Connect(spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &StatsSub{t: t, sock: s}
}

// Read returns the packets that arrive within d.
func (s *StatsSub) Read(d time.Duration) []StatsPacket {
	var out []StatsPacket
	for end := time.Now().Add(d); time.Now().Before(end); {
		m, err := s.sock.RecvBytes(0)
		if err != nil {
			continue
		}
		typ, rest, ok := bytes.Cut(m, []byte(" T"))
		if !ok {
			s.t.Fatalf("stats packet %q is not \"<type> T<tnetstring>\"", m)
		}
		dict, err := tnetstring.DecodeDict(rest)
		if err != nil {
			s.t.Fatalf("stats packet %q: %v", m, err)
		}
		out = append(out, StatsPacket{string(typ), dict})
	}
	return out
}

// Until reads packets until ok accepts all read so far, or fails the test.
func (s *StatsSub) Until(timeout time.Duration, ok func([]StatsPacket) bool) []StatsPacket {
	s.t.Helper()
	var all []StatsPacket
	for end := time.Now().Add(timeout); time.Now().Before(end); {
		all = append(all, s.Read(200*time.Millisecond)...)
		if ok(all) {
			return all
		}
	}
	s.t.Fatalf("stats never matched; got %v", all)
	return nil
}

// Prometheus reads one metric's value from a Prometheus endpoint.
func Prometheus(t testing.TB, url, name string) int64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindSubmatch(b)
	if m == nil || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("%s: no %s in %q", url, name, b)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// ZRPC makes one call with a REQ socket (as Pushpin's tools/command.py
// does) and returns the reply.
func ZRPC(t testing.TB, spec string, req tnetstring.Dict) tnetstring.Dict {
	t.Helper()
	s, err := zmq.NewSocket(zmq.REQ)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetLinger(0)
	s.SetRcvtimeo(15 * time.Second)
	if err := s.Connect(spec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SendBytes(tnetstring.MustEncode(req), 0); err != nil {
		t.Fatal(err)
	}
	b, err := s.RecvBytes(0)
	if err != nil {
		t.Fatalf("no reply from %s: %v", spec, err)
	}
	d, err := tnetstring.DecodeDict(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ConnCheck asks a handler's command socket which of ids are connected.
func ConnCheck(t testing.TB, spec string, ids ...string) []string {
	t.Helper()
	l := make([]any, len(ids))
	for i, id := range ids {
		l[i] = []byte(id)
	}
	r := ZRPC(t, spec, tnetstring.Dict{{Key: "id", Value: "cc"}, {Key: "method", Value: "conncheck"},
		{Key: "args", Value: tnetstring.Dict{{Key: "ids", Value: l}}}})
	v, ok := r.List("value")
	if !r.Bool("success") || !ok {
		t.Fatalf("conncheck reply %v", r)
	}
	out := []string{}
	for _, x := range v {
		if b, ok := x.([]byte); ok {
			out = append(out, string(b))
		}
	}
	return out
}
