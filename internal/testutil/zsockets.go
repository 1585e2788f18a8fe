package testutil

import (
	"context"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"tack/internal/zsock"
)

// Sockets opens the given ZeroMQ sockets on a context of their own (a fake
// peer of the process under test), runs each with its owner goroutine and
// closes them, then the context, at cleanup. They are returned in order.
func Sockets(t testing.TB, opts ...zsock.Options) []*zsock.Socket {
	t.Helper()
	zctx, err := zsock.NewContext()
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("side", "fake").Logger()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var out []*zsock.Socket
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		zctx.Close()
	})
	for _, o := range opts {
		so, err := zctx.Open(o, log)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, so)
		wg.Go(func() { _ = so.Run(ctx) })
	}
	return out
}
