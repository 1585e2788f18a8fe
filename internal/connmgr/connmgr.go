package connmgr

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"tack/internal/logging"
	"tack/internal/zsock"
)

// Socket queue bounds (the Go channels in front of the libzmq sockets).
const (
	// pushQueue matches InitHWM: a burst beyond it gets 503s.
	pushQueue = InitHWM
	// routerQueue holds follow-ups (credits, body, keep-alives, cancels).
	routerQueue = 4096
	// subQueue holds received server packets until the engine takes them.
	subQueue = 1024
	// acceptBackoffMax caps the pause after a failed Accept.
	acceptBackoffMax = time.Second
)

// Service is one connection manager: its listeners, its three zhttp
// client sockets, the engine and the client connections.
type Service struct {
	cfg  Config
	log  zerolog.Logger
	zctx *zsock.Context
	push *zsock.Socket
	rtr  *zsock.Socket
	sub  *zsock.Socket
	lns  []net.Listener
	// lnTLS[i] is the TLS config of lns[i], nil for a plain listener.
	lnTLS []*tls.Config
	eng   *engine

	readers sync.Pool // *bufio.Reader of BufferSize, lent while a request is read
	chunks  sync.Pool // *[]byte of BufferSize, one request body packet
	heads   sync.Pool // *[]byte, response heads and chunk lines
	// deflaters and inflaters: permessage-deflate state, lent while a
	// WebSocket message is in progress (wsdeflate.go).
	deflaters sync.Pool
	inflaters sync.Pool

	slots chan struct{} // --stream-maxconn
	// parker holds detached held responses (parker.go); nil when epoll is
	// unavailable, then every connection keeps its goroutine.
	parker *parker

	// readersOut and chunksOut count pooled buffers currently lent out; an
	// idle connection holds none (tests check this).
	readersOut atomic.Int64
	chunksOut  atomic.Int64

	// overflows counts the WebSockets closed for a full outbound queue
	// (overflow.go).
	overflows *wsOverflows

	connNo atomic.Uint64 // numbers connections for request ids
	// connsMu guards conns and stopping; never held with a conn.mu.
	connsMu  sync.Mutex
	conns    map[*conn]struct{}
	stopping bool
	wg       sync.WaitGroup // client connection goroutines
}

// New opens the listeners, then binds (or connects) the zhttp sockets: a
// port or unix socket another process serves fails the start before any
// ipc socket file of ours is touched. TLS listeners need their
// default-cert to load. On error everything already opened is closed
// again.
func New(cfg Config, log zerolog.Logger) (_ *Service, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, slots: make(chan struct{}, cfg.StreamMaxConn), conns: map[*conn]struct{}{}}
	size := cfg.BufferSize
	s.readers.New = func() any { return bufio.NewReaderSize(nil, size) }
	s.chunks.New = func() any { b := make([]byte, size); return &b }
	s.heads.New = func() any { b := make([]byte, 0, 1024); return &b }
	var start [4]byte
	rand.Read(start[:])
	// Ids restart from a random point so that a restarted process does not
	// reuse ids a server still holds sessions for.
	s.connNo.Store(uint64(binary.BigEndian.Uint32(start[:]) >> 4))
	s.overflows = newWSOverflows(log, time.Now())
	s.eng = newEngine(s)

	defer func() {
		if err != nil {
			for _, ln := range s.lns {
				ln.Close()
			}
		}
	}()
	if err := s.openListeners(); err != nil {
		return nil, err
	}

	zctx, err := zsock.NewContext()
	if err != nil {
		return nil, err
	}
	s.zctx = zctx
	var opened []*zsock.Socket
	defer func() {
		if err == nil {
			return
		}
		closeUnstarted(opened)
		zctx.Close()
	}()

	var outs, streams, ins []string
	for _, base := range cfg.ZClientStream {
		o, st, in, err := StreamSpecs(base)
		if err != nil {
			return nil, err
		}
		outs, streams, ins = append(outs, o), append(streams, st), append(ins, in)
	}
	endpoints := func(specs []string) (bind, connect []string) {
		if cfg.ZClientConnect {
			return nil, specs
		}
		return specs, nil
	}
	zlog := log.With().Str(logging.FieldComponent, "zhttp").Logger()
	other := cfg.otherHWM()

	b, c := endpoints(outs)
	s.push, err = zctx.Open(zsock.Options{
		Name: "out", Type: zmq.PUSH, Direction: zsock.SendOnly, Bind: b, Connect: c,
		SndHWM: InitHWM, RcvHWM: InitHWM, IPCFileMode: cfg.IPCFileMode,
		QueueLen: pushQueue, TrackPeers: true,
		// Never wait for room: a full HWM or no peer at all is answered
		// with 503 (doc.go), not by delaying every other request.
		SendTimeout: time.Nanosecond,
		OnDrop:      s.eng.onDrop(false),
	}, zlog)
	if err != nil {
		return nil, err
	}
	opened = append(opened, s.push)

	b, c = endpoints(streams)
	s.rtr, err = zctx.Open(zsock.Options{
		Name: "out-stream", Type: zmq.ROUTER, Direction: zsock.SendOnly, Bind: b, Connect: c,
		Identity: cfg.ID, RouterMandatory: true, SndHWM: other, RcvHWM: other,
		Linger: RouterLinger, IPCFileMode: cfg.IPCFileMode, QueueLen: routerQueue,
		SendTimeout: RouterRetry, FullTimeout: RouterFullWait, OnDrop: s.eng.onDrop(true),
		OnDisconnect: s.eng.onDisconnect,
	}, zlog)
	if err != nil {
		return nil, err
	}
	opened = append(opened, s.rtr)

	b, c = endpoints(ins)
	s.sub, err = zctx.Open(zsock.Options{
		Name: "in", Type: zmq.SUB, Direction: zsock.RecvOnly, Bind: b, Connect: c,
		// Unlimited: servers send within our credits, and a full SUB pipe
		// would drop packets silently and break sequences.
		Subscribe: []string{cfg.ID + " "}, SndHWM: other, RcvHWM: zsock.Unlimited,
		IPCFileMode: cfg.IPCFileMode, QueueLen: subQueue, TrackPeers: true,
	}, zlog)
	if err != nil {
		return nil, err
	}
	opened = append(opened, s.sub)
	s.eng.push, s.eng.router, s.eng.sub = s.push, s.rtr, s.sub.Recv()
	return s, nil
}

// openListeners opens every --listen value; a TLS one first loads its
// default-cert from --tls-identities-dir (condure starts without it and
// fails each handshake; tack refuses to start, so the mistake shows).
func (s *Service) openListeners() error {
	var ids *identities
	for _, l := range s.cfg.Listen {
		var tc *tls.Config
		if l.TLS {
			if ids == nil {
				ids = newIdentities(s.cfg.TLSIdentities, s.log.With().Str(logging.FieldComponent, "tls").Logger())
			}
			if l.DefaultCert != "" {
				if err := checkDefaultCert(ids, l); err != nil {
					return err
				}
			} else {
				s.log.Warn().Str("addr", l.Addr).Msg("TLS listener without default-cert: clients must send a server name with a certificate")
			}
			tc = ids.config(l.DefaultCert)
		}
		ln, err := openListener(l, s.cfg.ReusePort)
		if err != nil {
			return err
		}
		s.lns = append(s.lns, ln)
		s.lnTLS = append(s.lnTLS, tc)
	}
	return nil
}

// closeUnstarted closes sockets whose owner loop never ran: Run with a
// cancelled context only closes the socket.
func closeUnstarted(socks []*zsock.Socket) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, so := range socks {
		so.Run(ctx)
	}
}

// Addrs returns the listeners' bound addresses.
func (s *Service) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.lns))
	for i, ln := range s.lns {
		out[i] = ln.Addr()
	}
	return out
}

// Run serves until ctx is done, then stops accepting, cancels the live
// sessions, closes the connections after a grace period and closes the
// sockets. Nothing it started outlives it.
func (s *Service) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The sockets outlive the engine so that its shutdown cancels go out.
	sockCtx, stopSockets := context.WithCancel(context.Background())
	defer stopSockets()
	var sg errgroup.Group
	for _, so := range []*zsock.Socket{s.push, s.rtr, s.sub} {
		sg.Go(func() error {
			err := so.Run(sockCtx)
			if err != nil {
				cancel()
			}
			return err
		})
	}
	engErr := make(chan error, 1)
	go func() {
		err := s.eng.run(runCtx)
		cancel()
		engErr <- err
	}()
	if p, err := newParker(); err != nil {
		s.log.Warn().Err(err).Msg("no epoll parker: every held connection keeps a goroutine")
	} else {
		s.parker = p
		go p.run()
		defer p.stop() // after waitConns: no connection uses it any more
	}
	if s.cfg.ReusePort {
		s.awaitServers(runCtx)
	}
	var ag sync.WaitGroup
	for i, ln := range s.lns {
		s.log.Info().Str("addr", ln.Addr().String()).Bool("tls", s.lnTLS[i] != nil).Msgf("listening on %s", ln.Addr())
		ag.Go(func() { s.accept(runCtx, ln, s.lnTLS[i]) })
	}

	<-runCtx.Done()
	s.log.Info().Msg("stopping")
	for _, ln := range s.lns {
		ln.Close()
	}
	ag.Wait()
	s.stopConns()
	err := <-engErr
	s.waitConns(s.cfg.shutdownGrace())
	stopSockets()
	err = errors.Join(err, sg.Wait())
	if cerr := s.zctx.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("zmq context: %w", cerr))
	}
	return err
}

// Joining servers: how long a connection manager sharing its ports waits
// for its zhttp servers before it takes clients, and how long it lets the
// others join once each socket has one.
const (
	serverJoinWait   = 5 * time.Second
	serverJoinSettle = 300 * time.Millisecond
)

// awaitServers holds back accepting until the zhttp servers have connected
// to every socket (then serverJoinSettle more, for the second server to
// reconnect too), at most serverJoinWait. An instance started while others
// share its ports (connmgr_count, SO_REUSEPORT) is handed clients by the
// kernel as soon as it listens; taken before proxy and handler reached its
// new sockets they were answered 503 "No zhttp server is available." or
// lost their handoff. Until then they wait in the listen backlog.
func (s *Service) awaitServers(ctx context.Context) {
	start := time.Now()
	var joined time.Time
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		if joined.IsZero() && s.push.Peers() > 0 && s.rtr.Peers() > 0 && s.sub.Peers() > 0 {
			joined = now
		}
		switch {
		case !joined.IsZero() && now.Sub(joined) >= serverJoinSettle:
			s.log.Info().Dur("waited", now.Sub(start)).Msg("zhttp servers connected: accepting clients")
			return
		case now.Sub(start) >= serverJoinWait:
			s.log.Warn().Int("out", s.push.Peers()).Int("out_stream", s.rtr.Peers()).Int("in", s.sub.Peers()).
				Dur("waited", now.Sub(start)).Msg("zhttp servers not all connected: accepting clients anyway")
			return
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

func (s *Service) accept(ctx context.Context, ln net.Listener, tc *tls.Config) {
	backoff := 5 * time.Millisecond
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		nc, err := ln.Accept()
		if err != nil {
			<-s.slots
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn().Err(err).Msg("accept")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, acceptBackoffMax)
			continue
		}
		backoff = 5 * time.Millisecond
		if !s.startConn(nc, tc) {
			nc.Close()
			<-s.slots
		}
	}
}

func (s *Service) startConn(nc net.Conn, tc *tls.Config) bool {
	c, err := newConn(s, nc, s.connNo.Add(1), tc)
	if err != nil {
		s.log.Warn().Err(err).Msg("accept")
		return false
	}
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.stopping {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	go c.serve()
	return true
}

// connDone releases what a connection held in the Service once it ended
// (in whichever goroutine ran its last exchange).
func (s *Service) connDone(c *conn) {
	s.forget(c)
	<-s.slots
	s.wg.Done()
}

func (s *Service) forget(c *conn) {
	s.connsMu.Lock()
	delete(s.conns, c)
	s.connsMu.Unlock()
}

// stopConns refuses new connections and closes the idle ones.
func (s *Service) stopConns() {
	s.connsMu.Lock()
	s.stopping = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connsMu.Unlock()
	for _, c := range conns {
		c.shutdown()
	}
}

// waitConns waits for the connections to finish, closing them all once
// grace has passed.
func (s *Service) waitConns(grace time.Duration) {
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.connsMu.Lock()
	for c := range s.conns {
		c.close()
	}
	s.connsMu.Unlock()
	<-done
}

func (s *Service) getReader(r io.Reader) *bufio.Reader {
	br := s.readers.Get().(*bufio.Reader)
	br.Reset(r)
	s.readersOut.Add(1)
	return br
}

func (s *Service) putReader(br *bufio.Reader) {
	br.Reset(nil)
	s.readers.Put(br)
	s.readersOut.Add(-1)
}

func (s *Service) getChunk() *[]byte {
	s.chunksOut.Add(1)
	return s.chunks.Get().(*[]byte)
}

func (s *Service) putChunk(b *[]byte) {
	s.chunksOut.Add(-1)
	s.chunks.Put(b)
}

func (s *Service) getHeadBuf() *[]byte { return s.heads.Get().(*[]byte) }

func (s *Service) putHeadBuf(b *[]byte) {
	if cap(*b) > 4*s.cfg.BufferSize {
		return // let an outsized buffer go
	}
	*b = (*b)[:0]
	s.heads.Put(b)
}
