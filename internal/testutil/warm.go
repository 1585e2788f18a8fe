package testutil

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// WarmInspect sends GETs to url(n) for n = 1, 2, … (distinct URIs, which
// never share) until five were answered 200, 200 ms apart. A Pushpin-style
// proxy skips inspect after a failed call (its handler was not yet
// connected) until a later call succeeds: after this, inspect is in use.
func WarmInspect(t testing.TB, url func(n int) string) {
	t.Helper()
	n, ok := 0, 0
	Eventually(t, 30*time.Second, func() error {
		n++
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(url(n))
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			ok++
		}
		if ok < 5 {
			time.Sleep(200 * time.Millisecond)
			return fmt.Errorf("%d requests answered", ok)
		}
		return nil
	})
}
