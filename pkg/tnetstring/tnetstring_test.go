package tnetstring

import (
	"bytes"
	"errors"
	"math"
	"math/rand"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// nest wraps inner in n levels of containers ("]" or "}" with key "k"). It
// computes the sizes first so that deep inputs cost linear time to build.
func nest(n int, tag byte, inner string) string {
	pre := ""
	if tag == '}' {
		pre = "1:k,"
	}
	sizes := make([]int, n) // sizes[i]: payload size of level i+1 (1 = innermost)
	encLen := len(inner)
	for i := 0; i < n; i++ {
		sizes[i] = len(pre) + encLen
		encLen = len(strconv.Itoa(sizes[i])) + 1 + sizes[i] + 1
	}
	var sb strings.Builder
	sb.Grow(encLen)
	for i := n - 1; i >= 0; i-- {
		sb.WriteString(strconv.Itoa(sizes[i]))
		sb.WriteByte(':')
		sb.WriteString(pre)
	}
	sb.WriteString(inner)
	for i := 0; i < n; i++ {
		sb.WriteByte(tag)
	}
	return sb.String()
}

func nestValue(n int, tag byte, inner any) any {
	v := inner
	for i := 0; i < n; i++ {
		if tag == '}' {
			v = Dict{{Key: "k", Value: v}}
		} else {
			v = []any{v}
		}
	}
	return v
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    any
		wantErr error // nil: must succeed
	}{
		// The byte-exact examples of zmq-wire.md §1.1.
		{"empty bytes", "0:,", []byte{}, nil},
		{"bytes", "5:hello,", []byte("hello"), nil},
		{"int", "3:200#", int64(200), nil},
		{"negative int", "2:-1#", int64(-1), nil},
		{"true", "4:true!", true, nil},
		{"false", "5:false!", false, nil},
		{"null", "0:~", nil, nil},
		{"empty list", "0:]", []any{}, nil},
		{"empty dict", "0:}", Dict{}, nil},
		{"ext multi", "15:5:multi,4:true!}", Dict{{Key: "multi", Value: true}}, nil},

		// Every type, and payloads that look like framing.
		{"binary bytes", "6:a:\x00\n,},", []byte("a:\x00\n,}"), nil},
		{"int zero", "1:0#", int64(0), nil},
		{"int max", "19:9223372036854775807#", int64(math.MaxInt64), nil},
		{"int min", "20:-9223372036854775808#", int64(math.MinInt64), nil},
		{"int leading plus (strconv, Qt and Rust accept it)", "2:+5#", int64(5), nil},
		{"float", "3:1.5^", 1.5, nil},
		{"float exponent", "5:-2e10^", -2e10, nil},
		{"float integral", "1:3^", 3.0, nil},
		{"list of every type", "34:0:,1:7#3:0.5^4:true!0:~0:]0:}2:ab,]",
			[]any{[]byte{}, int64(7), 0.5, true, nil, []any{}, Dict{}, []byte("ab")}, nil},
		{"nested", "23:1:a,15:5:multi,4:true!}}",
			Dict{{Key: "a", Value: Dict{{Key: "multi", Value: true}}}}, nil},
		{"duplicate keys kept in order", "16:1:a,1:1#1:a,1:2#}",
			Dict{{Key: "a", Value: int64(1)}, {Key: "a", Value: int64(2)}}, nil},
		{"size with leading zeros (digits only, as Rust and Qt accept)", "05:hello,", []byte("hello"), nil},
		{"9-digit size prefix", "000000005:hello,", []byte("hello"), nil},
		{"max depth lists", nest(MaxDepth, ']', "0:,"), nestValue(MaxDepth, ']', []byte{}), nil},
		{"max depth dicts", nest(MaxDepth, '}', "0:~"), nestValue(MaxDepth, '}', nil), nil},

		// Strictness.
		{"empty input", "", nil, ErrTruncated},
		{"size only", "5", nil, ErrTruncated},
		{"size and colon only", "5:", nil, ErrTruncated},
		{"payload truncated", "5:hel", nil, ErrTruncated},
		{"missing tag", "5:hello", nil, ErrTruncated},
		{"size larger than buffer (crashes Pushpin 1.36)", "100:hello,", nil, ErrTruncated},
		{"huge size larger than buffer", "999999999:x,", nil, ErrTruncated},
		{"container child larger than container", "8:100:abc,]", nil, ErrTruncated},
		{"truncated inside container", "7:5:hello]", nil, ErrTruncated},
		{"leading junk", "x5:hello,", nil, ErrSyntax},
		{"leading space", " 5:hello,", nil, ErrSyntax},
		{"junk without colon", "abc", nil, ErrSyntax},
		{"empty size", ":hello,", nil, ErrSyntax},
		{"negative size", "-1:x,", nil, ErrSyntax},
		{"plus size", "+5:hello,", nil, ErrSyntax},
		{"space in size", "5 :hello,", nil, ErrSyntax},
		{"too many size digits", "0000000005:hello,", nil, ErrSyntax},
		{"size overflow", "99999999999999999999:x,", nil, ErrSyntax},
		{"size overflow without colon", "12345678901234567890", nil, ErrSyntax},
		{"unknown tag", "5:hello?", nil, ErrSyntax},
		{"bad boolean", "3:yes!", nil, ErrSyntax},
		{"boolean wrong case", "4:True!", nil, ErrSyntax},
		{"empty boolean", "0:!", nil, ErrSyntax},
		{"null with payload", "1:x~", nil, ErrSyntax},
		{"empty int", "0:#", nil, ErrSyntax},
		{"int with fraction", "3:1.5#", nil, ErrSyntax},
		{"int with junk", "2:1x#", nil, ErrSyntax},
		{"int with space", "2: 1#", nil, ErrSyntax},
		{"int overflow", "19:9999999999999999999#", nil, ErrSyntax},
		{"bad float", "3:abc^", nil, ErrSyntax},
		{"NaN float", "3:NaN^", nil, ErrSyntax},
		{"float out of range", "5:1e999^", nil, ErrSyntax},
		{"int dict key", "8:1:1#1:a,}", nil, ErrKeyType},
		{"list dict key", "9:3:0:,]0:~}", nil, ErrKeyType},
		{"null dict key", "6:0:~0:~}", nil, ErrKeyType},
		{"key without value", "8:5:multi,}", nil, ErrSyntax},
		{"trailing bytes", "0:,x", nil, ErrSyntax},
		{"two values", "0:,0:,", nil, ErrSyntax},
		{"trailing newline", "0:,\n", nil, ErrSyntax},
		{"lists beyond max depth", nest(MaxDepth+1, ']', ""), nil, ErrTooDeep},
		{"dicts beyond max depth", nest(MaxDepth+1, '}', "0:~"), nil, ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decode(%q) err = %v, want %v", tt.in, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Decode(%q) returned %#v with an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestDecodeDeepNestingDoesNotRecurseUnbounded(t *testing.T) {
	// 100000 nested lists: must stop at MaxDepth, not overflow the stack.
	in := nest(100000, ']', "")
	if _, err := Decode([]byte(in)); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("err = %v, want ErrTooDeep", err)
	}
}

func TestDecodePrefix(t *testing.T) {
	v, rest, err := DecodePrefix([]byte("5:hello,3:200#tail"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, []byte("hello")) || string(rest) != "3:200#tail" {
		t.Fatalf("DecodePrefix = %q, %q", v, rest)
	}
	if _, _, err := DecodePrefix([]byte("5:hel")); !errors.Is(err, ErrTruncated) {
		t.Fatalf("DecodePrefix truncated err = %v", err)
	}
}

func TestDecodeDict(t *testing.T) {
	d, err := DecodeDict([]byte("15:5:multi,4:true!}"))
	if err != nil || !d.Bool("multi") {
		t.Fatalf("DecodeDict = %v, %v", d, err)
	}
	for _, in := range []string{"0:]", "0:,", "0:~", "15:5:multi,4:true!}x"} {
		if _, err := DecodeDict([]byte(in)); !errors.Is(err, ErrSyntax) {
			t.Errorf("DecodeDict(%q) err = %v, want ErrSyntax", in, err)
		}
	}
}

func TestDecodeAliasesInput(t *testing.T) {
	in := []byte("5:hello,")
	v, err := Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	b := v.([]byte)
	if cap(b) != len(b) {
		// Appending to a decoded string must not overwrite the input.
		t.Fatalf("decoded bytes have spare capacity %d > %d", cap(b), len(b))
	}
	in[2] = 'j'
	if string(b) != "jello" {
		t.Fatalf("decoded bytes do not alias the input: %q", b)
	}
}

func TestDictAccessors(t *testing.T) {
	d := Dict{
		{Key: "s", Value: []byte("x")},
		{Key: "s", Value: []byte("last")},
		{Key: "n", Value: int64(7)},
		{Key: "b", Value: true},
		{Key: "d", Value: Dict{}},
		{Key: "l", Value: []any{}},
		{Key: "nil", Value: nil},
	}
	if v, ok := d.Bytes("s"); !ok || string(v) != "last" {
		t.Errorf("Bytes(s) = %q, %v; want last occurrence", v, ok)
	}
	if v, ok := d.Int("n"); !ok || v != 7 {
		t.Errorf("Int(n) = %d, %v", v, ok)
	}
	if !d.Bool("b") || d.Bool("n") || d.Bool("missing") {
		t.Error("Bool")
	}
	if _, ok := d.Dict("d"); !ok {
		t.Error("Dict(d)")
	}
	if _, ok := d.List("l"); !ok {
		t.Error("List(l)")
	}
	if v, ok := d.Get("nil"); !ok || v != nil {
		t.Errorf("Get(nil) = %v, %v", v, ok)
	}
	if _, ok := d.Get("missing"); ok {
		t.Error("Get(missing) found")
	}
	// Wrong types read as absent.
	if _, ok := d.Bytes("n"); ok {
		t.Error("Bytes(n) ok")
	}
	if _, ok := d.Int("s"); ok {
		t.Error("Int(s) ok")
	}
	if _, ok := d.Dict("l"); ok {
		t.Error("Dict(l) ok")
	}
	if _, ok := d.List("d"); ok {
		t.Error("List(d) ok")
	}
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string
	}{
		// The byte-exact examples of zmq-wire.md §1.1.
		{"empty bytes", []byte{}, "0:,"},
		{"nil bytes", []byte(nil), "0:,"},
		{"bytes", []byte("hello"), "5:hello,"},
		{"string", "hello", "5:hello,"},
		{"int", 200, "3:200#"},
		{"negative int64", int64(-1), "2:-1#"},
		{"true", true, "4:true!"},
		{"false", false, "5:false!"},
		{"null", nil, "0:~"},
		{"empty list", []any{}, "0:]"},
		{"empty dict", Dict{}, "0:}"},
		{"ext multi", Dict{{Key: "multi", Value: true}}, "15:5:multi,4:true!}"},

		{"int32", int32(-7), "2:-7#"},
		{"uint16", uint16(65535), "5:65535#"},
		{"int64 min", int64(math.MinInt64), "20:-9223372036854775808#"},
		{"float", 1.5, "3:1.5^"},
		{"float integral", 3.0, "1:3^"},
		{"binary bytes", []byte("a:\x00\n,}"), "6:a:\x00\n,},"},
		{"list of bytes", [][]byte{[]byte("a"), nil}, "7:1:a,0:,]"},
		{"list of strings", []string{"Host", "example.com"}, "22:4:Host,11:example.com,]"},
		{"mixed list", []any{"a", 1, nil, []any{}}, "14:1:a,1:1#0:~0:]]"},
		{"duplicate keys", Dict{{Key: "a", Value: 1}, {Key: "a", Value: 2}}, "16:1:a,1:1#1:a,1:2#}"},
		{"map sorted", map[string]any{"b": 1, "a": true, "c": nil}, "26:1:a,4:true!1:b,1:1#1:c,0:~}"},
		{"nested", Dict{{Key: "a", Value: Dict{{Key: "multi", Value: true}}}}, "23:1:a,15:5:multi,4:true!}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(nil, tt.in)
			if err != nil {
				t.Fatalf("Encode(%#v): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Encode(%#v) = %q, want %q", tt.in, got, tt.want)
			}
			// Appending to an existing buffer gives the same bytes after it.
			pre := []byte("prefix")
			got, err = Encode(pre, tt.in)
			if err != nil || string(got) != "prefix"+tt.want {
				t.Fatalf("Encode(prefix, %#v) = %q, %v", tt.in, got, err)
			}
		})
	}
}

func TestEncodeUnsupported(t *testing.T) {
	tests := []struct {
		name string
		in   any
	}{
		{"struct", struct{}{}},
		{"uint64", uint64(1)},
		{"map of strings", map[string]string{"a": "b"}},
		{"int slice", []int{1}},
		{"NaN (the decoder refuses it)", math.NaN()},
		{"nested in list", []any{1, struct{}{}}},
		{"nested in dict", Dict{{Key: "a", Value: []any{Dict{{Key: "b", Value: complex(1, 1)}}}}}},
		{"nested in map", map[string]any{"a": []int{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Encode(nil, tt.in); err == nil {
				t.Fatalf("Encode(%#v) = %q, want error", tt.in, b)
			}
			defer func() {
				if recover() == nil {
					t.Error("MustEncode did not panic")
				}
			}()
			MustEncode(tt.in)
		})
	}
}

// condureRequest is the first packet of §1.1 (condure 1.9.1, captured).
const condureRequest = "323:4:from,7:condure,2:id,5:0-0-0,3:seq,1:0#3:ext,15:5:multi,4:true!}6:method,3:GET,3:uri,37:http://127.0.0.1:18001/path/x?a=1&b=2,7:headers,100:26:4:Host,15:127.0.0.1:18001,]29:10:User-Agent,11:curl/7.88.1,]15:6:Accept,3:*/*,]14:5:X-Foo,3:bar,]]7:credits,4:8192#6:stream,4:true!12:peer-address,9:127.0.0.1,9:peer-port,5:33144#}"

func condureRequestDict(body []byte) Dict {
	d := Dict{
		{Key: "from", Value: "condure"},
		{Key: "id", Value: []byte("0-0-0")},
		{Key: "seq", Value: 0},
		{Key: "ext", Value: Dict{{Key: "multi", Value: true}}},
		{Key: "method", Value: "GET"},
		{Key: "uri", Value: "http://127.0.0.1:18001/path/x?a=1&b=2"},
		{Key: "headers", Value: []any{
			[]string{"Host", "127.0.0.1:18001"},
			[]string{"User-Agent", "curl/7.88.1"},
			[]any{"Accept", []byte("*/*")},
			[][]byte{[]byte("X-Foo"), []byte("bar")},
		}},
		{Key: "credits", Value: int64(8192)},
		{Key: "stream", Value: true},
		{Key: "peer-address", Value: "127.0.0.1"},
		{Key: "peer-port", Value: uint16(33144)},
	}
	if body != nil {
		d = append(d, Field{Key: "body", Value: body})
	}
	return d
}

// TestEncodeContainerSizes builds the §1.1 request from scratch: every
// container size counts the encoded children (the usual encoder bug is to
// count only raw key/value lengths).
func TestEncodeContainerSizes(t *testing.T) {
	got, err := Encode(nil, condureRequestDict(nil))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != condureRequest {
		t.Fatalf("Encode = %q\nwant     %q", got, condureRequest)
	}
	v, err := Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := v.(Dict).List("headers")
	if len(hs) != 4 {
		t.Fatalf("headers = %#v", hs)
	}
}

// TestEncodeMinimalSizePrefix crosses every digit boundary of the size
// prefix, at the top level and inside nested containers (whose prefixes are
// written after their children, so a wrong reservation would show here).
func TestEncodeMinimalSizePrefix(t *testing.T) {
	for _, n := range []int{0, 1, 8, 9, 10, 11, 98, 99, 100, 101, 999, 1000, 9999, 10000, 65536, 99999, 100000, 1 << 20} {
		body := bytes.Repeat([]byte{'x'}, n)
		for _, v := range []any{
			body,
			[]any{body},
			Dict{{Key: "body", Value: body}},
			[]any{[]any{Dict{{Key: "k", Value: []any{body}}}}},
		} {
			enc, err := Encode(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			checkMinimalPrefixes(t, enc)
			back, err := Decode(enc)
			if err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			if !reflect.DeepEqual(back, v) && !reflect.DeepEqual(normalize(v), back) {
				t.Fatalf("n=%d: round trip differs", n)
			}
		}
	}
}

// checkMinimalPrefixes walks enc and fails if any size prefix is not the
// minimal decimal form of its payload length.
func checkMinimalPrefixes(t *testing.T, enc []byte) {
	t.Helper()
	for len(enc) > 0 {
		colon := bytes.IndexByte(enc, ':')
		size, err := strconv.Atoi(string(enc[:colon]))
		if err != nil || strconv.Itoa(size) != string(enc[:colon]) {
			t.Fatalf("size prefix %q is not minimal", enc[:colon])
		}
		payload, tag := enc[colon+1:colon+1+size], enc[colon+1+size]
		if tag == ']' || tag == '}' {
			checkMinimalPrefixes(t, payload)
		}
		enc = enc[colon+2+size:]
	}
}

// normalize converts a value built from any supported Go type into what
// Decode returns for its encoding.
func normalize(v any) any {
	switch x := v.(type) {
	case string:
		return []byte(x)
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case uint16:
		return int64(x)
	case []byte:
		if x == nil {
			return []byte{}
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = []byte(e)
		}
		return out
	case [][]byte:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case Dict:
		out := make(Dict, len(x))
		for i, f := range x {
			out[i] = Field{Key: f.Key, Value: normalize(f.Value)}
		}
		return out
	case map[string]any:
		return normalize(SortedDict(x))
	}
	return v
}

func TestRoundTripBuiltValues(t *testing.T) {
	for _, v := range []any{
		condureRequestDict([]byte("body\x00bytes")),
		map[string]any{"z": []string{}, "a": [][]byte{}, "m": map[string]any{"x": 1.25}},
		[]any{-0.0, math.Inf(1), math.Inf(-1), 1e-300, math.MaxFloat64},
		nestValue(MaxDepth, ']', "deep"),
	} {
		enc, err := Encode(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)): %v", v, err)
		}
		if !reflect.DeepEqual(back, normalize(v)) {
			t.Fatalf("round trip:\n got %#v\nwant %#v", back, normalize(v))
		}
	}
}

// randomValue builds a random decoded-form value of at most depth levels.
func randomValue(r *rand.Rand, depth int) any {
	n := 7
	if depth > 0 {
		n = 9
	}
	switch r.Intn(n) {
	case 0:
		b := make([]byte, r.Intn(40))
		r.Read(b)
		return b
	case 1:
		return r.Int63() - r.Int63()
	case 2:
		return r.NormFloat64() * math.Pow(10, float64(r.Intn(40)-20))
	case 3:
		return r.Intn(2) == 0
	case 4:
		return nil
	case 5:
		return []any{}
	case 6:
		return Dict{}
	case 7:
		l := make([]any, r.Intn(5))
		for i := range l {
			l[i] = randomValue(r, depth-1)
		}
		return l
	default:
		d := make(Dict, r.Intn(5))
		for i := range d {
			k := make([]byte, r.Intn(8))
			r.Read(k)
			d[i] = Field{Key: string(k), Value: randomValue(r, depth-1)}
		}
		return d
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		v := randomValue(r, 6)
		enc, err := Encode(nil, v)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", v, err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(%q): %v", enc, err)
		}
		if !reflect.DeepEqual(back, v) {
			t.Fatalf("round trip of %q:\n got %#v\nwant %#v", enc, back, v)
		}
		again, err := Encode(nil, back)
		if err != nil || !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding differs: %q vs %q (%v)", again, enc, err)
		}
	}
}

func TestSortedDict(t *testing.T) {
	d := SortedDict(map[string]any{"b": 1, "a": 2, "ab": 3, "": 4})
	var keys []string
	for _, f := range d {
		keys = append(keys, f.Key)
	}
	if strings.Join(keys, ",") != ",a,ab,b" {
		t.Fatalf("keys = %q", keys)
	}
}
