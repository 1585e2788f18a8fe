package config

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// generalSection holds keys that appear before any [section] header, as
// QSettings files them under [General].
const generalSection = "General"

// entry is one key as read from a file, before substitutions.
type entry struct {
	values []string // one element for a scalar, two or more for a list
	isList bool     // an unquoted comma was seen
	file   string
	line   int
}

// parsed is the content of one file: section → key → entry.
type parsed struct {
	sections map[string]map[string]*entry
	order    []string // sections in first-seen order
	warnings []string
}

// parseINI reads data with QSettings' INI rules, as Pushpin 1.36 (Qt 5)
// applies them. Checked against the real runner (see doc.go):
//   - a line whose first non-blank character is ';' or '#' is a comment;
//   - an unquoted ';' ends the value (comment), '#' inside a value does not;
//   - unquoted leading and trailing blanks are dropped, inner ones kept;
//   - "..." quotes protect ',', ';', blanks and newlines; text after the
//     closing quote is appended after skipping blanks;
//   - an unquoted ',' makes the value a list; blanks around items drop;
//   - backslash escapes: \a \b \f \n \r \t \v \" \? \' \\, \x<hex...>,
//     \<octal...> (both greedy), backslash-newline continues the line,
//     any other escaped character is dropped together with the backslash;
//   - section names are trimmed and, like keys, percent-decoded and
//     case-sensitive; an unterminated "[name" still opens section "name";
//   - a repeated key keeps the last value; a repeated section merges.
func parseINI(name string, data []byte) *parsed {
	p := &parsed{sections: map[string]map[string]*entry{}}
	section := generalSection
	line := 1
	i := 0
	n := len(data)
	warn := func(l int, format string, args ...any) {
		p.warnings = append(p.warnings, fmt.Sprintf("%s:%d: %s", name, l, fmt.Sprintf(format, args...)))
	}
	skipToEOL := func() {
		for i < n && data[i] != '\n' && data[i] != '\r' {
			i++
		}
	}
	for i < n {
		c := data[i]
		switch c {
		case '\n':
			line++
			i++
			continue
		case '\r':
			if i+1 < n && data[i+1] == '\n' {
				i++
			}
			line++
			i++
			continue
		case ' ', '\t', '\f', '\v':
			i++
			continue
		case ';', '#':
			skipToEOL()
			continue
		case '[':
			start := i + 1
			skipToEOL()
			text := string(data[start:i])
			end := strings.IndexByte(text, ']')
			if end < 0 {
				warn(line, "section header has no closing ']'")
			} else {
				if rest := strings.TrimSpace(text[end+1:]); rest != "" && rest[0] != ';' && rest[0] != '#' {
					warn(line, "text after section header ignored")
				}
				text = text[:end]
			}
			section = percentDecode(strings.TrimSpace(text))
			if _, ok := p.sections[section]; !ok {
				p.sections[section] = map[string]*entry{}
				p.order = append(p.order, section)
			}
			continue
		}
		// key=value line
		keyLine := line
		start := i
		for i < n && data[i] != '=' && data[i] != '\n' && data[i] != '\r' {
			i++
		}
		if i >= n || data[i] != '=' {
			warn(keyLine, "line has no '=', ignored")
			continue
		}
		key := percentDecode(strings.TrimSpace(string(data[start:i])))
		i++ // '='
		e, lines, unterminated := parseValue(data, &i)
		if unterminated {
			warn(keyLine, "unterminated quote")
		}
		line += lines
		if key == "" {
			warn(keyLine, "empty key, ignored")
			continue
		}
		e.file, e.line = name, keyLine
		sec, ok := p.sections[section]
		if !ok {
			sec = map[string]*entry{}
			p.sections[section] = sec
			p.order = append(p.order, section)
		}
		if old, ok := sec[key]; ok {
			warn(keyLine, "[%s] %s repeats line %d; the last value wins", section, key, old.line)
		}
		sec[key] = e
	}
	return p
}

// parseValue reads a value starting at data[*i] up to the end of its
// logical line. It returns the entry, how many newlines it consumed
// (continuations and quoted newlines) and whether a quote was left open.
func parseValue(data []byte, i *int) (e *entry, lines int, unterminated bool) {
	n := len(data)
	e = &entry{}
	var cur []byte
	protected := 0 // cur[:protected] is never trimmed (quoted or escaped text)
	inQuote := false
	skipBlanks := func() {
		for *i < n && (data[*i] == ' ' || data[*i] == '\t') {
			*i++
		}
	}
	trim := func() {
		j := len(cur)
		for j > protected && (cur[j-1] == ' ' || cur[j-1] == '\t') {
			j--
		}
		cur = cur[:j]
	}
	skipBlanks()
	for *i < n {
		c := data[*i]
		if inQuote {
			switch c {
			case '"':
				inQuote = false
				*i++
				protected = len(cur)
				skipBlanks()
			case '\\':
				lines += unescape(data, i, &cur)
				protected = len(cur)
			default:
				if c == '\n' || (c == '\r' && (*i+1 >= n || data[*i+1] != '\n')) {
					lines++
				}
				cur = append(cur, c)
				*i++
				protected = len(cur)
			}
			continue
		}
		switch c {
		case '\n', '\r':
			goto done
		case ';':
			for *i < n && data[*i] != '\n' && data[*i] != '\r' {
				*i++
			}
			goto done
		case '"':
			inQuote = true
			*i++
			trim()
			protected = len(cur)
		case '\\':
			lines += unescape(data, i, &cur)
			protected = len(cur)
		case ',':
			trim()
			e.isList = true
			e.values = append(e.values, string(cur))
			cur, protected = nil, 0
			*i++
			skipBlanks()
		default:
			cur = append(cur, c)
			*i++
		}
	}
done:
	trim()
	e.values = append(e.values, string(cur))
	return e, lines, inQuote
}

// unescape handles the backslash at data[*i], appending its meaning to
// cur. It returns 1 when it consumed a line break (continuation).
func unescape(data []byte, i *int, cur *[]byte) int {
	n := len(data)
	*i++ // backslash
	if *i >= n {
		return 0
	}
	c := data[*i]
	*i++
	switch c {
	case 'a':
		*cur = append(*cur, '\a')
	case 'b':
		*cur = append(*cur, '\b')
	case 'f':
		*cur = append(*cur, '\f')
	case 'n':
		*cur = append(*cur, '\n')
	case 'r':
		*cur = append(*cur, '\r')
	case 't':
		*cur = append(*cur, '\t')
	case 'v':
		*cur = append(*cur, '\v')
	case '"', '?', '\'', '\\':
		*cur = append(*cur, c)
	case 'x':
		v, ok := 0, false
		for *i < n && hexVal(data[*i]) >= 0 {
			v = v*16 + hexVal(data[*i])
			if v > utf8.MaxRune {
				v = utf8.RuneError
			}
			ok = true
			*i++
		}
		if ok {
			*cur = utf8.AppendRune(*cur, rune(v))
		}
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v := int(c - '0')
		for *i < n && data[*i] >= '0' && data[*i] <= '7' {
			v = v*8 + int(data[*i]-'0')
			if v > utf8.MaxRune {
				v = utf8.RuneError
			}
			*i++
		}
		*cur = utf8.AppendRune(*cur, rune(v))
	case '\n', '\r':
		// Line continuation; \r\n and \n\r count as one break.
		if *i < n && (data[*i] == '\n' || data[*i] == '\r') && data[*i] != c {
			*i++
		}
		return 1
	default:
		// Unknown escape: Qt drops the character.
	}
	return 0
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// percentDecode undoes the %XX escaping QSettings applies to keys and
// section names; malformed escapes stay as they are.
func percentDecode(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && hexVal(s[i+1]) >= 0 && hexVal(s[i+2]) >= 0 {
			b.WriteByte(byte(hexVal(s[i+1])<<4 | hexVal(s[i+2])))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// keys returns the keys of one section in sorted order.
func (p *parsed) keys(section string) []string {
	m := map[string]bool{}
	for k := range p.sections[section] {
		m[k] = true
	}
	return sortedKeys(m)
}
