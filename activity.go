package activitystore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/activitystore/activitystore/internal/record"
)

// Size limits on the fields of an Activity, in bytes. Append refuses an
// activity that exceeds one.
const (
	// MaxLabelBytes bounds Type, UserID, Module, Action and Resource.
	MaxLabelBytes = 256
	// MaxAPICallBytes bounds APICall.
	MaxAPICallBytes = 1024
	// MaxDetailsBytes bounds Details.
	MaxDetailsBytes = 64 << 10
	// MaxDetailsDepth bounds how deep objects and arrays nest in Details,
	// the outer object counting as 1: deeper JSON breaks common decoders
	// (Python's json module among them) of the pages that carry it.
	MaxDetailsDepth = 64
	// MaxBatch is the most activities one Append call takes.
	MaxBatch = 100_000
	// MaxBatchBytes bounds the encoded size of one Append call's activities.
	MaxBatchBytes = 256 << 20
	// MaxFutureSkew is how far past the store's clock an event time may be.
	MaxFutureSkew = 24 * time.Hour
)

// Activity is one thing that happened on the platform: a user action, a system
// event or a resource operation.
type Activity struct {
	// ID is assigned by Append; Append ignores what the caller puts here.
	ID ID
	// Time is the event time, stored in UTC with nanosecond precision. A
	// zero Time means the time of the Append call. It may not be before 1970
	// nor more than MaxFutureSkew after the store's clock.
	Time time.Time
	// Type names what happened, e.g. "user.login", "model.deploy". Required.
	Type string
	// UserID is the actor; empty for system events.
	UserID string
	// Module is the part of the platform, e.g. "auth", "models", "lab".
	Module string
	// Action is the verb, e.g. "create", "deploy".
	Action string
	// APICall is the call that caused it, e.g. "POST /api/serving/deploy".
	// Optional and not indexed.
	APICall string
	// Resource is what it acted on, e.g. "model/42". Optional.
	Resource string
	// Details is a JSON object with anything else; empty means none.
	Details json.RawMessage
}

var emptyObject = json.RawMessage("{}")

// MarshalJSON writes the JSON form: id (UUID text), type, user_id, module,
// action, apicall, resource, details (an object, {} when empty), and the event
// time twice, as timestamp and created_at (RFC 3339 with nanoseconds, UTC).
func (a Activity) MarshalJSON() ([]byte, error) {
	return a.AppendJSON(nil), nil
}

// AppendJSON appends the JSON form that MarshalJSON writes to dst, on one
// line, and returns the extended buffer. It is the fast way to encode many
// activities: it allocates only to grow dst. Invalid UTF-8 in a field comes
// out as U+FFFD, as encoding/json writes it. Details are written as they are,
// so an Activity built by hand with Details that are not JSON (which Append
// refuses) gives output that is not JSON either; MarshalJSON, called through
// encoding/json, reports it.
func (a *Activity) AppendJSON(dst []byte) []byte {
	dst = append(dst, '{')
	if !a.ID.IsZero() {
		dst = append(dst, `"id":"`...)
		dst = a.ID.appendText(dst)
		dst = append(dst, `",`...)
	}
	dst = appendJSONField(dst, `"type":`, a.Type)
	dst = appendJSONField(dst, `,"user_id":`, a.UserID)
	dst = appendJSONField(dst, `,"module":`, a.Module)
	dst = appendJSONField(dst, `,"action":`, a.Action)
	dst = appendJSONField(dst, `,"apicall":`, a.APICall)
	dst = appendJSONField(dst, `,"resource":`, a.Resource)
	dst = append(dst, `,"details":`...)
	switch d := bytes.TrimSpace(a.Details); {
	case len(d) == 0:
		dst = append(dst, emptyObject...)
	case bytes.ContainsAny(d, "\n\r"):
		// Details are kept as given: take out line breaks between tokens
		// so that the form stays on one line.
		buf := bytes.NewBuffer(dst)
		if json.Compact(buf, d) == nil {
			dst = buf.Bytes()
		} else {
			dst = append(dst, d...)
		}
	default:
		dst = append(dst, d...)
	}
	if !a.Time.IsZero() {
		t := a.Time.UTC()
		dst = append(dst, `,"timestamp":"`...)
		dst = t.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, `","created_at":"`...)
		dst = t.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// appendJSONField appends name and s as a JSON string.
func appendJSONField(dst []byte, name, s string) []byte {
	dst = append(dst, name...)
	return appendJSONString(dst, s)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 as U+FFFD, and U+2028 and U+2029
// escaped so the text is also valid JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validate checks a against the documented rules; i is its index in the batch.
func (a *Activity) validate(i int, now time.Time) error {
	bad := func(field, format string, args ...any) error {
		return &ValidationError{Index: i, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if a.Type == "" {
		return bad("type", "is required")
	}
	labels := [...]struct {
		name, v string
		max     int
	}{
		{"type", a.Type, MaxLabelBytes},
		{"user_id", a.UserID, MaxLabelBytes},
		{"module", a.Module, MaxLabelBytes},
		{"action", a.Action, MaxLabelBytes},
		{"apicall", a.APICall, MaxAPICallBytes},
		{"resource", a.Resource, MaxLabelBytes},
	}
	for _, l := range labels {
		if len(l.v) > l.max {
			return bad(l.name, "is %d bytes, over the limit of %d", len(l.v), l.max)
		}
		if !utf8.ValidString(l.v) {
			return bad(l.name, "is not valid UTF-8")
		}
	}
	if len(a.Details) > MaxDetailsBytes {
		return bad("details", "is %d bytes, over the limit of %d", len(a.Details), MaxDetailsBytes)
	}
	if d := bytes.TrimLeft(a.Details, " \t\r\n"); len(d) > 0 {
		valid, depth, utf8OK := checkDetails(d)
		switch {
		case !valid || d[0] != '{':
			return bad("details", "is not a JSON object")
		case depth > MaxDetailsDepth:
			return bad("details", "nests objects and arrays deeper than %d levels", MaxDetailsDepth)
		case !utf8OK:
			return bad("details", "is not valid UTF-8")
		}
	}
	if !a.Time.IsZero() {
		if a.Time.Before(time.Unix(0, 0)) {
			return bad("time", "%s is before 1970", a.Time.Format(time.RFC3339Nano))
		}
		if a.Time.After(now.Add(MaxFutureSkew)) {
			return bad("time", "%s is more than %s in the future", a.Time.Format(time.RFC3339Nano), MaxFutureSkew)
		}
	}
	return nil
}

// recordVersion is the first byte of every record value.
const recordVersion = record.Version

// appendRecord appends the pebble value of a to dst. The ID and the time live
// in the key.
func appendRecord(dst []byte, a *Activity) []byte {
	return record.Append(dst, &record.Fields{
		Type: a.Type, UserID: a.UserID, Module: a.Module, Action: a.Action,
		APICall: a.APICall, Resource: a.Resource, Details: bytes.TrimSpace(a.Details),
	})
}

// decodeRecord fills a from the record value v of the activity id. The
// strings and Details of a alias v, which the caller must own and not change.
func decodeRecord(id ID, v []byte, a *Activity) error {
	var f record.Fields
	if err := record.Decode(v, &f); err != nil {
		return err
	}
	*a = Activity{ID: id, Time: id.Time(), Type: f.Type, UserID: f.UserID, Module: f.Module, Action: f.Action,
		APICall: f.APICall, Resource: f.Resource}
	if len(f.Details) > 0 {
		a.Details = json.RawMessage(f.Details)
	}
	return nil
}

// Size is about the bytes of memory a holds: its strings and details plus
// a fixed part. Readers that fetch activities in batches size them by it.
func (a *Activity) Size() int {
	return 96 + len(a.Type) + len(a.UserID) + len(a.Module) + len(a.Action) + len(a.APICall) + len(a.Resource) + len(a.Details)
}

// isJSONObject reports whether d, less surrounding white space, is a JSON
// object.
func isJSONObject(d []byte) bool {
	d = bytes.TrimSpace(d)
	return len(d) >= 2 && d[0] == '{' && validJSON(d)
}

// str returns a string sharing b's memory; b must never change afterwards.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// labels returns the indexed field values of a, in field order.
func (a *Activity) labels() [numFields]string {
	return [numFields]string{a.Type, a.UserID, a.Module, a.Action, a.Resource}
}
