package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storedActivities returns n activities as a store gives them back.
func storedActivities(t *testing.T, n int) []activitystore.Activity {
	t.Helper()
	s, err := activitystore.Open(filepath.Join(t.TempDir(), "s"), nil)
	require.NoError(t, err)
	defer s.Close()
	acts := make([]activitystore.Activity, n)
	for i := range acts {
		acts[i] = activitystore.Activity{Type: fmt.Sprintf("t.%d", i), UserID: "u", Module: "m", Action: "a",
			Resource: "r/1", Details: json.RawMessage(`{"k": [1, 2]}`), Time: time.Now().Add(-time.Duration(i) * time.Second)}
	}
	_, err = s.Append(context.Background(), acts...)
	require.NoError(t, err)
	page, err := s.Query().All(context.Background())
	require.NoError(t, err)
	return page.Activities
}

func TestTailReadsTheEventStream(t *testing.T) {
	acts := storedActivities(t, 3)
	var query url.Values
	var auth, accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.Equal(t, "/v1/tail", r.URL.Path)
		query, auth, accept = r.URL.Query(), r.Header.Get("Authorization"), r.Header.Get("Accept")
		if auth != "Bearer tok" && auth != "Bearer tok-error" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"missing or unknown bearer token"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, ": ping\n\n")
		for i, a := range acts {
			b, err := json.MarshalIndent(a, "", " ") // data on several lines
			if !assert.NoError(t, err) {
				return
			}
			fmt.Fprintf(w, "id: c%d\nevent: activity\n", i)
			for l := range strings.Lines(string(b)) {
				fmt.Fprintf(w, "data: %s", l)
			}
			fmt.Fprint(w, "\n\n")
			if i == 0 {
				fmt.Fprint(w, "id: r1\nevent: lagged\ndata: {\"missed\":7,\"resume\":\"r1\"}\n\n")
			}
		}
		if auth == "Bearer tok-error" {
			fmt.Fprint(w, "event: error\ndata: {\"error\":\"tail: the store is closed\"}\n\n")
		}
	}))
	defer srv.Close()

	r := runCmd(t, "", "tail", "--server", srv.URL, "--token", "tok", "--type", "a", "--type", "b", "--system",
		"--since", "2026-01-01", "--limit", "3", "--output", "json")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "Bearer tok", auth)
	assert.Equal(t, "text/event-stream", accept)
	assert.Equal(t, []string{"a", "b"}, query["type"])
	assert.Equal(t, []string{""}, query["user"], "--system is an empty user")
	assert.Equal(t, "2026-01-01T00:00:00Z", query.Get("since"))
	assert.Equal(t, "3", query.Get("limit"))
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 3)
	for i, l := range lines {
		var a activitystore.Activity
		require.NoError(t, json.Unmarshal([]byte(l), &a), l)
		assert.Equal(t, acts[i].ID, a.ID)
		assert.JSONEq(t, `{"k":[1,2]}`, string(a.Details))
	}
	assert.Equal(t, "activitystore: tail fell behind: missed 7 activities; going on with the oldest one kept\n", r.stderr)

	// The table: a header, then a line per activity.
	r = runCmd(t, "", "tail", "--server", srv.URL+"/", "--token", "tok", "--limit", "2")
	require.Equal(t, 0, r.code, r.stderr)
	lines = strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, tableHeader, strings.Fields(lines[0]))
	assert.Equal(t, acts[1].ID.String(), strings.Fields(lines[2])[6])

	// A stream that ends before the limit, or with an error, is a failure.
	r = runCmd(t, "", "tail", "--server", srv.URL, "--token", "tok", "--limit", "5")
	assert.Equal(t, 1, r.code)
	assert.True(t, strings.HasSuffix(r.stderr, "\nactivitystore: tail: the server ended the stream after 3 of 5 activities\n"), r.stderr)
	r = runCmd(t, "", "tail", "--server", srv.URL, "--token", "tok-error")
	assert.Equal(t, 1, r.code)
	assert.True(t, strings.HasSuffix(r.stderr, "\nactivitystore: tail: the server: tail: the store is closed\n"), r.stderr)

	// An error answer is one line.
	r = runCmd(t, "", "tail", "--server", srv.URL, "--token", "nope")
	requireOneLineError(t, r)
	assert.Equal(t, "activitystore: tail: the server answered 401 Unauthorized: missing or unknown bearer token\n", r.stderr)
}
