package activitystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// activityJSON is the JSON form, as encoding/json writes it: the
// reference for AppendJSON. It carries the platform's existing activity
// fields (id, user_id, module, apicall, action, created_at) and the seed
// documentation's (type, timestamp, details).
type activityJSON struct {
	ID        string          `json:"id,omitempty"`
	Type      string          `json:"type"`
	UserID    string          `json:"user_id"`
	Module    string          `json:"module"`
	Action    string          `json:"action"`
	APICall   string          `json:"apicall"`
	Resource  string          `json:"resource"`
	Details   json.RawMessage `json:"details"`
	Timestamp *time.Time      `json:"timestamp,omitempty"`
	CreatedAt *time.Time      `json:"created_at,omitempty"`
	Time      *time.Time      `json:"time,omitempty"`
}

// TestAppendJSON: the hand-written encoder gives the JSON that encoding/json
// gives for the same fields, for awkward strings and details too.
func TestAppendJSON(t *testing.T) {
	at := time.Date(2026, 5, 4, 3, 2, 1, 500, time.FixedZone("x", 3600))
	cases := []Activity{
		{},
		{Type: "t"},
		{ID: makeID(at.UnixNano(), 7), Time: at, Type: "model.deploy", UserID: "u-1", Module: "models", Action: "deploy",
			APICall: "POST /api/serving/deploy", Resource: "model/42", Details: json.RawMessage(`{"gpu":2, "msg":"a b"}`)},
		{Type: "q\"uote\\back\nline\rret\ttab\x00nul\x1fus<>&", UserID: "é✓😀", Module: "bad\xffutf8\xc3", Action: "\u2028\u2029"},
		{Type: "t", Details: json.RawMessage("{\n  \"a\": [1,\r\n 2]\n}")},
		{Type: "t", Details: json.RawMessage("  ")},
	}
	for _, a := range cases {
		got := a.AppendJSON([]byte("prefix"))
		require.Equal(t, "prefix", string(got[:6]))
		got = got[6:]
		require.True(t, json.Valid(got), "%s", got)
		require.NotContains(t, string(got), "\n")

		// The reference: encoding/json on the same fields.
		j := activityJSON{Type: a.Type, UserID: a.UserID, Module: a.Module, Action: a.Action,
			APICall: a.APICall, Resource: a.Resource, Details: a.Details}
		if !a.ID.IsZero() {
			j.ID = a.ID.String()
		}
		if len(trimSpace(j.Details)) == 0 {
			j.Details = emptyObject
		}
		if !a.Time.IsZero() {
			u := a.Time.UTC()
			j.Timestamp, j.CreatedAt = &u, &u
		}
		want, err := json.Marshal(j)
		require.NoError(t, err)
		var w, g any
		require.NoError(t, json.Unmarshal(want, &w))
		require.NoError(t, json.Unmarshal(got, &g))
		require.Equal(t, w, g)

		// And it reads back.
		var back Activity
		require.NoError(t, json.Unmarshal(got, &back))
		require.Equal(t, a.ID, back.ID)
		require.True(t, a.Time.Equal(back.Time))
	}
	a := cases[2]
	buf := make([]byte, 0, 1024)
	require.Zero(t, testing.AllocsPerRun(100, func() { buf = a.AppendJSON(buf[:0]) }))
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// unmarshalJSONReference is UnmarshalJSON on encoding/json: the reference
// the hand-written decoder is checked against. It reads the JSON form strictly, so that a misspelt field is
// not silently dropped: an unknown field, a field of the wrong JSON type, a
// time that is not RFC 3339 or an id that is not an activity ID is a
// *ValidationError (errors.Is ErrInvalidActivity) naming the field, with
// Index 0. The event time may be named time, timestamp or created_at (the
// first present, in that order, wins); absent, Time stays zero, which Append
// takes as now. A null field is taken as absent.
func (a *Activity) unmarshalJSONReference(b []byte) error {
	bad := func(field, format string, args ...any) error {
		return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	b = bytes.Trim(b, " \t\r\n")
	if len(b) == 0 || b[0] != '{' {
		return bad("", "is not a JSON object")
	}
	var j struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		UserID    string          `json:"user_id"`
		Module    string          `json:"module"`
		Action    string          `json:"action"`
		APICall   string          `json:"apicall"`
		Resource  string          `json:"resource"`
		Details   json.RawMessage `json:"details"`
		Time      *string         `json:"time"`
		Timestamp *string         `json:"timestamp"`
		CreatedAt *string         `json:"created_at"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return bad(te.Field, "must be a string, not a JSON %s", te.Value)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			if f, err := strconv.Unquote(name); err == nil {
				name = f
			}
			return bad(name, "is not a field of an activity; the fields are %s", jsonFields)
		}
		return bad("", "is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("", "is followed by more data")
	}
	*a = Activity{
		Type: j.Type, UserID: j.UserID, Module: j.Module, Action: j.Action,
		APICall: j.APICall, Resource: j.Resource,
	}
	if d := bytes.TrimSpace(j.Details); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		if d[0] != '{' {
			return bad("details", "must be a JSON object, not %.20s", d)
		}
		a.Details = append(json.RawMessage(nil), d...)
	}
	if j.ID != "" {
		id, err := ParseID(j.ID)
		if err != nil {
			return bad("id", "%q is not an activity ID", j.ID)
		}
		a.ID = id
	}
	first := ""
	for _, t := range []struct {
		name string
		v    *string
	}{{"time", j.Time}, {"timestamp", j.Timestamp}, {"created_at", j.CreatedAt}} {
		if t.v == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, *t.v)
		if err != nil {
			return bad(t.name, "%q is not an RFC 3339 time, e.g. 2026-01-02T15:04:05Z", *t.v)
		}
		if at.Before(time.Unix(0, 0)) {
			return bad(t.name, "%s is before 1970", *t.v)
		}
		if first != "" && !at.Equal(a.Time) {
			return bad(t.name, "disagrees with %s", first)
		}
		if first == "" {
			first, a.Time = t.name, at.UTC()
		}
	}
	return nil
}

// jsonCases are inputs for the decoder tests and the fuzz corpus.
var jsonCases = []string{
	`{}`,
	`{"type":"t"}`,
	` {"type" : "model.deploy", "user_id":"u-1","module":"models","action":"deploy","apicall":"POST /x","resource":"model/42","details":{"a":[1,2,{"b":null}],"s":"x\"}"}, "time":"2026-01-02T03:04:05.123456789+02:00"} `,
	`{"type":"q\"uote\\back\/\b\f\n\r\t\u00e9\u2028\ud83d\ude00\ud800x\udc00"}`,
	`{"type":"é✓😀"}`,
	`{"id":"01a21755-5cc0-7000-8000-000000000003","type":"t"}`,
	`{"id":"bad","type":"t"}`,
	`{"type":"t","modul":"auth"}`,
	`{"type":"t","Type":"u"}`,
	`{"type":7}`,
	`{"type":true}`,
	`{"type":["a"]}`,
	`{"type":{"a":1}}`,
	`{"type":null,"user_id":null,"details":null,"time":null}`,
	`{"type":"t","details":"x"}`,
	`{"type":"t","details":[1]}`,
	`{"type":"t","details":{"a":}}`,
	`{"type":"t","details":{"a":1}`,
	`{"type":"t","timestamp":"yesterday"}`,
	`{"type":"t","time":12}`,
	`{"type":"t","timestamp":"2026-01-02T03:04:05Z","created_at":"2026-01-02T03:04:05Z"}`,
	`{"type":"t","timestamp":"2026-01-02T03:04:05Z","created_at":"2026-01-02T03:04:06Z"}`,
	`{"type":"t","time":"2026-01-02T03:04:05Z","timestamp":"garbage"}`,
	`["t"]`,
	`{"type":"t"} {"type":"u"}`,
	`{"type":"t",}`,
	`{"type":"t"`,
	`{"type":"t` + "\n" + `"}`,
	`{"type":"a","type":"b"}`,
	`{"type":"t","x":-1.5e3}`,
	`{"type":"t","x":01}`,
	`{"type":"t","x":tru}`,
	`{"type":"\x"}`,
	`{"type":"\u12"}`,
	"",
	"   ",
	`null`,
}

// TestUnmarshalJSON checks the hand-written decoder against the one on
// encoding/json: the same activities, and errors for the same inputs, on the
// same field.
func TestUnmarshalJSON(t *testing.T) {
	for _, in := range jsonCases {
		checkDecoders(t, []byte(in))
	}
}

func checkDecoders(t *testing.T, in []byte) {
	t.Helper()
	var got, want Activity
	gerr := got.UnmarshalJSON(in)
	werr := want.unmarshalJSONReference(in)
	if gerr == nil {
		// What the fast decoder takes, the reference takes the same way.
		require.NoError(t, werr, "%q", in)
		require.Equal(t, want, got, "%q", in)
		return
	}
	var ve *ValidationError
	require.ErrorAs(t, gerr, &ve, "%q", in)
	require.ErrorIs(t, gerr, ErrInvalidActivity)
	if werr == nil {
		// The reference is looser on two points only: it matches field
		// names whatever their case, and it takes invalid UTF-8.
		require.True(t, !utf8.Valid(in) || ve.Field != "" && strings.ToLower(ve.Field) != ve.Field || ve.Field != "" && !strings.Contains(jsonFields, ve.Field),
			"%q: refused (%v) but the reference takes it", in, gerr)
		return
	}
	var wve *ValidationError
	require.ErrorAs(t, werr, &wve)
	if l := strings.ToLower(ve.Field); l != ve.Field && slices.Contains(strings.Split(jsonFields, ", "), l) {
		return // the reference took this field by another case, and failed later
	}
	// Both refuse. Of several faults they may report different ones first;
	// when both name a field, it is the same.
	if wve.Field != "" && ve.Field != "" {
		require.Equal(t, wve.Field, ve.Field, "%q: %v vs %v", in, gerr, werr)
	}
}

func FuzzUnmarshalJSON(f *testing.F) {
	for _, in := range jsonCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkDecoders(t, in)
	})
}
