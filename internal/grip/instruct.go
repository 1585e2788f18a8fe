package grip

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Defaults and bounds of GRIP instructions (grip-reference §3.4, §3.12).
const (
	// DefaultTimeout is the response-hold timeout when Grip-Timeout is absent
	// (Pushpin DEFAULT_RESPONSE_TIMEOUT, 55 s).
	DefaultTimeout = 55 * time.Second
	// MinTimeout is the shortest response-hold timeout; smaller values are
	// raised to it (Pushpin MINIMUM_RESPONSE_TIMEOUT, 5 s).
	MinTimeout = 5 * time.Second
	// DefaultKeepAliveTimeout is the keep-alive period when none is given
	// (55 s, for both Grip-Keep-Alive and the JSON `keep-alive` object).
	DefaultKeepAliveTimeout = 55 * time.Second
	// MinKeepAliveTimeout is the shortest keep-alive period; 0 is raised to it.
	MinKeepAliveTimeout = time.Second
	// DefaultNextLinkTimeout is the next-link timeout when the Grip-Link item
	// has no `timeout` (Pushpin DEFAULT_NEXTLINK_TIMEOUT, 120 s).
	DefaultNextLinkTimeout = 120 * time.Second
	// DefaultConnectionSubscriptionMax is [handler] connection_subscription_max
	// in the shipped config: channels kept per request.
	DefaultConnectionSubscriptionMax = 20
	// FilterMax141 is the per-channel filter limit Pushpin 1.41 enforces on
	// Grip-Channel (MESSAGEFILTERSTACK_SIZE_MAX). 1.36 has no limit; pass it as
	// ParseOptions.MaxFiltersPerChannel to get the 1.41 behaviour.
	FilterMax141 = 5
)

// ContentTypeInstruct is the media type of a JSON instruct body (§3.5).
const ContentTypeInstruct = "application/grip-instruct"

// Keep-alive modes (KeepAlive.Mode).
const (
	KeepAliveIdle     = "idle"
	KeepAliveInterval = "interval"
)

// Link relations (Link.Rel).
const (
	RelNext = "next"
	RelGone = "gone"
)

// HoldMode says whether and how the request is held.
type HoldMode int

// Hold modes.
const (
	HoldNone     HoldMode = iota // relay the response (unless a next link makes it a stream)
	HoldResponse                 // long-poll: hold until a publish or the timeout
	HoldStream                   // HTTP streaming: send headers now, append publishes
)

func (m HoldMode) String() string {
	switch m {
	case HoldResponse:
		return "response"
	case HoldStream:
		return "stream"
	default:
		return "none"
	}
}

// Channel is one subscription of a held request.
type Channel struct {
	// Name is the channel as subscribed: ParseOptions.ChannelPrefix followed
	// by the name the backend gave. Publishers use this name.
	Name string
	// BackendName is the name as the backend gave it, without the prefix;
	// Grip-Last headers use it.
	BackendName string
	// PrevID is the `prev-id` parameter; empty when absent.
	PrevID string
	// Filters are the `filter` parameters (JSON: `filters`), in order.
	Filters []string
}

// KeepAlive is the stream-mode keep-alive instruction.
type KeepAlive struct {
	// Data is written to the client each time the timer fires (may be empty).
	Data []byte
	// Timeout is the period, at least MinKeepAliveTimeout.
	Timeout time.Duration
	// Mode is KeepAliveIdle (timer restarted by every write) or
	// KeepAliveInterval (fixed period). A keep-alive set only by the JSON
	// instruct has no mode in Pushpin and is never restarted, so it is
	// reported as KeepAliveInterval (quirk 5).
	Mode string
}

// Link is a Grip-Link item. URI is as the backend gave it (with characters
// Qt's tolerant URL parser would escape, such as spaces or stray '%', escaped)
// and may be relative to the request URI.
type Link struct {
	URI string
	Rel string
	// Timeout is the next-link timeout (DefaultNextLinkTimeout when not
	// given); zero for gone links.
	Timeout time.Duration
}

// Status is a Grip-Status header as given: Reason is empty when the header
// had only a code.
type Status struct {
	Code   int
	Reason string
}

// Response is an HTTP response without framing headers.
type Response struct {
	Code    int
	Reason  string
	Headers []Header
	Body    []byte
}

// Instruct is the result of parsing a GRIP response (grip-reference §3.4,
// §3.5): what to hold, on which channels, and what the client gets.
type Instruct struct {
	Hold     HoldMode
	Channels []Channel
	// ChannelsDropped counts channels cut by connection_subscription_max
	// (Pushpin logs "too many subscriptions" for it).
	ChannelsDropped int
	// Timeout is the response-hold timeout, at least MinTimeout.
	Timeout time.Duration
	// KeepAlive is nil when no keep-alive was requested.
	KeepAlive *KeepAlive
	// Meta is the subscription meta from Grip-Set-Meta and JSON `meta`.
	Meta map[string]string
	// Status is the Grip-Status header, nil when absent or empty.
	Status *Status
	// NextLink is the last `rel=next` Grip-Link item, GoneLink the last
	// `rel=gone` one; nil when absent.
	NextLink *Link
	GoneLink *Link
	// ExposeHeaders lists the Grip-Expose-Headers names.
	ExposeHeaders []string
	// JSON is true when the instructions came from an application/grip-instruct body.
	JSON bool
	// Response is what the client gets initially (no hold, stream hold) or
	// on timeout (response hold): Grip-Status and the JSON `response` object
	// applied, reason phrase filled in, Grip-* headers (except those a JSON
	// `response` lists) removed, the Grip-Expose-Headers whitelist applied,
	// and Connection, Keep-Alive, Content-Encoding, Transfer-Encoding and
	// Content-Length removed, since every path re-frames the body.
	Response Response
}

// ParseOptions carries the route and handler settings Parse needs.
type ParseOptions struct {
	// ChannelPrefix is the route's `prefix`, prepended to every channel name.
	ChannelPrefix string
	// ConnectionSubscriptionMax caps the channels kept per request; extra
	// channels are dropped silently and counted in ChannelsDropped. Zero
	// means DefaultConnectionSubscriptionMax; negative means no limit.
	ConnectionSubscriptionMax int
	// MaxFiltersPerChannel, when positive, rejects a Grip-Channel item with
	// more filters (`too many filters for channel '<name>'`), as 1.41 does
	// with FilterMax141. Zero means no limit, as in 1.36. JSON channels are
	// never checked (quirk 18).
	MaxFiltersPerChannel int
}

// IsGRIP reports whether a backend response must go to the handler
// (grip-reference §3.1): any header whose name starts with "Grip-"
// (case-insensitive), or a first Content-Type header whose text before the
// first ';' is exactly "application/grip-instruct" (case-sensitive and not
// trimmed, as the 1.36 proxy compares it: "application/grip-instruct ; x"
// is not GRIP).
func IsGRIP(headers []Header) bool {
	if ct, ok := headerGet(headers, "Content-Type"); ok {
		if at := strings.IndexByte(ct, ';'); at >= 0 {
			ct = ct[:at]
		}
		if ct == ContentTypeInstruct {
			return true
		}
	}
	for _, h := range headers {
		if hasPrefixFold(h.Name, "Grip-") {
			return true
		}
	}
	return false
}

// droppedHeaders are removed from every client response built from
// instructions: the hop headers the handler drops (Pushpin
// AcceptWorker::afterSessionCalls) and Content-Length, which every path
// recomputes (grip-reference §3.4).
var droppedHeaders = []string{"Connection", "Keep-Alive", "Content-Encoding", "Transfer-Encoding", "Content-Length"}

// Parse interprets a GRIP backend response: status code and reason, headers
// and body. Errors are *FormatError values carrying Pushpin's exact text.
// Checks run in Pushpin's order, so the first error reported matches too.
func Parse(code int, reason string, headers []Header, body []byte, opts ParseOptions) (*Instruct, error) {
	in := &Instruct{Meta: map[string]string{}}
	timeout := -1
	kaTimeout := -1
	var kaData []byte
	kaMode := ""

	if v, ok := headerGet(headers, "Grip-Hold"); ok {
		switch v {
		case "response":
			in.Hold = HoldResponse
		case "stream":
			in.Hold = HoldStream
		default:
			return nil, formatErr("Grip-Hold must be set to either 'response' or 'stream'")
		}
	}

	for _, ps := range headerGetAllParams(headers, "Grip-Channel", false) {
		c := Channel{BackendName: ps[0].name}
		c.PrevID, _ = ps.get("prev-id")
		for _, p := range ps[1:] {
			if p.name == "filter" { // case-sensitive, unlike prev-id
				c.Filters = append(c.Filters, p.value)
			}
		}
		if opts.MaxFiltersPerChannel > 0 && len(c.Filters) > opts.MaxFiltersPerChannel {
			return nil, formatErr(fmt.Sprintf("too many filters for channel '%s'", c.BackendName))
		}
		in.Channels = append(in.Channels, c)
	}

	if v, ok := headerGet(headers, "Grip-Timeout"); ok {
		n, ok := parseHeaderInt(v)
		if !ok {
			return nil, formatErr("failed to parse Grip-Timeout")
		}
		if n < 0 {
			return nil, formatErr("Grip-Timeout has invalid value")
		}
		timeout = n
	}

	in.ExposeHeaders = headerGetAll(headers, "Grip-Expose-Headers")

	if ps := headerGetParams(headers, "Grip-Keep-Alive"); ps != nil {
		val := ps[0].name
		if val == "" {
			return nil, formatErr("Grip-Keep-Alive cannot be empty")
		}
		switch mode, _ := ps.get("mode"); mode {
		case "", KeepAliveIdle:
			kaMode = KeepAliveIdle
		case KeepAliveInterval:
			kaMode = KeepAliveInterval
		default:
			return nil, formatErr(fmt.Sprintf("no such Grip-Keep-Alive mode '%s'", mode))
		}
		if v, ok := ps.get("timeout"); ok {
			n, ok := parseHeaderInt(v)
			if !ok {
				return nil, formatErr("failed to parse Grip-Keep-Alive timeout value")
			}
			if n < 0 {
				return nil, formatErr("Grip-Keep-Alive timeout has invalid value")
			}
			kaTimeout = n
		} else {
			kaTimeout = int(DefaultKeepAliveTimeout / time.Second)
		}
		switch format, _ := ps.get("format"); format {
		case "", "raw":
			kaData = []byte(val)
		case "cstring":
			d, ok := unescapeCString(val)
			if !ok {
				return nil, formatErr("failed to parse Grip-Keep-Alive cstring format")
			}
			kaData = d
		case "base64":
			kaData = decodeBase64Lenient(val)
		default:
			return nil, formatErr(fmt.Sprintf("no such Grip-Keep-Alive format '%s'", format))
		}
	}

	for _, ps := range headerGetAllParams(headers, "Grip-Set-Meta", true) {
		if len(ps) == 0 {
			return nil, formatErr("Grip-Set-Meta cannot be empty")
		}
		in.Meta[ps[0].name] = ps[0].value
	}

	in.Response.Code = code
	in.Response.Reason = reason
	if v, _ := headerGet(headers, "Grip-Status"); v != "" {
		codeStr, r, _ := strings.Cut(v, " ")
		n, ok := parseHeaderInt(codeStr)
		if !ok || n < 0 || n > 999 {
			return nil, formatErr("Grip-Status contains invalid status code")
		}
		in.Status = &Status{Code: n, Reason: r}
		in.Response.Code = n
		in.Response.Reason = r
	}

	for _, ps := range headerGetAllParams(headers, "Grip-Link", false) {
		if len(ps) < 2 {
			continue
		}
		// 1.36 looks only at rel=next items and 1.41 validates every item;
		// we validate the two relations we act on and ignore the rest.
		rel, _ := ps.get("rel")
		if rel != RelNext && rel != RelGone {
			continue
		}
		lp := ps[0].name
		if len(lp) <= 2 || lp[0] != '<' || lp[len(lp)-1] != '>' {
			return nil, formatErr("failed to parse Grip-Link value")
		}
		uri, ok := tolerantURI(lp[1 : len(lp)-1])
		if !ok {
			return nil, formatErr("Grip-Link contains invalid link")
		}
		if rel == RelGone {
			in.GoneLink = &Link{URI: uri, Rel: RelGone}
			continue
		}
		l := &Link{URI: uri, Rel: RelNext, Timeout: DefaultNextLinkTimeout}
		if v, ok := ps.get("timeout"); ok {
			n, ok := parseHeaderInt(v)
			if !ok {
				return nil, formatErr("failed to parse Grip-Link timeout value")
			}
			if n < 0 {
				return nil, formatErr("Grip-Link timeout has invalid value")
			}
			l.Timeout = time.Duration(n) * time.Second
		}
		in.NextLink = l
	}

	for _, h := range headers {
		if hasPrefixFold(h.Name, "Grip-") {
			continue
		}
		if len(in.ExposeHeaders) > 0 && !containsFold(in.ExposeHeaders, h.Name) {
			continue
		}
		in.Response.Headers = append(in.Response.Headers, h)
	}
	in.Response.Body = body

	if ps := headerGetParams(headers, "Content-Type"); ps != nil && ps[0].name == ContentTypeInstruct {
		j := jsonInstruct{in: in, timeout: &timeout, kaTimeout: &kaTimeout, kaData: &kaData}
		if err := j.parse(code, body); err != nil {
			return nil, err
		}
	}

	if in.Response.Reason == "" {
		in.Response.Reason = ReasonPhrase(in.Response.Code)
	}
	in.Response.Headers = removeHeaders(in.Response.Headers, droppedHeaders)

	if timeout < 0 {
		in.Timeout = DefaultTimeout
	} else {
		in.Timeout = max(time.Duration(timeout)*time.Second, MinTimeout)
	}

	if kaTimeout >= 0 {
		if kaMode == "" {
			kaMode = KeepAliveInterval // JSON-only keep-alive (quirk 5)
		}
		in.KeepAlive = &KeepAlive{
			Data:    kaData,
			Timeout: max(time.Duration(kaTimeout)*time.Second, MinKeepAliveTimeout),
			Mode:    kaMode,
		}
	}

	limit := opts.ConnectionSubscriptionMax
	if limit == 0 {
		limit = DefaultConnectionSubscriptionMax
	}
	if limit > 0 && len(in.Channels) > limit {
		in.ChannelsDropped = len(in.Channels) - limit
		in.Channels = in.Channels[:limit]
	}
	for i := range in.Channels {
		in.Channels[i].Name = opts.ChannelPrefix + in.Channels[i].BackendName
	}
	return in, nil
}

// unescapeCString decodes the Grip-Keep-Alive cstring format: \\, \r, \n and
// \xHH; any other escaped character is dropped together with its backslash.
// A trailing backslash or a bad \x sequence fails.
func unescapeCString(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for n := 0; n < len(s); n++ {
		if s[n] != '\\' {
			out = append(out, s[n])
			continue
		}
		n++
		if n >= len(s) {
			return nil, false
		}
		switch s[n] {
		case '\\':
			out = append(out, '\\')
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 'x':
			if n+2 >= len(s) {
				return nil, false
			}
			hi, lo := unhex(s[n+1]), unhex(s[n+2])
			if hi < 0 || lo < 0 {
				return nil, false
			}
			out = append(out, byte(hi<<4|lo))
			n += 2
		}
	}
	return out, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// tolerantURI checks a link the way QUrl::fromEncoded (tolerant mode)
// accepts it and returns it with the characters Qt would escape escaped:
// stray '%', spaces, control and non-ASCII bytes. Invalid: a bad scheme
// (":x", "1:x"), a broken IPv6 literal, a non-numeric or too large port.
func tolerantURI(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && (i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0):
			b.WriteString("%25")
		case c <= ' ' || c >= 0x7f:
			b.WriteString("%" + strings.ToUpper(strconv.FormatInt(int64(c)|0x100, 16)[1:]))
		default:
			b.WriteByte(c)
		}
	}
	fixed := b.String()
	u, err := url.Parse(fixed)
	if err != nil {
		return "", false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n > 65535 {
			return "", false
		}
	}
	return fixed, true
}

// containsFold reports whether list holds name, ignoring ASCII case.
func containsFold(list []string, name string) bool {
	for _, e := range list {
		if strings.EqualFold(e, name) {
			return true
		}
	}
	return false
}

// removeHeaders returns hs without the headers named in names.
func removeHeaders(hs []Header, names []string) []Header {
	out := hs[:0:0]
	for _, h := range hs {
		if !containsFold(names, h.Name) {
			out = append(out, h)
		}
	}
	return out
}
