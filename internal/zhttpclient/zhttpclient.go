package zhttpclient

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"tack/internal/cli"
	"tack/internal/logging"
	"tack/internal/zsock"
)

// Socket queue sizes (the Go channels in front of each socket).
const (
	// InputQueue is kept short so that, once max_open_requests is reached,
	// waiting first packets stay in libzmq (bounded by in_hwm) where the
	// peer's PUSH can see back-pressure, rather than in our memory.
	InputQueue = 64
	// StreamQueue buffers follow-up packets read from the DEALER.
	StreamQueue = 1024
	// OutQueue buffers replies waiting for the PUB/ROUTER owner.
	OutQueue = 4096
	// EventQueue buffers worker → engine events.
	EventQueue = 4096
	// OutSendTimeout bounds how long a reply waits for room in its
	// client's pipe, out_hwm packets long, when the client reads slowly
	// (a proxy busy with a burst of WebSocket opens). zurl's PUB drops
	// such a reply unseen and the client takes the next one as a sequence
	// gap; our XPUB sets ZMQ_XPUB_NODROP, so the reply waits and is
	// retried. Beyond this it is dropped, counted and logged, and the
	// client's next replies are tried without waiting until one goes
	// through (zsock.Options.NoDrop). While a reply waits, the others
	// queue behind it (OutQueue, then the engine).
	OutSendTimeout = 5 * time.Second
	// dropWarnEvery bounds how often dropped replies are logged.
	dropWarnEvery = time.Second
)

// Service is one zhttp-client instance: the zhttp server that performs
// outbound HTTP requests (zurl's role). Create it with New, start it with Run.
type Service struct {
	cfg    Config
	log    zerolog.Logger
	policy *Policy
	ts     *transports
	pool   *bufPool
	// wsWriters holds *bufio.Writer of WSWriteBuffer bytes, lent to
	// websocket writers per batch (wsworker.go).
	wsWriters sync.Pool
	// wsReaders holds *bufio.Reader of WSReadBuffer bytes, lent to
	// websocket handshakes and to sessions while bytes are buffered (wsin.go).
	wsReaders sync.Pool
	from      []byte
	ready     chan struct{}
	// parker watches idle WebSockets (wsparker.go); nil: their readers
	// wait in goroutines.
	parker *wsParker
	timers timers
	// outDrops counts the replies the out socket dropped; dropWarnAt is
	// when the last warning of them was logged (out owner goroutine only).
	outDrops   atomic.Int64
	dropWarnAt time.Time
}

// timers are the session timers; tests shorten them.
type timers struct {
	tick      time.Duration
	keepAlive time.Duration
	expire    time.Duration
}

// New checks cfg and returns a service; nothing is opened until Run.
func New(cfg Config, log zerolog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	policy := newPolicy(cfg.DefPolicy, cfg.Allow, cfg.Deny)
	return &Service{
		cfg:    cfg,
		log:    log,
		policy: policy,
		ts:     newTransports(&cfg, policy),
		pool:   newBufPool(),
		from:   []byte(cfg.InstanceID),
		ready:  make(chan struct{}),
		timers: timers{tick: TickInterval, keepAlive: KeepAliveInterval, expire: SessionExpire},
	}, nil
}

// Ready is closed once every socket is bound.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// InstanceID returns the `from` address of the service's replies.
func (s *Service) InstanceID() string { return s.cfg.InstanceID }

type sockets struct {
	in       *zsock.Socket // PULL in_spec
	inStream *zsock.Socket // DEALER in_stream_spec
	out      *zsock.Socket // PUB out_spec
	inReq    *zsock.Socket // ROUTER in_req_spec
}

func (ss *sockets) all() []*zsock.Socket {
	var out []*zsock.Socket
	for _, s := range []*zsock.Socket{ss.in, ss.inStream, ss.out, ss.inReq} {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// Run binds the sockets, serves until ctx is done, and returns after every
// goroutine it started has exited and every socket is closed.
func (s *Service) Run(ctx context.Context) error {
	s.log.Info().Msg("starting")
	zctx, err := zsock.NewContext()
	if err != nil {
		return cli.Startup(err)
	}
	ss, err := s.open(zctx)
	if err != nil {
		if cerr := zctx.Close(); cerr != nil {
			s.log.Warn().Err(cerr).Msg("close zmq context")
		}
		return cli.Startup(err)
	}
	if p, err := newWSParker(); err != nil {
		s.log.Warn().Err(err).Msg("no epoll for idle websockets: each holds a goroutine")
	} else {
		s.parker = p
		go p.run()
		defer p.stop() // after the engine, which waits for every session
	}
	e := newEngine(s, ss)
	g, gctx := errgroup.WithContext(ctx)
	for _, sock := range ss.all() {
		g.Go(func() error { return sock.Run(gctx) })
	}
	g.Go(func() error { return e.run(gctx) })
	s.log.Info().Str("instance_id", s.cfg.InstanceID).Msg("started")
	close(s.ready)
	err = g.Wait()
	s.ts.closeIdle()
	if cerr := zctx.Close(); cerr != nil {
		s.log.Warn().Err(cerr).Msg("close zmq context")
	}
	s.log.Info().Msg("stopped")
	return err
}

// open creates and binds the configured sockets; on failure it closes the
// ones already bound.
func (s *Service) open(zctx *zsock.Context) (*sockets, error) {
	ss := &sockets{}
	cfg := &s.cfg
	log := s.log.With().Str(logging.FieldComponent, "zsock").Logger()
	open := func(dst **zsock.Socket, name, spec string, o zsock.Options) error {
		if spec == "" {
			return nil
		}
		o.Name = name
		o.Bind = []string{spec}
		o.IPCFileMode = cfg.IPCFileMode
		sock, err := zctx.Open(o, log) // errors name the key and the spec
		if err != nil {
			return err
		}
		*dst = sock
		return nil
	}
	err := errors.Join(
		open(&ss.in, "in_spec", cfg.InSpec, zsock.Options{
			Type: zmq.PULL, Direction: zsock.RecvOnly,
			RcvHWM: cfg.InHWM, SndHWM: cfg.InHWM, QueueLen: InputQueue,
		}),
		open(&ss.inStream, "in_stream_spec", cfg.InStreamSpec, zsock.Options{
			Type: zmq.DEALER, Direction: zsock.RecvOnly, Identity: cfg.InstanceID,
			RcvHWM: cfg.InHWM, SndHWM: cfg.InHWM, QueueLen: StreamQueue,
		}),
		open(&ss.out, "out_spec", cfg.OutSpec, zsock.Options{
			// XPUB holding replies until their client's subscription is in
			// (zsock.Options.AwaitSubscriber): a reply sent before it was
			// lost, and the client saw the next one as a seq gap (502).
			Type: zmq.XPUB, Direction: zsock.SendOnly, AwaitSubscriber: true,
			SndHWM: cfg.OutHWM, RcvHWM: cfg.OutHWM, QueueLen: OutQueue,
			NoDrop: true, SendTimeout: OutSendTimeout, OnDrop: s.onOutDrop,
		}),
		open(&ss.inReq, "in_req_spec", cfg.InReqSpec, zsock.Options{
			Type: zmq.ROUTER, Direction: zsock.TwoWay,
			RcvHWM: cfg.InHWM, SndHWM: cfg.InHWM, QueueLen: InputQueue,
		}),
	)
	if err != nil {
		// An owner loop run with a finished context closes its socket at once.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		for _, sock := range ss.all() {
			_ = sock.Run(done)
		}
		return nil, err
	}
	return ss, nil
}

// onOutDrop counts a reply the out socket dropped and logs it, at most
// once per dropWarnEvery with the total so far (out owner goroutine).
func (s *Service) onOutDrop(m zsock.Message, err error) {
	n := s.outDrops.Add(1)
	now := time.Now()
	if now.Sub(s.dropWarnAt) < dropWarnEvery || len(m) == 0 {
		return
	}
	s.dropWarnAt = now
	le := s.log.Warn().Err(err).Str(logging.FieldSocket, "out_spec").Int64("dropped_total", n)
	if to, payload, ok := bytes.Cut(m[0], []byte(" ")); ok {
		le = le.Bytes("to", to)
		if p, _, _, derr := decode(payload); derr == nil {
			le = le.Str(logging.FieldRID, string(p.ID)).Str("type", p.Type).Int64("seq", p.Seq)
		}
	}
	le.Msg("reply to a zhttp client dropped, its session breaks (the client did not read it in time)")
}
