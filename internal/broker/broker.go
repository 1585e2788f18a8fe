package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/rs/zerolog"
)

// Defaults and bounds.
const (
	// DefaultXSubSpec and DefaultXPubSpec are the bind specs when none are
	// given.
	DefaultXSubSpec = "tcp://*:5570"
	DefaultXPubSpec = "tcp://*:5571"
	// DefaultHWM is the XPUB send / XSUB receive HWM in messages (Pushpin's
	// SUB input HWM). Beyond it the XPUB drops for the slow instance only,
	// as ZeroMQ pub-sub does.
	DefaultHWM = 101000
	// linger bounds how long closing waits for unsent messages.
	linger = 500 * time.Millisecond
	// controlSpec is the inproc endpoint of the proxy's control pair.
	controlSpec = "inproc://tack-broker-control"
)

// Config is a broker's bind specs and HWM.
type Config struct {
	XSub []string // publishers connect here
	XPub []string // instances' SUB inputs connect here
	HWM  int
}

// Broker forwards between its XSUB and XPUB sockets until its context ends.
type Broker struct {
	cfg Config
	log zerolog.Logger
}

// New checks cfg.
func New(cfg Config, log zerolog.Logger) (*Broker, error) {
	if len(cfg.XSub) == 0 || len(cfg.XPub) == 0 {
		return nil, errors.New("broker: need at least one xsub and one xpub spec")
	}
	if cfg.HWM <= 0 {
		cfg.HWM = DefaultHWM
	}
	return &Broker{cfg: cfg, log: log}, nil
}

// sockets holds the broker's sockets; open closes what it opened on error.
type sockets struct {
	xsub, xpub, ctrl, steer *zmq.Socket
}

func (s *sockets) close() {
	for _, so := range []*zmq.Socket{s.xsub, s.xpub, s.ctrl, s.steer} {
		if so != nil {
			_ = so.Close()
		}
	}
}

func (b *Broker) open(zctx *zmq.Context) (*sockets, error) {
	s := &sockets{}
	mk := func(typ zmq.Type, name string, binds []string) (*zmq.Socket, error) {
		so, err := zctx.NewSocket(typ)
		if err != nil {
			return nil, fmt.Errorf("%s socket: %w", name, err)
		}
		err = errors.Join(so.SetLinger(linger), so.SetSndhwm(b.cfg.HWM), so.SetRcvhwm(b.cfg.HWM))
		for _, spec := range binds {
			if err == nil {
				if err = so.Bind(spec); err != nil {
					err = fmt.Errorf("%s bind %s: %w", name, spec, err)
				}
			}
		}
		if err != nil {
			_ = so.Close()
			return nil, err
		}
		return so, nil
	}
	var err error
	if s.xsub, err = mk(zmq.XSUB, "xsub", b.cfg.XSub); err != nil {
		return nil, err
	}
	if s.xpub, err = mk(zmq.XPUB, "xpub", b.cfg.XPub); err != nil {
		s.close()
		return nil, err
	}
	if s.ctrl, err = mk(zmq.PAIR, "control", []string{controlSpec}); err != nil {
		s.close()
		return nil, err
	}
	if s.steer, err = mk(zmq.PAIR, "steer", nil); err == nil {
		err = s.steer.Connect(controlSpec)
	}
	if err != nil {
		s.close()
		return nil, fmt.Errorf("control pair: %w", err)
	}
	return s, nil
}

// Run binds the sockets and forwards until ctx is done; every socket is
// closed and the ZeroMQ context terminated when it returns. One goroutine
// (the proxy's) owns the XSUB, the XPUB and the control socket; Run's own
// goroutine owns the steering end and sends TERMINATE on shutdown.
func (b *Broker) Run(ctx context.Context) error {
	zctx, err := zmq.NewContext()
	if err != nil {
		return fmt.Errorf("zmq context: %w", err)
	}
	s, err := b.open(zctx)
	if err != nil {
		_ = zctx.Term()
		return err
	}
	b.log.Info().Strs("xsub", b.cfg.XSub).Strs("xpub", b.cfg.XPub).Int("hwm", b.cfg.HWM).Msg("broker forwarding")
	done := make(chan error, 1)
	xsub, xpub, ctrl := s.xsub, s.xpub, s.ctrl
	go func() {
		err := zmq.ProxySteerable(xsub, xpub, nil, ctrl)
		done <- errors.Join(err, xsub.Close(), xpub.Close(), ctrl.Close())
	}()
	var perr error
	select {
	case <-ctx.Done():
		if _, err := s.steer.Send("TERMINATE", 0); err != nil {
			b.log.Error().Err(err).Msg("broker: cannot stop the proxy")
		}
		perr = <-done
	case perr = <-done:
		perr = fmt.Errorf("broker proxy stopped unexpectedly: %w", errors.Join(perr, errors.New("proxy returned")))
	}
	err = errors.Join(perr, s.steer.Close(), zctx.Term())
	if ctx.Err() != nil && err == nil {
		b.log.Info().Msg("broker stopped")
	}
	return err
}
