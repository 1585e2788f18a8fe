package proxy

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/routes"
	"tack/internal/zsock"
	"tack/pkg/zhttp"
)

// ZeroMQ backends: route targets zhttp/<base> and zhttpreq/<spec>
// (Pushpin's src/proxy/zroutes.cpp). For each target spec the proxy binds
// the client side of zhttp and the backend connects to it:
//
//	target          socket        type    bound at                           HWM
//	zhttp/<base>    out           PUSH    tcp P      | ipc <base>-out        100
//	                out-stream    ROUTER  tcp P+1    | ipc <base>-out-stream 101000, identity = instance id
//	                in            SUB     tcp P+2    | ipc <base>-in         101000, topic "<instance id> "
//	zhttpreq/<spec> req           DEALER  <spec>                             100
//
// zhttp/ speaks stream-mode zhttp exactly as towards zurl (seq, credits,
// keep-alives; the backend answers on its PUB with our id as topic and
// reads follow-ups on a ROUTER whose identity is its `from`). zhttpreq/
// sends each request as one packet once its body is complete (≤ 1000000
// bytes, `max-size` 1000000, no seq, credits or stream flag) framed
// ["", "T…"] so that a REP socket can answer it, and takes one complete
// response packet back (the README's example backend).
//
// Sockets are bound when a routes table naming the spec is loaded (and on
// first use), and closed when the spec has left the routes and no session
// uses it any more. Each socket has its own owner goroutine; their input
// is fanned into zbackends.in for the engine.

// zhttpreq limits and waits (Pushpin 1.36 src/corelib/zhttprequest.cpp:
// REQ_BUF_MAX, and SESSION_EXPIRE for a request that gets no answer).
const (
	zreqBodyMax = 1000000
	// zreqTimeout bounds the wait for a zhttpreq answer. Pushpin 1.36
	// waits 60 s (its session expiry) whether or not a backend is connected.
	zreqTimeout = 60 * time.Second
	// zreqWindow is the request-body credit kept open towards connmgr
	// while a zhttpreq request body is collected.
	zreqWindow = 200000
	// zsendTimeout is how long a first packet waits for a backend to be
	// connected before the request fails with 502 (Pushpin: at once for
	// zhttp/, 60 s for zhttpreq/); a backend that is (re)connecting gets
	// this moment.
	zsendTimeout = time.Second
	// zbackendQueue bounds the fan-in of backend replies to the engine; a
	// full queue holds the sockets' owners (libzmq's HWMs bound the rest).
	zbackendQueue = 1024
)

// zlink is the socket set of one zhttp/ or zhttpreq/ target spec.
type zlink struct {
	key   string // "zhttp/<spec>" or "zhttpreq/<spec>"
	req   bool
	first chan<- zsock.Message // PUSH (zhttp/) or DEALER (zhttpreq/)
	// stream is the ROUTER for follow-ups (zhttp/ only; nil for zhttpreq/).
	stream chan<- zsock.Message
	cancel context.CancelFunc
	stale  bool // no longer named by the routes
}

// zbackendMsg is one message from a backend socket.
type zbackendMsg struct {
	link *zlink
	msg  zsock.Message
}

// zbackends owns the zlinks; only the engine goroutine calls its methods
// (the socket owners and forwarders run on their own).
type zbackends struct {
	zctx  *zsock.Context
	log   zerolog.Logger
	id    string
	drops chan<- string // out ids of first packets that could not be sent
	in    chan zbackendMsg
	links map[string]*zlink
	table *routes.Table // the routes table last synced
	wg    sync.WaitGroup
}

func newZBackends(zctx *zsock.Context, log zerolog.Logger, id string, drops chan<- string) *zbackends {
	return &zbackends{zctx: zctx, log: log, id: id, drops: drops,
		in: make(chan zbackendMsg, zbackendQueue), links: map[string]*zlink{}}
}

// zbackendKey names a target's socket set.
func zbackendKey(t *routes.Target) string {
	if t.Kind == routes.TargetZHTTPReq {
		return "zhttpreq/" + t.Spec
	}
	return "zhttp/" + t.Spec
}

// zhttpSpecs expands a zhttp/ base spec into its out, out-stream and in
// endpoints: tcp://h:P gives P, P+1, P+2; anything else gets -out,
// -out-stream and -in appended (Pushpin's baseSpecToSpecs).
func zhttpSpecs(base string) ([3]string, error) {
	rest, ok := strings.CutPrefix(base, "tcp://")
	if !ok {
		if !strings.Contains(base, "://") {
			return [3]string{}, fmt.Errorf("spec %q has no transport (tcp:// or ipc://)", base)
		}
		return [3]string{base + "-out", base + "-out-stream", base + "-in"}, nil
	}
	at := strings.LastIndexByte(rest, ':')
	if at < 0 {
		return [3]string{}, fmt.Errorf("spec %q has no port", base)
	}
	port, err := strconv.Atoi(rest[at+1:])
	if err != nil || port < 1 || port > 65533 {
		return [3]string{}, fmt.Errorf("spec %q: bad port", base)
	}
	host := "tcp://" + rest[:at+1]
	return [3]string{host + strconv.Itoa(port), host + strconv.Itoa(port+1), host + strconv.Itoa(port+2)}, nil
}

// get returns the link for t, binding its sockets if needed.
func (zb *zbackends) get(t *routes.Target) (*zlink, error) {
	key := zbackendKey(t)
	if l := zb.links[key]; l != nil {
		return l, nil
	}
	l, err := zb.open(t)
	if err != nil {
		return nil, err
	}
	zb.links[key] = l
	zb.log.Info().Str("target", key).Msg("zhttp target bound")
	return l, nil
}

func (zb *zbackends) open(t *routes.Target) (*zlink, error) {
	var mode int64
	if t.IPCFileMode != "" {
		v, err := strconv.ParseInt(t.IPCFileMode, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("ipc_file_mode %q: %w", t.IPCFileMode, err)
		}
		mode = v
	}
	l := &zlink{key: zbackendKey(t), req: t.Kind == routes.TargetZHTTPReq}
	var socks []*zsock.Socket
	fail := func(err error) (*zlink, error) {
		closeUnrun(socks)
		return nil, err
	}
	open := func(o zsock.Options) (*zsock.Socket, error) {
		o.IPCFileMode = os.FileMode(mode)
		so, err := zb.zctx.Open(o, zb.log)
		if err == nil {
			socks = append(socks, so)
		}
		return so, err
	}
	var recvs []*zsock.Socket
	if l.req {
		so, err := open(zsock.Options{Name: l.key, Type: zmq.DEALER, Direction: zsock.TwoWay,
			Bind: []string{t.Spec}, SndHWM: hwmFirst, RcvHWM: hwmStream, SendTimeout: zsendTimeout,
			OnDrop: func(m zsock.Message, _ error) {
				if len(m) == 2 {
					zb.dropped(m[1])
				}
			}})
		if err != nil {
			return fail(err)
		}
		l.first = so.Send()
		recvs = append(recvs, so)
	} else {
		specs, err := zhttpSpecs(t.Spec)
		if err != nil {
			return nil, err
		}
		push, err := open(zsock.Options{Name: l.key + " out", Type: zmq.PUSH, Direction: zsock.SendOnly,
			Bind: specs[:1], SndHWM: hwmFirst, SendTimeout: zsendTimeout,
			OnDrop: func(m zsock.Message, _ error) {
				if len(m) == 1 {
					zb.dropped(m[0])
				}
			}})
		if err != nil {
			return fail(err)
		}
		router, err := open(zsock.Options{Name: l.key + " out-stream", Type: zmq.ROUTER, Direction: zsock.SendOnly,
			Bind: specs[1:2], Identity: zb.id, SndHWM: hwmStream, Linger: lingerStream,
			Immediate: true, RouterMandatory: true})
		if err != nil {
			return fail(err)
		}
		sub, err := open(zsock.Options{Name: l.key + " in", Type: zmq.SUB, Direction: zsock.RecvOnly,
			Bind: specs[2:], Subscribe: []string{zb.id + " "}, RcvHWM: hwmStream})
		if err != nil {
			return fail(err)
		}
		l.first, l.stream = push.Send(), router.Send()
		recvs = append(recvs, sub)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	for _, so := range socks {
		zb.wg.Add(1)
		go func() {
			defer zb.wg.Done()
			if err := so.Run(ctx); err != nil {
				zb.log.Error().Err(err).Str(logging.FieldSocket, so.Name()).Msg("socket stopped")
			}
		}()
	}
	for _, so := range recvs {
		zb.wg.Add(1)
		go func() {
			defer zb.wg.Done()
			for m := range so.Recv() {
				select {
				case zb.in <- zbackendMsg{link: l, msg: m}:
				case <-ctx.Done():
				}
			}
		}()
	}
	return l, nil
}

// dropped reports a first packet that could not be sent (no backend
// connected, or its queue stayed full) to the engine by its out id.
func (zb *zbackends) dropped(frame []byte) {
	if p, err := zhttp.Parse(frame); err == nil {
		select {
		case zb.drops <- string(p.ID):
		default: // the ack deadline catches it
		}
	}
}

// sync binds the targets of a newly loaded routes table and closes the
// links it no longer names once no session in use uses them.
func (zb *zbackends) sync(t *routes.Table, inUse func(*zlink) bool) {
	if t != zb.table && t != nil {
		zb.table = t
		named := map[string]bool{}
		for _, r := range t.Routes() {
			for i := range r.Targets {
				tg := &r.Targets[i]
				if tg.Kind != routes.TargetZHTTP && tg.Kind != routes.TargetZHTTPReq {
					continue
				}
				named[zbackendKey(tg)] = true
				if _, err := zb.get(tg); err != nil {
					zb.log.Error().Err(err).Str("target", zbackendKey(tg)).Msg("cannot bind zhttp target")
				}
			}
		}
		for key, l := range zb.links {
			l.stale = !named[key]
		}
	}
	for key, l := range zb.links {
		if l.stale && !inUse(l) {
			zb.log.Info().Str("target", key).Msg("zhttp target closed")
			l.cancel()
			delete(zb.links, key)
		}
	}
}

// close stops every link and waits for their sockets to be closed.
func (zb *zbackends) close() {
	for key, l := range zb.links {
		l.cancel()
		delete(zb.links, key)
	}
	zb.wg.Wait()
}
