package handler

import (
	"context"
	"errors"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"tack/internal/grip"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// Command socket bounds and the ZRPC conditions it adds to those of zrpc.go
// (grip-reference §4.5, zmq-wire §4.1, §4.7).
const (
	// commandHWM is the command ROUTER's send and receive HWM; requests
	// come from operators' tools, a few at a time.
	commandHWM = 1000

	// condUnavailable answers ErrQueueFull (ours: Pushpin's queue is
	// unbounded); it is the condition ZRPC clients already know for "try
	// later".
	condUnavailable = "service-unavailable"
	// condInternal answers an engine error that carries no condition.
	condInternal = "internal-error"
	// condProxyRequestFailed answers a conncheck whose question to the
	// proxy failed (Pushpin's ConnCheckWorker).
	condProxyRequestFailed = "proxy-request-failed"
)

// zmqURIs are the bound specs get-zmq-uris reports; an empty one is left out
// of the reply, as Pushpin leaves out inputs that are not configured (and
// publish-sub when the SUB socket connects).
type zmqURIs struct {
	PublishPull string
	PublishSub  string
	Command     string
}

// conditioner is implemented by engine errors that name their own ZRPC
// condition (for example the proxy's `item-not-found` for refresh).
type conditioner interface {
	Condition() string
}

// commandInput is the ZRPC command server on command_spec: publish, recover,
// refresh, conncheck and get-zmq-uris.
type commandInput struct {
	sock *zsock.Socket
	api  engineAPI
	uris zmqURIs
	log  zerolog.Logger
	bad  *rateLog
	// proxyCheck asks the proxy which of ids it has (nil: no proxy
	// command socket; conncheck then answers from the handler alone).
	proxyCheck func(ctx context.Context, ids []string) ([]string, error)
}

// newCommandInput binds the command ROUTER on cfg.CommandSpec (a tcp port of
// 0 or "*" is replaced by a free one; Spec reports it). uris are the bound
// PULL and SUB specs for get-zmq-uris; its Command field is filled in here.
func newCommandInput(zctx *zsock.Context, cfg InputsConfig, uris zmqURIs, api engineAPI, log zerolog.Logger) (*commandInput, error) {
	spec, err := resolveBindSpec(cfg.CommandSpec)
	if err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	log = log.With().Str("input", "command").Logger()
	sock, err := zctx.Open(zsock.Options{
		Name: "command", Type: zmq.ROUTER, Direction: zsock.TwoWay,
		Bind: []string{spec}, SndHWM: commandHWM, RcvHWM: commandHWM, IPCFileMode: cfg.IPCFileMode,
	}, log)
	if err != nil {
		return nil, err
	}
	uris.Command = spec
	log.Info().Str("spec", spec).Msg("command server bound")
	return &commandInput{sock: sock, api: api, uris: uris, log: log, bad: newRateLog(log, rateLogInterval)}, nil
}

// Spec is the spec the socket is bound to.
func (c *commandInput) Spec() string { return c.uris.Command }

// Run answers requests until ctx is done; the socket is closed when it
// returns.
func (c *commandInput) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.sock.Run(ctx) })
	// Calls waiting for the proxy reply from their own goroutines, at
	// most proxyCommandMax at a time; the socket outlives them.
	var waiting errgroup.Group
	waiting.SetLimit(proxyCommandMax)
	g.Go(func() error {
		defer waiting.Wait()
		for m := range c.sock.Recv() {
			out, deferred, err := c.handle(m)
			if err != nil {
				c.bad.Warn(time.Now()).Err(err).Int("parts", len(m)).Msg("command: dropping bad request")
				continue
			}
			if deferred != nil {
				if !waiting.TryGo(func() error { c.reply(deferred(ctx)); return nil }) {
					c.reply(out)
				}
				continue
			}
			c.reply(out)
		}
		return nil
	})
	return g.Wait()
}

func (c *commandInput) reply(out zsock.Message) {
	if !c.sock.TrySend(out) {
		c.bad.Warn(time.Now()).Msg("command: reply queue full, reply dropped")
	}
}

// handle answers one ROUTER message [envelope..., "", request]. Like Pushpin
// it drops, without a reply, a message that is not framed so or whose
// request is not a ZRPC request (not a dict, id or method not a string,
// args not a dict). A reply that needs the proxy comes back as deferred,
// to be run apart (out is then the reply to send if that cannot be).
func (c *commandInput) handle(m zsock.Message) (out zsock.Message, deferred func(context.Context) zsock.Message, err error) {
	n := len(m)
	if n < 3 || len(m[n-2]) != 0 {
		return nil, nil, fmt.Errorf("bad envelope with %d parts", n)
	}
	// The envelope ends at the first empty frame (a DEALER may send extra
	// empty frames; Pushpin answers on the routing frames alone).
	env := m[:0]
	for _, f := range m {
		if len(f) == 0 {
			break
		}
		env = append(env, f)
	}
	req, err := tnetstring.DecodeDict(m[n-1])
	if err != nil {
		return nil, nil, fmt.Errorf("decode request: %w", err)
	}
	id, hasID := req.Get("id")
	if _, ok := id.([]byte); hasID && !ok {
		return nil, nil, errors.New("request id is not a string")
	}
	mv, _ := req.Get("method")
	method, ok := mv.([]byte)
	if !ok {
		return nil, nil, errors.New("request method missing or not a string")
	}
	args := tnetstring.Dict{}
	if av, ok := req.Get("args"); ok {
		if args, ok = av.(tnetstring.Dict); !ok {
			return nil, nil, errors.New("request args not a dict")
		}
	}
	if e := c.log.Debug(); e.Enabled() {
		e.Bytes("method", method).Msg("command request")
	}
	build := func(resp tnetstring.Dict) zsock.Message {
		if hasID {
			resp = append(tnetstring.Dict{{Key: "id", Value: id}}, resp...)
		}
		out := make(zsock.Message, 0, len(env)+2)
		out = append(out, env...)
		return append(out, nil, tnetstring.MustEncode(resp))
	}
	if string(method) == "conncheck" {
		ids, live, err := c.connCheckLocal(args)
		if err != nil {
			return build(cmdFailure(condBadRequest, nil)), nil, nil
		}
		missing := missingIDs(ids, live)
		if len(missing) == 0 || c.proxyCheck == nil {
			return build(connCheckReply(ids, missing)), nil, nil
		}
		return build(cmdFailure(condProxyRequestFailed, nil)), func(ctx context.Context) zsock.Message {
			found, err := c.proxyCheck(ctx, missing)
			if err != nil {
				c.log.Debug().Err(err).Msg("conncheck: asking the proxy failed")
				return build(cmdFailure(condProxyRequestFailed, nil))
			}
			return build(connCheckReply(ids, missingIDs(missing, found)))
		}, nil
	}
	return build(c.call(string(method), args)), nil, nil
}

// connCheckLocal reads conncheck's ids and returns those the handler holds.
func (c *commandInput) connCheckLocal(args tnetstring.Dict) (ids, live []string, err error) {
	lv, _ := args.Get("ids")
	l, ok := lv.([]any)
	if !ok {
		return nil, nil, errors.New("ids is not a list")
	}
	ids = make([]string, 0, len(l))
	for _, v := range l {
		b, ok := v.([]byte)
		if !ok {
			return nil, nil, errors.New("an id is not a string")
		}
		ids = append(ids, string(b))
	}
	return ids, c.api.ConnCheck(ids), nil
}

// missingIDs is ids without those in have.
func missingIDs(ids, have []string) []string {
	set := make(map[string]bool, len(have))
	for _, id := range have {
		set[id] = true
	}
	var out []string
	for _, id := range ids {
		if !set[id] {
			out = append(out, id)
		}
	}
	return out
}

// connCheckReply lists the ids that are not missing, in request order
// (Pushpin answers from a set, in no particular order).
func connCheckReply(ids, missing []string) tnetstring.Dict {
	out := []any{}
	for _, id := range missingIDs(ids, missing) {
		out = append(out, []byte(id))
	}
	return cmdSuccess(out)
}

// call runs one method and returns the reply fields after `id`.
func (c *commandInput) call(method string, args tnetstring.Dict) tnetstring.Dict {
	switch method {
	case "publish":
		items, err := grip.ParseItemList(args)
		if err != nil {
			return cmdFailure(condBadRequest, err.Error())
		}
		if len(items) > 0 {
			if err := c.api.Publish(items); err != nil {
				return cmdEngineFailure(err)
			}
		}
		return cmdSuccess(nil)
	case "recover":
		if err := c.api.Recover(); err != nil {
			return cmdEngineFailure(err)
		}
		return cmdSuccess(nil)
	case "refresh":
		cid, cidOK, err := argBytes(args, "cid")
		if err != nil {
			return cmdFailure(condBadRequest, nil)
		}
		channel, chOK, err := argBytes(args, "channel")
		if err != nil || (!cidOK && !chOK) {
			return cmdFailure(condBadRequest, nil)
		}
		if cidOK {
			channel = ""
		}
		if err := c.api.Refresh(cid, channel); err != nil {
			return cmdEngineFailure(err)
		}
		return cmdSuccess(nil)
	case "get-zmq-uris":
		v := tnetstring.Dict{}
		for _, u := range []struct{ key, spec string }{
			{"command", c.uris.Command},
			{"publish-pull", c.uris.PublishPull},
			{"publish-sub", c.uris.PublishSub},
		} {
			if u.spec != "" {
				v = append(v, tnetstring.Field{Key: u.key, Value: []byte(u.spec)})
			}
		}
		return cmdSuccess(v)
	}
	return cmdFailure(condMethodNotFound, nil)
}

// argBytes reads an optional byte-string argument.
func argBytes(args tnetstring.Dict, key string) (string, bool, error) {
	v, ok := args.Get(key)
	if !ok {
		return "", false, nil
	}
	b, isBytes := v.([]byte)
	if !isBytes {
		return "", false, fmt.Errorf("%s is not a string", key)
	}
	return string(b), true, nil
}

func cmdSuccess(value any) tnetstring.Dict {
	return tnetstring.Dict{{Key: "success", Value: true}, {Key: "value", Value: value}}
}

// cmdFailure builds a failure reply; value nil leaves `value` out, as Pushpin
// does for conditions without a message.
func cmdFailure(cond string, value any) tnetstring.Dict {
	d := tnetstring.Dict{{Key: "success", Value: false}, {Key: "condition", Value: []byte(cond)}}
	if value != nil {
		d = append(d, tnetstring.Field{Key: "value", Value: value})
	}
	return d
}

// cmdEngineFailure maps an engine error to a ZRPC failure.
func cmdEngineFailure(err error) tnetstring.Dict {
	if errors.Is(err, ErrQueueFull) {
		return cmdFailure(condUnavailable, err.Error())
	}
	var ce conditioner
	if errors.As(err, &ce) {
		return cmdFailure(ce.Condition(), nil)
	}
	return cmdFailure(condInternal, err.Error())
}
