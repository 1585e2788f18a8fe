package proxy

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	zmq "github.com/pebbe/zmq4"

	"tack/internal/cli"
	"tack/internal/logging"
	"tack/internal/metrics"
	"tack/internal/routes"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
	"tack/pkg/zhttp"
)

// Socket bounds (zmq-wire.md §3.6: Pushpin's C++ zhttp server uses PULL
// HWM 100, ROUTER/PUB/SUB HWM 101000, PUB and ROUTER linger 500 ms).
const (
	hwmFirst = 100
	// hwmFirstIn: the first-packet PULL from connmgr takes bursts of new
	// requests (Pushpin: 100).
	hwmFirstIn = 1024
	hwmStream  = 101000
	// wsControlSendWait bounds how long a ws-control packet waits for a
	// handler to connect before it is dropped (logged).
	wsControlSendWait = 5 * time.Second
	lingerStream      = 500 * time.Millisecond
	tickInterval      = time.Second
	dropQueueLength   = 1024
	// outQueueLen is the Go queue in front of the PUBs to connmgr and to
	// the handler's intreq client. A packet that does not fit is lost and
	// breaks its session's sequence, so it takes a whole burst of new
	// requests (thousands at once) with room to spare.
	outQueueLen = 65536
	// acceptSendTimeout bounds how long an accept call waits for a handler
	// to be connected before the client gets 500.
	acceptSendTimeout = time.Second
	// handlerPoll is how often waiting hand-offs check for a handler.
	handlerPoll = 10 * time.Millisecond
)

// Service is one tack-proxy instance.
type Service struct {
	cfg   Config
	log   zerolog.Logger
	watch *clientWatch // set by Run
}

// New checks cfg and returns a proxy ready to Run.
func New(cfg Config, log zerolog.Logger) (*Service, error) {
	if cfg.InstanceID == "" || strings.ContainsAny(cfg.InstanceID, " ") {
		return nil, fmt.Errorf("invalid instance id %q", cfg.InstanceID)
	}
	if cfg.ServiceTimeout <= 0 {
		cfg.ServiceTimeout = ServiceTimeout
	}
	if cfg.MaxOpenRequests <= 0 {
		cfg.MaxOpenRequests = DefaultMaxOpenRequests
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tick <= 0 {
		cfg.Tick = tickInterval
	}
	return &Service{cfg: cfg, log: log}, nil
}

// Run serves until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	watcher, err := s.loadRoutes()
	if err != nil {
		return cli.Startup(err)
	}
	zctx, err := zsock.NewContext()
	if err != nil {
		return cli.Startup(err)
	}
	drops := make(chan string, dropQueueLength)
	acceptDrops := make(chan string, dropQueueLength)
	inspectDrops := make(chan string, dropQueueLength)
	s.watch = newClientWatch()
	socks, err := s.openSockets(zctx, drops, acceptDrops, inspectDrops)
	if err != nil {
		zctx.Close()
		return cli.Startup(err)
	}
	eng := newEngine(s.cfg, s.log, watcher.Current)
	if s.cfg.StatsSpec != "" || s.cfg.PrometheusPort != "" {
		eng.stats = newProxyStats(&s.cfg, s.log, s.cfg.Now())
		if socks.stats != nil {
			eng.stats.out = socks.stats.Send()
		}
	}
	var prom *metrics.Server
	if s.cfg.PrometheusPort != "" {
		if prom, err = metrics.Listen(s.cfg.PrometheusPort, "[proxy] prometheus_port", s.cfg.PrometheusPrefix, eng.stats.metricValues, s.log); err != nil {
			socks.closeAll()
			zctx.Close()
			return cli.Startup(err)
		}
	}
	eng.zb = newZBackends(zctx, s.log, s.cfg.InstanceID, drops)
	eng.toConnmgr = socks.connmgrOut.Send()
	if socks.intreqOut != nil {
		eng.toIntreq = socks.intreqOut.Send()
	}
	eng.toClient = socks.clientOut.Send()
	eng.toClientStream = socks.clientOutStream.Send()
	if socks.wsControlOut != nil {
		eng.toWSControl = socks.wsControlOut.Send()
	}
	if socks.accept != nil {
		eng.toAccept = socks.accept.TrySend
		eng.acceptPeers = socks.accept.Peers
	}
	if socks.inspect != nil {
		eng.insp = newInspector(socks.inspect.TrySend, socks.inspect.Peers, s.cfg.InspectTimeout)
	}

	sockCtx, stopSockets := context.WithCancel(context.Background())
	var sg errgroup.Group
	for _, so := range socks.all() {
		sg.Go(func() error { return so.Run(sockCtx) })
	}

	g, gctx := errgroup.WithContext(ctx)
	if prom != nil {
		g.Go(func() error { return prom.Run(gctx) })
	}
	if watcher.Path() != "" {
		g.Go(func() error { return watcher.Run(gctx) })
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				s.log.Info().Msg("reloading")
				if s.cfg.ReopenLog != nil {
					if err := s.cfg.ReopenLog(); err != nil {
						s.log.Error().Err(err).Msg("cannot reopen log file")
					}
				}
				watcher.Reload()
				logUnsupported(s.log, watcher.Current())
			}
		}
	})
	g.Go(func() error { return s.loop(gctx, eng, socks, drops, acceptDrops, inspectDrops) })
	s.log.Info().Str("id", s.cfg.InstanceID).Msg("started")
	err = g.Wait()
	stopSockets()
	if serr := sg.Wait(); err == nil {
		err = serr
	}
	eng.zb.close()
	zctx.Close()
	s.log.Info().Msg("stopped")
	return err
}

func (s *Service) loadRoutes() (*routes.Watcher, error) {
	if len(s.cfg.Routes) > 0 {
		t, diags := routes.ParseLines(s.cfg.Routes)
		for _, d := range diags {
			s.log.Warn().Msg(d.String())
		}
		s.log.Info().Int("entries", t.Len()).Msg("routes loaded")
		logUnsupported(s.log, t)
		return routes.NewStaticWatcher(t), nil
	}
	w, err := routes.NewWatcher(s.cfg.RoutesFile, s.log)
	if err != nil {
		return nil, err
	}
	logUnsupported(s.log, w.Current())
	return w, nil
}

// unsupportedProps are route options parsed but not acted on yet; each
// use is reported so that nothing is ignored silently.
var unsupportedProps = []string{"sockjs", "sockjs_as_path", "session"}

// sub=, over_http and one_event are acted on for WebSockets (wsproxy.go,
// wsoverhttp.go) only.
var unsupportedTargetProps = []string{}

func logUnsupported(log zerolog.Logger, t *routes.Table) {
	if t == nil {
		return
	}
	for _, r := range t.Routes() {
		for _, p := range unsupportedProps {
			if _, ok := r.Props[p]; ok {
				log.Warn().Str("route", r.Source).Str("option", p).Msg("route option not supported yet")
			}
		}
		for _, tg := range r.Targets {
			for _, p := range unsupportedTargetProps {
				if _, ok := tg.Props[p]; ok {
					log.Warn().Str("route", r.Source).Str("option", p).Msg("target option not supported yet")
				}
			}
		}
	}
}

type sockets struct {
	connmgrIn, connmgrInStream, connmgrOut    *zsock.Socket
	clientOut, clientOutStream, clientReplies *zsock.Socket
	accept, retry, inspect                    *zsock.Socket // nil when not configured
	intreqIn, intreqInStream, intreqOut       *zsock.Socket // nil when not configured
	stats, command                            *zsock.Socket // nil when not configured
	wsControlIn, wsControlOut                 *zsock.Socket // nil when not configured
}

func (ss *sockets) all() []*zsock.Socket {
	out := []*zsock.Socket{ss.connmgrIn, ss.connmgrInStream, ss.connmgrOut, ss.clientOut, ss.clientOutStream, ss.clientReplies}
	for _, so := range []*zsock.Socket{ss.accept, ss.retry, ss.inspect, ss.intreqIn, ss.intreqInStream, ss.intreqOut, ss.stats, ss.command, ss.wsControlIn, ss.wsControlOut} {
		if so != nil {
			out = append(out, so)
		}
	}
	return out
}

// closeAll closes sockets that were opened but never run.
func (ss *sockets) closeAll() {
	closeUnrun(ss.all())
}

// closeUnrun closes sockets not yet running by running them on a done
// context.
func closeUnrun(socks []*zsock.Socket) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, so := range socks {
		_ = so.Run(done)
	}
}

// recvOf returns so's receive channel, or nil (blocks forever in select).
func recvOf(so *zsock.Socket) <-chan zsock.Message {
	if so == nil {
		return nil
	}
	return so.Recv()
}

func (s *Service) openSockets(zctx *zsock.Context, drops, acceptDrops, inspectDrops chan<- string) (*sockets, error) {
	var opened []*zsock.Socket
	fail := func(err error) (*sockets, error) {
		closeUnrun(opened)
		return nil, err
	}
	open := func(o zsock.Options) (*zsock.Socket, error) {
		so, err := zctx.Open(o, s.log)
		if err == nil {
			opened = append(opened, so)
		}
		return so, err
	}
	id := s.cfg.InstanceID
	ss := &sockets{}
	var err error
	if ss.connmgrIn, err = open(zsock.Options{Name: "condure-out", Type: zmq.PULL, Direction: zsock.RecvOnly,
		Connect: s.cfg.ConnmgrInSpecs, RcvHWM: hwmFirstIn}); err != nil {
		return fail(err)
	}
	if ss.connmgrInStream, err = open(zsock.Options{Name: "condure-out-stream", Type: zmq.ROUTER, Direction: zsock.RecvOnly,
		Connect: s.cfg.ConnmgrInStreamSpecs, Identity: id, RcvHWM: hwmStream, SndHWM: hwmStream, Linger: lingerStream}); err != nil {
		return fail(err)
	}
	// XPUBs that hold packets until the peer's subscription is in
	// (zsock.Options.AwaitSubscriber): a PUB drops them, breaking the
	// session's sequence.
	if ss.connmgrOut, err = open(zsock.Options{Name: "condure-in", Type: zmq.XPUB, Direction: zsock.SendOnly, AwaitSubscriber: true,
		Connect: s.cfg.ConnmgrOutSpecs, SndHWM: zsock.Unlimited, Linger: lingerStream, QueueLen: outQueueLen}); err != nil {
		return fail(err)
	}
	if ss.clientOut, err = open(zsock.Options{Name: "zurl-in", Type: zmq.PUSH, Direction: zsock.SendOnly,
		Connect: s.cfg.ClientOutSpecs, SndHWM: hwmFirst,
		OnDrop: func(m zsock.Message, _ error) {
			if len(m) != 1 {
				return
			}
			if p, err := zhttp.Parse(m[0]); err == nil {
				select {
				case drops <- string(p.ID):
				default: // the ack deadline catches it
				}
			}
		}}); err != nil {
		return fail(err)
	}
	if ss.clientOutStream, err = open(zsock.Options{Name: "zurl-in-stream", Type: zmq.ROUTER, Direction: zsock.SendOnly,
		Connect: s.cfg.ClientOutStreamSpecs, Identity: id, SndHWM: hwmStream, Linger: lingerStream,
		Immediate: true, RouterMandatory: true,
		OnDrop: s.watch.onDrop, OnDisconnect: s.watch.onDisconnect}); err != nil {
		return fail(err)
	}
	if ss.clientReplies, err = open(zsock.Options{Name: "zurl-out", Type: zmq.SUB, Direction: zsock.RecvOnly,
		Connect: s.cfg.ClientInSpecs, Subscribe: []string{id + " "}, RcvHWM: hwmStream}); err != nil {
		return fail(err)
	}
	if len(s.cfg.AcceptSpecs) > 0 {
		if ss.accept, err = open(zsock.Options{Name: "accept", Type: zmq.DEALER, Direction: zsock.TwoWay,
			Bind: s.cfg.AcceptSpecs, SndHWM: hwmFirst, RcvHWM: hwmStream,
			// A handler that is (re)starting gets a moment to connect;
			// Pushpin fails at once.
			SendTimeout: acceptSendTimeout,
			TrackPeers:  true,
			OnDrop:      zrpcDrop(acceptDrops)}); err != nil {
			return fail(err)
		}
	}
	if len(s.cfg.InspectSpecs) > 0 {
		// Pushpin's ZRPC client: a call finding no handler fails at once.
		if ss.inspect, err = open(zsock.Options{Name: "inspect", Type: zmq.DEALER, Direction: zsock.TwoWay,
			Bind: s.cfg.InspectSpecs, SndHWM: hwmFirst, RcvHWM: hwmStream, TrackPeers: true,
			OnDrop: zrpcDrop(inspectDrops)}); err != nil {
			return fail(err)
		}
	}
	if len(s.cfg.RetryInSpecs) > 0 {
		if ss.retry, err = open(zsock.Options{Name: "retry", Type: zmq.PULL, Direction: zsock.RecvOnly,
			Bind: s.cfg.RetryInSpecs, RcvHWM: hwmStream}); err != nil {
			return fail(err)
		}
	}
	if s.cfg.IntreqEnabled() {
		// Pushpin's C++ zhttp server sockets, bound (zmq-wire.md §3.2, §3.6).
		if ss.intreqIn, err = open(zsock.Options{Name: "intreq-in", Type: zmq.PULL, Direction: zsock.RecvOnly,
			Bind: s.cfg.IntreqInSpecs, RcvHWM: hwmFirst}); err != nil {
			return fail(err)
		}
		if ss.intreqInStream, err = open(zsock.Options{Name: "intreq-in-stream", Type: zmq.ROUTER, Direction: zsock.RecvOnly,
			Bind: s.cfg.IntreqInStreamSpecs, Identity: id, RcvHWM: hwmStream, SndHWM: hwmStream, Linger: lingerStream}); err != nil {
			return fail(err)
		}
		if ss.intreqOut, err = open(zsock.Options{Name: "intreq-out", Type: zmq.XPUB, Direction: zsock.SendOnly, AwaitSubscriber: true,
			Bind: s.cfg.IntreqOutSpecs, SndHWM: zsock.Unlimited, Linger: lingerStream, QueueLen: outQueueLen}); err != nil {
			return fail(err)
		}
	} else if s.cfg.intreqPartial() {
		s.log.Warn().Msg("intreq needs intreq_in_specs, intreq_in_stream_specs and intreq_out_specs: handler requests disabled")
	}
	if s.cfg.StatsSpec != "" {
		if ss.stats, err = open(zsock.Options{Name: "proxy-stats", Type: zmq.PUB, Direction: zsock.SendOnly,
			Bind: []string{s.cfg.StatsSpec}, SndHWM: hwmStats, QueueLen: statsQueueLen}); err != nil {
			return fail(err)
		}
	}
	if s.cfg.CommandSpec != "" {
		if ss.command, err = open(zsock.Options{Name: "proxy-command", Type: zmq.ROUTER, Direction: zsock.TwoWay,
			Bind: []string{s.cfg.CommandSpec}, SndHWM: hwmCommand, RcvHWM: hwmCommand}); err != nil {
			return fail(err)
		}
	}
	if s.cfg.WSControlEnabled() {
		// Pushpin's WsControlManager: both bound, HWM 101000 (zmq-wire.md §3.2).
		if ss.wsControlIn, err = open(zsock.Options{Name: "ws-control-in", Type: zmq.PULL, Direction: zsock.RecvOnly,
			Bind: s.cfg.WSControlInSpecs, RcvHWM: hwmStream}); err != nil {
			return fail(err)
		}
		// A PUSH with no handler connected yet (start-up, handler restart)
		// waits up to wsControlSendWait for one instead of dropping the
		// connection's here/grip items after the default 100 ms.
		if ss.wsControlOut, err = open(zsock.Options{Name: "ws-control-out", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Bind: s.cfg.WSControlOutSpecs, SndHWM: hwmStream, Linger: lingerStream, QueueLen: outQueueLen,
			SendTimeout: wsControlSendWait,
			OnDrop: func(m zsock.Message, err error) {
				s.log.Warn().Err(err).Str(logging.FieldSocket, "ws-control-out").Msg("ws-control packet dropped")
			}}); err != nil {
			return fail(err)
		}
	} else if len(s.cfg.WSControlInSpecs)+len(s.cfg.WSControlOutSpecs) > 0 {
		s.log.Warn().Msg("ws-control needs handler_ws_control_in_spec and handler_ws_control_out_spec: GRIP WebSockets disabled")
	}
	return ss, nil
}

// zrpcDrop reports the id of each ZRPC call a DEALER could not send (the
// call's deadline catches any the queue has no room for).
func zrpcDrop(ids chan<- string) func(zsock.Message, error) {
	return func(m zsock.Message, _ error) {
		if len(m) != 2 {
			return
		}
		if d, err := tnetstring.DecodeDict(m[1]); err == nil {
			if id, ok := d.Bytes("id"); ok {
				select {
				case ids <- string(id):
				default:
				}
			}
		}
	}
}

// waitTimer fires soon while hand-offs wait for a handler, never otherwise.
func waitTimer(e *engine) <-chan time.Time {
	if len(e.waitingHandler) == 0 {
		return nil
	}
	return time.After(handlerPoll)
}

// loop is the engine goroutine: the only code that touches the session table.
func (s *Service) loop(ctx context.Context, e *engine, ss *sockets, drops, acceptDrops, inspectDrops <-chan string) error {
	ticker := time.NewTicker(s.cfg.Tick)
	defer ticker.Stop()
	// One timer flushes stats activity 100 ms after the first unflushed
	// activity (Pushpin's single-shot ACTIVITY_TIMEOUT).
	var actTimer *time.Timer
	var actC <-chan time.Time
	defer func() {
		if actTimer != nil {
			actTimer.Stop()
		}
	}()
	var commandSend func(zsock.Message) bool
	if ss.command != nil {
		commandSend = ss.command.TrySend
	}
	e.syncZBackends()
	for {
		if actC == nil && e.stats != nil && e.stats.activityPending() {
			actTimer = time.NewTimer(statsActivityFlush)
			actC = actTimer.C
		}
		select {
		case <-actC:
			actC = nil
			e.stats.flushActivity()
		case m, ok := <-recvOf(ss.command):
			if !ok {
				return fmt.Errorf("proxy-command socket closed")
			}
			e.handleCommand(m, commandSend)
		case <-ctx.Done():
			e.shutdown(s.cfg.Now())
			return nil
		case m, ok := <-ss.connmgrIn.Recv():
			if !ok {
				return fmt.Errorf("condure-out socket closed")
			}
			if len(m) != 1 {
				s.log.Warn().Int("parts", len(m)).Str("socket", "condure-out").Msg("dropping message with parts != 1")
				continue
			}
			e.handleFirst(sideConnmgr, m[0], s.cfg.Now())
		case m, ok := <-ss.connmgrInStream.Recv():
			if !ok {
				return fmt.Errorf("condure-out-stream socket closed")
			}
			e.handleStream(sideConnmgr, m, s.cfg.Now())
		case m, ok := <-recvOf(ss.intreqIn):
			if !ok {
				return fmt.Errorf("intreq-in socket closed")
			}
			if len(m) != 1 {
				s.log.Warn().Int("parts", len(m)).Str("socket", "intreq-in").Msg("dropping message with parts != 1")
				continue
			}
			e.handleFirst(sideIntreq, m[0], s.cfg.Now())
		case m, ok := <-recvOf(ss.intreqInStream):
			if !ok {
				return fmt.Errorf("intreq-in-stream socket closed")
			}
			e.handleStream(sideIntreq, m, s.cfg.Now())
		case m, ok := <-ss.clientReplies.Recv():
			if !ok {
				return fmt.Errorf("zurl-out socket closed")
			}
			if len(m) != 1 {
				continue
			}
			e.handleClientReply(nil, m[0], s.cfg.Now())
		case id := <-drops:
			e.clientDropped(id, s.cfg.Now())
		case id := <-s.watch.drops:
			e.clientGone(id, s.cfg.Now())
		case <-s.watch.gone:
			s.watch.disconnected()
		case id := <-acceptDrops:
			e.acceptFailed(id, s.cfg.Now())
		case m, ok := <-recvOf(ss.accept):
			if !ok {
				return fmt.Errorf("accept socket closed")
			}
			e.handleAcceptReply(m, s.cfg.Now())
		case m, ok := <-recvOf(ss.wsControlIn):
			// The packets already queued are handled as one batch
			// (wsbatch.go); a closed socket ends the loop after it.
			e.holdPubs()
			for n := 1; ok; n++ {
				if len(m) != 1 {
					s.log.Warn().Int("parts", len(m)).Str("socket", "ws-control-in").Msg("dropping message with parts != 1")
				} else {
					e.handleWSControl(m[0], s.cfg.Now())
				}
				if n >= wsBatchDrain || len(ss.wsControlIn.Recv()) == 0 {
					break
				}
				m, ok = <-ss.wsControlIn.Recv()
			}
			e.flushPubs()
			if !ok {
				return fmt.Errorf("ws-control-in socket closed")
			}
		case m, ok := <-recvOf(ss.inspect):
			if !ok {
				return fmt.Errorf("inspect socket closed")
			}
			e.handleInspectReply(m, s.cfg.Now())
		case id := <-inspectDrops:
			e.inspectFailed(id, false, s.cfg.Now())
		case m, ok := <-recvOf(ss.retry):
			if !ok {
				return fmt.Errorf("retry socket closed")
			}
			if len(m) == 1 {
				e.handleRetry(m[0], s.cfg.Now())
			}
		case m := <-e.zb.in:
			e.zbackendMessage(m, s.cfg.Now())
		case <-ticker.C:
			e.syncZBackends()
			e.tick(s.cfg.Now())
			if s.watch.due() {
				e.probeClients(s.cfg.Now())
			}
		case <-waitTimer(e):
			e.retryWaitingHandler(s.cfg.Now())
		}
	}
}
