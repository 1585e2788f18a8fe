package interop

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"tack/internal/testutil"
)

// requestLines runs the same requests through one deployment and returns
// its proxy's request log lines, timestamps and the client port removed.
func requestLines(t *testing.T, start func(d *deployment, conf string), be, dead string) []string {
	t.Helper()
	d := newDeployment(t)
	conf := debianConfig(t, d.dir, d.httpPort, d.portOffset, nil)
	writeRoutes(t, d.dir, fmt.Sprintf("routed.example,id=r1 %s\ndead.example %s\n* %s\n", be, dead, be))
	start(d, conf)
	d.waitReady(t, "/ready")
	c := &http.Client{Timeout: 10 * time.Second}
	do := func(method, host, path, body string, headers ...string) {
		t.Helper()
		req, err := http.NewRequest(method, d.url(path), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Add(headers[i], headers[i+1])
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "", "/plain?x=1&y=%2F", "")
	do("GET", "routed.example", "/routed", "")
	do("POST", "", "/post", "some body")
	do("GET", "", "/ids", "", "Referer", "http://ref.example/a?b=1", "Grip-Last", "ch1; last-id=5", "Grip-Last", "ch2; last-id=7")
	do("GET", "dead.example", "/", "")
	var lines []string
	re := regexp.MustCompile(`(?m)^\[INFO\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[proxy\] ((GET|POST) http://\S+ .*)$`)
	testutil.Eventually(t, 10*time.Second, func() error {
		lines = nil
		for _, m := range re.FindAllStringSubmatch(d.proc.Output(), -1) {
			if strings.Contains(m[1], "/ready ") {
				continue
			}
			lines = append(lines, strings.ReplaceAll(m[1], fmt.Sprint(d.httpPort), "PORT"))
		}
		if len(lines) < 5 {
			return fmt.Errorf("%d request lines: %q", len(lines), lines)
		}
		return nil
	})
	sort.Strings(lines)
	return lines
}

// TestInteropRequestLinesMatchPushpin: tack-proxy's request log lines are
// pushpin-proxy 1.36's, line for line, for the same requests.
func TestInteropRequestLinesMatchPushpin(t *testing.T) {
	requirePushpin(t)
	be := newBackend(t)
	dead := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	want := requestLines(t, func(d *deployment, conf string) { d.startPushpin(t, conf, "") }, be, dead)
	got := requestLines(t, func(d *deployment, conf string) { d.startTack(t, conf) }, be, dead)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("tack-proxy's lines:\n%s\npushpin-proxy's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
