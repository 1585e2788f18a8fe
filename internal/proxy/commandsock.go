package proxy

import (
	"errors"
	"fmt"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// Proxy command socket ([proxy] command_spec, ROUTER, bind): the ZRPC
// server the handler calls (zmq-wire.md §4.1, §4.7). The engine goroutine
// answers, as it owns the stats connection table conncheck reads.
const (
	// hwmCommand bounds the command ROUTER; calls come from the handler,
	// one per conncheck or report.
	hwmCommand = 1000

	condBadFormat          = "bad-format"
	condMethodNotFound     = "method-not-found"
	condServiceUnavailable = "service-unavailable"
	condItemNotFound       = "item-not-found"
)

// zrpcReply builds the reply to request frame req arriving with envelope
// env (routing frames and the empty delimiter).
func zrpcReply(env [][]byte, id any, d tnetstring.Dict) zsock.Message {
	if id != nil {
		d = append(tnetstring.Dict{{Key: "id", Value: id}}, d...)
	}
	out := make(zsock.Message, 0, len(env)+1)
	out = append(out, env...)
	return append(out, tnetstring.MustEncode(d))
}

// parseCommand splits a ROUTER message [peer..., "", request] and decodes
// the request; it returns the envelope, the request id (nil if none), the
// method and the args.
func parseCommand(m zsock.Message) (env [][]byte, id any, method string, args tnetstring.Dict, err error) {
	at := -1
	for i, f := range m {
		if len(f) == 0 {
			at = i
			break
		}
	}
	if at < 1 || at != len(m)-2 {
		return nil, nil, "", nil, fmt.Errorf("bad envelope with %d parts", len(m))
	}
	req, err := tnetstring.DecodeDict(m[at+1])
	if err != nil {
		return nil, nil, "", nil, fmt.Errorf("decode request: %w", err)
	}
	if v, ok := req.Get("id"); ok {
		if _, isBytes := v.([]byte); !isBytes {
			return nil, nil, "", nil, errors.New("request id is not a string")
		}
		id = v
	}
	mb, ok := req.Bytes("method")
	if !ok {
		return nil, nil, "", nil, errors.New("request without method")
	}
	args = tnetstring.Dict{}
	if v, ok := req.Get("args"); ok {
		if args, ok = v.(tnetstring.Dict); !ok {
			return nil, nil, "", nil, errors.New("request args not a dict")
		}
	}
	return m[:at+1], id, string(mb), args, nil
}

// handleCommand answers one proxy-command call; the reply goes to send
// (false: its queue is full).
func (e *engine) handleCommand(m zsock.Message, send func(zsock.Message) bool) {
	env, id, method, args, err := parseCommand(m)
	if err != nil {
		e.log.Warn().Err(err).Str(logging.FieldSocket, "proxy-command").Msg("dropping bad request")
		return
	}
	if !send(zrpcReply(env, id, e.command(method, args))) {
		e.log.Warn().Str(logging.FieldSocket, "proxy-command").Str("method", method).Msg("reply queue full, reply dropped")
	}
}

func cmdOK(value any) tnetstring.Dict {
	return tnetstring.Dict{{Key: "success", Value: true}, {Key: "value", Value: value}}
}

func cmdFail(cond string) tnetstring.Dict {
	return tnetstring.Dict{{Key: "success", Value: false}, {Key: "condition", Value: []byte(cond)}}
}

// command runs one method as pushpin-proxy 1.36 does (src/proxy/engine.cpp
// command_requestReady).
func (e *engine) command(method string, args tnetstring.Dict) tnetstring.Dict {
	switch method {
	case "conncheck":
		if e.stats == nil {
			return cmdFail(condServiceUnavailable)
		}
		l, ok := args.List("ids")
		if !ok {
			return cmdFail(condBadFormat)
		}
		out := []any{}
		for _, v := range l {
			b, ok := v.([]byte)
			if !ok {
				return cmdFail(condBadFormat)
			}
			if e.stats.has(string(b)) {
				out = append(out, b)
			}
		}
		return cmdOK(out)
	case "refresh":
		if _, ok := args.Bytes("cid"); !ok {
			return cmdFail(condBadFormat)
		}
		// Only WebSocket-over-HTTP connections can be refreshed, and
		// tack-proxy has none yet.
		return cmdFail(condItemNotFound)
	case "report":
		if _, ok := args.Dict("stats"); !ok {
			return cmdFail(condBadFormat)
		}
		// The report feeds update checks, which tack never makes (as
		// Debian's Pushpin with updates_check=off).
		return cmdFail(condServiceUnavailable)
	}
	return cmdFail(condMethodNotFound)
}
