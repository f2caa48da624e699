package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/activitystore/activitystore"
)

// fieldError says what is wrong with one field of an activity's JSON.
type fieldError struct {
	field  string // empty when the activity as a whole is wrong
	reason string
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.reason
	}
	return e.field + " " + e.reason
}

// wireActivity is the JSON form of an activitystore.Activity as a POST takes
// it, decoded strictly: an unknown or ill-typed field is an error that names
// it.
type wireActivity struct {
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

// wireFields are the JSON names of wireActivity, for error messages.
const wireFields = "id, type, user_id, module, action, apicall, resource, details, time, timestamp, created_at"

// decodeActivity decodes the JSON object raw as an activity. The event time
// is the first present of time, timestamp and created_at; without one it is
// zero (the time of the Append).
func decodeActivity(raw []byte) (activitystore.Activity, error) {
	var a activitystore.Activity
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return a, &fieldError{reason: "is not a JSON object"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var wa wireActivity
	if err := dec.Decode(&wa); err != nil {
		return a, jsonFieldError(err)
	}
	if err := expectEOF(dec); err != nil {
		return a, &fieldError{reason: "is followed by more data on its line: " + err.Error()}
	}
	a = activitystore.Activity{
		Type: wa.Type, UserID: wa.UserID, Module: wa.Module, Action: wa.Action,
		APICall: wa.APICall, Resource: wa.Resource,
	}
	if wa.ID != "" {
		id, err := activitystore.ParseID(wa.ID)
		if err != nil {
			return a, &fieldError{field: "id", reason: fmt.Sprintf("%q is not an activity ID", wa.ID)}
		}
		a.ID = id
	}
	if d := bytes.TrimSpace(wa.Details); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
		a.Details = d
	}
	for _, t := range []struct {
		name string
		v    *string
	}{{"time", wa.Time}, {"timestamp", wa.Timestamp}, {"created_at", wa.CreatedAt}} {
		if t.v == nil {
			continue
		}
		at, err := time.Parse(time.RFC3339, *t.v)
		if err != nil {
			return a, &fieldError{field: t.name, reason: fmt.Sprintf("%q is not an RFC 3339 time, e.g. 2025-01-02T15:04:05Z", *t.v)}
		}
		a.Time = at.UTC()
		break
	}
	return a, nil
}

// jsonFieldError turns an error of the strict decoding of an activity into a
// fieldError naming the field, when there is one.
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &fieldError{field: te.Field, reason: fmt.Sprintf("must be a string, not a JSON %s", te.Value)}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, uerr := strconv.Unquote(name); uerr == nil {
			name = f
		}
		return &fieldError{field: name, reason: "is not a field of an activity; the fields are " + wireFields}
	}
	return &fieldError{reason: "is not valid JSON: " + err.Error()}
}
