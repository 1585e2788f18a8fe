package grip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// pushpinToken was minted by Pushpin 1.36 (sig_iss=pushpin, sig_key=changeme)
// for a request it proxied; exp is 1796111482.
const pushpinToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3OTYxMTE0ODIsImlzcyI6InB1c2hwaW4ifQ.kw2Ed4BnTIiDJOGSTH9dvswIkryvUeFzy_bF8uRKJbs"

func TestGripSignTokenMatchesPushpin(t *testing.T) {
	key, err := ParseKey("changeme", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1796111482-3600, 0)
	tok, err := SignToken("pushpin", key, now)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "token", tok, pushpinToken)
	if !ValidateToken(pushpinToken, key, now) {
		t.Fatal("Pushpin's token does not validate")
	}
}

func TestGripValidateTokenExpiry(t *testing.T) {
	key := NewSecretKey([]byte("secret"))
	now := time.Unix(1_700_000_000, 0)
	tok, err := SignToken("iss", key, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		want bool
	}{
		{"now", now, true},
		{"one second before exp", now.Add(TokenLifetime - time.Second), true},
		{"at exp", now.Add(TokenLifetime), false},
		{"after exp", now.Add(2 * TokenLifetime), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eq(t, "valid", ValidateToken(tok, key, tc.at), tc.want)
		})
	}
	if ValidateToken(tok, NewSecretKey([]byte("other")), now) {
		t.Fatal("token validates with the wrong secret")
	}
	if ValidateToken(tok[:len(tok)-2]+"xx", key, now) {
		t.Fatal("tampered token validates")
	}
}

func TestGripValidateTokenClaims(t *testing.T) {
	secret := []byte("secret")
	key := NewSecretKey(secret)
	now := time.Unix(1_700_000_000, 0)
	sign := func(m jwt.SigningMethod, claims jwt.MapClaims, k any) string {
		t.Helper()
		s, err := jwt.NewWithClaims(m, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	none := sign(jwt.SigningMethodNone, jwt.MapClaims{"exp": now.Unix() + 10}, jwt.UnsafeAllowNoneSignatureType)
	for _, tc := range []struct {
		name  string
		token string
		want  bool
	}{
		{"future exp", sign(jwt.SigningMethodHS256, jwt.MapClaims{"exp": now.Unix() + 10}, secret), true},
		{"no exp", sign(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "x"}, secret), false},
		{"zero exp", sign(jwt.SigningMethodHS256, jwt.MapClaims{"exp": 0}, secret), false},
		{"string exp", sign(jwt.SigningMethodHS256, jwt.MapClaims{"exp": "9999999999"}, secret), false},
		// Pushpin does not check nbf (jsonwebtoken's default validation).
		{"future nbf ignored", sign(jwt.SigningMethodHS256, jwt.MapClaims{"exp": now.Unix() + 10, "nbf": now.Unix() + 5}, secret), true},
		{"other hmac alg", sign(jwt.SigningMethodHS384, jwt.MapClaims{"exp": now.Unix() + 10}, secret), false},
		{"alg none", none, false},
		{"garbage", "a.b.c", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eq(t, "valid", ValidateToken(tc.token, key, now), tc.want)
		})
	}
}

func TestGripKeyNotConfigured(t *testing.T) {
	for _, s := range []string{"", "base64:", "base64:==="} {
		k, err := ParseKey(s, "", nil)
		if err != nil || k != nil {
			t.Fatalf("ParseKey(%q) = %v, %v; want nil, nil", s, k, err)
		}
	}
	if _, err := SignToken("pushpin", nil, time.Now()); !errors.Is(err, ErrNoKey) {
		t.Fatalf("SignToken(nil key) error %v, want ErrNoKey", err)
	}
	// An empty-secret token must not make anybody trusted (quirk 13.1).
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Unix() + 100}).SignedString([]byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if ValidateToken(tok, nil, time.Now()) {
		t.Fatal("nil key trusts a token")
	}
}

// memFS serves files for ParseKey.
type memFS map[string][]byte

func (m memFS) read(name string) ([]byte, error) {
	if b, ok := m[name]; ok {
		return b, nil
	}
	return nil, fs.ErrNotExist
}

func pemBlock(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestGripParseKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ecPubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubDER, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	dir := "/etc/pushpin"
	files := memFS{
		filepath.Join(dir, "ec.pem"):     pemBlock(t, "EC PRIVATE KEY", ecDER),
		"/abs/ec.pub":                    pemBlock(t, "PUBLIC KEY", ecPubDER),
		filepath.Join(dir, "rsa.pem"):    pemBlock(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)),
		filepath.Join(dir, "rsa.pub"):    pemBlock(t, "PUBLIC KEY", rsaPubDER),
		filepath.Join(dir, "hex.key"):    []byte(" 736563726574\n"),
		filepath.Join(dir, "junk.key"):   []byte("not hex"),
		filepath.Join(dir, "badpem.key"): []byte("-----BEGIN NOTHING-----\nAAAA\n-----END NOTHING-----\n"),
	}
	now := time.Unix(1_700_000_000, 0)

	t.Run("plain and base64 are the same secret", func(t *testing.T) {
		a, _ := ParseKey("secret", dir, files.read)
		b, _ := ParseKey("base64:"+base64.StdEncoding.EncodeToString([]byte("secret")), dir, files.read)
		h, err := ParseKey("file:hex.key", dir, files.read)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := SignToken("i", a, now)
		for _, k := range []*Key{b, h} {
			eq(t, "alg", k.Alg(), AlgHS256)
			if !ValidateToken(tok, k, now) {
				t.Fatal("token does not validate with the equivalent key")
			}
		}
	})
	t.Run("base64 lenient", func(t *testing.T) {
		k, _ := ParseKey("base64:c2Vj!cmV0", dir, files.read)
		tok, _ := SignToken("i", NewSecretKey([]byte("secret")), now)
		if !ValidateToken(tok, k, now) {
			t.Fatal("lenient base64 key differs")
		}
	})
	for _, tc := range []struct {
		priv, pub, alg string
	}{
		{"file:ec.pem", "file:/abs/ec.pub", AlgES256},
		{"file:rsa.pem", "file:rsa.pub", AlgRS256},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			priv, err := ParseKey(tc.priv, dir, files.read)
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParseKey(tc.pub, dir, files.read)
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "alg", priv.Alg(), tc.alg)
			tok, err := SignToken("pushpin", priv, now)
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
			eq(t, "header", string(hdr), `{"typ":"JWT","alg":"`+tc.alg+`"}`)
			if !ValidateToken(tok, pub, now) || !ValidateToken(tok, priv, now) {
				t.Fatal("token does not validate")
			}
			if ValidateToken(tok, NewSecretKey([]byte("x")), now) {
				t.Fatal("token validates under HS256")
			}
			if _, err := SignToken("pushpin", pub, now); !errors.Is(err, ErrKey) {
				t.Fatalf("signing with a public key: %v, want ErrKey", err)
			}
		})
	}
	for _, s := range []string{"file:missing", "file:junk.key", "file:badpem.key"} {
		t.Run(s, func(t *testing.T) {
			if k, err := ParseKey(s, dir, files.read); err == nil {
				t.Fatalf("ParseKey(%q) = %v, want error", s, k)
			}
		})
	}
}
