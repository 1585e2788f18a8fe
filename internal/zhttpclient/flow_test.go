package zhttpclient

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	w := newWindow(5)
	ctx := context.Background()
	if n, _ := w.take(ctx, 3); n != 3 {
		t.Fatalf("take = %d", n)
	}
	if n, _ := w.take(ctx, 10); n != 2 {
		t.Fatalf("take = %d", n)
	}
	got := make(chan int64, 1)
	go func() {
		n, _ := w.take(ctx, 100)
		got <- n
	}()
	select {
	case n := <-got:
		t.Fatalf("take returned %d without credit", n)
	case <-time.After(50 * time.Millisecond):
	}
	w.add(7)
	if n := <-got; n != 7 {
		t.Fatalf("take = %d", n)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	cancel(ErrCanceled)
	if _, err := w.take(cctx, 1); !errors.Is(err, ErrCanceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestBodyPipe(t *testing.T) {
	notified := make(chan struct{}, 10)
	p := newBodyPipe(func() { notified <- struct{}{} }, nil)
	p.write([]byte("hello "), false)
	p.write([]byte("world"), false)
	buf := make([]byte, 8)
	n, err := p.Read(buf)
	if err != nil || string(buf[:n]) != "hello wo" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	<-notified
	n, _ = p.Read(buf)
	if string(buf[:n]) != "rld" {
		t.Fatalf("read %q", buf[:n])
	}
	select {
	case <-notified:
		t.Fatal("second notification before takeConsumed")
	default:
	}
	if c := p.takeConsumed(); c != 11 {
		t.Fatalf("consumed %d", c)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Read(buf)
		done <- err
	}()
	p.write(nil, true)
	if err := <-done; err != io.EOF {
		t.Fatalf("err = %v", err)
	}
	p2 := newBodyPipe(nil, nil)
	go func() {
		_, err := p2.Read(buf)
		done <- err
	}()
	p2.abort(ErrCanceled)
	if err := <-done; !errors.Is(err, ErrCanceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestBufPool(t *testing.T) {
	p := newBufPool()
	for _, n := range []int{1, 4096, 4097, 200000, 262144, 300000} {
		b := p.get(n)
		if len(*b) != n {
			t.Fatalf("get(%d) len %d", n, len(*b))
		}
		p.put(b)
	}
}
