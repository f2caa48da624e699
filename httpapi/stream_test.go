package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
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
	s := openStore(t, nil)
	h := newHandler(s, Options{})
	h.heartbeat = time.Millisecond
	c := serveHandler(t, h)
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
	s := openStore(t, nil)
	h := newHandler(s, Options{})
	watch := watchStreams(h)
	c := serveHandler(t, h)
	tail := c.tailStream("/v1/tail")
	seed(t, s, act("a", "u-1", 0))
	tail.activity()
	require.NoError(t, tail.resp.Body.Close())
	// The handler ends, and with it the goroutine that reads the tail.
	watch.waitEnd(t, "tail after the client went away")
	// A new tail still works.
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

	// HEAD answers the status GET would.
	for _, path := range []string{"/v1/export", "/v1/tail"} {
		resp = c.send(t.Context(), http.MethodHead, path+"?since=2025-01-02T00:00:00Z&until=2025-01-01T00:00:00Z", "")
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, path)
	}
	require.NoError(t, s.Close())
	for _, path := range []string{"/v1/export", "/v1/tail"} {
		resp = c.send(t.Context(), http.MethodHead, path, "")
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
	}
}

// A principal that is not an admin tails only its own activities, whoever
// appends them.
func TestTailNonAdminSeesOwn(t *testing.T) {
	_, admin := setup(t)
	tail := admin.as(aliceToken).tailStream("/v1/tail")
	ids := admin.postIDs(`[{"type":"a","user_id":"bob"},{"type":"a","user_id":"alice"},{"type":"a"},
		{"type":"b","user_id":"bob"},{"type":"b","user_id":"alice"}]`, "application/json")
	admin.postIDs(`{"type":"c","user_id":"bob"}`, "application/json")
	more := admin.postIDs(`{"type":"c","user_id":"alice"}`, "application/json")
	for _, want := range []string{ids[1], ids[4], more[0]} {
		a, _ := tail.activity()
		require.Equal(t, want, a.ID.String(), "in order, and none of bob's nor system events")
		require.Equal(t, "alice", a.UserID)
	}
}

// smallBufListener makes the server's side of each connection buffer
// little, so that the writes to a client that does not read block soon.
type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4 << 10)
	}
	return c, err
}

// A client that stops reading is dropped once a write has waited
// streamWriteTimeout, instead of holding its handler forever.
func TestStreamSlowClientDropped(t *testing.T) {
	s := openStore(t, nil)
	h := newHandler(s, Options{})
	h.writeTimeout = 100 * time.Millisecond
	watch := watchStreams(h)
	srv := httptest.NewUnstartedServer(h.mux)
	srv.Listener = smallBufListener{srv.Listener}
	srv.Start()
	t.Cleanup(srv.Close)

	// About 2 MB of NDJSON or events, far more than the connection buffers.
	big := func(n int) []activitystore.Activity {
		acts := make([]activitystore.Activity, n)
		for i := range acts {
			acts[i] = act("a", "u-1", i)
			acts[i].Details = json.RawMessage(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
		}
		return acts
	}
	// open sends GET path, reads the head of the answer and then nothing.
	open := func(path string) {
		t.Helper()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { conn.Close() }) // before srv.Close
		require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4<<10))
		_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}

	seed(t, s, big(2000)...)
	open("/v1/export")
	watch.waitEnd(t, "export to a client that stopped reading")

	open("/v1/tail")
	seed(t, s, big(2000)...)
	watch.waitEnd(t, "tail to a client that stopped reading")
}

// closingWriter closes the store at the first write of the answer.
type closingWriter struct {
	*httptest.ResponseRecorder
	once  sync.Once
	close func()
}

func (w *closingWriter) Write(b []byte) (int, error) {
	w.once.Do(w.close)
	return w.ResponseRecorder.Write(b)
}

// An export cut by an error ends with an error line; a complete one does not
// (see TestExport, which decodes every line as an activity).
func TestExportCutShort(t *testing.T) {
	s := openStore(t, nil)
	acts := make([]activitystore.Activity, 600) // more than one chunk of Iter
	for i := range acts {
		acts[i] = act("a", "u-1", i)
	}
	seed(t, s, acts...)
	h := newHandler(s, Options{Logger: slog.New(slog.DiscardHandler)})
	w := &closingWriter{ResponseRecorder: httptest.NewRecorder(), close: func() { s.Close() }}
	h.mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/export", nil))
	require.Equal(t, http.StatusOK, w.Code)
	lines := strings.Split(strings.TrimSuffix(w.Body.String(), "\n"), "\n")
	require.Greater(t, len(lines), 1)
	require.Less(t, len(lines), len(acts)+1, "the export is cut short")
	exportedIDs(t, []byte(strings.Join(lines[:len(lines)-1], "\n")))
	var e apiErr
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &e))
	assert.Contains(t, e.Error, "closed")
}

// TestTailsPerPrincipal checks that a principal may keep only so many tails
// open: one more is a 429 with Retry-After, other principals are not
// affected, and a closed tail gives its place back.
func TestTailsPerPrincipal(t *testing.T) {
	s := openStore(t, nil)
	h := newHandler(s, Options{Authenticate: TokenAuth(testTokens), MaxTailsPerPrincipal: 2})
	ended := make(chan struct{}, 8)
	h.onStreamEnd = func() { ended <- struct{}{} }
	c := serveHandler(t, h)
	alice := c.as(aliceToken)
	open := func(c *client) (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(t.Context())
		resp := c.send(ctx, http.MethodGet, "/v1/tail", "")
		return resp, cancel
	}
	r1, cancel1 := open(alice)
	defer cancel1()
	require.Equal(t, http.StatusOK, r1.StatusCode)
	r2, cancel2 := open(alice)
	defer cancel2()
	require.Equal(t, http.StatusOK, r2.StatusCode)
	r3, cancel3 := open(alice)
	defer cancel3()
	require.Equal(t, http.StatusTooManyRequests, r3.StatusCode)
	require.Equal(t, "1", r3.Header.Get("Retry-After"))
	r3.Body.Close()

	r4, cancel4 := open(c.as(adminToken))
	defer cancel4()
	require.Equal(t, http.StatusOK, r4.StatusCode, "another principal tails as before")

	cancel1()
	r1.Body.Close()
	<-ended
	r5, cancel5 := open(alice)
	defer cancel5()
	require.Equal(t, http.StatusOK, r5.StatusCode, "a closed tail gives its place back")
}
