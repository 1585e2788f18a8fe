package proxy

import (
	"time"

	"tack/internal/grip"
)

// gripFeatures is the Grip-Feature value sent to GRIP backends; it lists
// what tack's handler implements. Pushpin 1.36 also lists "session"
// (Grip-Session-Id, a state service: grip-reference §3.14), which tack
// does not implement, and not "link:gone", which it does.
const gripFeatures = "status, link:next, link:gone, filter:skip-self, filter:skip-users, filter:require-sub, filter:build-id, filter:var-subst"

// tokenReuse is how long a signed Grip-Sig is reused; tokens live an hour.
const tokenReuse = time.Minute

// signer makes and caches Grip-Sig tokens; owned by the engine goroutine.
type signer struct {
	keys   map[string]*grip.Key // by key string
	tokens map[string]cachedToken
}

type cachedToken struct {
	token string
	made  time.Time
}

func newSigner() *signer {
	return &signer{keys: map[string]*grip.Key{}, tokens: map[string]cachedToken{}}
}

// token returns a Grip-Sig for iss/keyString, or "" when no key is
// configured (an empty key means "do not sign": a deliberate deviation from
// Pushpin 1.36, which signs with an empty secret).
func (sg *signer) token(iss, keyString, baseDir string, now time.Time) (string, error) {
	if keyString == "" || iss == "" {
		return "", nil
	}
	cacheKey := iss + "\x00" + keyString
	if c, ok := sg.tokens[cacheKey]; ok && now.Sub(c.made) < tokenReuse {
		return c.token, nil
	}
	k, ok := sg.keys[keyString]
	if !ok {
		var err error
		if k, err = grip.ParseKey(keyString, baseDir, nil); err != nil {
			return "", err
		}
		sg.keys[keyString] = k
	}
	if k == nil {
		return "", nil
	}
	tok, err := grip.SignToken(iss, k, now)
	if err != nil {
		return "", err
	}
	if len(sg.tokens) > 1000 {
		sg.tokens = map[string]cachedToken{}
	}
	sg.tokens[cacheKey] = cachedToken{token: tok, made: now}
	return tok, nil
}
