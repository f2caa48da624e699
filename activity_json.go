package activitystore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// UnmarshalJSON reads the JSON form, strictly, so that a misspelt field is
// not silently dropped: an unknown field (names match exactly), a field of
// the wrong JSON type, a time that is not RFC 3339 or an id that is not an
// activity ID is a *ValidationError (errors.Is ErrInvalidActivity) naming
// the field, with Index 0. Invalid UTF-8 in a string becomes U+FFFD, as
// encoding/json does it. The event time may be named time, timestamp or
// created_at; when more than one is given they must agree (the JSON form
// has both timestamp and created_at); absent, Time stays zero, which Append
// takes as now; a time before 1970, year 1 included, is refused. A null
// field is taken as absent; of a field given twice, the last wins.
//
// It decodes without reflection, in one pass over b but for Details (and
// unknown fields' values), which are checked with json.Valid.
func (a *Activity) UnmarshalJSON(b []byte) error {
	d := jsonDecoder{b: b}
	var out Activity
	var times [3]string // time, timestamp, created_at
	var hasTime [3]bool
	var id string
	var semErr error // the first field with a wrong name or type; syntax errors come first
	fail := func(err error) {
		if semErr == nil {
			semErr = err
		}
	}
	d.space()
	if !d.eat('{') {
		return jsonErr("", "is not a JSON object")
	}
	d.space()
	if !d.eat('}') {
		for {
			d.space()
			if d.peek() != '"' {
				return d.syntax("a field name")
			}
			key, err := d.key()
			if err != nil {
				return err
			}
			d.space()
			if !d.eat(':') {
				return d.syntax("':'")
			}
			d.space()
			var dst *string
			t := -1
			switch key {
			case "id":
				dst = &id
			case "type":
				dst = &out.Type
			case "user_id":
				dst = &out.UserID
			case "module":
				dst = &out.Module
			case "action":
				dst = &out.Action
			case "apicall":
				dst = &out.APICall
			case "resource":
				dst = &out.Resource
			case "time":
				t = 0
			case "timestamp":
				t = 1
			case "created_at":
				t = 2
			case "details":
				raw, err := d.value()
				if err != nil {
					return err
				}
				switch raw[0] {
				case 'n':
					out.Details = nil
				case '{':
					out.Details = append(json.RawMessage(nil), raw...)
				default:
					fail(jsonErr("details", "must be a JSON object, not %.20s", raw))
				}
			default:
				if _, err := d.value(); err != nil {
					return err
				}
				fail(jsonErr(key, "is not a field of an activity; the fields are %s", jsonFields))
			}
			if dst != nil || t >= 0 {
				if d.peek() == 'n' {
					if _, err := d.value(); err != nil {
						return err
					}
					if t >= 0 {
						hasTime[t] = false
					} else {
						*dst = ""
					}
				} else if d.peek() != '"' {
					raw, err := d.value()
					if err != nil {
						return err
					}
					fail(jsonErr(key, "must be a string, not a JSON %s", jsonKind(raw[0])))
				} else {
					v, err := d.str()
					if err != nil {
						return err
					}
					if t >= 0 {
						times[t], hasTime[t] = v, true
					} else {
						*dst = v
					}
				}
			}
			d.space()
			if d.eat(',') {
				continue
			}
			if d.eat('}') {
				break
			}
			return d.syntax("',' or '}'")
		}
	}
	if semErr != nil {
		return semErr
	}
	d.space()
	if d.i != len(d.b) {
		return jsonErr("", "is followed by more data")
	}
	if id != "" {
		x, err := ParseID(id)
		if err != nil {
			return jsonErr("id", "%s is not an activity ID", clipped(id))
		}
		out.ID = x
	}
	first := ""
	for k, name := range [3]string{"time", "timestamp", "created_at"} {
		if !hasTime[k] {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, times[k])
		if err != nil {
			return jsonErr(name, "%s is not an RFC 3339 time, e.g. 2026-01-02T15:04:05Z", clipped(times[k]))
		}
		if at.Before(time.Unix(0, 0)) {
			// Here, not in Append: a zero Time means "no time given", and
			// a time given as year 1 must not become the time of the call.
			return jsonErr(name, "%s is before 1970", clipped(times[k]))
		}
		if first != "" && !at.Equal(out.Time) {
			return jsonErr(name, "%s disagrees with %s %s", times[k], first, out.Time.Format(time.RFC3339Nano))
		}
		if first == "" {
			first, out.Time = name, at.UTC()
		}
	}
	*a = out
	return nil
}

// jsonFields are the names UnmarshalJSON takes, for its errors.
const jsonFields = "id, type, user_id, module, action, apicall, resource, details, time, timestamp, created_at"

func jsonErr(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// jsonKind names the JSON type of a value that starts with c.
func jsonKind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// jsonDecoder reads JSON tokens from b.
type jsonDecoder struct {
	b []byte
	i int
}

func (d *jsonDecoder) peek() byte {
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *jsonDecoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *jsonDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *jsonDecoder) syntax(want string) error {
	if d.i >= len(d.b) {
		return jsonErr("", "is not valid JSON: it ends where %s should be", want)
	}
	return jsonErr("", "is not valid JSON: %q at offset %d where %s should be", d.b[d.i], d.i, want)
}

// skipStr passes over a string, d.b[d.i] being its opening quote, and
// returns the bounds of its content. plain is false when the content holds
// escapes or bytes outside ASCII and so needs decoding.
func (d *jsonDecoder) skipStr() (start, end int, plain bool, err error) {
	d.i++
	start, plain = d.i, true
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			return start, d.i - 1, plain, nil
		case c == '\\':
			plain = false
			d.i += 2
			continue
		case c < 0x20:
			return 0, 0, false, d.syntax("a string character (control characters must be escaped)")
		case c >= utf8.RuneSelf:
			plain = false
		}
		d.i++
	}
	return 0, 0, false, d.syntax("the end of a string")
}

// str reads a string, d.b[d.i] being its opening quote.
func (d *jsonDecoder) str() (string, error) {
	start, end, plain, err := d.skipStr()
	if err != nil || plain {
		return string(d.b[start:end]), err
	}
	d.i = start
	return d.strEscaped(start)
}

// key reads a field name without allocating for the names UnmarshalJSON
// knows.
func (d *jsonDecoder) key() (string, error) {
	start, end, plain, err := d.skipStr()
	if err != nil {
		return "", err
	}
	if !plain {
		d.i = start
		return d.strEscaped(start)
	}
	k := d.b[start:end]
	for _, name := range jsonFieldNames {
		if string(k) == name {
			return name, nil
		}
	}
	return string(k), nil
}

// jsonFieldNames are the field names UnmarshalJSON takes.
var jsonFieldNames = [...]string{"id", "type", "user_id", "module", "action", "apicall", "resource", "details", "time", "timestamp", "created_at"}

// strEscaped finishes a string that holds escapes, from start.
func (d *jsonDecoder) strEscaped(start int) (string, error) {
	buf := append(make([]byte, 0, d.i-start+16), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(buf), nil
		case c < 0x20:
			return "", d.syntax("a string character (control characters must be escaped)")
		case c >= utf8.RuneSelf:
			// Invalid UTF-8 becomes U+FFFD, byte by byte, as in
			// encoding/json.
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				buf = utf8.AppendRune(buf, utf8.RuneError)
			} else {
				buf = append(buf, d.b[d.i:d.i+size]...)
			}
			d.i += size
			continue
		case c != '\\':
			buf = append(buf, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return "", d.syntax("an escape")
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.syntax("four hex digits")
			}
			if utf16.IsSurrogate(r) {
				// A pair makes one rune; a lone half is U+FFFD, as in
				// encoding/json.
				save := d.i
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					if r2, ok := d.hex4(); ok {
						if p := utf16.DecodeRune(r, r2); p != utf8.RuneError {
							buf = utf8.AppendRune(buf, p)
							continue
						}
					}
				}
				d.i = save
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		default:
			d.i--
			return "", d.syntax("an escape")
		}
	}
	return "", d.syntax("the end of a string")
}

func (d *jsonDecoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(v), true
}

// value skips one JSON value and returns its bytes, checked: it finds the
// end of an object or array by balance, then checks it with json.Valid.
func (d *jsonDecoder) value() ([]byte, error) {
	start := d.i
	switch c := d.peek(); {
	case c == '"':
		if _, _, _, err := d.skipStr(); err != nil {
			return nil, err
		}
	case c == '{' || c == '[':
		depth := 0
		for d.i < len(d.b) {
			switch d.b[d.i] {
			case '"':
				if _, _, _, err := d.skipStr(); err != nil {
					return nil, err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			d.i++
			if depth == 0 {
				if !json.Valid(d.b[start:d.i]) {
					return nil, jsonErr("", "is not valid JSON: malformed object or array at offset %d", start)
				}
				return d.b[start:d.i], nil
			}
		}
		return nil, d.syntax("the end of an object or array")
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(d.b[d.i:], []byte(lit)) {
				d.i += len(lit)
				return d.b[start:d.i], nil
			}
		}
		return nil, d.syntax("a value")
	case c == '-' || (c >= '0' && c <= '9'):
		for d.i < len(d.b) && bytes.IndexByte([]byte("+-.0123456789eE"), d.b[d.i]) >= 0 {
			d.i++
		}
		if !json.Valid(d.b[start:d.i]) {
			return nil, jsonErr("", "is not valid JSON: %q is not a number", d.b[start:d.i])
		}
	default:
		return nil, d.syntax("a value")
	}
	return d.b[start:d.i], nil
}
