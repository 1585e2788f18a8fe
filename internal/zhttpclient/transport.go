package zhttpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Connection pool settings.
const (
	// MaxIdleConnsPerHost keeps enough idle keep-alive connections per
	// backend for the proxy's concurrency (Go's default of 2 would make
	// most requests dial).
	MaxIdleConnsPerHost = 256
	// IdleConnTimeout closes an idle pooled connection; capped by
	// connection_max_time.
	IdleConnTimeout = 90 * time.Second
	// DialTimeout bounds one TCP connect attempt → connection-timeout
	// (curl's default is 300 s; a shorter bound fails faster).
	DialTimeout = 30 * time.Second
	// TLSHandshakeTimeout bounds the TLS handshake → connection-timeout.
	TLSHandshakeTimeout = 30 * time.Second
	// TransportIOBuffer is net/http's per-connection read and write buffer.
	TransportIOBuffer = 32 << 10
	// MaxTransports bounds the number of distinct connection profiles kept
	// at once; the oldest is retired beyond it.
	MaxTransports = 256
)

// profile selects a pool: requests share connections only when they dial
// the same way and are subject to the same checks. Within one profile
// net/http keys connections by scheme and URI host:port.
type profile struct {
	connectAddr      string // connect-host:port, "" to dial the URI host
	connectHost      string
	ignorePolicies   bool
	ignoreTLSErrors  bool
	trustConnectHost bool
}

type transportEntry struct {
	t       *http.Transport
	created time.Time
}

// transports is the set of shared http.Transports, one per profile. mu
// guards m; the transports themselves are goroutine-safe.
type transports struct {
	policy    *Policy
	allowIPv6 bool
	maxAge    time.Duration
	resolver  *net.Resolver
	roots     *x509.CertPool // nil: system roots (tests set their own)

	mu sync.Mutex
	m  map[profile]*transportEntry
}

func newTransports(cfg *Config, policy *Policy) *transports {
	return &transports{
		policy:    policy,
		allowIPv6: cfg.AllowIPv6,
		maxAge:    cfg.ConnectionMaxTime,
		resolver:  net.DefaultResolver,
		m:         make(map[profile]*transportEntry),
	}
}

// get returns the transport for p, creating it or replacing one older than
// connection_max_time (zurl rotates its curl connection pool the same way).
func (ts *transports) get(p profile, now time.Time) *http.Transport {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if e, ok := ts.m[p]; ok {
		if ts.maxAge <= 0 || now.Sub(e.created) < ts.maxAge {
			return e.t
		}
		e.t.CloseIdleConnections()
		delete(ts.m, p)
	}
	if len(ts.m) >= MaxTransports {
		var oldest profile
		var at time.Time
		for k, e := range ts.m {
			if at.IsZero() || e.created.Before(at) {
				oldest, at = k, e.created
			}
		}
		ts.m[oldest].t.CloseIdleConnections()
		delete(ts.m, oldest)
	}
	e := &transportEntry{t: ts.build(p), created: now}
	ts.m[p] = e
	return e.t
}

// closeIdle closes every idle pooled connection (shutdown).
func (ts *transports) closeIdle() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for k, e := range ts.m {
		e.t.CloseIdleConnections()
		delete(ts.m, k)
	}
}

func (ts *transports) build(p profile) *http.Transport {
	idle := IdleConnTimeout
	if ts.maxAge > 0 && ts.maxAge < idle {
		idle = ts.maxAge
	}
	return &http.Transport{
		Proxy:                 nil, // zurl talks to the target directly
		DialContext:           ts.dialer(p),
		TLSClientConfig:       ts.tlsConfig(p),
		TLSHandshakeTimeout:   TLSHandshakeTimeout,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		DisableCompression:    false,                                                  // ask for gzip and decode it, as zurl does (the proxy strips Content-Encoding)
		MaxIdleConns:          0,                                                      // no global cap; per host below
		MaxIdleConnsPerHost:   MaxIdleConnsPerHost,
		IdleConnTimeout:       idle,
		ExpectContinueTimeout: 0,
		ReadBufferSize:        TransportIOBuffer,
		WriteBufferSize:       TransportIOBuffer,
	}
}

// dialError marks a failure to reach the backend at all, mapped to
// remote-connection-failed or connection-timeout.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// dialer resolves the host itself so that every resolved address can be
// checked against the policy before connecting (zurl blocks each denied
// address in curl's open-socket callback and fails with policy-violation
// when all were denied). Names resolve to IPv4 only unless allow_ipv6, as
// curl's IPRESOLVE_V4 in zurl.
func (ts *transports) dialer(p profile) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p.connectAddr != "" {
			addr = p.connectAddr
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, &dialError{err}
		}
		var addrs []netip.Addr
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{a}
		} else {
			nw := "ip4"
			if ts.allowIPv6 {
				nw = "ip"
			}
			addrs, err = ts.resolver.LookupNetIP(ctx, nw, host)
			if err != nil {
				return nil, &dialError{err}
			}
		}
		blocked, tried := 0, 0
		var lastErr error
		for _, a := range addrs {
			a = a.Unmap()
			if !ts.allowIPv6 && !a.Is4() {
				// curl's IPRESOLVE_V4 never offers it: not a policy matter
				// (zurl answers remote-connection-failed, checked).
				continue
			}
			tried++
			if !p.ignorePolicies && !ts.policy.AllowedAddr(a) {
				blocked++
				continue
			}
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
			if err == nil {
				return c, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				break
			}
		}
		if tried > 0 && blocked == tried {
			return nil, fmt.Errorf("%s: %w", host, ErrPolicy)
		}
		if lastErr == nil {
			lastErr = fmt.Errorf("no usable address for %s", host)
		}
		return nil, &dialError{lastErr}
	}
}

// tlsConfig verifies against the URI host (net/http sets ServerName from
// the URL, so SNI is the URI host even with connect-host), or also accepts
// a certificate for connect-host with trust-connect-host (zurl's
// checkHosts), or skips verification with ignore-tls-errors.
func (ts *transports) tlsConfig(p profile) *tls.Config {
	cfg := &tls.Config{RootCAs: ts.roots, MinVersion: tls.VersionTLS12}
	switch {
	case p.ignoreTLSErrors:
		cfg.InsecureSkipVerify = true
	case p.trustConnectHost && p.connectHost != "":
		roots := ts.roots
		alt := p.connectHost
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: no peer certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
			}
			if leaf.VerifyHostname(cs.ServerName) == nil || leaf.VerifyHostname(alt) == nil {
				return nil
			}
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates,
				Err: x509.HostnameError{Certificate: leaf, Host: alt}}
		}
	}
	return cfg
}

// profileFor builds the profile of a request; uriPort is the URI's
// effective port, used when connect-host comes without connect-port.
func profileFor(connectHost string, connectPort int64, uriPort string, ignorePolicies, ignoreTLS, trust bool) profile {
	p := profile{ignorePolicies: ignorePolicies, ignoreTLSErrors: ignoreTLS, trustConnectHost: trust}
	if connectHost != "" {
		port := uriPort
		if connectPort > 0 {
			port = strconv.FormatInt(connectPort, 10)
		}
		p.connectAddr = net.JoinHostPort(connectHost, port)
		if trust {
			p.connectHost = connectHost
		}
	}
	return p
}
