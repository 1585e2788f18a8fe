package e2e

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// linkBackend serves a stream whose next links chain through /next?n=…
// and whose end POSTs the gone link; it records what it saw.
type linkBackend struct {
	mu    sync.Mutex
	next  []*http.Request // next-link GETs, in order
	gone  chan string     // gone-link POST paths
	sigOK []bool          // Grip-Sig valid on each next-link GET
}

func newLinkBackend(t *testing.T) (*linkBackend, string) {
	lb := &linkBackend{gone: make(chan string, 4)}
	mux := http.NewServeMux()
	// A stream hold with a next link (timeout 3 s) and a gone link; the
	// channel uses build-id so the initial body carries the prev-id.
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", "stream")
		w.Header().Set("Grip-Channel", "l1; prev-id=p0; filter=build-id")
		w.Header().Set("Grip-Set-Meta", `id_format="cursor-%(l1)s"`)
		w.Header().Add("Grip-Link", "</next?n=1>; rel=next; timeout=3")
		w.Header().Add("Grip-Link", "</gone?who=me>; rel=gone")
		io.WriteString(w, "[open %I]\n")
	})
	// No hold at all, only a next link: the body chain of /next.
	mux.HandleFunc("/chain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Link", "</next?n=1&chain=1>; rel=next")
		io.WriteString(w, "[chain]\n")
	})
	mux.HandleFunc("/next", func(w http.ResponseWriter, r *http.Request) {
		_, err := jwt.Parse(r.Header.Get("Grip-Sig"), func(*jwt.Token) (any, error) { return []byte("changeme"), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("pushpin"))
		lb.mu.Lock()
		lb.next = append(lb.next, r)
		lb.sigOK = append(lb.sigOK, err == nil)
		lb.mu.Unlock()
		n := r.URL.Query().Get("n")
		if r.URL.Query().Get("chain") != "" {
			if n == "1" {
				w.Header().Set("Grip-Link", "</next?n=2&chain=1>; rel=next")
			}
			io.WriteString(w, "chain-"+n+"\n")
			return
		}
		w.Header().Set("Grip-Hold", "stream")
		w.Header().Set("Grip-Channel", "l1; prev-id=p"+n+"; filter=build-id")
		// Each answer's instructions replace the last ones, meta included.
		w.Header().Set("Grip-Set-Meta", `id_format="cursor-%(l1)s"`)
		w.Header().Set("Grip-Link", "</next?n=2>; rel=next; timeout=3")
		io.WriteString(w, "next-"+n+" %I\n")
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) {
		lb.gone <- r.Method + " " + r.URL.RequestURI()
	})
	return lb, newBackendWith(t, mux)
}

func (lb *linkBackend) requests() ([]*http.Request, []bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return append([]*http.Request(nil), lb.next...), append([]bool(nil), lb.sigOK...)
}

func TestE2ENextAndGoneLinks(t *testing.T) {
	lb, be := newLinkBackend(t)
	s := startSuite(t, suiteOptions{routes: "* " + be + "\n"})

	// The initial body goes through build-id with the channel's prev-id.
	br, done := openStream(t, s.url("/stream"), "[open cursor-p0]\n")
	// The first subscription updates the session after ~1 s: the next
	// link is fetched through the proxy (signed, with Grip-Last) and its
	// body appended.
	expectLine(t, br, "next-1 cursor-p1\n", func() {})
	reqs, sig := lb.requests()
	if len(reqs) != 1 || !sig[0] || reqs[0].Header.Get("Grip-Last") != "l1; last-id=p0" || reqs[0].Method != "GET" {
		t.Fatalf("next-link requests %v (sig %v), Grip-Last %q", len(reqs), sig, reqs[0].Header.Get("Grip-Last"))
	}
	// A published item continuing the sequence arrives in between (one
	// without the right prev-id would make the session fetch at once).
	item := `{"channel":"l1","id":"p1b","prev-id":"p1","formats":{"http-stream":{"content":"live\n"}}}`
	posted := false
	expectLine(t, br, "live\n", func() {
		if !posted {
			s.postPublish(t, `{"items":[`+item+`]}`)
			posted = true
		}
	})
	// The window is 3 s with no delivery on every channel... the item
	// above was delivered, so the timer restarts; the fetch follows later.
	start := time.Now()
	expectLine(t, br, "next-2 cursor-p2\n", func() {})
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("second next link after %v, want the 3 s window", el)
	}
	reqs, _ = lb.requests()
	if len(reqs) != 2 || reqs[1].Header.Get("Grip-Last") != "l1; last-id=p1b" {
		t.Fatalf("second next-link request: %d requests, Grip-Last %q", len(reqs), reqs[len(reqs)-1].Header.Get("Grip-Last"))
	}

	// The client leaves: the gone link is POSTed.
	done()
	select {
	case g := <-lb.gone:
		if g != "POST /gone?who=me" {
			t.Errorf("gone request %q", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gone link never requested")
	}

	// No hold + next link: a body chain that ends with the last link.
	resp, err := http.Get(s.url("/chain"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "[chain]\nchain-1\nchain-2\n" {
		t.Fatalf("chain body %q (%v)", body, err)
	}
	for k := range resp.Header {
		if strings.HasPrefix(strings.ToLower(k), "grip-") {
			t.Errorf("client saw %s", k)
		}
	}
}
