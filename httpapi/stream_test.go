package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/activitystore/activitystore"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// exportedIDs decodes an NDJSON export and returns the IDs, in order.
func exportedIDs(t *testing.T, body []byte) []string {
	t.Helper()
	ids := []string{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a activitystore.Activity
		require.NoError(t, json.Unmarshal(sc.Bytes(), &a), "%s", sc.Bytes())
		require.False(t, a.ID.IsZero())
		ids = append(ids, a.ID.String())
	}
	require.NoError(t, sc.Err())
	return ids
}

func TestExport(t *testing.T) {
	s, c := setup(t)
	resp := c.send(t.Context(), http.MethodGet, "/v1/export", "")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
	require.Empty(t, body)

	// More than a page and more than a flush, in two types.
	acts := make([]activitystore.Activity, 1200)
	for i := range acts {
		acts[i] = act("a", "u-1", i)
		if i%2 == 1 {
			acts[i].Type = "b"
		}
	}
	ids := seed(t, s, acts...)
	var wantA []string
	for i := len(ids) - 1; i >= 0; i-- {
		if i%2 == 0 {
			wantA = append(wantA, ids[i])
		}
	}

	status, body := c.do(http.MethodGet, "/v1/export?type=a", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, wantA, exportedIDs(t, body), "every match once, newest first")

	status, body = c.do(http.MethodGet, "/v1/export", "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, reversed(ids), exportedIDs(t, body))

	since := url.QueryEscape(base.Add(1000 * time.Minute).Format(time.RFC3339))
	status, body = c.do(http.MethodGet, "/v1/export?type=a&since="+since, "")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, wantA[:100], exportedIDs(t, body))
}

func TestTail(t *testing.T) {
	_, c := setup(t)
	tail := c.tailStream("/v1/tail?type=a&type=c")

	// The stream is open once the headers are in: appends from now on
	// reach it.
	ids := c.postIDs(`[{"type":"a","user_id":"u-1"},{"type":"b"},{"type":"c","details":{"n":1}}]`, "application/json")
	ids2 := c.postIDs("{\"type\":\"a\"}\n{\"type\":\"a\"}\n", "application/x-ndjson")

	a, cur1 := tail.activity()
	require.Equal(t, ids[0], a.ID.String())
	require.Equal(t, "a", a.Type)
	require.Equal(t, "u-1", a.UserID)
	a, cur2 := tail.activity()
	require.Equal(t, ids[2], a.ID.String())
	require.JSONEq(t, `{"n":1}`, string(a.Details))
	a, _ = tail.activity()
	require.Equal(t, ids2[0], a.ID.String())
	a, _ = tail.activity()
	require.Equal(t, ids2[1], a.ID.String())
	require.NotEqual(t, cur1, cur2)
}

func TestTailLimit(t *testing.T) {
	s, c := setup(t)
	tail := c.tailStream("/v1/tail?limit=2")
	want := seed(t, s, act("a", "u-1", 0), act("b", "u-1", 1), act("c", "u-1", 2))
	a, _ := tail.activity()
	require.Equal(t, want[0], a.ID.String())
	a, _ = tail.activity()
	require.Equal(t, want[1], a.ID.String())
	_, err := tail.next()
	require.ErrorIs(t, err, io.EOF, "the stream ends after limit activities")
}

func TestTailResume(t *testing.T) {
	s, c := setup(t)
	tail := c.tailStream("/v1/tail")
	ids := seed(t, s, act("a", "u-1", 0), act("a", "u-1", 1), act("a", "u-1", 2))
	_, cur0 := tail.activity()
	_, cur1 := tail.activity()
	tail.resp.Body.Close()

	// Resuming after the first event gives the rest, then what comes next.
	more := seed(t, s, act("a", "u-1", 3))
	resumed := c.tailStream("/v1/tail", "Last-Event-ID", cur0)
	var got []string
	for range 3 {
		a, _ := resumed.activity()
		got = append(got, a.ID.String())
	}
	require.Equal(t, []string{ids[1], ids[2], more[0]}, got)
	later := seed(t, s, act("a", "u-1", 4))
	a, _ := resumed.activity()
	require.Equal(t, later[0], a.ID.String())

	// from does the same; Last-Event-ID wins over it.
	viaFrom := c.tailStream("/v1/tail?limit=1&from=" + url.QueryEscape(cur0))
	a, _ = viaFrom.activity()
	require.Equal(t, ids[1], a.ID.String())
	both := c.tailStream("/v1/tail?limit=1&from="+url.QueryEscape(cur0), "Last-Event-ID", cur1)
	a, _ = both.activity()
	require.Equal(t, ids[2], a.ID.String())

	c.errorOf("/v1/tail?from=garbage", http.StatusBadRequest, "from")
	status, body := c.do(http.MethodGet, "/v1/tail", "", "Last-Event-ID", "garbage")
	requireError(t, status, body, http.StatusBadRequest, "Last-Event-ID")
}

func TestTailLagged(t *testing.T) {
	s := openStore(t, &activitystore.Options{TailBacklog: 4})
	c := serve(t, s, Options{})
	tail := c.tailStream("/v1/tail")
	acts := make([]activitystore.Activity, 10)
	for i := range acts {
		acts[i] = act("a", "u-1", i)
	}
	ids := seed(t, s, acts...) // one batch: six leave the backlog before the tail reads

	ev := tail.event()
	require.Equal(t, "lagged", ev.event, "%+v", ev)
	var lag struct {
		Missed int64  `json:"missed"`
		Resume string `json:"resume"`
	}
	require.NoError(t, json.Unmarshal([]byte(ev.data), &lag))
	require.Equal(t, int64(6), lag.Missed)
	require.NotEmpty(t, lag.Resume)
	require.Equal(t, lag.Resume, ev.id, "a reconnecting client resumes where the tail goes on")
	for _, want := range ids[6:] {
		a, _ := tail.activity()
		require.Equal(t, want, a.ID.String())
	}
}

func TestTailHeartbeat(t *testing.T) {
	defer func(d time.Duration) { heartbeatInterval = d }(heartbeatInterval)
	heartbeatInterval = time.Millisecond
	s := openStore(t, nil)
	c := serve(t, s, Options{})
	tail := c.tailStream("/v1/tail")
	ev, err := tail.next()
	require.NoError(t, err)
	require.Equal(t, sseEvent{comments: []string{"ping"}}, ev)
	ids := seed(t, s, act("a", "u-1", 0))
	for {
		ev, err := tail.next()
		require.NoError(t, err)
		if ev.event != "" {
			require.Equal(t, "activity", ev.event)
			require.Equal(t, ids[0], mustActivity(t, ev.data).ID.String())
			return
		}
		require.Equal(t, []string{"ping"}, ev.comments)
	}
}

func mustActivity(t *testing.T, data string) activitystore.Activity {
	t.Helper()
	var a activitystore.Activity
	require.NoError(t, json.Unmarshal([]byte(data), &a))
	return a
}

func TestTailStoreCloses(t *testing.T) {
	s, c := setup(t)
	tail := c.tailStream("/v1/tail")
	require.NoError(t, s.Close())
	ev := tail.event()
	require.Equal(t, "error", ev.event)
	var e apiErr
	require.NoError(t, json.Unmarshal([]byte(ev.data), &e))
	assert.Contains(t, e.Error, "closed")
	_, err := tail.next()
	require.ErrorIs(t, err, io.EOF)
}

func TestTailClientGoesAway(t *testing.T) {
	s, c := setup(t)
	tail := c.tailStream("/v1/tail")
	seed(t, s, act("a", "u-1", 0))
	tail.activity()
	require.NoError(t, tail.resp.Body.Close())
	// The handler ends: the server's Close at the end of the test would
	// wait for it forever otherwise. A new tail still works.
	tail = c.tailStream("/v1/tail?limit=1")
	ids := seed(t, s, act("a", "u-1", 1))
	a, _ := tail.activity()
	require.Equal(t, ids[0], a.ID.String())
}

func TestAppendEvent(t *testing.T) {
	got := appendEvent(nil, "c1", "activity", []byte("{\"a\":1}\n{\"b\":2}"))
	require.Equal(t, "id: c1\nevent: activity\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n", string(got))
	got = appendEvent(nil, "", "error", []byte(`{}`))
	require.Equal(t, "event: error\ndata: {}\n\n", string(got))
}

func TestStreamsHead(t *testing.T) {
	s, c := setup(t)
	seed(t, s, act("a", "u-1", 0))
	for path, ctype := range map[string]string{"/v1/tail": "text/event-stream", "/v1/export": "application/x-ndjson"} {
		resp := c.send(t.Context(), http.MethodHead, path, "")
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		require.Equal(t, ctype, resp.Header.Get("Content-Type"), path)
	}
	resp := c.send(t.Context(), http.MethodHead, "/v1/tail?user=", "")
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "an admin may tail system events")
	resp = c.as(aliceToken).send(t.Context(), http.MethodHead, "/v1/tail?user=bob", "")
	resp.Body.Close()
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
}
