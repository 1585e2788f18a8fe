package routes

import "strconv"

// Route is one parsed line of a routes file: a condition and its failover
// list of targets. A Route taken from a Table is shared and must not be
// modified.
type Route struct {
	Line   int    // 1-based line in Source (for --route lines, the index of the line)
	Source string // file:line, for logs

	Domain    string // "*" wildcard or exact host; empty = reachable only by id
	HasDomain bool   // Domain is non-empty
	Proto     string // "", "http" or "ws"
	SSL       *bool  // nil = any
	PathBeg   string

	ID         string // explicit id= or the synthesised "domain,proto,ssl,path" (see SynthesizedID)
	IDExplicit bool   // ID came from id=; only then does the route get separate stats

	SigIss    string
	SigKey    string // as written, except that a relative "file:" path is made absolute against the routes file dir
	HasSigIss bool
	HasSigKey bool

	Prefix        string
	OrigHeaders   bool
	AsHost        string
	PathRem       int // characters removed from the front of the path; replace_beg sets it to len(PathBeg)
	ReplaceBeg    string
	HasReplaceBeg bool

	Debug   bool
	ACO     bool
	Session bool
	NoGrip  bool

	JSONPMode        string // "basic" or "extended" (default)
	JSONPCallback    string // default "callback"
	JSONPBody        string
	JSONPDefCallback string
	JSONPDefMethod   string // empty = mode default (GET for extended, POST for basic)

	SockJS       string
	SockJSAsPath string

	Headers  []HeaderRule // header=Name:value in file order
	LogLevel *int         // nil = DefaultLogLevel

	Targets []Target

	// Props holds every condition prop as parsed (name → values in order),
	// so the user of the table can warn about props it does not support.
	Props map[string][]string
}

// HeaderRule is a header=Name:value route option. An empty Value deletes
// the header; leading spaces of the value are already trimmed.
type HeaderRule struct{ Name, Value string }

// TargetKind says what a Target points at.
type TargetKind int

// Target kinds, one per target value form of the routes file.
const (
	TargetHost     TargetKind = iota // host:port or [ipv6]:port
	TargetTest                       // test: the built-in test handler
	TargetZHTTP                      // zhttp/<spec>
	TargetZHTTPReq                   // zhttpreq/<spec>
)

// String returns the kind as the routes file spells it.
func (k TargetKind) String() string {
	switch k {
	case TargetHost:
		return "host"
	case TargetTest:
		return "test"
	case TargetZHTTP:
		return "zhttp"
	case TargetZHTTPReq:
		return "zhttpreq"
	}
	return "TargetKind(" + strconv.Itoa(int(k)) + ")"
}

// Target is one backend of a Route.
type Target struct {
	Kind TargetKind
	Host string // TargetHost only; an IPv6 address without brackets
	Port int    // TargetHost only; 1-65535
	Spec string // TargetZHTTP and TargetZHTTPReq: the ZeroMQ spec after the slash

	SSL              bool
	Untrusted        bool
	TrustConnectHost bool
	Insecure         bool
	OverHTTP         bool
	OneEvent         bool

	HostOverride string   // host=<host[:port]>, URI host override
	Subs         []string // sub=<channel>, in order
	IPCFileMode  string   // ipc_file_mode=<octal>, as written

	Props map[string][]string // every target prop as parsed
}

// Default values of route options, as Pushpin 1.36/1.41 use them.
const (
	// DefaultJSONPMode is Pushpin's jsonp_mode default.
	DefaultJSONPMode = "extended"
	// DefaultJSONPCallback is Pushpin's jsonp_cb default.
	DefaultJSONPCallback = "callback"
	// DefaultLogLevel is the log_level default (3 = debug), new in 1.41.
	DefaultLogLevel = 3
)
