package e2e

import (
	"bufio"

	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/tnetstring"
)

// GRIP behaviours seen by a client and a real backend through bin/tack:
// delivery filters, prev-id gaps at delivery, hint, next-link failures,
// route sub=, the refresh action and command, and Grip-Feature.

// recorder is a backend that counts requests per path and keeps them.
type recorder struct {
	mu   sync.Mutex
	reqs map[string][]*http.Request
	// flags set by the test change the next answers of a path.
	flags map[string]bool
}

func (r *recorder) record(req *http.Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs[req.URL.Path] = append(r.reqs[req.URL.Path], req)
	return len(r.reqs[req.URL.Path])
}

func (r *recorder) seen(path string) []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs[path]...)
}

func (r *recorder) flag(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.flags[path]
}

func (r *recorder) set(path string) {
	r.mu.Lock()
	r.flags[path] = true
	r.mu.Unlock()
}

// waitSeen waits until path was requested n times.
func (r *recorder) waitSeen(t *testing.T, path string, n int, timeout time.Duration) []*http.Request {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got := r.seen(path); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s requested %d times, want %d", path, len(r.seen(path)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newRecorder(t *testing.T) (*recorder, string) {
	rec := &recorder{reqs: map[string][]*http.Request{}, flags: map[string]bool{}}
	mux := http.NewServeMux()
	hold := func(w http.ResponseWriter, mode, channel, body string) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Grip-Hold", mode)
		w.Header().Set("Grip-Channel", channel)
		io.WriteString(w, body)
	}
	mux.HandleFunc("/feat", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		io.WriteString(w, "ok\n")
	})
	// Filters: the subscriber's user comes from the query.
	mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		w.Header().Set("Grip-Set-Meta", "user="+r.URL.Query().Get("user"))
		hold(w, "stream", "su; filter=skip-users", "[open]\n")
	})
	mux.HandleFunc("/requiresub", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		ch := "rs1; filter=require-sub"
		if r.URL.Query().Get("both") != "" {
			ch += ", rs2"
		}
		hold(w, "stream", ch, "[open]\n")
	})
	// A stream with prev-id and a next link: a gap or a hint fetches it.
	mux.HandleFunc("/seq", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		w.Header().Set("Grip-Link", "</seqnext>; rel=next; timeout=120")
		hold(w, "stream", "sq; prev-id=1", "[open]\n")
	})
	mux.HandleFunc("/seqnext", func(w http.ResponseWriter, r *http.Request) {
		n := rec.record(r)
		w.Header().Set("Grip-Link", "</seqnext>; rel=next; timeout=120")
		hold(w, "stream", "sq; prev-id=n"+fmt.Sprint(n), fmt.Sprintf("next %d\n", n))
	})
	// Response holds retried on a gap (prev-id) or a hint; once the test
	// sets the flag the backend answers at once.
	for _, p := range []struct{ path, channel string }{{"/rgap", "rg; prev-id=1"}, {"/rhint", "rh"}} {
		mux.HandleFunc(p.path, func(w http.ResponseWriter, r *http.Request) {
			rec.record(r)
			if rec.flag(p.path) {
				io.WriteString(w, "fresh\n")
				return
			}
			w.Header().Set("Grip-Timeout", "30")
			hold(w, "response", p.channel, "timeout\n")
		})
	}
	// Next-link failures: a response hold from a next link ends the
	// stream; a failed fetch is retried.
	for _, p := range []string{"/badnext", "/flaky"} {
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			rec.record(r)
			w.Header().Set("Grip-Link", "<"+p+"next>; rel=next")
			io.WriteString(w, "[chain]\n")
		})
	}
	mux.HandleFunc("/badnextnext", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		hold(w, "response", "bn", "held\n")
	})
	mux.HandleFunc("/flakynext", func(w http.ResponseWriter, r *http.Request) {
		if rec.record(r) == 1 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "recovered\n")
	})
	// sub= routes: the backend subscribes to nothing itself.
	mux.HandleFunc("/sub/stream", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		hold(w, "stream", "own", "[open]\n")
	})
	mux.HandleFunc("/sub/poll", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		w.Header().Set("Grip-Timeout", "30")
		hold(w, "response", "ownpoll", "timeout\n")
	})
	mux.HandleFunc("/refresh", func(w http.ResponseWriter, r *http.Request) {
		rec.record(r)
		hold(w, "stream", "rf", "[open]\n")
	})
	return rec, newBackendWith(t, mux)
}

// lineStream is a held stream whose lines arrive on a channel; the
// warm-up lines are left out once the stream has seen its first.
type lineStream struct {
	lines chan string
	warm  chan struct{}
}

func startLines(t *testing.T, br *bufio.Reader) *lineStream {
	ls := &lineStream{lines: make(chan string, 100), warm: make(chan struct{})}
	go func() {
		warmed := false
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				if l != "" {
					ls.lines <- l
				}
				close(ls.lines)
				return
			}
			if l == "warm\n" {
				if !warmed {
					warmed = true
					close(ls.warm)
				}
				continue
			}
			ls.lines <- l
		}
	}()
	return ls
}

// next returns the next line ("" when the stream ended).
func (ls *lineStream) next(t *testing.T) string {
	t.Helper()
	select {
	case l := <-ls.lines:
		return l
	case <-time.After(15 * time.Second):
		t.Fatal("no line within 15 s")
		return ""
	}
}

// expectNext fails unless the next line is want.
func (ls *lineStream) expectNext(t *testing.T, want string) {
	t.Helper()
	if got := ls.next(t); got != want {
		t.Fatalf("stream got %q, want %q", got, want)
	}
}

// openLines opens a stream and returns its lines after the first (want).
func openLines(t *testing.T, url, want string) *lineStream {
	t.Helper()
	br, done := openStream(t, url, want)
	t.Cleanup(done)
	return startLines(t, br)
}

// warmUp publishes "warm" on channel until every stream has seen it, so
// their subscriptions are in place.
func warmUp(t *testing.T, s *suite, channel string, streams ...*lineStream) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, ls := range streams {
		for {
			s.postPublish(t, `{"items":[`+streamItem(channel, "warm\n")+`]}`)
			select {
			case <-ls.warm:
			case <-time.After(200 * time.Millisecond):
				if time.Now().After(deadline) {
					t.Fatalf("stream on %s never subscribed", channel)
				}
				continue
			}
			break
		}
	}
}

func publishJSON(t *testing.T, s *suite, items ...string) {
	t.Helper()
	s.postPublish(t, `{"items":[`+strings.Join(items, ",")+`]}`)
}

func TestE2EGripBehaviours(t *testing.T) {
	rec, be := newRecorder(t)
	s := startSuite(t, suiteOptions{routes: "*,path_beg=/sub/ " + be + ",sub=implicit\n* " + be + "\n"})
	waitHandler(t, s, "/sub/stream")

	t.Run("GripFeature", func(t *testing.T) {
		resp, err := http.Get(s.url("/feat"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := rec.waitSeen(t, "/feat", 1, 5*time.Second)[0].Header.Get("Grip-Feature")
		// No "session": tack does not implement Grip-Session-Id.
		if want := "status, link:next, link:gone, filter:skip-self, filter:skip-users, filter:require-sub, filter:build-id, filter:var-subst"; got != want {
			t.Fatalf("Grip-Feature %q, want %q", got, want)
		}
	})

	// Delivery filters: stream a's and stream b's lines after the item
	// that one of them must not get, then an item for all.
	for _, c := range []struct {
		name, urlA, urlB, channel, item string
		wantA, wantB                    []string
	}{
		{"SkipUsers", "/users?user=alice", "/users?user=bob", "su",
			`{"channel":"su","meta":{"skip_users":"carol, alice"},"formats":{"http-stream":{"content":"filtered\n"}}}`,
			[]string{"all\n"}, []string{"filtered\n", "all\n"}},
		{"RequireSub", "/requiresub", "/requiresub?both=1", "rs1",
			`{"channel":"rs1","meta":{"require_sub":"rs2"},"formats":{"http-stream":{"content":"filtered\n"}}}`,
			[]string{"all\n"}, []string{"filtered\n", "all\n"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := openLines(t, s.url(c.urlA), "[open]\n")
			b := openLines(t, s.url(c.urlB), "[open]\n")
			warmUp(t, s, c.channel, a, b)
			publishJSON(t, s, c.item, streamItem(c.channel, "all\n"))
			for _, w := range c.wantA {
				a.expectNext(t, w)
			}
			for _, w := range c.wantB {
				b.expectNext(t, w)
			}
		})
	}

	t.Run("StreamGapAndHint", func(t *testing.T) {
		st := openLines(t, s.url("/seq"), "[open]\n")
		// The first-subscription update fetches the next link after ~1 s.
		st.expectNext(t, "next 1\n")
		if gl := rec.waitSeen(t, "/seqnext", 1, 5*time.Second)[0].Header.Get("Grip-Last"); gl != "sq; last-id=1" {
			t.Errorf("first next link Grip-Last %q", gl)
		}
		// In sequence: delivered. A gap at delivery (no-seq skips the
		// publish-time sequencer): not delivered, the next link is fetched
		// at once with the session's prev-id.
		publishJSON(t, s, `{"channel":"sq","id":"a","prev-id":"n1","formats":{"http-stream":{"content":"in order\n"}}}`)
		st.expectNext(t, "in order\n")
		publishJSON(t, s, `{"channel":"sq","id":"c","prev-id":"b","no-seq":true,"formats":{"http-stream":{"content":"after a gap\n"}}}`)
		st.expectNext(t, "next 2\n")
		if gl := rec.seen("/seqnext")[1].Header.Get("Grip-Last"); gl != "sq; last-id=a" {
			t.Errorf("gap next link Grip-Last %q", gl)
		}
		// hint: the next link is fetched at once.
		publishJSON(t, s, `{"channel":"sq","formats":{"http-stream":{"action":"hint"}}}`)
		st.expectNext(t, "next 3\n")
	})

	t.Run("ResponseGapAndHintRetry", func(t *testing.T) {
		for _, c := range []struct{ path, item string }{
			{"/rgap", `{"channel":"rg","id":"3","prev-id":"2","no-seq":true,"formats":{"http-response":{"body":"gap\n"}}}`},
			{"/rhint", `{"channel":"rh","formats":{"http-response":{"action":"hint"}}}`},
		} {
			got := make(chan string, 1)
			go getInto(s.url(c.path), got)
			// The first-subscription update retries once after ~1 s.
			rec.waitSeen(t, c.path, 2, 10*time.Second)
			time.Sleep(300 * time.Millisecond) // the retried hold is in place
			rec.set(c.path)
			publishJSON(t, s, c.item)
			select {
			case r := <-got:
				if r != "200 fresh\n" {
					t.Fatalf("%s: client got %q, want the retried request's answer", c.path, r)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("%s: no answer", c.path)
			}
			reqs := rec.seen(c.path)
			if len(reqs) != 3 {
				t.Fatalf("%s: %d backend requests, want 3", c.path, len(reqs))
			}
			if c.path == "/rgap" {
				if gl := reqs[2].Header.Get("Grip-Last"); gl != "rg; last-id=1" {
					t.Errorf("retry after a gap: Grip-Last %q", gl)
				}
			}
		}
	})

	t.Run("NextLinkFailures", func(t *testing.T) {
		// A next link answering with a response hold ends the stream
		// (Pushpin: "Next link returned non-stream hold.").
		resp, err := http.Get(s.url("/badnext"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "[chain]\n" {
			t.Fatalf("body %q (%v), want only the initial body", body, err)
		}
		// A failed fetch (503) is retried after about a second.
		start := time.Now()
		resp, err = http.Get(s.url("/flaky"))
		if err != nil {
			t.Fatal(err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != "[chain]\nrecovered\n" {
			t.Fatalf("body %q (%v)", body, err)
		}
		if n := len(rec.seen("/flakynext")); n != 2 {
			t.Errorf("next link fetched %d times, want 2", n)
		}
		if el := time.Since(start); el < time.Second {
			t.Errorf("retried after %v, want at least 1 s", el)
		}
	})

	t.Run("RouteSub", func(t *testing.T) {
		st := openLines(t, s.url("/sub/stream"), "[open]\n")
		warmUp(t, s, "implicit", st)
		publishJSON(t, s, streamItem("implicit", "implicit channel\n"), streamItem("own", "own channel\n"))
		st.expectNext(t, "implicit channel\n")
		st.expectNext(t, "own channel\n")

		got := make(chan string, 1)
		go getInto(s.url("/sub/poll"), got)
		deadline := time.Now().Add(15 * time.Second)
		for {
			publishJSON(t, s, `{"channel":"implicit","formats":{"http-response":{"body":"via sub\n"}}}`)
			select {
			case r := <-got:
				if r != "200 via sub\n" {
					t.Fatalf("poll got %q", r)
				}
				return
			case <-time.After(300 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatal("poll on an implicit channel never answered")
			}
		}
	})

	t.Run("Refresh", func(t *testing.T) {
		st := openLines(t, s.url("/refresh"), "[open]\n")
		warmUp(t, s, "rf", st)
		// The refresh action is accepted (1.38+; 1.36 rejects it) and
		// means nothing to HTTP sessions.
		publishJSON(t, s,
			`{"channel":"rf","formats":{"http-stream":{"action":"refresh"}}}`,
			`{"channel":"rf","formats":{"http-response":{"action":"refresh"}}}`,
			`{"channel":"rf","formats":{"ws-message":{"action":"refresh"}}}`,
			streamItem("rf", "after\n"))
		st.expectNext(t, "after\n")

		req, _ := zmq.NewSocket(zmq.REQ)
		defer req.Close()
		req.SetLinger(0)
		req.SetRcvtimeo(5 * time.Second)
		req.Connect(fmt.Sprintf("tcp://127.0.0.1:%d", 5563+s.portOffset))
		call := func(args tnetstring.Dict) tnetstring.Dict {
			req.SendBytes(tnetstring.MustEncode(tnetstring.Dict{
				{Key: "id", Value: "r"}, {Key: "method", Value: "refresh"}, {Key: "args", Value: args}}), 0)
			b, err := req.RecvBytes(0)
			if err != nil {
				t.Fatalf("refresh reply: %v", err)
			}
			d, err := tnetstring.DecodeDict(b)
			if err != nil {
				t.Fatalf("refresh reply %q: %v", b, err)
			}
			return d
		}
		// As 1.36: by channel, success (no WebSocket session to refresh);
		// by an HTTP connection's id, item-not-found.
		if d := call(tnetstring.Dict{{Key: "channel", Value: "rf"}}); !d.Bool("success") {
			t.Errorf("refresh by channel: %v", d)
		}
		cid := "condure:" + "1-0-0"
		if d := call(tnetstring.Dict{{Key: "cid", Value: cid}}); d.Bool("success") || string(mustBytes(d, "condition")) != "item-not-found" {
			t.Errorf("refresh by cid: %v", d)
		}
		// The stream is untouched.
		publishJSON(t, s, streamItem("rf", "still open\n"))
		st.expectNext(t, "still open\n")
	})
}

func mustBytes(d tnetstring.Dict, key string) []byte {
	b, _ := d.Bytes(key)
	return b
}
