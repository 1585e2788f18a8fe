package tnetstring

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The golden captures of zmq-wire.md §A (and the inline ones of §1.1–§5.4),
// transcribed under testdata/captures; zmq-wire.md §7.3 asks that every one
// decodes and that its re-encoding decodes to an equal value. pkg/zhttp reads
// the same files for its own golden test.

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode from testdata/captures")

const (
	capturesDir   = "testdata/captures"
	fuzzCorpusDir = "testdata/fuzz/FuzzDecode"
)

// capture is one line of a capture file.
type capture struct {
	file   string
	line   int
	kind   string // zhttp, pub, stats, tnet, json, pubjson, skip
	label  string
	cut    bool     // the capture script cut the bytes short
	skip   string   // reason, for kind "skip"
	frames [][]byte // all frames shown; the payload is the last
}

func (c capture) name() string { return strings.TrimSuffix(c.file, ".txt") + "/" + c.label }

func (c capture) payload() []byte { return c.frames[len(c.frames)-1] }

// tnetstring returns the tnetstring part of the payload, or nil for JSON.
func (c capture) tnetstring() ([]byte, error) {
	p := c.payload()
	switch c.kind {
	case "tnet":
		return p, nil
	case "zhttp":
		if len(p) == 0 || p[0] != 'T' {
			return nil, errors.New("zhttp capture without T prefix")
		}
		return p[1:], nil
	case "pub", "stats":
		_, rest, ok := bytes.Cut(p, []byte(" "))
		if !ok || len(rest) == 0 || rest[0] != 'T' {
			return nil, errors.New("frame is not \"<word> T...\"")
		}
		return rest[1:], nil
	}
	return nil, nil
}

func loadCaptures(t testing.TB) []capture {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(capturesDir, "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no capture files in %s (err %v)", capturesDir, err)
	}
	sort.Strings(files)
	var out []capture
	seen := map[string]string{}
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
			rest = strings.TrimSpace(rest)
			if c.label == "" || rest == "" {
				t.Fatalf("%s:%d: want \"<kind> <label> <frames>\"", path, c.line)
			}
			if prev, dup := seen[c.label]; dup {
				t.Fatalf("%s:%d: label %s already used at %s", path, c.line, c.label, prev)
			}
			seen[c.label] = fmt.Sprintf("%s:%d", path, c.line)
			c.kind, c.cut = strings.CutSuffix(c.kind, "/cut")
			switch c.kind {
			case "skip":
				c.skip = rest
			case "zhttp", "pub", "stats", "tnet", "json", "pubjson":
				if c.frames, err = parsePyFrames(rest); err != nil {
					t.Fatalf("%s:%d: %v", path, c.line, err)
				}
			default:
				t.Fatalf("%s:%d: unknown kind %q", path, c.line, c.kind)
			}
			out = append(out, c)
		}
	}
	return out
}

// parsePyFrames parses one Python bytes literal or a Python list of them.
func parsePyFrames(s string) ([][]byte, error) {
	if !strings.HasPrefix(s, "[") {
		b, rest, err := parsePyBytes(s)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(rest) != "" {
			return nil, fmt.Errorf("junk after literal: %.20q", rest)
		}
		return [][]byte{b}, nil
	}
	var frames [][]byte
	s = s[1:]
	for {
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

// parsePyBytes parses the Python bytes literal (b'...' or b"...", as repr()
// writes it) at the start of s and returns its value and the rest of s.
func parsePyBytes(s string) ([]byte, string, error) {
	if len(s) < 3 || s[0] != 'b' || (s[1] != '\'' && s[1] != '"') {
		return nil, "", fmt.Errorf("not a bytes literal: %.20q", s)
	}
	quote := s[1]
	out := []byte{}
	for i := 2; i < len(s); i++ {
		c := s[i]
		switch {
		case c == quote:
			return out, s[i+1:], nil
		case c == '\\':
			if i+1 >= len(s) {
				return nil, "", errors.New("backslash at end of literal")
			}
			i++
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
					return nil, "", fmt.Errorf("bad \\x escape %q", s[i-1:i+3])
				}
				out = append(out, byte(n))
				i += 2
			default:
				return nil, "", fmt.Errorf("unknown escape \\%c", e)
			}
		case c < 0x20 || c > 0x7e:
			// repr() escapes everything else, so this is a transcription slip.
			return nil, "", fmt.Errorf("raw byte %#x in literal", c)
		default:
			out = append(out, c)
		}
	}
	return nil, "", errors.New("unterminated bytes literal")
}

func TestCaptureParserPythonEscapes(t *testing.T) {
	tests := []struct {
		name, in string
		want     [][]byte
		wantErr  bool
	}{
		{"plain", `b'5:hello,'`, [][]byte{[]byte("5:hello,")}, false},
		{"escapes", `b'\n\r\t\\\'\"\x00\xff\x8bE'`, [][]byte{[]byte("\n\r\t\\'\"\x00\xff\x8bE")}, false},
		{"double quoted", `b"it's"`, [][]byte{[]byte("it's")}, false},
		{"json backslash", `b'"a\\n"'`, [][]byte{[]byte(`"a\n"`)}, false},
		{"list", `[b'\x00k\x8bEg', b'', b'T0:}']`, [][]byte{[]byte("\x00k\x8bEg"), {}, []byte("T0:}")}, false},
		{"empty", `b''`, [][]byte{{}}, false},
		{"unterminated", `b'abc`, nil, true},
		{"bad hex", `b'\xZZ'`, nil, true},
		{"short hex", `b'\x4'`, nil, true},
		{"unknown escape", `b'\q'`, nil, true},
		{"raw non-ascii", "b'\u2026'", nil, true},
		{"junk after", `b'a' b'b'`, nil, true},
		{"list unterminated", `[b'a', b'b'`, nil, true},
		{"no b", `'abc'`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePyFrames(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePyFrames(%s) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsePyFrames(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCaptureDecode is the golden test of zmq-wire.md §7.3 at this layer.
// Beyond the required "re-encoding decodes to an equal value" it checks that
// the re-encoding is byte-identical: Dict keeps the wire order and both
// Pushpin and this encoder write minimal size prefixes.
func TestCaptureDecode(t *testing.T) {
	for _, c := range loadCaptures(t) {
		t.Run(c.name(), func(t *testing.T) {
			if c.kind == "skip" {
				t.Skip(c.skip)
			}
			checkFraming(t, c)
			if c.kind == "json" || c.kind == "pubjson" {
				checkJSON(t, c)
				return
			}
			raw, err := c.tnetstring()
			if err != nil {
				t.Fatalf("line %d: %v", c.line, err)
			}
			v, err := Decode(raw)
			if c.cut {
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("line %d: cut capture: Decode err = %v, want ErrTruncated", c.line, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("line %d: Decode: %v", c.line, err)
			}
			if _, ok := v.(Dict); !ok {
				t.Fatalf("line %d: top-level %T, want Dict", c.line, v)
			}
			enc, err := Encode(nil, v)
			if err != nil {
				t.Fatalf("line %d: Encode: %v", c.line, err)
			}
			v2, err := Decode(enc)
			if err != nil {
				t.Fatalf("line %d: Decode(re-encoded): %v", c.line, err)
			}
			if !reflect.DeepEqual(v, v2) {
				t.Fatalf("line %d: re-encoded value differs:\n got %#v\nwant %#v", c.line, v2, v)
			}
			if !bytes.Equal(enc, raw) {
				t.Errorf("line %d: re-encoding not byte-identical:\n got %q\nwant %q", c.line, enc, raw)
			}
		})
	}
}

// checkFraming checks the multipart shapes of zmq-wire.md §1.3: a
// ROUTER/DEALER envelope ends with an empty delimiter frame.
func checkFraming(t *testing.T, c capture) {
	t.Helper()
	switch len(c.frames) {
	case 1:
	case 2: // DEALER side: ["", payload]
		if len(c.frames[0]) != 0 {
			t.Errorf("line %d: 2-frame message without empty first frame", c.line)
		}
	case 3: // ROUTER side: [identity, "", payload]
		if len(c.frames[0]) == 0 || len(c.frames[1]) != 0 {
			t.Errorf("line %d: 3-frame message is not [identity, \"\", payload]", c.line)
		}
	default:
		t.Errorf("line %d: %d frames", c.line, len(c.frames))
	}
}

func checkJSON(t *testing.T, c capture) {
	t.Helper()
	p := c.payload()
	if c.kind == "pubjson" {
		_, p, _ = bytes.Cut(p, []byte(" "))
	}
	if len(p) == 0 || p[0] != 'J' {
		t.Fatalf("line %d: JSON capture without J prefix", c.line)
	}
	valid := json.Valid(p[1:])
	if valid == c.cut {
		t.Fatalf("line %d: json.Valid = %v, cut = %v", c.line, valid, c.cut)
	}
}

// TestCaptureFuzzCorpus keeps testdata/fuzz/FuzzDecode in step with the
// captures: one seed per capture, holding its tnetstring bytes (the cut ones
// too: truncated input is what crashes Pushpin 1.36). Regenerate with
// `go test -run TestCaptureFuzzCorpus -update-corpus`.
func TestCaptureFuzzCorpus(t *testing.T) {
	want := map[string][]byte{}
	for _, c := range loadCaptures(t) {
		if c.kind == "skip" || c.kind == "json" || c.kind == "pubjson" {
			continue
		}
		raw, err := c.tnetstring()
		if err != nil {
			t.Fatalf("%s: %v", c.name(), err)
		}
		want["capture-"+c.label] = []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", raw))
	}
	if *updateCorpus {
		if err := os.MkdirAll(fuzzCorpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range want {
			if err := os.WriteFile(filepath.Join(fuzzCorpusDir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(fuzzCorpusDir, name))
		if err != nil {
			t.Errorf("missing seed %s (run with -update-corpus): %v", name, err)
			continue
		}
		if !bytes.Equal(got, data) {
			t.Errorf("seed %s is stale (run with -update-corpus)", name)
		}
	}
}
