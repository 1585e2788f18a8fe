package zhttp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"tack/pkg/tnetstring"
)

// The golden captures live beside the lowest layer that decodes all of them;
// see ../tnetstring/testdata/captures/a1_condure.txt for the format. This is
// a trimmed copy of the loader in ../tnetstring/captures_test.go (test files
// cannot be shared across packages).
const capturesDir = "../tnetstring/testdata/captures"

type capture struct {
	file, label, kind string
	line              int
	cut               bool
	frames            [][]byte
}

func (c capture) name() string { return strings.TrimSuffix(c.file, ".txt") + "/" + c.label }

// packet returns the zhttp bytes ("T...") of a zhttp or pub capture and, for
// pub, its destination.
func (c capture) packet() (dest, pkt []byte, err error) {
	p := c.frames[len(c.frames)-1]
	if c.kind == "pub" {
		return SplitPubFrame(p)
	}
	return nil, p, nil
}

func loadCaptures(t testing.TB) []capture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(capturesDir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no capture files in %s (err %v)", capturesDir, err)
	}
	sort.Strings(files)
	var out []capture
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, raw := range strings.Split(string(data), "\n") {
			line := strings.TrimSpace(raw)
			if line == "" || line[0] == '#' {
				continue
			}
			c := capture{file: filepath.Base(path), line: i + 1}
			var rest string
			c.kind, rest, _ = strings.Cut(line, " ")
			c.label, rest, _ = strings.Cut(strings.TrimSpace(rest), " ")
			c.kind, c.cut = strings.CutSuffix(c.kind, "/cut")
			if c.kind == "skip" {
				continue // reasons are reported by the tnetstring golden test
			}
			if c.frames, err = parsePyFrames(strings.TrimSpace(rest)); err != nil {
				t.Fatalf("%s:%d: %v", path, c.line, err)
			}
			out = append(out, c)
		}
	}
	return out
}

func parsePyFrames(s string) ([][]byte, error) {
	if !strings.HasPrefix(s, "[") {
		b, rest, err := parsePyBytes(s)
		if err == nil && strings.TrimSpace(rest) != "" {
			err = fmt.Errorf("junk after literal: %.20q", rest)
		}
		return [][]byte{b}, err
	}
	var frames [][]byte
	for s = s[1:]; ; {
		b, rest, err := parsePyBytes(strings.TrimLeft(s, " "))
		if err != nil {
			return nil, err
		}
		frames = append(frames, b)
		rest = strings.TrimLeft(rest, " ")
		switch {
		case strings.HasPrefix(rest, ","):
			s = rest[1:]
		case rest == "]":
			return frames, nil
		default:
			return nil, fmt.Errorf("want ',' or ']' in list, got %.20q", rest)
		}
	}
}

// parsePyBytes parses a Python bytes literal (\n \r \t \\ \' \" \xNN).
func parsePyBytes(s string) ([]byte, string, error) {
	if len(s) < 3 || s[0] != 'b' || (s[1] != '\'' && s[1] != '"') {
		return nil, "", fmt.Errorf("not a bytes literal: %.20q", s)
	}
	quote, out := s[1], []byte{}
	for i := 2; i < len(s); i++ {
		c := s[i]
		if c == quote {
			return out, s[i+1:], nil
		}
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i++; i >= len(s) {
			break
		}
		switch e := s[i]; e {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '\\', '\'', '"':
			out = append(out, e)
		case 'x':
			if i+2 >= len(s) {
				return nil, "", errors.New("short \\x escape")
			}
			n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, "", err
			}
			out = append(out, byte(n))
			i += 2
		default:
			return nil, "", fmt.Errorf("unknown escape \\%c", e)
		}
	}
	return nil, "", errors.New("unterminated bytes literal")
}

// inConnmgrOrder reports whether a capture was written by condure itself,
// whose field order Packet.Dict reproduces, so re-encoding is byte-identical.
func inConnmgrOrder(c capture) bool {
	return strings.HasPrefix(c.label, "a1.") && strings.Contains(c.label, "-recv-") ||
		c.label == "s1.1-condure-request" || c.label == "s2.8-condure-multi-keep-alive"
}

// TestCaptureParse is the zhttp half of the golden test of zmq-wire.md §7.3:
// every zhttp capture parses, and its re-encoding parses to an equal Packet.
func TestCaptureParse(t *testing.T) {
	n := 0
	for _, c := range loadCaptures(t) {
		switch c.kind {
		case "zhttp", "pub", "json", "pubjson":
		default:
			continue // ZRPC, ws-control, retry and stats are not zhttp
		}
		n++
		t.Run(c.name(), func(t *testing.T) {
			if c.kind == "json" || c.kind == "pubjson" {
				// Only zurl understands J (§1.2); Pushpin's own decoders drop it.
				pkt := c.frames[len(c.frames)-1]
				if c.kind == "pubjson" {
					_, pkt, _ = bytes.Cut(pkt, []byte(" "))
				}
				if _, err := Parse(pkt); !errors.Is(err, ErrFormat) {
					t.Fatalf("Parse(J...) err = %v, want ErrFormat", err)
				}
				return
			}
			dest, pkt, err := c.packet()
			if err != nil {
				t.Fatalf("line %d: %v", c.line, err)
			}
			p, err := Parse(pkt)
			if c.cut {
				if !errors.Is(err, ErrFormat) || !errors.Is(err, tnetstring.ErrTruncated) {
					t.Fatalf("line %d: cut capture: err = %v, want ErrFormat and ErrTruncated", c.line, err)
				}
				t.Skipf("cut by the capture script; rejected as truncated")
			}
			if err != nil {
				t.Fatalf("line %d: Parse: %v", c.line, err)
			}
			enc := p.Encode()
			p2, err := Parse(enc)
			if err != nil {
				t.Fatalf("line %d: Parse(Encode()): %v\n%q", c.line, err, enc)
			}
			if !reflect.DeepEqual(p, p2) {
				t.Fatalf("line %d: re-encoded packet differs:\n got %+v\nwant %+v", c.line, p2, p)
			}
			if inConnmgrOrder(c) && !bytes.Equal(enc, pkt) {
				t.Errorf("line %d: condure packet not re-encoded byte for byte:\n got %q\nwant %q", c.line, enc, pkt)
			}
			if dest != nil {
				d2, pkt2, err := SplitPubFrame(PubFrame(dest, p))
				if err != nil || !bytes.Equal(d2, dest) || !bytes.Equal(pkt2, enc) {
					t.Fatalf("line %d: PubFrame/SplitPubFrame: %q %q %v", c.line, d2, pkt2, err)
				}
			}
		})
	}
	if n < 100 {
		t.Fatalf("only %d zhttp captures found", n)
	}
}

func findCapture(t *testing.T, label string) *Packet {
	t.Helper()
	for _, c := range loadCaptures(t) {
		if c.label == label {
			_, pkt, err := c.packet()
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse(pkt)
			if err != nil {
				t.Fatalf("%s: %v", label, err)
			}
			return p
		}
	}
	t.Fatalf("no capture %s", label)
	return nil
}

// TestCaptureFields spot-checks decoded values of captures that exercise
// each kind of field.
func TestCaptureFields(t *testing.T) {
	t.Run("condure first request", func(t *testing.T) {
		p := findCapture(t, "a1.01-recv-pull")
		want := New()
		want.From, want.ID, want.Seq, want.Multi = []byte("condure"), []byte("1-2-b"), 0, true
		want.Method, want.URI = "GET", "http://127.0.0.1:18001/path/x?a=1&b=2"
		want.Headers = []Header{{"Host", "127.0.0.1:18001"}, {"User-Agent", "curl/7.88.1"}, {"Accept", "*/*"}, {"X-Foo", "bar"}}
		want.HasHeaders = true
		want.Credits, want.Stream, want.PeerAddress, want.PeerPort = 8192, true, "127.0.0.1", 49186
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got  %+v\nwant %+v", p, want)
		}
		if !p.IsRequestStart() {
			t.Error("IsRequestStart = false")
		}
	})
	t.Run("multi-id keep-alive", func(t *testing.T) {
		p := findCapture(t, "s2.8-condure-multi-keep-alive")
		want := []IDSeq{{[]byte("1-0-0"), 2}, {[]byte("1-1-1"), 2}}
		if p.Type != TypeKeepAlive || p.ID != nil || p.Seq != -1 || !reflect.DeepEqual(p.IDs, want) || !p.Multi {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("websocket binary frame", func(t *testing.T) {
		p := findCapture(t, "a1.16-recv-router")
		if p.ContentType != "binary" || string(p.Body) != "\x00\x01bin" || p.Seq != 2 {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("websocket close carries reason in body", func(t *testing.T) {
		p := findCapture(t, "a1.25-recv-router")
		if p.Type != TypeClose || p.Code != 4000 || string(p.Body) != "done" || p.Reason != "" {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("intreq passthrough", func(t *testing.T) {
		p := findCapture(t, "s4.8-intreq-request")
		pt, ok := p.Passthrough.(tnetstring.Dict)
		if !ok {
			t.Fatalf("passthrough %T", p.Passthrough)
		}
		if r, _ := pt.Bytes("route"); string(r) != "*,*,*,*" || !pt.Bool("prefer-internal") {
			t.Fatalf("passthrough %v", pt)
		}
	})
	t.Run("zurl user-data and credits zero", func(t *testing.T) {
		p := findCapture(t, "a9.04-recv-sub")
		ud, ok := p.UserData.(tnetstring.Dict)
		if v, _ := ud.Bytes("k"); !ok || string(v) != "v" {
			t.Fatalf("user-data %#v", p.UserData)
		}
		z := findCapture(t, "a9.40-recv-sub")
		if z.Type != TypeCredit || z.Credits != 0 {
			t.Fatalf("got %+v", z)
		}
	})
	t.Run("zurl rejected websocket", func(t *testing.T) {
		p := findCapture(t, "a9.47-recv-sub")
		if p.Type != TypeError || p.Condition != CondRejected || p.Code != 200 || p.HasHeaders {
			t.Fatalf("got %+v", p)
		}
	})
	t.Run("zurl cancel without from or seq", func(t *testing.T) {
		p := findCapture(t, "a9.27-recv-sub")
		if p.Type != TypeCancel || p.From != nil || p.Seq != -1 || string(p.ID) != "unknown-id" {
			t.Fatalf("got %+v", p)
		}
	})
}
