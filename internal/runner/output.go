package runner

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
)

// MaxLine bounds one line of child output; longer lines are split.
const MaxLine = 64 << 10

// logSink is the runner's log output, shared by the runner's own logger
// and merged child lines so that lines never interleave. It can reopen
// its file on SIGHUP.
type logSink struct {
	mu   sync.Mutex // guards w and f
	w    io.Writer
	f    *os.File // nil when writing to stderr
	path string
}

func newLogSink(path string) (*logSink, error) {
	s := &logSink{w: os.Stderr, path: path}
	if path != "" {
		if err := s.Reopen(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// Reopen reopens the log file (no-op on stderr).
func (s *logSink) Reopen() error {
	if s.path == "" {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	s.mu.Lock()
	old := s.f
	s.f, s.w = f, f
	s.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

func (s *logSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f, s.w = nil, io.Discard
	return err
}

// prefixLine inserts "[name] " after the timestamp of a Pushpin-format
// line ("[LEVEL] date time msg"): Pushpin 1.36 inserts it after the third
// space of a line that starts with '[' and leaves other lines alone
// (checked: "[WARN] a b c d" → "[WARN] a b [proxy] c d", "[WARN] x"
// unchanged).
func prefixLine(line []byte, name string) []byte {
	if len(line) == 0 || line[0] != '[' {
		return line
	}
	spaces := 0
	for i, c := range line {
		if c != ' ' {
			continue
		}
		spaces++
		if spaces == 3 {
			out := make([]byte, 0, len(line)+len(name)+3)
			out = append(out, line[:i+1]...)
			out = append(out, '[')
			out = append(out, name...)
			out = append(out, "] "...)
			return append(out, line[i+1:]...)
		}
	}
	return line
}

// copyLines reads r line by line into w, prefixing each with name when
// prefix is set, until r fails (EOF or closed). A line longer than
// MaxLine is cut into several lines; a last line without '\n' gets one.
func copyLines(r io.Reader, w io.Writer, name string, prefix bool) {
	br := bufio.NewReaderSize(r, MaxLine)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			line := make([]byte, len(chunk), len(chunk)+1)
			copy(line, chunk) // chunk aliases the reader's buffer
			if prefix {
				line = prefixLine(line, name)
			}
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			_, _ = w.Write(line)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}
