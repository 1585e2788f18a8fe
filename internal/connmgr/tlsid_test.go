package connmgr

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writeSelfSigned writes dir/name.crt and dir/name.key for cn, valid
// until notAfter, with the given mtime.
func writeSelfSigned(t *testing.T, dir, name, cn string, notAfter, mtime time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		DNSNames: []string{cn}, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	for ext, b := range map[string][]byte{
		".crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		".key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	} {
		p := filepath.Join(dir, name+ext)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func served(t *testing.T, ids *identities, defaultCert, sni string) string {
	t.Helper()
	c, err := ids.config(defaultCert).GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		return "error: " + err.Error()
	}
	return c.Leaf.Subject.CommonName
}

// TestTLSIdentities: SNI lookup (exact, lowercased, one-level wildcard,
// default), names that cannot be file names, re-reading a renewed pair,
// and an expired certificate served with a warning (as condure).
func TestTLSIdentities(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	later := time.Now().Add(24 * time.Hour)
	writeSelfSigned(t, dir, "default_443", "default", later, old)
	writeSelfSigned(t, dir, "a.example", "a.example", later, old)
	writeSelfSigned(t, dir, "_.example", "wild", later, old)
	writeSelfSigned(t, dir, "old.example", "old.example", time.Now().Add(-time.Hour), old)
	var logs bytes.Buffer
	ids := newIdentities(dir, zerolog.New(&logs))

	for _, tc := range []struct{ def, sni, want string }{
		{"default_443", "a.example", "a.example"},
		{"default_443", "A.Example", "a.example"},
		{"default_443", "b.example", "wild"},
		{"default_443", "x.b.example", "default"},
		{"default_443", "", "default"},
		{"default_443", "../default_443", "default"},
		{"", "nothing.test", `error: no certificate for server name "nothing.test" and no default-cert`},
		{"missing", "", "error: default certificate: " + dir + "/missing.crt: no such file"},
	} {
		if got := served(t, ids, tc.def, tc.sni); got != tc.want {
			t.Errorf("default %q sni %q: %q, want %q", tc.def, tc.sni, got, tc.want)
		}
	}
	if _, err := ids.get("a/b"); err == nil {
		t.Error("a name with '/' was looked up")
	}

	// A renewed pair (newer mtime) is served without a restart.
	writeSelfSigned(t, dir, "a.example", "a.example", later, time.Now())
	before := served(t, ids, "default_443", "a.example")
	c1, _ := ids.get("a.example")
	writeSelfSigned(t, dir, "a.example", "renewed", later, time.Now().Add(time.Second))
	c2, _ := ids.get("a.example")
	if c1 == c2 || c2.Leaf.Subject.CommonName != "renewed" || before != "a.example" {
		t.Errorf("renewal not picked up: %q", c2.Leaf.Subject.CommonName)
	}

	if got := served(t, ids, "default_443", "old.example"); got != "old.example" {
		t.Errorf("expired identity: %q", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate has expired") {
		t.Errorf("no expiry warning: %s", logs.String())
	}
}
