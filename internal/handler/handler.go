package handler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"tack/internal/cli"
	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/wscontrol"
)

// Socket bounds (zmq-wire.md §3.6: Pushpin's zhttp server ROUTER/PUB use
// HWM 101000 and PUB linger 500 ms; the stats PUB uses HWM 200000).
const (
	hwmZRPC        = 1000
	hwmStream      = 101000
	hwmStats       = 200000
	hwmRetry       = 1000
	hwmIntreq      = 1000
	hwmWSControl   = 101000 // Pushpin DEFAULT_HWM on both ws-control sockets
	wsOutQLen      = 4096   // Go queue (packets) in front of the ws-control PUSH
	lingerStream   = 500 * time.Millisecond
	connmgrOutQLen = 65536 // Go queue in front of the connmgr PUB
	statsOutQLen   = 4096
)

// Service is one tack-handler instance.
type Service struct {
	cfg   Config
	log   zerolog.Logger
	chans *channelSet
	st    *statsCollector // nil without stats_spec
	eng   *engine
}

// New checks cfg and returns a handler ready to Run.
func New(cfg Config, log zerolog.Logger) (*Service, error) {
	if cfg.InstanceID == "" || strings.ContainsAny(cfg.InstanceID, " ") {
		return nil, fmt.Errorf("invalid instance id %q", cfg.InstanceID)
	}
	if len(cfg.InspectSpecs) == 0 && len(cfg.AcceptSpecs) == 0 {
		return nil, errors.New("neither inspect nor accept specs set")
	}
	cfg = cfg.withDefaults()
	s := &Service{cfg: cfg, log: log, chans: newChannelSet()}
	if cfg.StatsSpec != "" || cfg.PrometheusPort != "" {
		s.st = newStatsCollector(&s.cfg, log)
	}
	s.eng = newEngine(cfg, log.With().Str("component", "engine").Logger(), s.chans, s.st)
	return s, nil
}

// API is the engine's interface for the publish inputs.
func (s *Service) API() engineAPI { return s.eng }

type sockets struct {
	inspect, accept, connmgrOut, connmgrIn, retry, stats, proxyStats *zsock.Socket
	intreqOut, intreqOutStream, intreqIn                             *zsock.Socket
	proxyCommand                                                     *zsock.Socket // conncheck's calls to the proxy
	wsIn, wsOut                                                      *zsock.Socket
}

func (ss *sockets) all() []*zsock.Socket {
	var out []*zsock.Socket
	for _, so := range []*zsock.Socket{ss.inspect, ss.accept, ss.connmgrOut, ss.connmgrIn, ss.retry, ss.stats, ss.proxyStats,
		ss.intreqOut, ss.intreqOutStream, ss.intreqIn, ss.proxyCommand, ss.wsIn, ss.wsOut} {
		if so != nil {
			out = append(out, so)
		}
	}
	return out
}

func (s *Service) openSockets(zctx *zsock.Context) (*sockets, error) {
	var opened []*zsock.Socket
	fail := func(err error) (*sockets, error) {
		for _, so := range opened {
			closeSocket(so)
		}
		return nil, err
	}
	open := func(o zsock.Options) (*zsock.Socket, error) {
		o.IPCFileMode = s.cfg.IPCFileMode
		so, err := zctx.Open(o, s.log)
		if err == nil {
			opened = append(opened, so)
		}
		return so, err
	}
	c := &s.cfg
	ss := &sockets{}
	var err error
	if len(c.InspectSpecs) > 0 {
		if ss.inspect, err = open(zsock.Options{Name: "inspect", Type: zmq.ROUTER, Direction: zsock.TwoWay,
			Connect: c.InspectSpecs, SndHWM: hwmZRPC, RcvHWM: hwmZRPC}); err != nil {
			return fail(err)
		}
	}
	if len(c.AcceptSpecs) > 0 {
		if ss.accept, err = open(zsock.Options{Name: "accept", Type: zmq.ROUTER, Direction: zsock.TwoWay,
			Connect: c.AcceptSpecs, SndHWM: hwmZRPC, RcvHWM: hwmZRPC}); err != nil {
			return fail(err)
		}
		if ss.connmgrOut, err = open(zsock.Options{Name: "condure-in", Type: zmq.XPUB, Direction: zsock.SendOnly,
			// Credits bound what goes to connmgr; a PUB at its HWM drops
			// silently and breaks the sessions' sequence (seen at 10k
			// streams × 50 items), so no count limit here. For the same
			// reason packets wait for connmgr's subscription
			// (AwaitSubscriber): a handler still connecting to connmgr
			// lost the first packets of the sessions the proxy handed it.
			Connect: c.ConnmgrOutSpecs, SndHWM: zsock.Unlimited, Linger: lingerStream, QueueLen: connmgrOutQLen,
			AwaitSubscriber: true,
			// Counted as the queue-full drops are (engine.send).
			OnDrop: func(zsock.Message, error) { s.st.dropped() }}); err != nil {
			return fail(err)
		}
		if ss.connmgrIn, err = open(zsock.Options{Name: "condure-out-stream", Type: zmq.ROUTER, Direction: zsock.RecvOnly,
			Connect: c.ConnmgrStreamSpecs, Identity: c.InstanceID, SndHWM: hwmStream, RcvHWM: hwmStream,
			Linger: lingerStream}); err != nil {
			return fail(err)
		}
	}
	if len(c.RetryOutSpecs) > 0 {
		if ss.retry, err = open(zsock.Options{Name: "retry", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Connect: c.RetryOutSpecs, SndHWM: hwmRetry, Linger: lingerStream}); err != nil {
			return fail(err)
		}
	}
	if c.hasIntreq() {
		if ss.intreqOut, err = open(zsock.Options{Name: "intreq-in", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Connect: c.IntreqOutSpecs, SndHWM: hwmIntreq, Linger: lingerStream}); err != nil {
			return fail(err)
		}
		if ss.intreqOutStream, err = open(zsock.Options{Name: "intreq-in-stream", Type: zmq.ROUTER, Direction: zsock.SendOnly,
			Connect: c.IntreqOutStream, Identity: c.InstanceID, SndHWM: hwmIntreq, Linger: lingerStream}); err != nil {
			return fail(err)
		}
		if ss.intreqIn, err = open(zsock.Options{Name: "intreq-out", Type: zmq.SUB, Direction: zsock.RecvOnly,
			Connect: c.IntreqInSpecs, Subscribe: []string{c.InstanceID + " "}, RcvHWM: hwmIntreq}); err != nil {
			return fail(err)
		}
	}
	if len(c.WSControlInSpecs) > 0 && len(c.WSControlOutSpecs) > 0 {
		// Both or neither, as Pushpin 1.36.
		if ss.wsIn, err = open(zsock.Options{Name: "ws-control-out", Type: zmq.PULL, Direction: zsock.RecvOnly,
			Connect: c.WSControlInSpecs, RcvHWM: hwmWSControl}); err != nil {
			return fail(err)
		}
		wsDrops := newRateLog(s.log, rateLogInterval)
		if ss.wsOut, err = open(zsock.Options{Name: "ws-control-in", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Connect: c.WSControlOutSpecs, SndHWM: hwmWSControl, Linger: lingerStream, QueueLen: wsOutQLen,
			OnDrop: func(m zsock.Message, err error) {
				// Counted as the queue-full drops are (engine.wsWrite).
				n, cid := wsPacketCount(m)
				s.st.dropped()
				s.st.inputDropped(uint64(n))
				wsDrops.Warn(time.Now()).Err(err).Str(logging.FieldSocket, "ws-control-in").Int("items", n).
					Str(logging.FieldConn, cid).Msg("ws-control packet dropped")
			}}); err != nil {
			return fail(err)
		}
	}
	if c.StatsSpec != "" {
		if ss.stats, err = open(zsock.Options{Name: "stats", Type: zmq.PUB, Direction: zsock.SendOnly,
			Bind: []string{c.StatsSpec}, SndHWM: hwmStats, QueueLen: statsOutQLen}); err != nil {
			return fail(err)
		}
	}
	if c.ProxyCommandSpec != "" && c.Inputs.CommandSpec != "" {
		if ss.proxyCommand, err = open(zsock.Options{Name: "proxy-command", Type: zmq.DEALER, Direction: zsock.TwoWay,
			Connect: []string{c.ProxyCommandSpec}, SndHWM: hwmZRPC, RcvHWM: hwmZRPC, TrackPeers: true}); err != nil {
			return fail(err)
		}
	}
	if len(c.ProxyStatsSpecs) > 0 {
		if ss.proxyStats, err = open(zsock.Options{Name: "proxy-stats", Type: zmq.SUB, Direction: zsock.RecvOnly,
			Connect: c.ProxyStatsSpecs, Subscribe: []string{""}, RcvHWM: hwmStats}); err != nil {
			return fail(err)
		}
	}
	return ss, nil
}

// Run serves until ctx is done. Every goroutine it starts has returned, and
// every socket is closed, when it returns.
func (s *Service) Run(ctx context.Context) error {
	// Until the workers start, a failure means the handler could not start.
	zctx, err := zsock.NewContext()
	if err != nil {
		return cli.Startup(err)
	}
	defer zctx.Close()
	ss, err := s.openSockets(zctx)
	if err != nil {
		return cli.Startup(err)
	}
	chans, st, eng := s.chans, s.st, s.eng
	if st != nil && ss.stats != nil {
		st.out = ss.stats.Send()
	}
	if ss.connmgrOut != nil {
		eng.out.connmgr = ss.connmgrOut.Send()
		eng.connmgr = ss.connmgrIn.Recv()
	}
	if ss.retry != nil {
		eng.out.retry = ss.retry.Send()
	}
	if ss.wsIn != nil {
		eng.ws.in = ss.wsIn.Recv()
		eng.ws.out = ss.wsOut.Send()
	}
	if ss.intreqOut != nil {
		eng.out.intreq = ss.intreqOut.Send()
		eng.out.intreqStream = ss.intreqOutStream.Send()
		eng.intreq = ss.intreqIn.Recv()
	}
	in, err := newInputs(zctx, s.cfg.Inputs, eng, chans, st, s.log.With().Str("component", "publish").Logger())
	if err != nil {
		for _, so := range ss.all() {
			closeSocket(so)
		}
		return cli.Startup(err)
	}
	met, err := newMetricsServer(&s.cfg, st, s.log)
	if err != nil {
		in.close()
		for _, so := range ss.all() {
			closeSocket(so)
		}
		return cli.Startup(err)
	}

	// Sockets outlive the workers so that what the engine queues while
	// stopping (cancels to connmgr) is still written.
	sockCtx, stopSockets := context.WithCancel(context.Background())
	var sg errgroup.Group
	for _, so := range ss.all() {
		sg.Go(func() error { return so.Run(sockCtx) })
	}

	g, gctx := errgroup.WithContext(ctx)
	if ss.inspect != nil {
		g.Go(func() error { return serveInspect(gctx, ss.inspect, s.cfg.ShareAll, s.log) })
	}
	if ss.accept != nil {
		g.Go(func() error { return serveAccept(gctx, ss.accept, eng.accepts, &s.cfg, s.log) })
	}
	g.Go(func() error { return eng.run(gctx) })
	if ss.proxyStats != nil {
		g.Go(func() error { return serveProxyStats(gctx, ss.proxyStats, st, s.log) })
	}
	if st != nil {
		g.Go(func() error { return st.run(gctx) })
	}
	if met != nil {
		g.Go(func() error { return met.Run(gctx) })
	}
	if ss.proxyCommand != nil && in.cmd != nil {
		pc := newProxyCommand(ss.proxyCommand, s.log)
		in.cmd.proxyCheck = pc.connCheck
		g.Go(func() error { return pc.run(gctx) })
	}
	g.Go(func() error { return in.Run(gctx) })
	s.log.Info().Str("id", s.cfg.InstanceID).Msg("started")
	err = g.Wait()
	stopSockets()
	if serr := sg.Wait(); err == nil {
		err = serr
	}
	s.log.Info().Msg("stopped")
	return err
}

// wsPacketCount returns the number of items of a ws-control packet and the
// connection id of its first (0 and "" when it does not parse).
func wsPacketCount(m zsock.Message) (int, string) {
	if len(m) != 1 {
		return 0, ""
	}
	p, err := wscontrol.Parse(m[0])
	if err != nil || len(p.Items) == 0 {
		return 0, ""
	}
	return len(p.Items), string(p.Items[0].CID)
}
