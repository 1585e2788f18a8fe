package zsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
)

// Defaults and bounds.
const (
	// DefaultHWM is used when Options leaves a HWM at zero (Pushpin's zhttp
	// ROUTER/PUB/SUB use 101000; its PUSH/PULL 100).
	DefaultHWM = 1000
	// Unlimited as a HWM means no message-count limit (libzmq's 0): for
	// links whose volume zhttp credits already bound, where a PUB would
	// otherwise drop silently and break the session's sequence.
	Unlimited = -1
	// DefaultQueue is the capacity of the Go channels in front of a socket.
	DefaultQueue = 1024
	// PollInterval bounds how long a receive-only owner waits before checking ctx.
	PollInterval = 100 * time.Millisecond
	// TwoWayPoll bounded a queued message's wait on two-way sockets before
	// they were woken by an inproc PAIR; kept for callers' timeouts.
	TwoWayPoll = 2 * time.Millisecond
	// DefaultSendTimeout is how long a send waits for room before it is dropped.
	DefaultSendTimeout = 100 * time.Millisecond
	// retryWait bounds one wait between send attempts; a ROUTER retries on
	// this timer because its POLLOUT is not per peer (see write).
	retryWait = 10 * time.Millisecond
	// firstPeerWait is how long a monitored ROUTER_MANDATORY socket whose
	// connections have not completed a handshake yet waits for its peer.
	firstPeerWait = 5 * time.Second
	// batch bounds how many messages an owner reads, or a two-way owner
	// writes, in one turn before it serves the other direction.
	batch = 256
)

// ErrDropped is reported to OnDrop for a message that could not be sent.
var ErrDropped = errors.New("zsock: message dropped")

// Message is one multipart ZeroMQ message.
type Message [][]byte

// Direction says which channels a socket uses.
type Direction int

// Directions.
const (
	SendOnly Direction = iota + 1
	RecvOnly
	TwoWay
)

// Options configure one socket.
type Options struct {
	Name      string // for logs: "condure-out", "zurl-in-stream", ...
	Type      zmq.Type
	Direction Direction
	Bind      []string // only the first is bound (Pushpin's setupSocket rule); callers may pass all
	Connect   []string // all are connected
	Identity  string   // ROUTER/DEALER routing id; must equal our `from` on zhttp ROUTERs
	Subscribe []string // SUB topics
	SndHWM    int
	RcvHWM    int
	Linger    time.Duration
	Immediate bool // ZMQ_IMMEDIATE: queue only to completed connections
	// RouterMandatory makes a ROUTER report unroutable sends instead of
	// silently dropping them.
	RouterMandatory bool
	TCPKeepAlive    bool
	IPCFileMode     os.FileMode // chmod applied to a bound ipc path when non-zero
	QueueLen        int         // Go channel capacity (DefaultQueue when zero)
	SendTimeout     time.Duration
	// FullTimeout (ROUTER_MANDATORY only) is how long a message to a peer
	// that is connected but whose queue is full (EAGAIN: it reads more
	// slowly than we write) waits for room, when longer than SendTimeout,
	// which then bounds only the wait for an unroutable peer. A peer that
	// stays full that long is then taken as gone, as an unroutable one
	// (goneMemory), so a hung peer does not hold every queued message.
	FullTimeout time.Duration
	// OnDrop is called in the owner goroutine for each message that could
	// not be sent; it must not block.
	OnDrop func(m Message, err error)
	// TrackPeers counts handshaken peers, read with Peers: a caller can
	// tell "no handler connected yet" before it starts something that
	// needs one.
	TrackPeers bool
	// OnDisconnect is called each time a peer connection of the socket
	// ends (a libzmq monitor event: the peer closed its socket or its
	// process died), in a goroutine of the socket; it must not block.
	// connmgr uses it to find zhttp servers that went away (doc.go).
	OnDisconnect func()
	// Control enables Subscribe/Unsubscribe after Open (SUB sockets whose
	// topics follow demand); the owner then polls in the two-way rhythm so
	// a change waits at most TwoWayPoll.
	Control bool
	// AwaitSubscriber (send-only XPUB) holds each message until a
	// subscriber has subscribed to a topic that prefixes its first frame.
	// A PUB drops what it sends before the subscription of a peer that is
	// (re)connecting has arrived (ZeroMQ's "slow joiner"), which on a
	// zhttp link silently breaks a session's sequence: a handler's first
	// packets to a connmgr it had not finished connecting to were lost.
	// Messages of one topic leave in order; a message waits at most
	// HoldTimeout (DefaultHoldTimeout when zero), and at most QueueLen
	// wait: older ones are dropped (OnDrop, and at most one warning a
	// second).
	AwaitSubscriber bool
	HoldTimeout     time.Duration
	// NoDrop (XPUB) sets ZMQ_XPUB_NODROP: a message for a subscriber
	// whose pipe is at SndHWM waits, retried on a timer, up to SendTimeout
	// instead of being dropped unseen by libzmq, then goes to OnDrop. A
	// topic that timed out so is stalled: its next messages are tried once
	// without waiting until one gets through, so that a subscriber that
	// stopped reading costs one SendTimeout, not one per message.
	NoDrop bool

	// afterOpen, when set (tests), runs after the binds and connects.
	afterOpen func()
}

// DefaultHoldTimeout bounds how long an AwaitSubscriber socket holds a
// message for a subscriber (a peer process starting or restarting).
const DefaultHoldTimeout = 10 * time.Second

// ErrNoSubscriber is reported to OnDrop for a message an AwaitSubscriber
// socket held longer than its HoldTimeout, or had no room to hold.
var ErrNoSubscriber = errors.New("zsock: no subscriber for message")

// Context wraps a libzmq context; one per process.
type Context struct {
	zctx *zmq.Context
}

// NewContext creates a libzmq context.
func NewContext() (*Context, error) {
	c, err := zmq.NewContext()
	if err != nil {
		return nil, fmt.Errorf("zmq context: %w", err)
	}
	return &Context{zctx: c}, nil
}

// Close terminates the context. Call it after every socket's Run returned.
func (c *Context) Close() error {
	return c.zctx.Term()
}

// Socket is one ZeroMQ socket plus its owner loop.
type Socket struct {
	opts Options
	sock *zmq.Socket
	send chan Message
	recv chan Message
	ctrl chan control
	log  zerolog.Logger

	// Two-way and Control sockets are woken by a message on an inproc PAIR:
	// wakeIn belongs to the owner (polled beside sock), wakeOut to the
	// waker goroutine, which forwards signals from the wake channel. Each
	// ZeroMQ socket thus still has exactly one goroutine using it.
	wakeIn, wakeOut *zmq.Socket
	wake            chan struct{}
	// queue is what the owner reads: send itself on send-only sockets; on
	// two-way sockets the waker moves messages from send to queue and
	// wakes the owner, so a plain channel send is never left waiting.
	queue chan Message
	// held is a message the waker had taken from send when it was
	// stopped; only touched after the waker has exited.
	held Message
	// mon receives the socket's connection events (TrackPeers); the owner
	// polls it and keeps peers, which any goroutine may read.
	mon   *zmq.Socket
	peers atomic.Int64
	// unshaken counts handshake failures whose disconnect is still to
	// come (monitor reader only).
	unshaken int
	// gone remembers ROUTER_MANDATORY peers found unroutable, until when
	// further messages to them are dropped at once instead of each
	// waiting SendTimeout (owner goroutine only); handshakes counts the
	// peers that connected (monitor events), which void that memory.
	gone       map[string]goneMark
	handshakes atomic.Uint64
	// disconnects counts peers that went away; the owner compares it with
	// seenDisconnects before a write (see write).
	disconnects     atomic.Uint64
	seenDisconnects uint64
	// AwaitSubscriber state (owner goroutine only): the topics
	// subscribers hold, the messages waiting for one (oldest first), how
	// many wait per topic key, and the drops not yet reported in a
	// warning (at most one a second), with the time of the last one.
	topics map[string]struct{}
	// stalled holds the topic keys whose last message timed out (NoDrop,
	// owner goroutine only).
	stalled     map[string]struct{}
	waiting     []waitingMsg
	waitingKeys map[string]int
	fullDrops   int
	expired     int
	dropWarnAt  time.Time
}

// waitingMsg is a message held for a subscriber since at.
type waitingMsg struct {
	m   Message
	key string
	at  time.Time
}

// goneMark is a peer found unroutable: until when, and how many peers
// had connected then.
type goneMark struct {
	until      time.Time
	handshakes uint64
}

// Peers returns how many peers have completed the handshake and not
// disconnected (TrackPeers sockets; 0 otherwise).
func (s *Socket) Peers() int { return int(s.peers.Load()) }

var wakeSeq atomic.Uint64

// control is a topic change applied by the owner goroutine.
type control struct {
	topic     string
	subscribe bool
}

// Open creates, configures and binds/connects a socket. On error nothing is
// left open.
func (c *Context) Open(opts Options, log zerolog.Logger) (*Socket, error) {
	switch opts.Direction {
	case SendOnly, RecvOnly, TwoWay:
	default:
		// A zero Direction used to run the two-way loop with no channels:
		// input was read and then held forever.
		return nil, fmt.Errorf("%s: invalid direction %d", opts.Name, opts.Direction)
	}
	if opts.AwaitSubscriber && (opts.Type != zmq.XPUB || opts.Direction != SendOnly) {
		return nil, fmt.Errorf("%s: AwaitSubscriber needs a send-only XPUB", opts.Name)
	}
	if opts.NoDrop && opts.Type != zmq.XPUB {
		return nil, fmt.Errorf("%s: NoDrop needs an XPUB", opts.Name)
	}
	if opts.QueueLen == 0 {
		opts.QueueLen = DefaultQueue
	}
	if opts.HoldTimeout == 0 {
		opts.HoldTimeout = DefaultHoldTimeout
	}
	if opts.SndHWM == 0 {
		opts.SndHWM = DefaultHWM
	}
	if opts.RcvHWM == 0 {
		opts.RcvHWM = DefaultHWM
	}
	if opts.SendTimeout == 0 {
		opts.SendTimeout = DefaultSendTimeout
	}
	s, err := c.zctx.NewSocket(opts.Type)
	if err != nil {
		return nil, fmt.Errorf("%s: new socket: %w", opts.Name, err)
	}
	if err := configure(s, opts); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", opts.Name, err)
	}
	// The monitor is attached before any bind or connect: a peer that was
	// already retrying its connect (a handler started before the proxy)
	// could otherwise complete its handshake before the monitor saw it,
	// and Peers stayed 0 (the proxy answered "Accept service
	// unavailable" with a handler connected).
	var mon *zmq.Socket
	if opts.TrackPeers || opts.OnDisconnect != nil {
		if mon, err = c.monitor(s); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", opts.Name, err)
		}
	}
	closeAll := func() {
		if mon != nil {
			s.Monitor("", 0)
			mon.Close()
		}
		s.Close()
	}
	if len(opts.Bind) > 0 {
		spec := opts.Bind[0]
		if err := prepareIPC(spec); err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: bind %s: %w", opts.Name, spec, err)
		}
		if err := s.Bind(spec); err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: bind %s: %w", opts.Name, spec, err)
		}
		if opts.IPCFileMode != 0 {
			if path, ok := strings.CutPrefix(spec, "ipc://"); ok {
				if err := os.Chmod(path, opts.IPCFileMode); err != nil {
					closeAll()
					return nil, fmt.Errorf("%s: chmod %s: %w", opts.Name, path, err)
				}
			}
		}
	}
	for _, spec := range opts.Connect {
		if err := s.Connect(spec); err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: connect %s: %w", opts.Name, spec, err)
		}
	}
	if opts.afterOpen != nil {
		opts.afterOpen()
	}
	so := &Socket{opts: opts, sock: s, mon: mon, log: log.With().Str("socket", opts.Name).Logger()}
	if opts.Direction == SendOnly || opts.Direction == TwoWay {
		so.send = make(chan Message, opts.QueueLen)
	}
	if opts.Direction == RecvOnly || opts.Direction == TwoWay {
		so.recv = make(chan Message, opts.QueueLen)
	}
	if opts.Control {
		so.ctrl = make(chan control, opts.QueueLen)
	}
	so.queue = so.send
	if opts.AwaitSubscriber {
		so.topics, so.waitingKeys = map[string]struct{}{}, map[string]int{}
	}
	if opts.Direction == TwoWay || opts.Control {
		if err := c.openWake(so); err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: %w", opts.Name, err)
		}
		if so.send != nil {
			so.queue = make(chan Message, opts.QueueLen)
		}
	}
	return so, nil
}

// monitor attaches a monitor for handshakes and disconnects to s and
// returns the PAIR that reads its events.
func (c *Context) monitor(s *zmq.Socket) (*zmq.Socket, error) {
	endpoint := fmt.Sprintf("inproc://zsock-mon-%d", wakeSeq.Add(1))
	if err := s.Monitor(endpoint, zmq.EVENT_HANDSHAKE_SUCCEEDED|handshakeFailed|zmq.EVENT_DISCONNECTED); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	mon, err := c.zctx.NewSocket(zmq.PAIR)
	if err == nil {
		mon.SetLinger(0)
		if err = mon.Connect(endpoint); err != nil {
			mon.Close()
		}
	}
	if err != nil {
		s.Monitor("", 0)
		return nil, fmt.Errorf("monitor socket: %w", err)
	}
	return mon, nil
}

// openWake creates the inproc PAIR that wakes a two-way owner.
func (c *Context) openWake(so *Socket) error {
	endpoint := fmt.Sprintf("inproc://zsock-wake-%d", wakeSeq.Add(1))
	in, err := c.zctx.NewSocket(zmq.PAIR)
	if err != nil {
		return fmt.Errorf("wake socket: %w", err)
	}
	out, err := c.zctx.NewSocket(zmq.PAIR)
	if err != nil {
		in.Close()
		return fmt.Errorf("wake socket: %w", err)
	}
	// The waker writes at most one byte per message it moves plus one per
	// signal, so the pipe is bounded by the queue; a small HWM lost
	// wake-ups, because the writer learns of the reader's progress only
	// when libzmq gets round to processing its commands.
	hwm := 2*so.opts.QueueLen + 16
	for _, ws := range []*zmq.Socket{in, out} {
		ws.SetLinger(0)
		ws.SetSndhwm(hwm)
		ws.SetRcvhwm(hwm)
	}
	if err := in.Bind(endpoint); err != nil {
		in.Close()
		out.Close()
		return fmt.Errorf("wake bind: %w", err)
	}
	if err := out.Connect(endpoint); err != nil {
		in.Close()
		out.Close()
		return fmt.Errorf("wake connect: %w", err)
	}
	so.wakeIn, so.wakeOut, so.wake = in, out, make(chan struct{}, 1)
	return nil
}

// closeWake closes the wake pair of a socket that will never run.
func (s *Socket) closeWake() {
	if s.wakeIn != nil {
		s.wakeIn.Close()
		s.wakeOut.Close()
	}
}

// handshakeFailed are the monitor events of a connection that ends before
// its handshake completed; libzmq reports one just before that
// connection's EVENT_DISCONNECTED (stream_engine's error path).
const handshakeFailed = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
	zmq.EVENT_HANDSHAKE_FAILED_AUTH

// readEvents applies pending connection events to the peer count. A
// connection that never completed its handshake (something probing the
// endpoint, a peer dying while connecting) was never counted, so its
// disconnect is not subtracted: it used to take a connected handler out
// of the proxy's count.
func (s *Socket) readEvents() {
	for {
		ev, _, _, err := s.mon.RecvEvent(zmq.DONTWAIT)
		if err != nil {
			return
		}
		switch {
		case ev&zmq.EVENT_HANDSHAKE_SUCCEEDED != 0:
			s.peers.Add(1)
			s.handshakes.Add(1)
		case ev&handshakeFailed != 0:
			s.unshaken++
		case ev&zmq.EVENT_DISCONNECTED != 0:
			if s.unshaken > 0 {
				s.unshaken--
			} else if s.peers.Add(-1) < 0 {
				s.peers.Store(0)
			}
			s.disconnects.Add(1)
			if s.opts.OnDisconnect != nil {
				s.opts.OnDisconnect()
			}
		}
	}
}

// pollsMonitor says whether the owner loop polls the monitor socket
// (runTwoWay) rather than runMonitor.
func (s *Socket) pollsMonitor() bool { return s.opts.Direction == TwoWay }

// runMonitor owns the monitor socket of a socket whose owner loop does not
// poll it, reading events until done is closed.
func (s *Socket) runMonitor(done <-chan struct{}) {
	poller := zmq.NewPoller()
	poller.Add(s.mon, zmq.POLLIN)
	for {
		select {
		case <-done:
			return
		default:
		}
		polled, err := poller.Poll(PollInterval)
		if err != nil && !isInterrupted(err) {
			s.log.Warn().Err(err).Msg("monitor poll")
			return
		}
		if len(polled) > 0 {
			s.readEvents()
		}
	}
}

// signal wakes the owner of a two-way socket; a no-op otherwise.
func (s *Socket) signal() {
	if s.wake == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// runWaker moves queued messages to the owner and wakes it, until done is
// closed. On send-only sockets send is nil and only wake-ups flow.
func (s *Socket) runWaker(done <-chan struct{}) {
	defer s.wakeOut.Close()
	var in chan Message
	if s.queue != s.send {
		in = s.send
	}
	for {
		select {
		case <-done:
			return
		case m := <-in:
			select {
			case s.queue <- m:
			case <-done:
				s.held = m // drained after queue and before send, in order
				return
			}
		case <-s.wake:
		}
		s.wakeOut.SendBytes([]byte{0}, zmq.DONTWAIT) // full = a wake-up is pending
	}
}

func configure(s *zmq.Socket, o Options) error {
	linger := o.Linger
	if err := s.SetLinger(linger); err != nil {
		return fmt.Errorf("set linger: %w", err)
	}
	if err := s.SetSndhwm(max(o.SndHWM, 0)); err != nil {
		return fmt.Errorf("set sndhwm: %w", err)
	}
	if err := s.SetRcvhwm(max(o.RcvHWM, 0)); err != nil {
		return fmt.Errorf("set rcvhwm: %w", err)
	}
	if o.Identity != "" {
		if err := s.SetIdentity(o.Identity); err != nil {
			return fmt.Errorf("set identity %q: %w", o.Identity, err)
		}
	}
	if o.Immediate {
		if err := s.SetImmediate(true); err != nil {
			return fmt.Errorf("set immediate: %w", err)
		}
	}
	if o.NoDrop {
		if err := s.SetXpubNodrop(true); err != nil {
			return fmt.Errorf("set xpub nodrop: %w", err)
		}
	}
	if o.RouterMandatory {
		if err := s.SetRouterMandatory(1); err != nil {
			return fmt.Errorf("set router mandatory: %w", err)
		}
	}
	if o.TCPKeepAlive {
		if err := s.SetTcpKeepalive(1); err != nil {
			return fmt.Errorf("set tcp keepalive: %w", err)
		}
	}
	for _, t := range o.Subscribe {
		if err := s.SetSubscribe(t); err != nil {
			return fmt.Errorf("subscribe %q: %w", t, err)
		}
	}
	return nil
}

// prepareIPC creates the directory of an ipc path and refuses a path
// another live process has bound: libzmq would unlink its socket file
// and take the name over, cutting that process off from its peers.
func prepareIPC(spec string) error {
	path, ok := strings.CutPrefix(spec, "ipc://")
	if !ok {
		return nil
	}
	if len(path) > 107 {
		return fmt.Errorf("ipc path longer than 107 bytes")
	}
	if UnixSocketLive(path) {
		return ErrIPCInUse
	}
	return os.MkdirAll(filepath.Dir(path), 0o755)
}

// ErrIPCInUse: an ipc path to bind is a socket a live process accepts on.
var ErrIPCInUse = errors.New("address in use by another live process")

// UnixSocketLive reports whether something accepts connections on the
// unix socket at path (a stale file left by a dead process refuses them).
func UnixSocketLive(path string) bool {
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return errors.Is(err, syscall.EAGAIN) // a full backlog: alive
	}
	c.Close()
	return true
}

// Name returns the socket's configured name.
func (s *Socket) Name() string { return s.opts.Name }

// Send returns the channel of messages to write (nil for receive-only sockets).
func (s *Socket) Send() chan<- Message { return s.send }

// Recv returns the channel of messages read (nil for send-only sockets).
func (s *Socket) Recv() <-chan Message { return s.recv }

// TrySend queues m without blocking and reports whether it was queued.
func (s *Socket) TrySend(m Message) bool {
	select {
	case s.send <- m:
		s.signal()
		return true
	default:
		return false
	}
}

// SendWait queues m, waiting for room until ctx ends; it reports whether m
// was queued. On two-way sockets use TrySend or SendWait rather than the
// raw Send channel: they also wake the owner.
func (s *Socket) SendWait(ctx context.Context, m Message) bool {
	select {
	case s.send <- m:
		s.signal()
		return true
	case <-ctx.Done():
		return false
	}
}

// Subscribe asks the owner to add a SUB topic; false when the control
// queue is full (the caller retries later).
func (s *Socket) Subscribe(topic string) bool { return s.queueControl(control{topic, true}) }

// Unsubscribe asks the owner to remove a SUB topic.
func (s *Socket) Unsubscribe(topic string) bool { return s.queueControl(control{topic, false}) }

func (s *Socket) queueControl(c control) bool {
	if s.ctrl == nil {
		return false
	}
	select {
	case s.ctrl <- c:
		s.signal()
		return true
	default:
		return false
	}
}

func (s *Socket) applyControl() {
	for {
		select {
		case c := <-s.ctrl:
			s.apply(c)
		default:
			return
		}
	}
}

func (s *Socket) apply(c control) {
	var err error
	if c.subscribe {
		err = s.sock.SetSubscribe(c.topic)
	} else {
		err = s.sock.SetUnsubscribe(c.topic)
	}
	if err != nil {
		s.log.Warn().Err(err).Str("topic", c.topic).Bool("subscribe", c.subscribe).Msg("topic change")
	}
}

// Run is the owner loop; it returns when ctx is done (nil) or on a fatal
// socket error, and always closes the socket before returning. The receive
// channel is closed on return.
func (s *Socket) Run(ctx context.Context) error {
	var wakerDone chan struct{}
	var wakerExited chan struct{}
	if s.wakeIn != nil {
		wakerDone, wakerExited = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(wakerExited)
			s.runWaker(wakerDone)
		}()
	}
	// The owner loop of a two-way socket polls the monitor itself; on
	// the others a goroutine of its own owns it.
	var monDone, monExited chan struct{}
	if s.mon != nil && !s.pollsMonitor() {
		monDone, monExited = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(monExited)
			s.runMonitor(monDone)
		}()
	}
	defer func() {
		if wakerDone != nil {
			// Stop the waker first: it moves messages from send to queue,
			// and draining while it runs would reorder them.
			close(wakerDone)
			<-wakerExited
			if s.send != nil {
				s.drainOnce()
			}
			s.wakeIn.Close()
		}
		if monDone != nil {
			close(monDone)
			<-monExited
		}
		if s.mon != nil {
			s.sock.Monitor("", 0) // stop events before closing their reader
			s.mon.Close()
		}
		if err := s.sock.Close(); err != nil {
			s.log.Warn().Err(err).Msg("close socket")
		}
		if s.recv != nil {
			close(s.recv)
		}
	}()
	switch s.opts.Direction {
	case SendOnly:
		return s.runSend(ctx)
	case RecvOnly:
		if s.ctrl != nil {
			return s.runTwoWay(ctx)
		}
		return s.runRecv(ctx, PollInterval)
	default:
		return s.runTwoWay(ctx)
	}
}

func (s *Socket) runSend(ctx context.Context) error {
	var tick *awaitTicker
	var tickC <-chan time.Time // nil (never ready) unless AwaitSubscriber
	if s.topics != nil {
		tick = newAwaitTicker()
		defer tick.t.Stop()
		tickC = tick.t.C
	}
	for {
		if tick != nil {
			tick.adjust(len(s.waiting))
		}
		select {
		case <-ctx.Done():
			s.drainOnce()
			return nil
		case m := <-s.queue:
			s.write(ctx, m)
		case now := <-tickC:
			s.onTick(ctx, now)
		}
	}
}

func (s *Socket) runRecv(ctx context.Context, interval time.Duration) error {
	poller := zmq.NewPoller()
	poller.Add(s.sock, zmq.POLLIN)
	for {
		if ctx.Err() != nil {
			return nil
		}
		polled, err := poller.Poll(interval)
		if err != nil {
			if isInterrupted(err) {
				continue
			}
			return fmt.Errorf("%s: poll: %w", s.opts.Name, err)
		}
		if len(polled) == 0 {
			continue
		}
		if !s.readAll(ctx) {
			return nil
		}
	}
}

func (s *Socket) runTwoWay(ctx context.Context) error {
	poller := zmq.NewPoller()
	poller.Add(s.sock, zmq.POLLIN)
	poller.Add(s.wakeIn, zmq.POLLIN)
	if s.mon != nil && s.pollsMonitor() {
		poller.Add(s.mon, zmq.POLLIN)
	}
	for {
		if s.ctrl != nil {
			s.applyControl()
		}
		// Flush what is queued (at most a batch, so that a steady stream
		// of sends cannot starve input) before waiting for input. Senders
		// wake the poll through wakeIn; the interval only bounds how long
		// a message sent on the raw channel, or ctx's end, waits.
		wait := PollInterval
	flush:
		for n := 0; ; n++ {
			if n == batch {
				wait = 0 // more to send: only look at input, do not wait
				break
			}
			select {
			case <-ctx.Done():
				// Run drains what is queued once the waker has stopped.
				return nil
			case m := <-s.queue:
				s.write(ctx, m)
			default:
				break flush
			}
		}
		polled, err := poller.Poll(wait)
		if err != nil {
			if isInterrupted(err) {
				continue
			}
			return fmt.Errorf("%s: poll: %w", s.opts.Name, err)
		}
		sockReady := false
		for _, p := range polled {
			if s.mon != nil && p.Socket == s.mon {
				s.readEvents()
			} else if p.Socket == s.wakeIn {
				for {
					if _, err := s.wakeIn.RecvBytes(zmq.DONTWAIT); err != nil {
						break
					}
				}
			} else {
				sockReady = true
			}
		}
		if sockReady && !s.readAll(ctx) {
			// Run drains what is queued once the waker has stopped.
			return nil
		}
	}
}

// readAll reads until EAGAIN or for at most a batch; it returns false when
// ctx ended.
func (s *Socket) readAll(ctx context.Context) bool {
	for range batch {
		parts, err := s.sock.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			if !isAgain(err) && !isInterrupted(err) {
				s.log.Warn().Err(err).Msg("receive")
			}
			return true
		}
		if !s.deliver(ctx, parts) {
			return false
		}
	}
	return true
}

// deliver hands parts to the receive channel. While the consumer is slow a
// two-way owner keeps writing and applying topic changes: the consumer may
// itself be waiting for room on the send channel (a request handler
// replying), and an owner blocked only on the receive channel would then
// deadlock with it. s.send and s.ctrl are nil (never ready) when unused.
func (s *Socket) deliver(ctx context.Context, parts Message) bool {
	for {
		select {
		case s.recv <- parts:
			return true
		case m := <-s.queue:
			s.write(ctx, m)
		case c := <-s.ctrl:
			s.apply(c)
		case <-ctx.Done():
			return false
		}
	}
}

// drainOnce writes, without waiting, what is still queued at shutdown
// (final cancels, for instance); LINGER bounds how long libzmq keeps them.
func (s *Socket) drainOnce() {
	if s.topics != nil {
		s.readSubscriptions(context.Background()) // an XPUB never blocks
	}
	for _, w := range s.waiting {
		err := ErrNoSubscriber
		if s.subscribed(w.m) {
			if _, err = s.sock.SendMessageDontwait(toAny(w.m)...); err == nil {
				continue
			}
		}
		s.drop(w.m, fmt.Errorf("%w: %w", ErrDropped, err))
	}
	s.waiting = nil
	for _, ch := range []chan Message{s.queue, nil, s.send} {
		if ch == nil {
			if m := s.held; m != nil {
				s.held = nil
				if _, err := s.sock.SendMessageDontwait(toAny(m)...); err != nil {
					s.drop(m, fmt.Errorf("%w: %w", ErrDropped, err))
				}
			}
			continue
		}
		for done := false; !done; {
			select {
			case m := <-ch:
				if _, err := s.sock.SendMessageDontwait(toAny(m)...); err != nil {
					s.drop(m, fmt.Errorf("%w: %w", ErrDropped, err))
				}
			default:
				done = true
			}
		}
	}
}

// write sends m, waiting up to SendTimeout for room (or holds it for a
// subscriber, AwaitSubscriber).
func (s *Socket) write(ctx context.Context, m Message) {
	if s.topics != nil && s.hold(ctx, m) {
		return
	}
	s.writeNow(ctx, m)
}

// writeNow is write without the hold for a subscriber.
func (s *Socket) writeNow(ctx context.Context, m Message) {
	if n := s.disconnects.Load(); n != s.seenDisconnects {
		// A peer went away: let libzmq process its pending commands now
		// (ZMQ_EVENTS does, unthrottled), so that the dead peer's pipe is
		// known to be closing and a ROUTER_MANDATORY write to it fails
		// instead of vanishing into that pipe. A send processes commands
		// only now and then.
		s.seenDisconnects = n
		_, _ = s.sock.GetEvents()
	}
	if s.knownGone(m) {
		s.drop(m, fmt.Errorf("%w: peer unreachable", ErrDropped))
		return
	}
	parts := toAny(m)
	var start time.Time
	var poller *zmq.Poller
	stalled := false
	if len(s.stalled) > 0 {
		_, stalled = s.stalled[topicKey(m)]
	}
	for {
		_, err := s.sock.SendMessageDontwait(parts...)
		if err == nil {
			if stalled {
				delete(s.stalled, topicKey(m))
			}
			return
		}
		if !isAgain(err) && !isInterrupted(err) && !isUnreachable(err) {
			s.drop(m, fmt.Errorf("%w: %w", ErrDropped, err))
			return
		}
		if start.IsZero() {
			start = time.Now()
		}
		// A ROUTER_MANDATORY peer whose queue is full is there, only
		// slow: it gets FullTimeout (the error can turn into EHOSTUNREACH
		// meanwhile, when the peer goes away).
		full := s.opts.RouterMandatory && isAgain(err)
		limit := s.opts.SendTimeout
		if full {
			limit = max(limit, s.opts.FullTimeout)
		}
		if isUnreachable(err) && s.mon != nil && s.handshakes.Load() == 0 {
			// No connection of this socket has completed its handshake
			// yet: the peer is still connecting (a loaded machine at
			// start-up can take longer than SendTimeout), not gone.
			limit = max(limit, firstPeerWait)
		}
		if stalled {
			limit = 0
		}
		left := time.Until(start.Add(limit))
		if left <= 0 || ctx.Err() != nil {
			if isUnreachable(err) || (full && s.opts.FullTimeout > 0 && ctx.Err() == nil) {
				s.markGone(m)
			}
			if s.opts.NoDrop && isAgain(err) {
				s.markStalled(m)
			}
			s.drop(m, fmt.Errorf("%w: %w", ErrDropped, err))
			return
		}
		wait := min(left, retryWait)
		if s.opts.Type == zmq.ROUTER || s.opts.Type == zmq.XPUB || isUnreachable(err) {
			// A ROUTER's POLLOUT says whether *some* peer has room (with
			// ROUTER_MANDATORY) or is always set, never whether this
			// message's peer is routable, so polling for it spun the CPU
			// for the whole SendTimeout once any other peer was connected.
			// Retry on a timer instead (connmgr retries its ROUTERs the
			// same way). An XPUB's POLLOUT is always set, whether or not
			// a subscriber's pipe is full (NoDrop).
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		if poller == nil {
			poller = zmq.NewPoller()
			poller.Add(s.sock, zmq.POLLOUT)
		}
		if _, err := poller.Poll(wait); err != nil && !isInterrupted(err) {
			s.drop(m, fmt.Errorf("%w: %w", ErrDropped, err))
			return
		}
	}
}

// goneMemory is how long a ROUTER_MANDATORY peer that stayed unroutable
// for a whole SendTimeout is taken as gone: a burst of messages to a dead
// zhttp peer (keep-alives of all its sessions) then costs one timeout, not
// one each. Only on monitored sockets (OnDisconnect, TrackPeers): any peer
// that connects since voids the memory, in case it took the same identity.
const goneMemory = time.Second

func (s *Socket) knownGone(m Message) bool {
	if s.gone == nil || len(m) == 0 {
		return false
	}
	g, ok := s.gone[string(m[0])]
	if !ok {
		return false
	}
	if time.Now().Before(g.until) && g.handshakes == s.handshakes.Load() {
		return true
	}
	delete(s.gone, string(m[0]))
	return false
}

func (s *Socket) markGone(m Message) {
	if s.opts.Type != zmq.ROUTER || s.mon == nil || len(m) == 0 {
		return
	}
	now := time.Now()
	if s.gone == nil {
		s.gone = map[string]goneMark{}
	}
	if len(s.gone) >= 64 { // bound: forget the expired ones
		for k, g := range s.gone {
			if now.After(g.until) {
				delete(s.gone, k)
			}
		}
	}
	s.gone[string(m[0])] = goneMark{until: now.Add(goneMemory), handshakes: s.handshakes.Load()}
}

// markStalled records that m's topic timed out (NoDrop); the set is
// bounded by forgetting all stalls beyond 1024 topics.
func (s *Socket) markStalled(m Message) {
	if s.stalled == nil || len(s.stalled) >= 1024 {
		s.stalled = map[string]struct{}{}
	}
	s.stalled[topicKey(m)] = struct{}{}
}

func (s *Socket) drop(m Message, err error) {
	if e := s.log.Debug(); e.Enabled() {
		e.Err(err).Int("parts", len(m)).Msg("send dropped")
	}
	if s.opts.OnDrop != nil {
		s.opts.OnDrop(m, err)
	}
}

func toAny(m Message) []any {
	out := make([]any, len(m))
	for i, p := range m {
		out[i] = p
	}
	return out
}

func isAgain(err error) bool {
	return zmq.AsErrno(err) == zmq.Errno(11) // EAGAIN
}

// isUnreachable: a ROUTER_MANDATORY peer that is not (yet) connected; a
// freshly connected peer becomes routable after its handshake, so it is
// retried like EAGAIN until the send timeout.
func isUnreachable(err error) bool {
	return zmq.AsErrno(err) == zmq.Errno(113) // EHOSTUNREACH
}

func isInterrupted(err error) bool {
	return zmq.AsErrno(err) == zmq.Errno(4) // EINTR
}
