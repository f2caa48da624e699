package activitystore

import (
	"encoding/json"
	"testing"
	"time"

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
