package activitystore

import "unicode/utf8"

// validJSON reports whether b is one JSON value with optional surrounding
// white space, exactly as encoding/json.Valid does, in one pass with no
// allocation for nesting up to 64 levels. Append checks every activity's
// details with it.
func validJSON(b []byte) bool {
	v := jsonValidator{b: b}
	return v.run()
}

// checkDetails walks d once and reports whether it is one JSON value (as
// validJSON), how deep its objects and arrays nest (0 for a scalar, 1 for an
// object of scalars; meaningful only when valid), and whether its strings
// are valid UTF-8.
func checkDetails(d []byte) (valid bool, depth int, utf8OK bool) {
	v := jsonValidator{b: d, utf8OK: true}
	valid = v.run()
	return valid, v.depth, v.utf8OK
}

// jsonValidator walks a JSON text.
type jsonValidator struct {
	b      []byte
	i      int
	depth  int  // the deepest nesting of objects and arrays seen
	utf8OK bool // no string seen so far holds invalid UTF-8
}

func (v *jsonValidator) space() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *jsonValidator) run() bool {
	// The open containers, '{' or '[', innermost last.
	var small [64]byte
	stack := small[:0]
	for {
		// A value is expected here.
		v.space()
		if v.i >= len(v.b) {
			return false
		}
		switch c := v.b[v.i]; {
		case c == '{' || c == '[':
			end := byte('}')
			if c == '[' {
				end = ']'
			}
			v.i++
			v.depth = max(v.depth, len(stack)+1)
			v.space()
			if v.i < len(v.b) && v.b[v.i] == end {
				v.i++
				break
			}
			stack = append(stack, c)
			if c == '{' && !v.key() {
				return false
			}
			continue
		case c == '"':
			if !v.str() {
				return false
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if !v.num() {
				return false
			}
		case c == 't':
			if !v.lit("true") {
				return false
			}
		case c == 'f':
			if !v.lit("false") {
				return false
			}
		case c == 'n':
			if !v.lit("null") {
				return false
			}
		default:
			return false
		}
		// A value ended: close containers, or go on to the next element.
		for {
			v.space()
			if len(stack) == 0 {
				return v.i == len(v.b)
			}
			if v.i >= len(v.b) {
				return false
			}
			top, c := stack[len(stack)-1], v.b[v.i]
			v.i++
			switch {
			case c == ',' && top == '{':
				if !v.key() {
					return false
				}
			case c == ',':
			case (c == '}' && top == '{') || (c == ']' && top == '['):
				stack = stack[:len(stack)-1]
				continue
			default:
				return false
			}
			break
		}
	}
}

// key reads an object's member name and its colon.
func (v *jsonValidator) key() bool {
	v.space()
	if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
		return false
	}
	v.space()
	if v.i >= len(v.b) || v.b[v.i] != ':' {
		return false
	}
	v.i++
	return true
}

// str reads a string, from its opening quote.
func (v *jsonValidator) str() bool {
	v.i++
	for v.i < len(v.b) {
		c := v.b[v.i]
		v.i++
		switch {
		case c == '"':
			return true
		case c < 0x20:
			return false
		case c >= utf8.RuneSelf:
			// Outside strings no byte of 0x80 or above is valid JSON, so
			// checking the strings checks the whole text.
			r, size := utf8.DecodeRune(v.b[v.i-1:])
			if r == utf8.RuneError && size == 1 {
				v.utf8OK = false
			}
			v.i += size - 1
		case c == '\\':
			if v.i >= len(v.b) {
				return false
			}
			e := v.b[v.i]
			v.i++
			switch e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if v.i+4 > len(v.b) {
					return false
				}
				for _, h := range v.b[v.i : v.i+4] {
					if !isHex(h) {
						return false
					}
				}
				v.i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (v *jsonValidator) digits() int {
	n := 0
	for v.i < len(v.b) && v.b[v.i] >= '0' && v.b[v.i] <= '9' {
		v.i++
		n++
	}
	return n
}

// num reads a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *jsonValidator) num() bool {
	if v.b[v.i] == '-' {
		v.i++
	}
	if v.i >= len(v.b) {
		return false
	}
	if v.b[v.i] == '0' {
		v.i++
	} else if v.digits() == 0 {
		return false
	}
	if v.i < len(v.b) && v.b[v.i] == '.' {
		v.i++
		if v.digits() == 0 {
			return false
		}
	}
	if v.i < len(v.b) && (v.b[v.i] == 'e' || v.b[v.i] == 'E') {
		v.i++
		if v.i < len(v.b) && (v.b[v.i] == '+' || v.b[v.i] == '-') {
			v.i++
		}
		if v.digits() == 0 {
			return false
		}
	}
	return true
}

func (v *jsonValidator) lit(w string) bool {
	if len(v.b)-v.i < len(w) || string(v.b[v.i:v.i+len(w)]) != w {
		return false
	}
	v.i += len(w)
	return true
}
