package testutil

import (
	"strings"
	"sync"
)

// SyncBuffer collects output (a logger's) written by one goroutine while
// the test reads it from another.
type SyncBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.WriteString(string(p))
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
