package publish

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/tnetstring"
)

// Defaults and budgets.
const (
	// DefaultSpec is pushpin-publish's default --spec when GRIP_URL is
	// not set.
	DefaultSpec = "http://localhost:5561"
	// SpecEnv names the environment variable that replaces DefaultSpec.
	SpecEnv = "GRIP_URL"
	// HTTPTimeout bounds one HTTP publish (ours; pushpin-publish has none).
	HTTPTimeout = 30 * time.Second
	// ZMQTimeout bounds waiting for a PUSH peer and flushing to it (ours;
	// pushpin-publish waits forever when nobody listens).
	ZMQTimeout = 5 * time.Second
	// maxReplyBody bounds how much of an error reply is read and printed.
	maxReplyBody = 64 << 10
)

// Options are the command line of one publish.
type Options struct {
	Channel string
	// Content is the [content] argument (HaveContent when given); "@name"
	// means the bytes of file name.
	Content     string
	HaveContent bool
	ID          string
	PrevID      string
	Sender      string
	Code        string // --code as typed (default "200")
	Headers     []string
	Meta        []string
	Hint        bool
	Close       bool
	Patch       bool
	NoSeq       bool
	NoEOL       bool
	Spec        string
	User        string // user:pass for Basic auth (https only)

	// client and zmqTimeout are for tests; zero values mean the defaults.
	client     *http.Client
	zmqTimeout time.Duration
}

// Run builds the item and publishes it; it returns nil once the endpoint
// accepted it.
func Run(ctx context.Context, o Options) error {
	item, err := buildItem(o)
	if err != nil {
		return err
	}
	if strings.HasPrefix(o.Spec, "http:") || strings.HasPrefix(o.Spec, "https:") {
		return publishHTTP(ctx, o, item)
	}
	return publishZMQ(o, item)
}

// buildItem turns the options into an item: a map whose strings are
// []byte, the form both encoders start from. The checks run in
// pushpin-publish's order.
func buildItem(o Options) (map[string]any, error) {
	formats := map[string]any{}
	switch {
	case o.Hint:
		for _, f := range []string{"http-response", "http-stream", "ws-message"} {
			formats[f] = map[string]any{"action": []byte("hint")}
		}
	case o.Close:
		for _, f := range []string{"http-stream", "ws-message"} {
			formats[f] = map[string]any{"action": []byte("close")}
		}
	default:
		code, err := strconv.ParseUint(o.Code, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("failed to parse code: %w", err)
		}
		if code > 999 {
			return nil, errors.New("code must be an integer between 0 and 999")
		}
		if !o.HaveContent {
			return nil, errors.New("must specify content")
		}
		resp := map[string]any{"code": int64(code)}
		if o.Patch {
			patch, err := parsePatch(o.Content)
			if err != nil {
				return nil, err
			}
			resp["body-patch"] = patch
		} else {
			httpBody, wsBody, err := content(o)
			if err != nil {
				return nil, err
			}
			resp["body"] = httpBody
			formats["http-stream"] = map[string]any{"content": httpBody}
			formats["ws-message"] = map[string]any{"content": wsBody}
		}
		formats["http-response"] = resp
	}

	var headers []any
	for _, h := range o.Headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return nil, errors.New(`header must be in the form "name: value"`)
		}
		headers = append(headers, []any{[]byte(name), []byte(strings.TrimSpace(value))})
	}
	if resp, ok := formats["http-response"].(map[string]any); ok && len(headers) > 0 && !o.Hint && !o.Close {
		resp["headers"] = headers
	}
	meta := map[string]any{}
	if o.Sender != "" {
		meta["sender"] = []byte(o.Sender)
	}
	for _, m := range o.Meta {
		name, value, ok := strings.Cut(m, "=")
		if !ok {
			return nil, errors.New(`meta must be in the form "name=value"`)
		}
		meta[name] = []byte(strings.TrimSpace(value))
	}

	item := map[string]any{"channel": []byte(o.Channel), "formats": formats}
	if o.ID != "" {
		item["id"] = []byte(o.ID)
	}
	if o.PrevID != "" {
		item["prev-id"] = []byte(o.PrevID)
	}
	if len(meta) > 0 {
		item["meta"] = meta
	}
	if o.NoSeq {
		item["no-seq"] = true
	}
	return item, nil
}

// content returns the HTTP and WebSocket payloads: a file's bytes verbatim
// for "@name", else the argument with "\n" added to the HTTP one unless
// NoEOL.
func content(o Options) (httpBody, wsBody []byte, err error) {
	if name, ok := strings.CutPrefix(o.Content, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, nil, fmt.Errorf("can't read file %s: %w", name, err)
		}
		return b, b, nil
	}
	httpBody = []byte(o.Content)
	if !o.NoEOL {
		httpBody = append(httpBody, '\n')
	}
	return httpBody, []byte(o.Content), nil
}

// parsePatch decodes --patch content, which must be a JSON array; numbers
// stay json.Number so both encoders keep integers integers.
func parsePatch(s string) ([]any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing characters after the patch")
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, errors.New("patch content must be a JSON array")
	}
	return arr, nil
}

// toJSON converts an item to JSON values: byte strings become strings, and
// a `body` or `content` that is not UTF-8 becomes `body-bin` or
// `content-bin` in base64, as pushpin-publish does.
func toJSON(v any) (any, error) {
	switch x := v.(type) {
	case []byte:
		if !utf8.Valid(x) {
			return nil, errors.New("argument is not valid UTF-8")
		}
		return string(x), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if b, ok := e.([]byte); ok && (k == "body" || k == "content") && !utf8.Valid(b) {
				out[k+"-bin"] = base64.StdEncoding.EncodeToString(b)
				continue
			}
			j, err := toJSON(e)
			if err != nil {
				return nil, err
			}
			out[k] = j
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			j, err := toJSON(e)
			if err != nil {
				return nil, err
			}
			out[i] = j
		}
		return out, nil
	}
	return v, nil
}

// toTnet converts JSON patch values to tnetstring-encodable ones.
func toTnet(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n, nil
		}
		return x.Float64()
	case string:
		return []byte(x), nil
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			t, err := toTnet(e)
			if err != nil {
				return nil, err
			}
			out[k] = t
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			t, err := toTnet(e)
			if err != nil {
				return nil, err
			}
			out[i] = t
		}
		return out, nil
	}
	return v, nil
}

// splitURL splits a GRIP URL the way pushpin-publish does: scheme, then
// "//", then the host[:port] up to the first '/', then the path.
func splitURL(spec string) (scheme, host, path string, err error) {
	scheme, rest, ok := strings.Cut(spec, ":")
	if !ok || !strings.HasPrefix(rest, "//") {
		return "", "", "", errors.New("invalid URL")
	}
	rest = rest[2:]
	host, path = rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	if h, port, ok := strings.Cut(host, ":"); ok {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil || h == "" {
			return "", "", "", errors.New("invalid URL")
		}
	}
	return scheme, host, path, nil
}

func publishHTTP(ctx context.Context, o Options, item map[string]any) error {
	scheme, host, path, err := splitURL(o.Spec)
	if err != nil {
		return err
	}
	if o.User != "" && scheme != "https" {
		return errors.New("Authentication requires https")
	}
	j, err := toJSON(item)
	if err != nil {
		return err
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"items": []any{j}}); err != nil {
		return fmt.Errorf("encode item: %w", err)
	}
	body.Truncate(body.Len() - 1) // Encode's newline

	ctx, cancel := context.WithTimeout(ctx, HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+host+path+"/publish/", &body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Close = true
	req.Header.Set("Content-Type", "application/json")
	if o.User != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(o.User)))
	}
	client := o.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBody))
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if msg := strings.TrimSpace(string(reply)); msg != "" {
			return errors.New(msg)
		}
		return errors.New(resp.Status)
	}
	return nil
}

func publishZMQ(o Options, item map[string]any) error {
	formats, _ := item["formats"].(map[string]any)
	if resp, ok := formats["http-response"].(map[string]any); ok {
		if patch, ok := resp["body-patch"]; ok {
			t, err := toTnet(patch)
			if err != nil {
				return fmt.Errorf("encode patch: %w", err)
			}
			resp["body-patch"] = t
		}
	}
	msg, err := tnetstring.Encode(nil, item)
	if err != nil {
		return fmt.Errorf("encode item: %w", err)
	}
	timeout := o.zmqTimeout
	if timeout == 0 {
		timeout = ZMQTimeout
	}
	zctx, err := zmq.NewContext()
	if err != nil {
		return fmt.Errorf("zmq context: %w", err)
	}
	defer zctx.Term()
	s, err := zctx.NewSocket(zmq.PUSH)
	if err != nil {
		return fmt.Errorf("zmq socket: %w", err)
	}
	defer s.Close()
	// IMMEDIATE makes the send wait for a connected peer (bounded by
	// SNDTIMEO) instead of queueing for one that may never come; LINGER
	// bounds the flush on close.
	for _, set := range []func() error{
		func() error { return s.SetImmediate(true) },
		func() error { return s.SetSndtimeo(timeout) },
		func() error { return s.SetLinger(timeout) },
	} {
		if err := set(); err != nil {
			return fmt.Errorf("zmq socket: %w", err)
		}
	}
	if err := s.Connect(o.Spec); err != nil {
		return fmt.Errorf("connect %s: %w", o.Spec, err)
	}
	if _, err := s.SendBytes(msg, 0); err != nil {
		if zmq.AsErrno(err) == zmq.Errno(11) { // EAGAIN
			return fmt.Errorf("send to %s: no peer within %v", o.Spec, timeout)
		}
		return fmt.Errorf("send to %s: %w", o.Spec, err)
	}
	return nil
}
