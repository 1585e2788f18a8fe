package publish

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"go.uber.org/goleak"

	"tack/pkg/tnetstring"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAPI is a publish endpoint that records requests and answers with a
// fixed status and body.
type fakeAPI struct {
	srv    *httptest.Server
	code   int
	answer string
	mu     sync.Mutex // guards reqs
	reqs   []recorded
}

type recorded struct {
	method, target string
	header         http.Header
	body           string
}

func newFakeAPI(t *testing.T, code int, answer string, tls bool) *fakeAPI {
	t.Helper()
	f := &fakeAPI{code: code, answer: answer}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.RequestURI, r.Header.Clone(), string(b)})
		f.mu.Unlock()
		w.WriteHeader(f.code)
		_, _ = io.WriteString(w, f.answer)
	})
	if tls {
		f.srv = httptest.NewTLSServer(h)
	} else {
		f.srv = httptest.NewServer(h)
	}
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request reached the API")
	}
	return f.reqs[len(f.reqs)-1]
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runCmd runs `tack publish args...` in-process.
func runCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := Command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

// TestPublishHTTPBodies compares each request body with the one
// pushpin-publish 1.36 sent for the same command line (captured with a
// raw socket server).
func TestPublishHTTPBodies(t *testing.T) {
	api := newFakeAPI(t, 200, "Published\n", false)
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin.dat")
	txt := filepath.Join(dir, "txt.dat")
	writeFile(t, bin, "abc\xff\x00")
	writeFile(t, txt, "hello\n")
	spec := "--spec=" + api.srv.URL

	tests := []struct {
		name string
		args []string
		body string
	}{
		{"send", []string{"ch", "hello"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body":"hello\n","code":200},"http-stream":{"content":"hello\n"},"ws-message":{"content":"hello"}}}]}`},
		{"no-eol", []string{"ch", "hello", "--no-eol"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body":"hello","code":200},"http-stream":{"content":"hello"},"ws-message":{"content":"hello"}}}]}`},
		{"binary file", []string{"ch", "@" + bin},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body-bin":"YWJj/wA=","code":200},"http-stream":{"content-bin":"YWJj/wA="},"ws-message":{"content-bin":"YWJj/wA="}}}]}`},
		{"text file, no eol added", []string{"ch", "@" + txt},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body":"hello\n","code":200},"http-stream":{"content":"hello\n"},"ws-message":{"content":"hello\n"}}}]}`},
		{"every field", []string{"ch", "x", "--id", "i1", "--prev-id", "i0", "--sender", "me", "-M", "a = b ", "-M", "c=d=e",
			"-H", "X-A:  v1 ", "-H", "X-B: w", "--code", "404", "--no-seq"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body":"x\n","code":404,"headers":[["X-A","v1"],["X-B","w"]]},"http-stream":{"content":"x\n"},"ws-message":{"content":"x"}},"id":"i1","meta":{"a ":"b","c":"d=e","sender":"me"},"no-seq":true,"prev-id":"i0"}]}`},
		{"hint", []string{"ch", "--hint"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"action":"hint"},"http-stream":{"action":"hint"},"ws-message":{"action":"hint"}}}]}`},
		{"close", []string{"ch", "--close"},
			`{"items":[{"channel":"ch","formats":{"http-stream":{"action":"close"},"ws-message":{"action":"close"}}}]}`},
		{"hint wins over close", []string{"ch", "--hint", "--close"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"action":"hint"},"http-stream":{"action":"hint"},"ws-message":{"action":"hint"}}}]}`},
		{"patch", []string{"ch", `[{"op":"replace","path":"/a","value":1}]`, "--patch"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body-patch":[{"op":"replace","path":"/a","value":1}],"code":200}}}]}`},
		{"html characters stay as they are", []string{"ch", "<a&b>", "--no-eol"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body":"<a&b>","code":200},"http-stream":{"content":"<a&b>"},"ws-message":{"content":"<a&b>"}}}]}`},
		{"content after --", []string{"ch", "--", "-x"},
			`{"items":[{"channel":"ch","formats":{"http-response":{"body":"-x\n","code":200},"http-stream":{"content":"-x\n"},"ws-message":{"content":"-x"}}}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCmd(t, append([]string{spec}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != "Published\n" {
				t.Errorf("stdout %q, want Published", out)
			}
			r := api.last(t)
			if r.method != "POST" || r.target != "/publish/" || r.header.Get("Content-Type") != "application/json" {
				t.Errorf("request %s %s %v", r.method, r.target, r.header)
			}
			if r.body != tt.body {
				t.Errorf("body\n got %s\nwant %s", r.body, tt.body)
			}
		})
	}
}

func TestPublishErrors(t *testing.T) {
	api := newFakeAPI(t, 200, "Published\n", false)
	bad := newFakeAPI(t, 400, "Invalid format: bad\n", false)
	spec := "--spec=" + api.srv.URL
	tests := []struct {
		name string
		args []string
		want string // error substring (pushpin-publish prints "Error: " + it)
	}{
		{"missing file", []string{spec, "ch", "@/nonexistent/file"}, "can't read file /nonexistent/file"},
		{"patch not an array", []string{spec, "ch", "{}", "--patch"}, "patch content must be a JSON array"},
		{"patch not json", []string{spec, "ch", "xx", "--patch"}, "invalid character"},
		{"no content", []string{spec, "ch"}, "must specify content"},
		{"code too large", []string{spec, "ch", "x", "--code", "1000"}, "code must be an integer between 0 and 999"},
		{"code not a number", []string{spec, "ch", "x", "--code", "abc"}, "failed to parse code"},
		{"code negative", []string{spec, "ch", "x", "--code", "-1"}, "failed to parse code"},
		{"header without colon", []string{spec, "ch", "x", "-H", "nocolon"}, `header must be in the form "name: value"`},
		{"meta without =", []string{spec, "ch", "x", "-M", "noeq"}, `meta must be in the form "name=value"`},
		{"auth over http", []string{spec, "ch", "x", "-u", "a:b"}, "Authentication requires https"},
		{"error reply", []string{"--spec=" + bad.srv.URL + "/prefix", "ch", "x"}, "Invalid format: bad"},
		{"bad url", []string{"--spec=http:nohost", "ch", "x"}, "invalid URL"},
		{"no channel", []string{spec}, "arg(s)"},
		{"bad zmq spec", []string{"--spec=bogus", "ch", "x"}, "connect bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCmd(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if out != "" && tt.name != "no channel" {
				t.Errorf("stdout %q on error", out)
			}
		})
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.reqs) != 0 {
		t.Errorf("%d requests sent by failing command lines", len(api.reqs))
	}
	if r := bad.last(t); r.target != "/prefix/publish/" {
		t.Errorf("target %q, want /prefix/publish/", r.target)
	}
}

// TestPublishGripURL: GRIP_URL replaces the default spec, and a base path
// ending in "/" keeps both slashes, as pushpin-publish does.
func TestPublishGripURL(t *testing.T) {
	api := newFakeAPI(t, 200, "Published\n", false)
	t.Setenv(SpecEnv, api.srv.URL+"/base/")
	if _, err := runCmd(t, "ch", "x"); err != nil {
		t.Fatal(err)
	}
	if r := api.last(t); r.target != "/base//publish/" {
		t.Errorf("target %q, want /base//publish/", r.target)
	}
	if f := Command().Flags().Lookup("spec"); f.DefValue != api.srv.URL+"/base/" {
		t.Errorf("--spec default %q", f.DefValue)
	}
}

func TestPublishDefaultSpec(t *testing.T) {
	t.Setenv(SpecEnv, "")
	if f := Command().Flags().Lookup("spec"); f.DefValue != "http://localhost:5561" {
		t.Errorf("--spec default %q", f.DefValue)
	}
}

// TestPublishBasicAuth: -u sends Basic credentials over https.
func TestPublishBasicAuth(t *testing.T) {
	api := newFakeAPI(t, 200, "Published\n", true)
	o := Options{Channel: "ch", Content: "x", HaveContent: true, Code: "200", Spec: api.srv.URL, User: "user:pass",
		client: api.srv.Client()}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if got := api.last(t).header.Get("Authorization"); got != "Basic dXNlcjpwYXNz" {
		t.Errorf("Authorization %q", got)
	}
}

// TestPublishZMQ: a ZeroMQ spec sends one bare tnetstring item over PUSH,
// with the same fields pushpin-publish 1.36 sent (its dict order is a hash
// order; ours is sorted).
func TestPublishZMQ(t *testing.T) {
	pull, err := zmq.NewSocket(zmq.PULL)
	if err != nil {
		t.Fatal(err)
	}
	defer pull.Close()
	if err := pull.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := pull.SetRcvtimeo(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := pull.Bind("tcp://127.0.0.1:*"); err != nil {
		t.Fatal(err)
	}
	ep, _ := pull.GetLastEndpoint()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin.dat")
	writeFile(t, bin, "abc\xff\x00")

	tests := []struct {
		name string
		args []string
		want string // captured from pushpin-publish 1.36, keys sorted
	}{
		{"every field", []string{"ch", "x", "--id", "i1", "-H", "A: b", "-M", "k=v", "--no-seq", "--code", "201"},
			"211:7:channel,2:ch,7:formats,137:13:http-response,50:4:body,2:x\n,4:code,3:201#7:headers,11:8:1:A,1:b,]]}11:http-stream,15:7:content,2:x\n,}10:ws-message,14:7:content,1:x,}}2:id,2:i1,4:meta,8:1:k,1:v,}6:no-seq,4:true!}"},
		{"binary file stays bytes", []string{"ch", "@" + bin},
			"152:7:channel,2:ch,7:formats,122:13:http-response,28:4:body,5:abc\xff\x00,4:code,3:200#}11:http-stream,18:7:content,5:abc\xff\x00,}10:ws-message,18:7:content,5:abc\xff\x00,}}}"},
		{"patch numbers", []string{"ch", `[{"op":"add","path":"/a","value":1.5},{"op":"x","value":2}]`, "--patch"},
			"148:7:channel,2:ch,7:formats,118:13:http-response,97:10:body-patch,66:37:2:op,3:add,4:path,2:/a,5:value,3:1.5^}21:2:op,1:x,5:value,1:2#}]4:code,3:200#}}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCmd(t, append([]string{"--spec", ep}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != "Published\n" {
				t.Errorf("stdout %q", out)
			}
			m, err := pull.RecvMessageBytes(0)
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != 1 {
				t.Fatalf("%d frames, want 1", len(m))
			}
			got, err := tnetstring.Decode(m[0])
			if err != nil {
				t.Fatal(err)
			}
			want, err := tnetstring.Decode([]byte(tt.want))
			if err != nil {
				t.Fatalf("bad golden: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("item\n got %q\nwant %q", m[0], tt.want)
			}
		})
	}
}

// TestPublishZMQNoPeer: with nobody listening the send gives up (ours;
// pushpin-publish hangs).
func TestPublishZMQNoPeer(t *testing.T) {
	o := Options{Channel: "ch", Content: "x", HaveContent: true, Code: "200",
		Spec: "tcp://127.0.0.1:1", zmqTimeout: 200 * time.Millisecond}
	err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no peer") {
		t.Errorf("error %v, want no peer", err)
	}
}

func TestPublishVersion(t *testing.T) {
	out, err := runCmd(t, "-V")
	if err != nil || !strings.HasPrefix(out, "tack publish ") {
		t.Errorf("-V: %q %v", out, err)
	}
}
