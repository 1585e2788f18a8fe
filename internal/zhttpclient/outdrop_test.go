package zhttpclient

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

// A reply the out socket drops is counted, and logged as a warning with
// the client and the request id, at most once a second.
func TestOutDropCountedAndLogged(t *testing.T) {
	var logged bytes.Buffer
	s := &Service{log: zerolog.New(&logged)}
	p := zhttp.New()
	p.ID, p.Seq, p.Type = []byte("req-7"), 3, zhttp.TypeData
	frame := append([]byte("proxy-1 "), p.Encode()...)
	err := errors.New("resource temporarily unavailable")
	s.onOutDrop(zsock.Message{frame}, err)
	s.onOutDrop(zsock.Message{frame}, err)
	if n := s.outDrops.Load(); n != 2 {
		t.Fatalf("counted %d drops, want 2", n)
	}
	lines := strings.Split(strings.TrimSpace(logged.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want 1 a second: %q", len(lines), logged.String())
	}
	for _, want := range []string{`"level":"warn"`, `"to":"proxy-1"`, `"rid":"req-7"`, `"seq":3`, `"dropped_total":1`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %s lacks %s", lines[0], want)
		}
	}
}
