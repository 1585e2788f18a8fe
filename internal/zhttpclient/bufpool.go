package zhttpclient

import "sync"

// Read buffers come from size classes so that a session blocked in a read
// (an idle streaming response) holds a small buffer while a bulk download
// reads large ones. A buffer travels with its event to the engine, which
// returns it after encoding the packet.
const (
	minBufClass = 4 << 10   // smallest read buffer
	maxBufClass = 256 << 10 // largest pooled buffer; larger reads allocate
	// InitialReadSize is the first read size of a streamed response body;
	// it doubles while reads fill the buffer, up to buffer_size.
	InitialReadSize = 16 << 10
)

type bufPool struct {
	classes []sync.Pool // classes[i] holds *[]byte of cap minBufClass<<(2*i)
}

func newBufPool() *bufPool {
	p := &bufPool{}
	for size := minBufClass; size <= maxBufClass; size <<= 2 {
		sz := size
		p.classes = append(p.classes, sync.Pool{New: func() any {
			b := make([]byte, sz)
			return &b
		}})
	}
	return p
}

// get returns a buffer of length n.
func (p *bufPool) get(n int) *[]byte {
	size, i := minBufClass, 0
	for size < n && i < len(p.classes)-1 {
		size <<= 2
		i++
	}
	if n > size {
		b := make([]byte, n)
		return &b
	}
	b := p.classes[i].Get().(*[]byte)
	*b = (*b)[:n]
	return b
}

// put returns a buffer obtained from get.
func (p *bufPool) put(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	size := minBufClass
	for i := range p.classes {
		if c == size {
			*b = (*b)[:c]
			p.classes[i].Put(b)
			return
		}
		size <<= 2
	}
}
