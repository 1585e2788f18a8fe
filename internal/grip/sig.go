package grip

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenLifetime is how far in the future a Grip-Sig token expires
// (Pushpin: exp = now + 3600 s).
const TokenLifetime = time.Hour

// JWT algorithms a Key can use.
const (
	AlgHS256 = "HS256" // shared secret
	AlgES256 = "ES256" // EC P-256 PEM key
	AlgRS256 = "RS256" // RSA PEM key
)

// Key is a sig_key or upstream_key: an HMAC secret, or an EC or RSA key from
// a PEM file. A Key from a public-key PEM can only verify.
type Key struct {
	alg    string
	secret []byte
	priv   crypto.Signer
	pub    crypto.PublicKey
}

// NewSecretKey returns an HS256 key for secret, or nil when secret is empty
// (not configured).
func NewSecretKey(secret []byte) *Key {
	if len(secret) == 0 {
		return nil
	}
	return &Key{alg: AlgHS256, secret: append([]byte(nil), secret...)}
}

// Alg returns the key's JWT algorithm (AlgHS256, AlgES256 or AlgRS256).
func (k *Key) Alg() string { return k.alg }

// ParseKey parses Pushpin's key syntax (grip-reference §3.2): plain text is
// the HMAC secret; `base64:<b64>` is a base64 secret; `file:<path>` names a
// PEM key (EC → ES256, RSA → RS256; private keys sign and verify, public
// keys only verify) or a file holding a hex secret (1.38+; 1.36 accepted
// only PEM). A relative path is joined to baseDir (the directory of the
// config or routes file). readFile reads the file; nil means os.ReadFile.
//
// An empty key, or a base64 secret that decodes to nothing, returns
// (nil, nil): not configured. This deliberately deviates from 1.36, which
// signs with (and, for upstream_key, trusts tokens made with) an empty HMAC
// secret (quirk 13.1).
func ParseKey(s, baseDir string, readFile func(name string) ([]byte, error)) (*Key, error) {
	switch {
	case s == "":
		return nil, nil
	case strings.HasPrefix(s, "file:"):
		name := s[len("file:"):]
		if !filepath.IsAbs(name) {
			name = filepath.Join(baseDir, name)
		}
		if readFile == nil {
			readFile = os.ReadFile
		}
		b, err := readFile(name)
		if err != nil {
			return nil, fmt.Errorf("read key file: %w", err)
		}
		return parseKeyFile(name, b)
	case strings.HasPrefix(s, "base64:"):
		// Decoded leniently, as Qt's fromBase64 does in 1.36.
		return NewSecretKey(decodeBase64Lenient(s[len("base64:"):])), nil
	default:
		return NewSecretKey([]byte(s)), nil
	}
}

func parseKeyFile(name string, b []byte) (*Key, error) {
	if !bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("-----BEGIN")) {
		secret, err := hex.DecodeString(trimSpace(string(b)))
		if err != nil || len(secret) == 0 {
			return nil, fmt.Errorf("%w: %s is neither a PEM key nor a hex secret", ErrKey, name)
		}
		return NewSecretKey(secret), nil
	}
	if k, err := jwt.ParseECPrivateKeyFromPEM(b); err == nil {
		return &Key{alg: AlgES256, priv: k, pub: k.Public()}, nil
	}
	if k, err := jwt.ParseRSAPrivateKeyFromPEM(b); err == nil {
		return &Key{alg: AlgRS256, priv: k, pub: k.Public()}, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(b); err == nil {
		return &Key{alg: AlgES256, pub: k}, nil
	}
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		return &Key{alg: AlgRS256, pub: k}, nil
	}
	return nil, fmt.Errorf("%w: %s holds no EC or RSA key", ErrKey, name)
}

func signingMethod(alg string) jwt.SigningMethod {
	switch alg {
	case AlgES256:
		return jwt.SigningMethodES256
	case AlgRS256:
		return jwt.SigningMethodRS256
	default:
		return jwt.SigningMethodHS256
	}
}

// SignToken makes a Grip-Sig token: a compact JWT with the claims
// {"exp": now+TokenLifetime in Unix seconds, "iss": iss}. The bytes match
// Pushpin's: header {"typ":"JWT","alg":...} and sorted claim keys. A nil
// key returns ErrNoKey; callers also send no Grip-Sig when iss is empty.
func SignToken(iss string, key *Key, now time.Time) (string, error) {
	if key == nil {
		return "", ErrNoKey
	}
	var signWith any
	switch key.alg {
	case AlgHS256:
		signWith = key.secret
	default:
		if key.priv == nil {
			return "", fmt.Errorf("%w: a public key cannot sign", ErrKey)
		}
		switch p := key.priv.(type) {
		case *ecdsa.PrivateKey:
			signWith = p
		case *rsa.PrivateKey:
			signWith = p
		}
	}
	header, err := marshalCompact(struct {
		Typ string `json:"typ"`
		Alg string `json:"alg"`
	}{"JWT", key.alg})
	if err != nil {
		return "", err
	}
	claims, err := marshalCompact(struct {
		Exp int64  `json:"exp"`
		Iss string `json:"iss"`
	}{now.Add(TokenLifetime).Unix(), iss})
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sig, err := signingMethod(key.alg).Sign(signing, signWith)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signing + "." + enc.EncodeToString(sig), nil
}

// marshalCompact is json.Marshal without HTML escaping, like serde_json.
func marshalCompact(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ValidateToken reports whether an incoming Grip-Sig proves an upstream
// GRIP proxy (grip-reference §3.2): the signature verifies with key under
// the key's algorithm and the numeric `exp` claim is positive and strictly
// after now. A nil key (upstream_key not configured) trusts nobody.
func ValidateToken(token string, key *Key, now time.Time) bool {
	if key == nil || token == "" {
		return false
	}
	var verifyWith any
	switch key.alg {
	case AlgHS256:
		verifyWith = key.secret
	default:
		verifyWith = key.pub
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return verifyWith, nil },
		jwt.WithValidMethods([]string{key.alg}), jwt.WithoutClaimsValidation())
	if err != nil {
		return false
	}
	exp, ok := claims["exp"].(float64)
	if !ok || math.IsNaN(exp) || exp <= 0 || exp > math.MaxInt64/2 {
		return false
	}
	return now.Unix() < int64(exp)
}
