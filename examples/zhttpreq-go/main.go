// Command zhttpreq-go is a backend with no web server: Pushpin's README
// example in Go. It connects a REP socket to a `zhttpreq/` route target and
// answers each request with a tnetstring zhttp response. A request for
// /stream is held open by the proxy (Grip-Hold: stream) and receives what
// is published to the channel; any other path gets a plain answer.
//
// Routes file:   * zhttpreq/tcp://127.0.0.1:10000
// Run:           go run ./examples/zhttpreq-go -connect tcp://127.0.0.1:10000
// Publish:       bin/tack publish test "hello"
package main

import (
	"flag"
	"fmt"
	"log"
	"net/url"

	zmq "github.com/pebbe/zmq4"

	"tack/pkg/zhttp"
)

func main() {
	connect := flag.String("connect", "tcp://127.0.0.1:10000", "the proxy's zhttpreq spec")
	channel := flag.String("channel", "test", "GRIP channel of /stream")
	flag.Parse()

	sock, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		log.Fatal(err)
	}
	defer sock.Close()
	if err := sock.SetLinger(0); err != nil {
		log.Fatal(err)
	}
	if err := sock.Connect(*connect); err != nil {
		log.Fatal(err)
	}
	log.Printf("answering zhttpreq requests from %s", *connect)
	for {
		msg, err := sock.RecvBytes(0)
		if err != nil {
			log.Fatal(err)
		}
		// The message is "T" + a tnetstring dict (zhttp request).
		req, err := zhttp.Parse(msg)
		if err != nil {
			log.Printf("bad request: %v", err)
			// A REP socket must answer before it can receive again.
			if _, err := sock.Send("", 0); err != nil {
				log.Fatal(err)
			}
			continue
		}
		resp := answer(req, *channel)
		if _, err := sock.SendBytes(resp.Encode(), 0); err != nil {
			log.Fatal(err)
		}
	}
}

// answer builds the response to one request; it carries the request's id.
func answer(req *zhttp.Packet, channel string) *zhttp.Packet {
	resp := zhttp.New()
	resp.ID = req.ID
	resp.Code = 200
	resp.Reason = "OK"
	path := ""
	if u, err := url.Parse(req.URI); err == nil {
		path = u.Path
	}
	if path == "/stream" {
		resp.Headers = []zhttp.Header{
			{Name: "Grip-Hold", Value: "stream"},
			{Name: "Grip-Channel", Value: channel},
			{Name: "Content-Type", Value: "text/plain"},
		}
		resp.Body = []byte("welcome to the stream\n")
		return resp
	}
	resp.Headers = []zhttp.Header{{Name: "Content-Type", Value: "text/plain"}}
	resp.Body = []byte(fmt.Sprintf("hello there (%s %s, %d body bytes)\n", req.Method, path, len(req.Body)))
	return resp
}
