package handler

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"tack/internal/logging"
	"tack/internal/zsock"
	"tack/pkg/tnetstring"
)

// ZRPC conditions the handler answers with (zmq-wire.md §4.1).
const (
	condBadRequest     = "bad-request"
	condBadFormat      = "bad-format"
	condMethodNotFound = "method-not-found"
)

// zrpcRequest is one decoded ZRPC request with its ROUTER envelope.
type zrpcRequest struct {
	envelope [][]byte // frames up to and including the empty delimiter
	id       []byte
	from     []byte // 1.41 clients with an instance id set it
	method   string
	args     tnetstring.Dict
}

// parseZRPC splits [peer..., "", tnetstring] and decodes the request dict.
func parseZRPC(m zsock.Message) (*zrpcRequest, error) {
	at := -1
	for i, f := range m {
		if len(f) == 0 {
			at = i
			break
		}
	}
	if at < 1 || at != len(m)-2 {
		return nil, fmt.Errorf("bad envelope with %d parts", len(m))
	}
	d, err := tnetstring.DecodeDict(m[at+1])
	if err != nil {
		return nil, fmt.Errorf("decode request: %w", err)
	}
	r := &zrpcRequest{envelope: m[:at+1]}
	r.id, _ = d.Bytes("id")
	r.from, _ = d.Bytes("from")
	method, ok := d.Bytes("method")
	if !ok {
		return nil, errors.New("request without method")
	}
	r.method = string(method)
	if v, ok := d.Get("args"); ok {
		if args, ok := v.(tnetstring.Dict); ok {
			r.args = args
		}
	}
	return r, nil
}

// reply builds the ROUTER message answering r.
func (r *zrpcRequest) reply(d tnetstring.Dict) zsock.Message {
	out := make(zsock.Message, 0, len(r.envelope)+1)
	out = append(out, r.envelope...)
	return append(out, tnetstring.MustEncode(d))
}

// success answers r with value (nil encodes as tnetstring null).
func (r *zrpcRequest) success(value any) zsock.Message {
	return r.reply(tnetstring.Dict{
		{Key: "id", Value: r.id},
		{Key: "success", Value: true},
		{Key: "value", Value: value},
	})
}

// failure answers r with a condition and, when value is non-nil, a value.
func (r *zrpcRequest) failure(condition string, value any) zsock.Message {
	d := tnetstring.Dict{
		{Key: "id", Value: r.id},
		{Key: "success", Value: false},
		{Key: "condition", Value: condition},
	}
	if value != nil {
		d = append(d, tnetstring.Field{Key: "value", Value: value})
	}
	return r.reply(d)
}

// serveInspect answers the proxy's inspect calls with `no-proxy: false`
// and, for requests that may share one backend request, a sharing key
// (inspect.go), as Pushpin's handler does (zmq-wire.md §4.2).
func serveInspect(ctx context.Context, so *zsock.Socket, shareAll bool, log zerolog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-so.Recv():
			if !ok {
				return errors.New("inspect socket closed")
			}
			req, err := parseZRPC(m)
			if err != nil {
				log.Warn().Err(err).Str(logging.FieldSocket, "inspect").Msg("dropping bad request")
				continue
			}
			var reply zsock.Message
			if req.method == "inspect" {
				if v, err := inspectValue(req.args, shareAll); err != nil {
					reply = req.failure(condBadRequest, nil)
				} else {
					reply = req.success(v)
				}
			} else {
				reply = req.failure(condMethodNotFound, nil)
			}
			if !so.TrySend(reply) {
				log.Warn().Str(logging.FieldSocket, "inspect").Msg("inspect reply queue full, reply dropped")
			}
		}
	}
}
