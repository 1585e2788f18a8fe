package routes

import "strings"

// prop is one name or name=value item of a section.
type prop struct {
	name     string
	value    string
	hasValue bool
}

// section is one space-separated part of a line: a value and its props.
type section struct {
	value string
	props []prop
}

// lexError is a tokenizer failure; its text is the Diag message.
type lexError string

func (e lexError) Error() string { return string(e) }

// lexLine splits one routes-file line into sections. It returns nil
// sections and no error for blank and comment lines.
//
// Only the space character separates sections (a tab is part of a value,
// as in Pushpin 1.36); commas separate items; double quotes protect spaces,
// commas and '#', and inside them only \\ and \" are escapes. Quoting does
// not protect '=': an item is unquoted first, then split at its first '='.
func lexLine(line string) ([]section, error) {
	var (
		secs    []section
		items   []string // items of the section being read
		cur     strings.Builder
		inSec   bool // a section has started
		inQuote bool
	)
	endItem := func() {
		items = append(items, cur.String())
		cur.Reset()
	}
	endSection := func() error {
		endItem()
		s, err := makeSection(items)
		if err != nil {
			return err
		}
		secs = append(secs, s)
		items = nil
		inSec = false
		return nil
	}

	for i := 0; i < len(line); i++ {
		c := line[i]
		if inQuote {
			switch c {
			case '"':
				inQuote = false
			case '\\':
				if i+1 >= len(line) {
					return nil, lexError(msgUnterminatedEscape)
				}
				i++
				if n := line[i]; n == '\\' || n == '"' {
					cur.WriteByte(n)
				} else {
					return nil, lexError(msgUnexpectedEscape + string(runeAt(line, i)))
				}
			default:
				cur.WriteByte(c)
			}
			continue
		}
		switch c {
		case '#':
			i = len(line) // the rest is a comment
			continue
		case ' ':
			if inSec {
				if err := endSection(); err != nil {
					return nil, err
				}
			}
			continue
		case ',':
			inSec = true
			endItem()
			continue
		case '"':
			inQuote = true
		default:
			cur.WriteByte(c)
		}
		inSec = true
	}
	if inQuote {
		return nil, lexError(msgUnterminatedQuote)
	}
	if inSec {
		if err := endSection(); err != nil {
			return nil, err
		}
	}
	return secs, nil
}

// makeSection turns the comma-separated items of a section into a value
// and props. When the first item contains '=', the value is empty and that
// item is the first prop (Pushpin: "id=foo target:80").
func makeSection(items []string) (section, error) {
	var s section
	rest := items
	if !strings.Contains(items[0], "=") {
		s.value = items[0]
		rest = items[1:]
	}
	for _, it := range rest {
		if it == "" {
			return section{}, lexError(msgExpectingProp)
		}
		var p prop
		if k, v, ok := strings.Cut(it, "="); ok {
			p = prop{name: k, value: v, hasValue: true}
		} else {
			p = prop{name: it}
		}
		if p.name == "" {
			return section{}, lexError(msgEmptyPropName)
		}
		s.props = append(s.props, p)
	}
	return s, nil
}

// runeAt returns the (possibly multi-byte) character starting at line[i].
func runeAt(line string, i int) rune {
	for _, r := range line[i:] {
		return r
	}
	return 0
}
