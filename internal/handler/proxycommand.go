package handler

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// The proxy command client ([handler] proxy_command_spec, DEALER, connect):
// the handler's ZRPC calls to the proxy (zmq-wire.md §4.1, §4.7). Only
// conncheck uses it: ids the handler does not hold are asked of the proxy,
// as Pushpin's ConnCheckWorker does.
const (
	// proxyCommandTimeout is Pushpin's handler → proxy command timeout.
	proxyCommandTimeout = 10 * time.Second
	// proxyCommandMax bounds the calls in flight; more fail at once.
	proxyCommandMax = 256
	// proxyCommandTick is how often calls are checked for their timeout.
	proxyCommandTick = 500 * time.Millisecond
)

// errProxyCommand is any failed proxy call (no proxy, timeout, failure
// reply); the command socket answers it with proxy-request-failed.
var errProxyCommand = errors.New("proxy command failed")

type proxyResult struct {
	value any
	err   error
}

type proxyCall struct {
	req   []byte // encoded request
	id    string
	reply chan proxyResult // buffered 1
}

// proxyCommand owns the pending calls; its run goroutine is the only one
// that reads the DEALER's replies.
type proxyCommand struct {
	sock  *zsock.Socket
	calls chan proxyCall
	seq   atomic.Uint64 // request ids: unique among the calls in flight
	log   zerolog.Logger
}

func newProxyCommand(sock *zsock.Socket, log zerolog.Logger) *proxyCommand {
	return &proxyCommand{sock: sock, calls: make(chan proxyCall, proxyCommandMax),
		log: log.With().Str(logging.FieldSocket, "proxy-command").Logger()}
}

// call sends one request and waits for its value.
func (pc *proxyCommand) call(ctx context.Context, method string, args tnetstring.Dict) (any, error) {
	if pc.sock.Peers() == 0 {
		return nil, fmt.Errorf("%w: no proxy connected", errProxyCommand)
	}
	id := "cmd-" + strconv.FormatUint(pc.seq.Add(1), 10)
	d := tnetstring.Dict{{Key: "id", Value: id}, {Key: "method", Value: method}}
	if len(args) > 0 {
		d = append(d, tnetstring.Field{Key: "args", Value: args})
	}
	c := proxyCall{req: tnetstring.MustEncode(d), id: id, reply: make(chan proxyResult, 1)}
	select {
	case pc.calls <- c:
	default:
		return nil, fmt.Errorf("%w: too many calls in flight", errProxyCommand)
	}
	select {
	case r := <-c.reply:
		return r.value, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// connCheck returns which of ids the proxy still has.
func (pc *proxyCommand) connCheck(ctx context.Context, ids []string) ([]string, error) {
	l := make([]any, len(ids))
	for i, id := range ids {
		l[i] = []byte(id)
	}
	v, err := pc.call(ctx, "conncheck", tnetstring.Dict{{Key: "ids", Value: l}})
	if err != nil {
		return nil, err
	}
	found, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: conncheck value is not a list", errProxyCommand)
	}
	out := make([]string, 0, len(found))
	for _, f := range found {
		if b, ok := f.([]byte); ok {
			out = append(out, string(b))
		}
	}
	return out, nil
}

type pendingCall struct {
	reply    chan proxyResult
	deadline time.Time
}

// run sends calls and matches replies by id until ctx is done; calls still
// pending then fail.
func (pc *proxyCommand) run(ctx context.Context) error {
	pending := map[string]pendingCall{}
	tick := time.NewTicker(proxyCommandTick)
	defer tick.Stop()
	defer func() {
		for _, p := range pending {
			p.reply <- proxyResult{err: fmt.Errorf("%w: stopping", errProxyCommand)}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-pc.calls:
			if !pc.sock.TrySend(zsock.Message{nil, c.req}) {
				c.reply <- proxyResult{err: fmt.Errorf("%w: send queue full", errProxyCommand)}
				continue
			}
			pending[c.id] = pendingCall{reply: c.reply, deadline: time.Now().Add(proxyCommandTimeout)}
		case m, ok := <-pc.sock.Recv():
			if !ok {
				return errSocketClosed("proxy-command")
			}
			// Pushpin's client takes only ["", reply].
			if len(m) != 2 || len(m[0]) != 0 {
				pc.log.Warn().Int("parts", len(m)).Msg("dropping reply with bad envelope")
				continue
			}
			d, err := tnetstring.DecodeDict(m[1])
			if err != nil {
				pc.log.Warn().Err(err).Msg("dropping undecodable reply")
				continue
			}
			id, _ := d.Bytes("id")
			p, ok := pending[string(id)]
			if !ok {
				continue // late or unknown: ignored, as in Pushpin
			}
			delete(pending, string(id))
			if d.Bool("success") {
				v, _ := d.Get("value")
				p.reply <- proxyResult{value: v}
			} else {
				cond, _ := d.Bytes("condition")
				p.reply <- proxyResult{err: fmt.Errorf("%w: %s", errProxyCommand, cond)}
			}
		case now := <-tick.C:
			for id, p := range pending {
				if now.After(p.deadline) {
					delete(pending, id)
					p.reply <- proxyResult{err: fmt.Errorf("%w: timeout", errProxyCommand)}
				}
			}
		}
	}
}
