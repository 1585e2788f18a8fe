package main

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"time"
)

// The floor part measures what this machine allows at all for two of the
// GRIP figures, with the bench's own client code against a null streaming
// server in this process (no proxy, no handler, no ZeroMQ): how many held
// streams it opens per second, and how long one line written to every
// held stream takes to reach the last client. A suite cannot beat these;
// they put the targets in proportion.

// nullServer answers every request with a chunked 200 and the first line
// the bench expects, then holds the connection; write sends a line to all.
type nullServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newNullServer() (*nullServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &nullServer{ln: ln}
	go s.accept()
	return s, nil
}

func (s *nullServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			br := bufio.NewReader(c)
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					c.Close()
					return
				}
				if l == "\r\n" {
					break
				}
			}
			first := "[stream opened]\n"
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(first), first)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// write sends one chunk to every held connection, from one goroutine each
// (as a server with a goroutine per connection would).
func (s *nullServer) write(line string) {
	chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", len(line), line))
	s.mu.Lock()
	conns := append([]net.Conn(nil), s.conns...)
	s.mu.Unlock()
	for _, c := range conns {
		go c.Write(chunk)
	}
}

func (s *nullServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
}

func runFloor() error {
	o := gripOpts
	n := min(o.n, 9000) // client and server sockets share this process's 20,000 files
	s, err := newNullServer()
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Printf("\nfloor: the bench's client against a null streaming server in-process, %d streams (%d opens in flight)\n", n, o.inflight)
	g, el, err := openGroup(s.ln.Addr().String(), "floor", n, o.inflight)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer g.close()
	fmt.Printf("  null server: %d streams held in %v (%.0f/s)\n", g.size(), el.Round(time.Millisecond), float64(g.size())/el.Seconds())
	var runs []float64
	for k := 0; k < 3; k++ {
		col := newCollector("fl", g.size())
		g.cur.Store(col)
		t0 := time.Now()
		s.write(col.line(k))
		if _, ok := col.wait(int64(g.size()), 10*time.Second); !ok {
			return fmt.Errorf("floor: one write to %d streams stalled", g.size())
		}
		runs = append(runs, float64(time.Duration(col.last.Load()-t0.UnixNano()))/float64(time.Millisecond))
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("  null server: one line -> %d streams: %s ms\n", g.size(), fmtList(runs))
	return nil
}
