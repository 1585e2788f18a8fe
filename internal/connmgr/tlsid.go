package connmgr

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// maxDomainLen is the longest identity name looked up (a DNS name).
const maxDomainLen = 253

// identities serves the certificates of --tls-identities-dir the way
// condure does (Pushpin src/connmgr/tls.rs): an identity NAME is the pair
// NAME.crt (PEM chain) and NAME.key (PEM key); a TLS client's server name
// (lowercased) picks NAME, else the one-level wildcard "_.<parent>", else
// the listener's default-cert. A pair is read again when either file's
// modification time moves on, so certificates renew without a restart.
// An expired certificate is served as condure serves it (the client
// decides), with a warning when it is loaded.
type identities struct {
	dir string
	log zerolog.Logger

	mu    sync.Mutex // guards cache
	cache map[string]*identity
}

type identity struct {
	cert     *tls.Certificate
	modified time.Time
}

func newIdentities(dir string, log zerolog.Logger) *identities {
	return &identities{dir: dir, log: log, cache: map[string]*identity{}}
}

// get returns the identity NAME, loading it when it is new or changed.
func (ids *identities) get(name string) (*tls.Certificate, error) {
	if name == "" || len(name) > maxDomainLen || strings.ContainsAny(name, "/\\") || strings.IndexFunc(name, func(r rune) bool { return r < 0x20 }) >= 0 {
		return nil, fmt.Errorf("invalid identity name %q", name)
	}
	crt := filepath.Join(ids.dir, name+".crt")
	key := filepath.Join(ids.dir, name+".key")
	modified, err := newestModTime(crt, key)
	if err != nil {
		return nil, err
	}
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if id, ok := ids.cache[name]; ok && !modified.After(id.modified) {
		return id.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		return nil, fmt.Errorf("load %s / %s: %w", crt, key, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		cert.Leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf := cert.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
		ids.log.Warn().Str("cert", crt).Time("not_after", leaf.NotAfter).
			Msg("TLS certificate has expired; clients will reject it")
	}
	ids.cache[name] = &identity{cert: &cert, modified: modified}
	ids.log.Debug().Str("cert", name).Msg("loaded cert")
	return &cert, nil
}

// byDomain is the identity for a TLS server name: the exact name, then
// the wildcard "_.<parent>"; nil when neither exists.
func (ids *identities) byDomain(serverName string) *tls.Certificate {
	name := strings.ToLower(serverName)
	if c, err := ids.get(name); err == nil {
		return c
	}
	i := strings.IndexByte(name, '.')
	if i < 0 {
		return nil
	}
	c, err := ids.get("_" + name[i:])
	if err != nil {
		return nil
	}
	return c
}

// config is the tls.Config of one listener whose default identity is
// defaultCert ("" = none: a client without a known server name fails).
func (ids *identities) config(defaultCert string) *tls.Config {
	return &tls.Config{
		// condure uses OpenSSL's Mozilla "intermediate" profile: TLS 1.2+.
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hi.ServerName != "" {
				if c := ids.byDomain(hi.ServerName); c != nil {
					return c, nil
				}
			}
			if defaultCert == "" {
				return nil, fmt.Errorf("no certificate for server name %q and no default-cert", hi.ServerName)
			}
			c, err := ids.get(defaultCert)
			if err != nil {
				return nil, fmt.Errorf("default certificate: %w", err)
			}
			return c, nil
		},
	}
}

// newestModTime is the later modification time of the two files.
func newestModTime(a, b string) (time.Time, error) {
	var t time.Time
	for _, f := range []string{a, b} {
		st, err := os.Stat(f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return time.Time{}, fmt.Errorf("%s: no such file", f)
			}
			return time.Time{}, err
		}
		if st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t, nil
}
