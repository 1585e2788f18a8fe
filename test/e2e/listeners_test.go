package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"tack/internal/testutil"
)

// addIdentity puts NAME.crt/NAME.key for names into files under runner/certs.
func addIdentity(t *testing.T, ca *testutil.CA, files map[string][]byte, name string, notAfter time.Time, names ...string) {
	t.Helper()
	c, k := ca.Issue(t, notAfter, names...)
	files["runner/certs/"+name+".crt"] = c
	files["runner/certs/"+name+".key"] = k
}

// listenerBackend answers "/" with its name and the X-Forwarded-Proto it
// got, and holds streams on /stream.
func listenerBackend(t *testing.T, name string) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s proto=%s\n", name, r.Header.Get("X-Forwarded-Proto"))
	})
	mux.HandleFunc("/stream", holdStream)
	return newBackendWith(t, mux)
}

func getBody(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestE2ETLSListener: https_ports with certificates in
// <configdir>/runner/certs: SNI picks the exact or wildcard identity, the
// default_<port> one otherwise; requests are marked secure (ssl=yes route,
// X-Forwarded-Proto: https), proxied end to end, and a held stream over
// TLS receives a publish. A plain HTTP client on the TLS port gets a 400
// and a stalled handshake blocks nobody.
func TestE2ETLSListener(t *testing.T) {
	ca := testutil.NewCA(t)
	tlsPort := testutil.FreePort(t)
	files := map[string][]byte{}
	later := time.Now().Add(24 * time.Hour)
	addIdentity(t, ca, files, fmt.Sprintf("default_%d", tlsPort), later, "default.test", "127.0.0.1")
	addIdentity(t, ca, files, "www.example.com", later, "www.example.com")
	addIdentity(t, ca, files, "_.wild.test", later, "*.wild.test")
	secure, plain, big := listenerBackend(t, "secure"), listenerBackend(t, "plain"), newBackend(t).hostPort()
	s := startSuite(t, suiteOptions{
		routes: fmt.Sprintf("*,ssl=yes,path_beg=/big %s\n*,ssl=yes,path_beg=/up %s\n*,ssl=yes %s\n* %s\n", big, big, secure, plain),
		runner: map[string]string{"https_ports": fmt.Sprintf("127.0.0.1:%d", tlsPort)},
		files:  files,
	})
	addr := fmt.Sprintf("127.0.0.1:%d", tlsPort)

	// Certificate selection.
	for _, tc := range []struct{ sni, want string }{
		{"www.example.com", "www.example.com"},
		{"WWW.Example.COM", "www.example.com"},
		{"a.wild.test", "*.wild.test"},
		{"a.b.wild.test", "default.test"}, // one level only
		{"unknown.test", "default.test"},
		{"", "default.test"}, // no SNI
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("sni %q: %v", tc.sni, err)
		}
		got := conn.ConnectionState().PeerCertificates[0].DNSNames[0]
		conn.Close()
		if got != tc.want {
			t.Errorf("sni %q: served %q, want %q", tc.sni, got, tc.want)
		}
	}

	// A client that never finishes its handshake, and a plain HTTP one.
	stall, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	stall.Write([]byte{0x16, 0x03, 0x01}) // half a record header, then nothing

	// Verified https through the proxy to the backend.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool, ServerName: "www.example.com"},
	}}
	defer hc.CloseIdleConnections()
	if code, body := getBody(t, hc, "https://"+addr+"/"); code != 200 || body != "secure proto=https\n" {
		t.Fatalf("https: %d %q", code, body)
	}
	if code, body := getBody(t, http.DefaultClient, s.url("/")); code != 200 || !strings.HasPrefix(body, "plain proto=") || strings.Contains(body, "https") {
		t.Fatalf("http: %d %q", code, body)
	}

	// Bodies larger than the credit window both ways, under TLS.
	const size = 3<<20 + 123
	resp, err := hc.Get("https://" + addr + "/big?n=" + fmt.Sprint(size) + "&chunked=1")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, _ := io.Copy(h, resp.Body)
	resp.Body.Close()
	want := sha256.New()
	writePattern(want, size)
	if resp.StatusCode != 200 || n != size || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Errorf("big https response: %d, %d bytes", resp.StatusCode, n)
	}
	up := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	resp, err = hc.Post("https://"+addr+"/up", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	var e echo
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	sum := sha256.Sum256(up)
	if resp.StatusCode != 200 || e.Length != int64(len(up)) || e.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("https upload: %d %+v", resp.StatusCode, e)
	}

	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	reply, _ := io.ReadAll(raw)
	raw.Close()
	if !strings.HasPrefix(string(reply), "HTTP/1.0 400 ") || !strings.Contains(string(reply), "HTTP request to an HTTPS server") {
		t.Errorf("plain HTTP on the TLS port: %q", reply)
	}
	s.runner.WaitFor(t, `plain HTTP request on a TLS port`, 10*time.Second)

	// A held stream over TLS gets a publish.
	br, done := openStreamWith(t, hc, "https://"+addr+"/stream?ch=tls1", "[open]\n")
	defer done()
	expectLine(t, br, "secret\n", func() { s.postPublish(t, `{"items":[`+streamItem("tls1", "secret\n")+`]}`) })

	// The stalled handshake is closed after the handshake timeout (10 s)
	// and logged; everyone else was served meanwhile.
	stall.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadAll(stall); err != nil {
		t.Errorf("stalled handshake not closed: %v", err)
	}
	s.runner.WaitFor(t, `TLS handshake timed out`, 10*time.Second)
}

// TestE2ETLSMissingCertificate: https_ports without its default_<port>
// certificate stops the start with a clear message and a non-zero exit.
func TestE2ETLSMissingCertificate(t *testing.T) {
	tlsPort := testutil.FreePort(t)
	s := startRunner(t, suiteOptions{runner: map[string]string{"https_ports": fmt.Sprintf("127.0.0.1:%d", tlsPort)}})
	expectStartFailure(t, s, fmt.Sprintf(`cannot start: listen 127.0.0.1:%d: default certificate "default_%d": stat \S+/runner/certs/default_%d.crt: no such file or directory \(put default_%d.crt and default_%d.key in \S+/runner/certs\)`, tlsPort, tlsPort, tlsPort, tlsPort, tlsPort))
}

// expectStartFailure waits for the runner to exit non-zero with a message
// matching re, having restarted nothing.
func expectStartFailure(t *testing.T, s *suite, re string) {
	t.Helper()
	if !s.runner.Wait(30 * time.Second) {
		t.Fatalf("runner still running:\n%s", s.runner.Output())
	}
	if s.runner.Cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("runner exited 0")
	}
	s.runner.WaitFor(t, re, time.Second)
	if out := s.runner.Output(); strings.Contains(out, "restarting") {
		t.Errorf("runner restarted a child:\n%s", out)
	}
}

// TestE2EUnixSocketListener: local_ports serves HTTP on a unix socket
// (the nginx → unix socket → Pushpin setup) with the configured mode,
// user and group (the test's own: changing to others needs privileges),
// including a GRIP stream hold that receives a publish.
func TestE2EUnixSocketListener(t *testing.T) {
	backend := gripBackend(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	grp, err := user.LookupGroupId(me.Gid)
	if err != nil {
		t.Fatal(err)
	}
	s := startSuite(t, suiteOptions{
		routes: "* " + backend + "\n",
		runner: map[string]string{"local_ports": "{rundir}/{ipc_prefix}server?mode=600&user=" + me.Username + "&group=" + grp.Name},
	})
	path := filepath.Join(s.dir, "run", "pushpin-server")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", st.Mode())
	}
	if sys := st.Sys().(*syscall.Stat_t); fmt.Sprint(sys.Uid) != me.Uid || fmt.Sprint(sys.Gid) != me.Gid {
		t.Errorf("socket owner %d:%d, want %s:%s", sys.Uid, sys.Gid, me.Uid, me.Gid)
	}
	uc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	defer uc.CloseIdleConnections()
	br, done := openStreamWith(t, uc, "http://tack.local/stream?ch=u1", "[open]\n")
	defer done()
	expectLine(t, br, "via unix\n", func() { s.postPublish(t, `{"items":[`+streamItem("u1", "via unix\n")+`]}`) })
}

// TestE2EStartupPortInUse: an http_port another process holds stops the
// start with the bind error on the console; nothing loops.
func TestE2EStartupPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	s := startRunner(t, suiteOptions{runner: map[string]string{"http_port": fmt.Sprint(port)}})
	expectStartFailure(t, s, fmt.Sprintf(`cannot start: listen 0.0.0.0:%d: .*address already in use`, port))
}

// TestE2EStartupChildFails: a port only a child knows (the handler's
// publish port) in use: the handler exits with the start-up code, and the
// runner stops the suite with the handler's error instead of restarting
// it forever.
func TestE2EStartupChildFails(t *testing.T) {
	base := testutil.FreePortBlock(t, 5)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+1))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := testutil.ShortTempDir(t)
	s := &suite{dir: dir, httpPort: base + 4, portOffset: base - 5560}
	conf := writeConfig(t, dir, s.httpPort, s.portOffset, suiteOptions{})
	s.runner = testutil.Start(t, dir, nil, filepath.Join(binDir, "tack"), "--config", conf, "--merge-output")
	expectStartFailure(t, s, fmt.Sprintf(`handler failed to start: .*%d.*address already in use`, base+1))
}

// TestE2ESecondInstance: a second runner on the same run directory stops
// at once, without touching the first one's sockets or pid files, and the
// first one keeps serving.
func TestE2ESecondInstance(t *testing.T) {
	s := startSuite(t, suiteOptions{})
	pidFile := filepath.Join(s.dir, "run", "condure.pid")
	pid, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	second := testutil.Start(t, s.dir, nil, filepath.Join(binDir, "tack"), "--config", filepath.Join(s.dir, "pushpin.conf"), "--merge-output")
	if !second.Wait(30 * time.Second) {
		t.Fatalf("second runner still running:\n%s", second.Output())
	}
	if second.Cmd.ProcessState.ExitCode() == 0 {
		t.Error("second runner exited 0")
	}
	second.WaitFor(t, `run directory \S+ \(\S+tack.lock\) is in use by another running instance \(pid \d+\)`, time.Second)
	if strings.Contains(second.Output(), "starting condure") {
		t.Errorf("second runner started children:\n%s", second.Output())
	}
	if now, _ := os.ReadFile(pidFile); string(now) != string(pid) {
		t.Errorf("pid file changed: %q → %q", pid, now)
	}
	for i := 0; i < 3; i++ {
		if code, body := getBody(t, http.DefaultClient, s.url("/")); code != 200 || body != "Hello from the Pushpin test handler!\n" {
			t.Fatalf("first instance after the second: %d %q", code, body)
		}
	}
	// A held stream still works end to end (handler sockets untouched).
	br, done := openStream(t, s.url("/stream?channel=si"), "[stream opened]\n")
	defer done()
	expectLine(t, br, "still here\n", func() { s.postPublish(t, `{"items":[`+streamItem("si", "still here\n")+`]}`) })
}

// TestE2EBackendTLS: `ssl` route targets reach an https backend through
// tack-zhttp-client. A certificate from an unknown CA fails with a 502
// naming the TLS error unless the target says `insecure`; with the CA
// trusted (SSL_CERT_FILE in the environment, which Go's crypto/x509 reads
// as zurl's OpenSSL does) the request goes through.
func TestE2EBackendTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	certPEM, keyPEM := ca.Issue(t, time.Now().Add(24*time.Hour), "127.0.0.1", "localhost")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls backend %s\n", r.URL.Path)
	}))
	be.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	be.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	be.StartTLS()
	defer be.Close()
	target := strings.TrimPrefix(be.URL, "https://")

	s := startRunner(t, suiteOptions{routes: fmt.Sprintf("*,path_beg=/insecure %s,ssl,insecure\n* %s,ssl\n", target, target)})
	testutil.Eventually(t, 20*time.Second, func() error {
		return getOK(http.DefaultClient, s.url("/insecure/ready"))
	})
	code, body := getBody(t, http.DefaultClient, s.url("/x"))
	if code != http.StatusBadGateway || body != "Error while proxying to origin.\n" {
		t.Errorf("untrusted backend: %d %q, want Pushpin's 502", code, body)
	}
	s.runner.WaitFor(t, `\[zurl\] TLS to the backend failed .*certificate signed by unknown authority.* condition=tls-error connect=`+regexp.QuoteMeta(target), 10*time.Second)
	if code, body := getBody(t, http.DefaultClient, s.url("/insecure/y")); code != 200 || body != "tls backend /insecure/y\n" {
		t.Errorf("insecure target: %d %q", code, body)
	}
	s.runner.Stop(10 * time.Second)

	caFile := filepath.Join(testutil.ShortTempDir(t), "ca.PEM")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	s = startSuite(t, suiteOptions{routes: "* " + target + ",ssl\n", env: []string{"SSL_CERT_FILE=" + caFile}})
	if code, body := getBody(t, http.DefaultClient, s.url("/z")); code != 200 || body != "tls backend /z\n" {
		t.Errorf("trusted backend: %d %q", code, body)
	}
}
