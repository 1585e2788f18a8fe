package runner

import (
	"bufio"
	"io"
)

// MaxLine bounds one line of child output; longer lines are split.
const MaxLine = 64 << 10

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
