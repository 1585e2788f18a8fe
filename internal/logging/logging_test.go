package logging

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func TestLoggingFormat(t *testing.T) {
	var buf bytes.Buffer
	log := NewWriter(&buf, LevelInfo)
	log.Info().Str("rid", "0-0-1").Msg("request")
	log.Debug().Msg("hidden")
	line := buf.String()
	re := regexp.MustCompile(`^\[INFO\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} request rid=0-0-1\n$`)
	if !re.MatchString(line) {
		t.Errorf("line %q does not match %s", line, re)
	}
	if strings.Contains(line, "hidden") {
		t.Error("debug line printed at info level")
	}
}

func TestLoggingParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in, service string
		want        int
		err         string
	}{
		{"", "proxy", DefaultLevel, ""},
		{"3", "proxy", 3, ""},
		{"2,proxy:4", "proxy", 4, ""},
		{"2,proxy:4", "handler", 2, ""},
		{"1,handler:3,proxy:0", "proxy", 0, ""},
		{"-1", "proxy", 0, "greater than or equal to 0"},
		{"2,proxy:-1", "proxy", 0, "for service proxy must be"},
		{"2,:3", "proxy", 0, "name cannot be empty"},
		{"2,,3", "proxy", 0, "component cannot be empty"},
		{"x", "proxy", 0, "not a number"},
	} {
		got, err := ParseLevel(tc.in, tc.service)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLevel(%q): err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q, %q) = %d, %v; want %d", tc.in, tc.service, got, err, tc.want)
		}
	}
}

func TestLoggingRequestLineAlone(t *testing.T) {
	var buf bytes.Buffer
	log := NewWriter(&buf, LevelInfo).With().Str(FieldComponent, "proxy").Logger()
	log.Info().Str(FieldKind, KindRequest).Str("method", "GET").Int("code", 200).
		Msg("GET http://a/b -> 127.0.0.1:8080 code=200 6")
	re := regexp.MustCompile(`^\[INFO\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} GET http://a/b -> 127\.0\.0\.1:8080 code=200 6\n$`)
	if !re.MatchString(buf.String()) {
		t.Errorf("line %q does not match %s", buf.String(), re)
	}
}

func TestLoggingJSON(t *testing.T) {
	var buf bytes.Buffer
	log := NewJSON(&buf, LevelInfo, "proxy")
	log.Info().Str(FieldKind, KindRequest).Int("code", 200).Msg("GET http://a/b -> t code=200 6")
	log.Debug().Msg("hidden")
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	if m["level"] != "info" || m["service"] != "proxy" || m["code"] != 200.0 || m["message"] != "GET http://a/b -> t code=200 6" || m["time"] == nil {
		t.Errorf("%v", m)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("%q", buf.String())
	}
}

func TestLoggingParseFormat(t *testing.T) {
	for in, want := range map[string]string{"": FormatText, "text": FormatText, "JSON": FormatJSON, "xml": ""} {
		got, err := ParseFormat(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
}
